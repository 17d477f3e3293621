"""Deployable artefacts from an analysed store: router configs and the evaluation set.

The exporters load on first use, so that the LiteLLM hook (`advisor.export.litellm_hook`), which
runs inside a proxy, imports only `advisor.routing`: not DuckDB or numpy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from advisor.export.evalset import export_evalset
    from advisor.export.router import FORMATS, export_router, render_router, router_spec

__all__ = ["FORMATS", "export_evalset", "export_router", "render_router", "router_spec"]
_HOMES = {"export_evalset": "advisor.export.evalset"} | {
    name: "advisor.export.router" for name in __all__ if name != "export_evalset"
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
