"""`advisor export router`: the tiering decisions as something production can run.

Three formats from one router document (built from the store after `advisor analyze`):

- generic: advisor's own YAML, read by the pure-Python runtime `advisor.routing`: ordered match
  rules (feature or template -> model, classifier class and threshold -> model) each with its
  expected saving, the guard rules, the model-name map, and the classifier weights as plain data.
- litellm: a LiteLLM proxy config.yaml: a deployment for every logged model name, one model group
  per route (`advisor-<source>-to-<target>`) falling back to the original, and advisor's pre-call
  hook (`advisor.export.litellm_hook`), which runs `advisor.routing` in the proxy and sends easy
  requests to their group: no application change.
- portkey: a Portkey gateway config with `strategy.mode: conditional`: feature rules match
  `metadata.feature` and `params.model`; classifier routes match `metadata.advisor_route`, which
  the application sets from `Router.gateway_group`; every routed target falls back to the original.

Both keep a route on the provider that served the logged name: an Azure deployment is routed to an
Azure deployment of the cheaper model (same resource, hence region), never to OpenAI. Credentials
are placeholders: `os.environ/...` for LiteLLM, `${PORTKEY_VK_...}` virtual keys for Portkey.

Every generated string goes through yaml.safe_dump or json.dumps, so a model or feature name from a
log (quotes, `<script>`, YAML syntax) is always quoted, never interpreted.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import duckdb
import yaml

from advisor import __version__, store
from advisor.difficulty import load_classifier, load_guards
from advisor.errors import AdvisorError
from advisor.levers.tiering import META_ROUTER
from advisor.routing import ROUTER_SCHEMA_VERSION, deployment_group
from advisor.routing import route_alias as alias

Format = Literal["generic", "litellm", "portkey"]
FORMATS: tuple[Format, ...] = ("generic", "litellm", "portkey")

# provider -> (LiteLLM model prefix, its credentials as `os.environ/...` placeholders). A provider
# not listed is taken for an OpenAI-compatible endpoint (vLLM, TGI...) with its own base URL.
_LITELLM: dict[str, tuple[str, dict[str, str]]] = {
    "openai": ("openai", {"api_key": "OPENAI_API_KEY"}),
    "anthropic": ("anthropic", {"api_key": "ANTHROPIC_API_KEY"}),
    "google": ("gemini", {"api_key": "GEMINI_API_KEY"}),
    "gemini": ("gemini", {"api_key": "GEMINI_API_KEY"}),
    "vertex_ai": (
        "vertex_ai", {"vertex_project": "VERTEX_PROJECT", "vertex_location": "VERTEX_LOCATION"}
    ),
    "azure": (
        "azure",
        {"api_key": "AZURE_API_KEY", "api_base": "AZURE_API_BASE",
         "api_version": "AZURE_API_VERSION"},
    ),
    "bedrock": (
        "bedrock",
        {
            "aws_access_key_id": "AWS_ACCESS_KEY_ID",
            "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
            "aws_region_name": "AWS_REGION_NAME",
        },
    ),
    "mistral": ("mistral", {"api_key": "MISTRAL_API_KEY"}),
}  # fmt: skip
# provider -> Portkey provider slug; others are OpenAI-compatible endpoints behind a custom_host
_PORTKEY = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "gemini": "google",
    "vertex_ai": "vertex-ai",
    "azure": "azure-openai",
    "bedrock": "bedrock",
    "mistral": "mistral-ai",
}


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
    served_by: dict[str, str | None] = {}
    by_provider: dict[str, str | None] = {}
    for model, provider, key in con.execute(
        """SELECT model, provider, model_key FROM requests WHERE model IS NOT NULL
           GROUP BY ALL ORDER BY count(*) DESC, 1, 2 NULLS FIRST, 3 NULLS FIRST"""
    ).fetchall():
        models.setdefault(str(model), key)  # the most frequent reading of an ambiguous name
        served_by.setdefault(str(model), provider)
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
        # the classifier's guards, then those that measured quality added (tiering calibrate)
        "guards": load_guards(con) + router.get("guards", []),
        "models": dict(sorted(models.items())),
        "models_by_provider": dict(sorted(by_provider.items())),
        "model_providers": dict(sorted(served_by.items())),
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


_HEADER_LITELLM = """\
# LiteLLM proxy config written by `advisor export router --format litellm`.
# Deploy: put router.yaml (`advisor export router`) beside this file or point $ADVISOR_ROUTER_SPEC
# at it, set the API keys named below as os.environ/..., and run `litellm --config <this file>`.
# The advisor hook in litellm_settings.callbacks asks advisor.routing about every request: an easy
# one is sent to its advisor-* model group (a cheaper model, falling back to the original on
# error); a hard or guarded one keeps its model. Clients keep calling the model names they logged:
# every logged name has a deployment below.
# Provider and region: a route never leaves the provider that served a logged name. A deployment
# served by Azure is routed to an Azure deployment of the cheaper model (a placeholder named after
# that model: create it, or edit `model`), in the same Azure resource (the same AZURE_API_BASE,
# hence the same region). The logs record no region, so the resource is not checked: with
# deployments in several resources, give each group its own api_base. A cross-provider route is
# not applied to such a deployment: its requests stay where they are.
"""


def _env(provider: str | None) -> str:
    """An environment-variable stem for a provider named in a log (anything: it is sanitised)."""
    return re.sub(r"[^A-Z0-9]+", "_", (provider or "").upper()).strip("_") or "CUSTOM"


def litellm_params(provider: str | None, model: str) -> dict[str, Any]:
    """A deployment's litellm_params: the provider-prefixed model and its credential placeholders
    (an unknown provider is an OpenAI-compatible endpoint at $<PROVIDER>_API_BASE)."""
    prefix, credentials = _LITELLM.get(provider or "", ("openai", {}))
    if provider not in _LITELLM:
        stem = _env(provider)
        credentials = {"api_base": f"{stem}_API_BASE", "api_key": f"{stem}_API_KEY"}
    name = model.removeprefix(f"{prefix}/")  # a name logged with its prefix keeps one
    return {"model": f"{prefix}/{name}"} | {k: f"os.environ/{v}" for k, v in credentials.items()}


def _deployments(spec: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """Every logged model name -> (the provider that served it as logged, its price key)."""
    logged = spec.get("model_providers") or {}
    return {name: (logged.get(name), key) for name, key in spec["models"].items()}


def _routes(spec: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(source price key, target) -> the ids of the rules that take that route."""
    out: dict[tuple[str, str], list[str]] = {}
    for rule in spec["rules"]:
        out.setdefault((rule["match"]["model"], rule["route_to"]), []).append(rule["id"])
    return dict(sorted(out.items()))


