"""`advisor export router`: the tiering decisions as something production can run.

Three formats from one router document (built from the store after `advisor analyze`):

- generic: advisor's own YAML, read by the pure-Python runtime `advisor.routing`: ordered match
  rules (feature or template -> model, classifier class and threshold -> model) each with its
  expected saving, the guard rules, the model-name map, and the classifier weights as plain data.
- litellm: a LiteLLM proxy config.yaml: the original models plus one model-group alias per route
  (`advisor-<source>-to-<target>`), each falling back to the original model. The application
  (or a pre-call hook) asks `advisor.routing` for the decision and calls `decision.alias`.
- portkey: a Portkey gateway config with `strategy.mode: conditional`: feature rules match
  `metadata.feature` and `params.model`; classifier routes match `metadata.advisor_route`, which
  the application sets to `decision.alias`; every routed target falls back to the original.

Every generated string goes through yaml.safe_dump or json.dumps, so a model or feature name from a
log (quotes, `<script>`, YAML syntax) is always quoted, never interpreted.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import duckdb
import yaml

from advisor import __version__, store
from advisor.difficulty import load_classifier, load_guards
from advisor.errors import AdvisorError
from advisor.levers.tiering import META_ROUTER
from advisor.routing import ROUTER_SCHEMA_VERSION

Format = Literal["generic", "litellm", "portkey"]
FORMATS: tuple[Format, ...] = ("generic", "litellm", "portkey")

# price-table provider -> (LiteLLM model prefix, API key variable); others pass through unchanged
_LITELLM = {
    "openai": ("openai", "OPENAI_API_KEY"),
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY"),
    "google": ("gemini", "GEMINI_API_KEY"),
    "gemini": ("gemini", "GEMINI_API_KEY"),
    "vertex_ai": ("vertex_ai", None),
    "azure": ("azure", "AZURE_API_KEY"),
}
_PORTKEY = {
    "google": "google",
    "gemini": "google",
    "vertex_ai": "vertex-ai",
    "azure": "azure-openai",
}


def alias(source: str, target: str) -> str:
    """The LiteLLM model-group / Portkey target name of one route."""
    return f"advisor-{source}-to-{target}"


def router_spec(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The generic router document (what `advisor.routing.Router` loads) from an analysed store."""
    raw = store.get_meta(con, META_ROUTER)
    classifier = load_classifier(con)
    if raw is None or classifier is None:
        raise AdvisorError(
            "this store holds no tiering analysis", hint="run `advisor analyze LOGS` first"
        )
    router = json.loads(raw)
    models: dict[str, str | None] = {}
    by_provider: dict[str, str | None] = {}
    for model, provider, key in con.execute(
        """SELECT model, provider, model_key FROM requests WHERE model IS NOT NULL
           GROUP BY ALL ORDER BY count(*) DESC, 1, 2 NULLS FIRST, 3 NULLS FIRST"""
    ).fetchall():
        models.setdefault(str(model), key)  # the most frequent reading of an ambiguous name
        if provider and models[str(model)] != key:
            by_provider[f"{provider}/{model}"] = key
    routes = sorted({(r["match"]["model"], r["route_to"]) for r in router["rules"]})
    classifier = {k: v for k, v in classifier.items() if k != "training"} | {
        "training": classifier.get("training")
    }
    return {
        "schema_version": ROUTER_SCHEMA_VERSION,
        "kind": "router",
        "generated_by": f"advisor {__version__}",
        "currency": "USD",
        "usage": "advisor.routing.load_router(path).decide(request) -> Decision "
        "(model to call, difficulty, confidence, rule, alias)",
        "policy": router["policy"],
        "rules": router["rules"],
        "guards": load_guards(con),
        "models": dict(sorted(models.items())),
        "models_by_provider": dict(sorted(by_provider.items())),
        "model_keys": sorted(router["providers"]),
        "providers": router["providers"],
        "aliases": {f"{s}>{t}": alias(s, t) for s, t in routes},
        "classifier": classifier,
    }


def export_router(con: duckdb.DuckDBPyConnection, fmt: Format = "generic") -> str:
    """The router for `fmt` as text (YAML for generic and litellm, JSON for portkey)."""
    return render_router(router_spec(con), fmt)


def render_router(spec: dict[str, Any], fmt: Format) -> str:
    if fmt == "generic":
        return _yaml(spec)
    if fmt == "litellm":
        return _HEADER_LITELLM + _yaml(litellm_config(spec))
    if fmt == "portkey":
        return json.dumps(portkey_config(spec), indent=2, ensure_ascii=False) + "\n"
    raise AdvisorError(f"unknown router format {fmt!r}", hint="formats: " + ", ".join(FORMATS))


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


