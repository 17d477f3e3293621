"""A LiteLLM pre-call hook that routes requests with advisor's exported router, inside the proxy.

The LiteLLM config from `advisor export router --format litellm` names this hook in
`litellm_settings.callbacks`, so the proxy asks `advisor.routing` about every request and rewrites
the model of an easy one to its cheaper model group (which falls back to the original model); a
hard one, a guarded one and a model the router does not know keep the model they asked for. The
application changes nothing: it keeps calling the model names it logged.

The router file is `$ADVISOR_ROUTER_SPEC`, else `router.yaml` next to the proxy's config
(`$CONFIG_FILE_PATH`), else `router.yaml` in the working directory. It is read when the proxy
loads the hook, so a missing file stops the proxy at start-up, not on a request.

With LiteLLM's Python `Router` (no proxy), call the same hook before the router:
`router.completion(**hook.route(kwargs))`.

Only `advisor.routing` and LiteLLM's `CustomLogger` are imported: no numpy, scikit-learn or DuckDB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from advisor.routing import Router, load_router

SPEC_ENV = "ADVISOR_ROUTER_SPEC"
SPEC_NAME = "router.yaml"


def spec_path() -> Path:
    """Where the router file is: the environment variable, next to the config, or here."""
    if os.environ.get(SPEC_ENV):
        return Path(os.environ[SPEC_ENV])
    config = os.environ.get("CONFIG_FILE_PATH")
    if config and (Path(config).parent / SPEC_NAME).is_file():
        return Path(config).parent / SPEC_NAME
    return Path(SPEC_NAME)


class AdvisorRouterHook(CustomLogger):
    """Rewrites `model` to the routed model group for requests the router sends elsewhere."""

    def __init__(self, router: Router | str | Path | None = None) -> None:
        super().__init__()
        if not isinstance(router, Router):
            path = Path(router) if router is not None else spec_path()
            if not path.is_file():
                raise FileNotFoundError(
                    f"advisor router file not found: {path} (write it with `advisor export "
                    f"router -o router.yaml` and point ${SPEC_ENV} at it)"
                )
            router = load_router(path)
        self.router = router

    def route(self, data: dict[str, Any]) -> dict[str, Any]:
        """The request with its model replaced by the routed model group, or unchanged."""
        group = self.router.gateway_group(self.router.decide(data))
        if group is None:
            return data
        metadata = data.get("metadata")
        tags = {"advisor_routed_from": data.get("model"), "advisor_route": group}
        return {
            **data,
            "model": group,
            "metadata": {**metadata, **tags} if isinstance(metadata, dict) else tags,
        }

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        """The proxy's hook: called with the request body before the proxy picks a deployment."""
        return self.route(data)


def __getattr__(name: str) -> Any:
    # The proxy loads `advisor.export.litellm_hook.proxy_handler_instance`: built on that first
    # access (the proxy's start-up), so importing this module alone reads no file.
    if name == "proxy_handler_instance":
        instance = AdvisorRouterHook()
        globals()[name] = instance
        return instance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