def _own_groups(spec: dict[str, Any]) -> list[tuple[str, str | None, str, str]]:
    """(group, provider, logged name, target) of every route a logged name takes on its own
    provider, apart from the shared route group (an Azure deployment's route to Azure)."""
    providers: dict[str, str] = spec["providers"]
    out = []
    for name, (provider, key) in sorted(_deployments(spec).items()):
        for source, target in _routes(spec):
            if key != source:
                continue
            group = deployment_group(name, provider, source, target, providers)
            if group is not None and group != alias(source, target):
                out.append((group, provider, name, target))
    return out


def litellm_config(spec: dict[str, Any]) -> dict[str, Any]:
    """A LiteLLM proxy config: a deployment for every logged model name, a model group per route
    (shared, or a deployment's own on its provider) falling back to the original, and the hook."""
    providers: dict[str, str] = spec["providers"]
    entries: dict[str, dict[str, Any]] = {}

    def add(
        name: str, provider: str | None, model: str, key: str | None, info: dict[str, Any]
    ) -> None:
        if provider == "azure" and key:  # LiteLLM prices an Azure deployment by its base model
            info["base_model"] = f"azure/{key}"
        entries.setdefault(
            name,
            {
                "model_name": name,
                "litellm_params": litellm_params(provider, model),
                "model_info": info,
            },
        )

    for name, (provider, key) in sorted(_deployments(spec).items()):
        info: dict[str, Any] = {"id": f"advisor-original-{name}"}
        add(name, provider or providers.get(key or ""), name, key, info)
    routes = _routes(spec)
    for source, _ in routes:  # the fallback of a shared group, even if never logged by that name
        add(source, providers.get(source), source, source, {"id": f"advisor-original-{source}"})
    fallbacks = []
    for (source, target), rule_ids in routes.items():
        name = alias(source, target)
        info = {"id": name, "advisor_rules": rule_ids, "advisor_route_from": source}
        add(name, providers.get(target), target, target, info)
        fallbacks.append({name: [source]})
    for group, provider, name, target in _own_groups(spec):
        note = f"placeholder: a {provider} deployment of {target} beside {name}; create it or edit"
        info = {"id": group, "advisor_route_from": name, "advisor_note": note}
        add(group, provider, target, target, info)
        fallbacks.append({group: [name]})
    return {
        "model_list": list(entries.values()),
        "router_settings": {"fallbacks": fallbacks, "num_retries": 1},
        "litellm_settings": {
            "drop_params": True,
            "callbacks": ["advisor.export.litellm_hook.proxy_handler_instance"],
        },
    }