_HEADER_LITELLM = (
    "# LiteLLM proxy config written by `advisor export router --format litellm`.\n"
    "# Each advisor-* model group is a cheaper tier for one route, falling back to the original\n"
    "# model. Pick the group per request with advisor.routing (decision.alias), or call the\n"
    "# original model name to keep today's behaviour. Fill in the API keys before deploying.\n"
)


def litellm_params(provider: str | None, model: str) -> dict[str, Any]:
    """A deployment's litellm_params: the provider-prefixed model and its API key variable."""
    prefix, key = _LITELLM.get(provider or "", (provider, None))
    params: dict[str, Any] = {"model": f"{prefix}/{model}" if prefix else model}
    if key:
        params["api_key"] = f"os.environ/{key}"
    return params


def litellm_config(spec: dict[str, Any]) -> dict[str, Any]:
    """A LiteLLM proxy config: originals, one alias per route, fallbacks to the original."""
    providers: dict[str, str] = spec["providers"]
    saving: dict[tuple[str, str], list[str]] = {}
    for rule in spec["rules"]:
        saving.setdefault((rule["match"]["model"], rule["route_to"]), []).append(rule["id"])
    sources = sorted({s for s, _ in saving})
    model_list: list[dict[str, Any]] = [
        {
            "model_name": source,
            "litellm_params": litellm_params(providers.get(source), source),
            "model_info": {"id": f"advisor-original-{source}"},
        }
        for source in sources
    ]
    fallbacks = []
    for (source, target), rule_ids in sorted(saving.items()):
        name = alias(source, target)
        model_list.append(
            {
                "model_name": name,
                "litellm_params": litellm_params(providers.get(target), target),
                "model_info": {"id": name, "advisor_rules": rule_ids, "advisor_route_from": source},
            }
        )
        fallbacks.append({name: [source]})
    return {
        "model_list": model_list,
        "router_settings": {"fallbacks": fallbacks, "num_retries": 1},
        "litellm_settings": {"drop_params": True},
    }


def portkey_config(spec: dict[str, Any]) -> dict[str, Any]:
    """A Portkey conditional-routing config: conditions in rule order, default = unchanged."""
    providers: dict[str, str] = spec["providers"]

    def target(provider: str | None, model: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": _PORTKEY.get(provider or "", provider or "openai")}
        if model is not None:
            out["override_params"] = {"model": model}
        return out

    conditions: list[dict[str, Any]] = []
    targets: dict[str, dict[str, Any]] = {}
    for rule in spec["rules"]:
        source, dest = rule["match"]["model"], rule["route_to"]
        name = alias(source, dest)
        targets[name] = {
            "name": name,
            "strategy": {"mode": "fallback"},
            "targets": [target(providers.get(dest), dest), target(providers.get(source), source)],
        }
        if "feature" in rule["match"]:
            query: dict[str, Any] = {
                "$and": [
                    {"metadata.feature": {"$eq": rule["match"]["feature"]}},
                    {"params.model": {"$in": _names(spec, source)}},
                ]
            }
            conditions.append({"query": query, "then": name})
    for name in sorted(targets):  # the application sets advisor_route = decision.alias
        conditions.append({"query": {"metadata.advisor_route": {"$eq": name}}, "then": name})
    by_provider: dict[str, list[str]] = {}
    for key, provider in sorted(providers.items()):
        by_provider.setdefault(provider, []).extend(_names(spec, key))
    default_provider = max(by_provider, key=lambda p: (len(by_provider[p]), p), default="openai")
    for provider, names in sorted(by_provider.items()):
        name = f"unchanged-{provider}"
        targets[name] = {"name": name, **target(provider, None)}
        if provider != default_provider:
            conditions.append({"query": {"params.model": {"$in": sorted(names)}}, "then": name})
    targets.setdefault(
        f"unchanged-{default_provider}",
        {"name": f"unchanged-{default_provider}", **target(default_provider, None)},
    )
    return {
        "strategy": {
            "mode": "conditional",
            "conditions": conditions,
            "default": f"unchanged-{default_provider}",
        },
        "targets": list(targets.values()),
    }


def _names(spec: dict[str, Any], key: str) -> list[str]:
    """Every model name the log used for price key `key` (what clients send as params.model)."""
    names = {n for n, k in spec["models"].items() if k == key} | {key}
    return sorted(names)
