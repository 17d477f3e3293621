"""The trimming lever: input tokens that are pure waste, removed only where removal is lossless.

Lossless kinds (counted): whitespace bloat, pretty-printed JSON, long or repeated markdown rules,
a paragraph repeated inside a text, a message repeated inside a request. Each distinct prompt text
a cheap SQL pre-filter passes is trimmed once, and the tokens saved are measured by re-tokenising
what changed with the model's encoding (estimated, and said so, without encoding files). The
replay takes them off each request's input (cached reads shrink where the trim falls inside them)
and hands the trimmed prompt on, so caching after it replays the trimmed prompt. Listed, never
counted: tool definitions of features that never call a tool, and lossy candidates (few-shot
examples, old conversation history, context far larger than the answer).

The package: `policy` (rules/trimming.yaml), `transforms` (the text edits), `counting` (tokens
saved by re-tokenising changed pieces), `replay` (pre-filter, savings per text, the state and
prompt after trimming), `details` and `models` (levers[id=trimming] in analysis.json), `lever`
(TrimmingLever).
"""

from advisor.levers.trimming.lever import TrimmingLever

__all__ = ["TrimmingLever"]