def _family(provider: str | None) -> str:
    """A provider's Portkey slug, or a name of its own for an OpenAI-compatible endpoint."""
    return _PORTKEY.get(provider or "") or _env(provider).lower()


def _portkey_target(provider: str | None, model: str | None) -> dict[str, Any]:
    """A Portkey target on `provider`, its virtual key as a ${PORTKEY_VK_...} placeholder (an
    unknown provider: an OpenAI-compatible endpoint at ${<PROVIDER>_API_BASE})."""
    family = _family(provider)
    out: dict[str, Any] = {
        "provider": _PORTKEY.get(provider or "", "openai"),
        "virtual_key": f"${{PORTKEY_VK_{_env(family)}}}",
    }
    if provider not in _PORTKEY:
        out["custom_host"] = f"${{{_env(provider)}_API_BASE}}"
    if model is not None:
        out["override_params"] = {"model": model}
    return out


def portkey_config(spec: dict[str, Any]) -> dict[str, Any]:
    """A Portkey conditional-routing config: conditions in rule order, default = unchanged. A
    route applies only to the names its provider served: a name another provider served (an Azure
    deployment) takes that provider's own group, or stays as it is."""
    providers: dict[str, str] = spec["providers"]
    deployments = _deployments(spec)
    routes = _routes(spec)
    own = {(name, target): group for group, _, name, target in _own_groups(spec)}

    def served(name: str) -> str | None:
        provider, key = deployments.get(name, (None, name))
        return provider or providers.get(key or "")

    def home_names(source: str) -> list[str]:
        """The names of price key `source` that its price-table provider served (or unknown)."""
        home = providers.get(source)
        return sorted(
            {source} | {n for n, (p, k) in deployments.items() if k == source and p in (None, home)}
        )

    targets: dict[str, dict[str, Any]] = {}

    def fallback(group: str, cheap: dict[str, Any], original: dict[str, Any]) -> None:
        targets[group] = {
            "name": group,
            "strategy": {"mode": "fallback"},
            "targets": [cheap, original],
        }

    for source, target in routes:
        fallback(
            alias(source, target),
            _portkey_target(providers.get(target), target),
            _portkey_target(providers.get(source), source),
        )
    for group, provider, name, target in _own_groups(spec):
        fallback(group, _portkey_target(provider, target), _portkey_target(provider, name))

    conditions: list[dict[str, Any]] = []

    def route_to(source: str, target: str, head: dict[str, Any]) -> None:
        """One route's conditions: its home names to the shared group, each other name to its own
        group on its provider, or (a cross-provider route) to its provider unchanged."""
        homes = home_names(source)
        conditions.append(
            {
                "query": {"$and": [head, {"params.model": {"$in": homes}}]},
                "then": alias(source, target),
            }
        )
        for name, (_, key) in sorted(deployments.items()):
            if key == source and name not in homes:
                then = own.get((name, target), f"unchanged-{_family(served(name))}")
                conditions.append(
                    {"query": {"$and": [head, {"params.model": {"$eq": name}}]}, "then": then}
                )

    for rule in spec["rules"]:
        if "feature" in rule["match"]:
            head = {"metadata.feature": {"$eq": rule["match"]["feature"]}}
            route_to(rule["match"]["model"], rule["route_to"], head)
    # Classifier routes: the application sets metadata.advisor_route to router.gateway_group(
    # decision), or to decision.alias (a name another provider served still stays there).
    for group in sorted(set(own.values())):
        conditions.append({"query": {"metadata.advisor_route": {"$eq": group}}, "then": group})
    for source, target in routes:
        route_to(source, target, {"metadata.advisor_route": {"$eq": alias(source, target)}})

    by_family: dict[str, list[str]] = {}
    provider_of: dict[str, str | None] = {}
    for name in sorted(deployments) + sorted({s for s, _ in routes} - set(deployments)):
        by_family.setdefault(_family(served(name)), []).append(name)
        provider_of.setdefault(_family(served(name)), served(name))
    default = max(by_family, key=lambda f: (len(by_family[f]), f), default="openai")
    for family, names in sorted(by_family.items()):
        if family != default:
            conditions.append(
                {"query": {"params.model": {"$in": names}}, "then": f"unchanged-{family}"}
            )
    for family in sorted(set(by_family) | {default}):
        name = f"unchanged-{family}"
        targets[name] = {"name": name, **_portkey_target(provider_of.get(family, "openai"), None)}
    return {
        "strategy": {
            "mode": "conditional",
            "conditions": conditions,
            "default": f"unchanged-{default}",
        },
        "targets": list(targets.values()),
    }
