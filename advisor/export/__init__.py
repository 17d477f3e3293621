"""Deployable artefacts from an analysed store: router configs and the evaluation set.

The exporters load on first use, so that the LiteLLM hook (`advisor.export.litellm_hook`), which
runs inside a proxy, imports only `advisor.routing`: not DuckDB or numpy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
_EVALSET = ("evalset_size", "export_evalset")
_HOMES = {name: "advisor.export.evalset" for name in _EVALSET} | {
    name: "advisor.export.router" for name in __all__ if name not in _EVALSET
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
