"""Deployable artefacts from an analysed store: router configs and the evaluation set."""

from __future__ import annotations

from advisor.export.evalset import evalset_size, export_evalset
from advisor.export.router import FORMATS, export_router, render_router, router_spec

__all__ = [
    "FORMATS",
    "evalset_size",
    "export_evalset",
    "export_router",
    "render_router",
    "router_spec",
]
