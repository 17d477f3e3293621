"""Renderers of analysis.json: html (jinja2 + altair), markdown, and the terminal summary (rich).

Each renderer takes an `advisor.analysis.Analysis` and nothing else, so a report never re-runs the
pipeline. Numbers are rounded for display only in `advisor.report.fmt`. The submodules are imported
on use, so a command that prints to the terminal does not load altair.
"""
