"""`advisor export router`: the generic YAML loads in the runtime, the LiteLLM config loads in
litellm.Router, the Portkey config has the documented conditional-routing shape, and names from
logs are always quoted, never interpreted."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import jsonschema
import pytest
import yaml
from helpers import openai_line, write_jsonl
from test_tiering import analysed_sample, build_store

from advisor.export import export_evalset, export_router, render_router, router_spec
from advisor.routing import CLASSIFIER_FORMAT, Decision, Router

# The shape of a Portkey conditional-routing config, as its docs describe it: strategy.mode
# "conditional", conditions of {query, then}, a default target name, and named targets.
PORTKEY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["strategy", "targets"],
    "additionalProperties": False,
    "properties": {
        "strategy": {
            "type": "object",
            "required": ["mode", "conditions", "default"],
            "additionalProperties": False,
            "properties": {
                "mode": {"const": "conditional"},
                "conditions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["query", "then"],
                        "additionalProperties": False,
                        "properties": {"query": {"type": "object"}, "then": {"type": "string"}},
                    },
                },
                "default": {"type": "string"},
            },
        },
        "targets": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "provider": {"type": "string"},
                    "override_params": {"type": "object"},
                    "strategy": {"type": "object", "properties": {"mode": {"const": "fallback"}}},
                    "targets": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}
PORTKEY_OPERATORS = {"$eq", "$ne", "$in", "$nin", "$regex", "$gt", "$gte", "$lt", "$lte"}


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return analysed_sample(tmp_path_factory)[0]


def _export(db: Path, fmt: Any) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return export_router(con, fmt)
    finally:
        con.close()


def test_generic_router_has_rules_with_savings_and_loads(sample_db: Path) -> None:
    text = _export(sample_db, "generic")
    spec = yaml.safe_load(text)
    assert spec["kind"] == "router" and spec["schema_version"] == 1
    assert spec["classifier"]["format"] == CLASSIFIER_FORMAT
    rules = spec["rules"]
    assert rules and all(r["id"].startswith("ROUTE-") and "expected_saving" in r for r in rules)
    assert any("feature" in r["match"] for r in rules)
    assert any("min_confidence" in r["match"] for r in rules)
    assert {g["id"] for g in spec["guards"]} >= {"DIF-001", "DIF-003"}
    router = Router(spec)
    assert router.decide({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})


def _portkey_check(config: dict[str, Any]) -> None:
    jsonschema.validate(config, PORTKEY_SCHEMA)
    names = [t["name"] for t in config["targets"]]
    assert len(names) == len(set(names))
    assert config["strategy"]["default"] in names
    for condition in config["strategy"]["conditions"]:
        assert condition["then"] in names
        _check_query(condition["query"])


def _check_query(query: dict[str, Any]) -> None:
    for key, value in query.items():
        if key in ("$and", "$or"):
            assert isinstance(value, list)
            for sub in value:
                _check_query(sub)
            continue
        assert re.fullmatch(r"(metadata|params)\.[A-Za-z_][A-Za-z0-9_]*", key), key
        assert isinstance(value, dict) and set(value) <= PORTKEY_OPERATORS


def _portkey_resolve(
    config: dict[str, Any], metadata: dict[str, str], params: dict[str, Any]
) -> str:
    """Portkey's conditional router, as its gateway evaluates a query (first match wins)."""
    context = {"metadata": metadata, "params": params}

    def ok(query: dict[str, Any]) -> bool:
        for key, value in query.items():
            if key == "$and":
                return all(ok(q) for q in value)
            if key == "$or":
                return any(ok(q) for q in value)
            head, _, tail = key.partition(".")
            actual = context[head].get(tail)
            for op, expected in value.items():
                if (op == "$eq" and actual != expected) or (op == "$in" and actual not in expected):
                    return False
        return True

    for condition in config["strategy"]["conditions"]:
        if ok(condition["query"]):
            return str(condition["then"])
    return str(config["strategy"]["default"])


def test_portkey_config_validates_and_routes(sample_db: Path) -> None:
    config = json.loads(_export(sample_db, "portkey"))
    _portkey_check(config)
    by_name = {t["name"]: t for t in config["targets"]}
    triage = _portkey_resolve(config, {"feature": "ticket-triage"}, {"model": "gpt-4o"})
    assert triage == "advisor-gpt-4o-to-gpt-4o-mini"
    routed = by_name[triage]
    assert routed["strategy"]["mode"] == "fallback"
    assert [t["override_params"]["model"] for t in routed["targets"]] == ["gpt-4o-mini", "gpt-4o"]
    alias = _portkey_resolve(config, {"advisor_route": triage}, {"model": "gpt-4o"})
    assert alias == triage
    kept = _portkey_resolve(config, {"feature": "code-review"}, {"model": "claude-opus-4-1"})
    assert kept.startswith("unchanged-") and "override_params" not in by_name[kept]
    assert by_name[kept]["provider"] == "anthropic"
    # An Azure deployment's traffic stays on Azure: routed to its own Azure group, else unchanged.
    eu = _portkey_resolve(config, {"feature": "ticket-triage"}, {"model": "prod-gpt4o-eu"})
    assert eu == "advisor-prod-gpt4o-eu-to-gpt-4o-mini"
    assert [t["provider"] for t in by_name[eu]["targets"]] == ["azure-openai", "azure-openai"]
    assert [t["override_params"]["model"] for t in by_name[eu]["targets"]] == [
        "gpt-4o-mini",
        "prod-gpt4o-eu",
    ]
    for route in (triage, eu):  # decision.alias or router.gateway_group(decision)
        assert _portkey_resolve(config, {"advisor_route": route}, {"model": "prod-gpt4o-eu"}) == eu
    plain = _portkey_resolve(config, {"feature": "support-chat"}, {"model": "prod-gpt4o-eu"})
    assert by_name[plain]["provider"] == "azure-openai" and "override_params" not in by_name[plain]
    # Every target names its virtual key as a placeholder, fallback members included.
    for target in config["targets"]:
        for member in target.get("targets", [target]):
            assert re.fullmatch(r"\$\{PORTKEY_VK_[A-Z0-9_]+\}", member["virtual_key"]), member


# Every credential a generated LiteLLM config names, set to dummies: litellm.Router reads them.
LITELLM_ENV = {
    "OPENAI_API_KEY": "sk-test",
    "ANTHROPIC_API_KEY": "sk-test",
    "GEMINI_API_KEY": "test",
    "AZURE_API_KEY": "test",
    "AZURE_API_BASE": "https://example-eu.openai.azure.com",
    "AZURE_API_VERSION": "2024-10-21",
    "SELF_HOSTED_API_BASE": "http://127.0.0.1:9",
    "SELF_HOSTED_API_KEY": "test",
}


@pytest.fixture()
def litellm_router(sample_db: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[str, Any]]:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import
    for key, value in LITELLM_ENV.items():
        monkeypatch.setenv(key, value)
    import litellm

    config = yaml.safe_load(_export(sample_db, "litellm"))
    return litellm.Router(model_list=config["model_list"], **config["router_settings"]), config


def test_litellm_config_loads_in_litellm_router(
    sample_db: Path, litellm_router: tuple[Any, dict[str, Any]]
) -> None:
    router, config = litellm_router
    alias = "advisor-gpt-4o-to-gpt-4o-mini"
    registry = router.registry() if hasattr(router, "registry") else None  # litellm >= 1.8x
    names = set(registry.names() if registry else router.get_model_names())
    assert {"gpt-4o", alias, "claude-sonnet-4-5"} <= names
    assert {alias: ["gpt-4o"]} in config["router_settings"]["fallbacks"]
    deployments = registry.deployments(alias) if registry else router.get_model_list(alias)
    deployment = deployments[0]
    assert deployment["litellm_params"]["model"] == "openai/gpt-4o-mini"
    reply = router.completion(
        model=alias,
        messages=[{"role": "user", "content": "hi"}],
        mock_response="billing",  # LiteLLM answers locally: no network in tests
    )
    assert reply.choices[0].message.content == "billing"


def test_litellm_model_list_covers_every_logged_model_on_its_provider(sample_db: Path) -> None:
    spec = yaml.safe_load(_export(sample_db, "generic"))
    config = yaml.safe_load(_export(sample_db, "litellm"))
    entries = {m["model_name"]: m for m in config["model_list"]}
    assert len(spec["models"]) == 15  # the sample's logged model names, Azure and self-hosted too
    assert set(spec["models"]) <= set(entries)
    azure = [n for n, p in spec["model_providers"].items() if p == "azure"]
    assert azure == ["prod-gpt4o-eu"]
    assert entries["prod-gpt4o-eu"]["litellm_params"] == {
        "model": "azure/prod-gpt4o-eu",
        "api_key": "os.environ/AZURE_API_KEY",
        "api_base": "os.environ/AZURE_API_BASE",
        "api_version": "os.environ/AZURE_API_VERSION",
    }
    # The Azure deployment's route stays on Azure (same resource), never on OpenAI.
    routed = entries["advisor-prod-gpt4o-eu-to-gpt-4o-mini"]
    assert routed["litellm_params"]["model"] == "azure/gpt-4o-mini"
    assert routed["litellm_params"]["api_base"] == "os.environ/AZURE_API_BASE"
    assert {"advisor-prod-gpt4o-eu-to-gpt-4o-mini": ["prod-gpt4o-eu"]} in config["router_settings"][
        "fallbacks"
    ]
    for entry in config["model_list"]:
        params = entry["litellm_params"]
        if entry["model_name"] in azure or entry["model_info"].get("advisor_route_from") in azure:
            assert params["model"].startswith("azure/")
        secrets = {k: v for k, v in params.items() if k != "model"}
        assert secrets and all(str(v).startswith("os.environ/") for v in secrets.values()), entry
    hook = "advisor.export.litellm_hook.proxy_handler_instance"
    assert config["litellm_settings"]["callbacks"] == [hook]
    # Every group the hook can send a logged name to is in the model list.
    router = Router(spec)
    for name, key in spec["models"].items():
        for rule in spec["rules"]:
            if rule["match"]["model"] == key:
                decision = _routed_decision(name, key, rule["route_to"])
                group = router.gateway_group(decision)
                assert group is None or group in entries, (name, group)


def _routed_decision(name: str, key: str, target: str) -> Decision:
    return Decision(target, True, name, key, target, "easy", 1.0, "ROUTE-X")


def _pick(router: Router, lines: list[dict[str, Any]], model: str, routed: bool) -> dict[str, Any]:
    """The first logged request body on `model` that the router routes (or keeps)."""
    for line in lines:
        body = {**line["request"], "metadata": {"feature": line.get("feature")}}
        if body.get("model") == model and router.decide(body).routed == routed:
            return body
    raise AssertionError(f"no {model} request with routed={routed}")


def test_the_hook_routes_easy_requests_through_litellm_router(
    sample_db: Path, tmp_path: Path, litellm_router: tuple[Any, dict[str, Any]]
) -> None:
    """The proxy's pre-call hook, then litellm.Router: an easy request lands on the routed model,
    a hard one on the model it asked for, an Azure deployment's easy request on Azure."""
    from advisor.export.litellm_hook import AdvisorRouterHook

    router, _ = litellm_router
    spec_file = tmp_path / "router.yaml"
    spec_file.write_text(_export(sample_db, "generic"), encoding="utf-8")
    hook = AdvisorRouterHook(spec_file)
    lines = [line for line in _sample_lines() if isinstance(line.get("request"), dict)]
    easy = _pick(hook.router, lines, "gpt-4o", routed=True)
    hard = _pick(hook.router, lines, "gpt-4o", routed=False)
    assert hook.router.decide(hard).difficulty != "easy" or hook.router.decide(hard).rule
    azure = {
        **easy,
        "model": "prod-gpt4o-eu",
    }  # the same easy request, sent to the Azure deployment

    def landed(body: dict[str, Any]) -> tuple[str, str, str]:
        data = asyncio.run(hook.async_pre_call_hook(None, None, dict(body), "completion"))
        reply = router.completion(
            model=data["model"], messages=data["messages"], mock_response="ok"
        )
        deployment = router.registry().deployment(reply._hidden_params["model_id"])
        params = deployment["litellm_params"] if isinstance(deployment, dict) else None
        model = params["model"] if params else deployment.litellm_params.model
        return data["model"], reply.model, model

    assert landed(easy) == ("advisor-gpt-4o-to-gpt-4o-mini", "gpt-4o-mini", "openai/gpt-4o-mini")
    assert landed(hard) == ("gpt-4o", "gpt-4o", "openai/gpt-4o")
    assert landed(azure) == (
        "advisor-prod-gpt4o-eu-to-gpt-4o-mini",
        "gpt-4o-mini",
        "azure/gpt-4o-mini",
    )


def test_the_hook_reads_its_router_file_from_the_environment(
    sample_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from advisor.export import litellm_hook

    monkeypatch.setenv("ADVISOR_ROUTER_SPEC", str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="ADVISOR_ROUTER_SPEC"):
        litellm_hook.AdvisorRouterHook()
    spec_file = tmp_path / "router.yaml"
    spec_file.write_text(_export(sample_db, "generic"), encoding="utf-8")
    monkeypatch.setenv("ADVISOR_ROUTER_SPEC", str(spec_file))
    code = (
        "import sys, json\n"
        "from advisor.export.litellm_hook import proxy_handler_instance as hook\n"
        "body = {'model': 'claude-opus-4-1', 'messages': [{'role': 'user', 'content': 'hi'}]}\n"
        "heavy = [m for m in ('sklearn', 'numpy', 'duckdb') if m in sys.modules]\n"
        "print(json.dumps([hook.route(body)['model'], heavy]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["claude-opus-4-1", []]


def _sample_lines() -> list[dict[str, Any]]:
    path = Path(__file__).resolve().parent.parent / "sample_logs" / "traffic.jsonl.gz"
    out = []
    with gzip.open(path, "rb") as f:
        for raw in f:
            try:
                line = json.loads(raw)
            except ValueError:  # the sample plants broken lines on purpose
                continue
            if isinstance(line, dict):
                out.append(line)
    return out


HOSTILE = [
    "<script>alert(1)</script>",
    "a: b\n- c: [d]",
    "'; DROP TABLE requests; --",
    '{{ messages }} "quoted" \\ & *alias !!python/object:os.system',
    "---\n...",
]


def test_hostile_names_are_quoted_in_every_export(tmp_path: Path) -> None:
    """Names from logs that would break YAML or HTML survive every export intact, as data."""
    lines = []
    for i in range(110):
        feature = HOSTILE[i % len(HOSTILE)]
        lines.append(
            openai_line(
                f"r{i}",
                model="gpt-4o",
                feature=feature,
                prompt=900,
                completion=1,
                messages=[
                    {
                        "role": "system",
                        "content": "Classify the sentiment of the review. Answer "
                        "with exactly one word: positive or negative.",
                    },
                    {"role": "user", "content": f"Review {i}: great product, fast delivery."},
                ],
                response_text="positive",
            )
        )
    for i in range(30):
        lines.append(
            openai_line(
                f"m{i}",
                model=HOSTILE[i % len(HOSTILE)],
                feature="maths",
                messages=[
                    {"role": "system", "content": "You are a maths tutor. Solve step by step."},
                    {"role": "user", "content": f"Prove that {i}^2 + {i} is even."},
                ],
            )
        )
        lines.append(
            openai_line(
                f"s{i}",
                model="gpt-4o",
                feature="digest",
                completion=80,
                messages=[
                    {"role": "system", "content": "Summarise the document for the digest."},
                    {"role": "user", "content": "Weekly report. " + "The team shipped. " * 120},
                ],
            )
        )
    traffic = write_jsonl(tmp_path / "hostile.jsonl", lines)
    build_store(traffic, tmp_path / "h.duckdb")
    con = duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True)
    try:
        spec = router_spec(con)
        outputs = {fmt: export_router(con, fmt) for fmt in ("generic", "litellm", "portkey")}
        evalset, tests, config, _ = export_evalset(con, tmp_path / "evalset")
    finally:
        con.close()
    for path in (evalset, tests):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert set(HOSTILE) <= {r["metadata"]["feature"] for r in rows}
    assert yaml.safe_load(config.read_text(encoding="utf-8"))["tests"] == "file://tests.jsonl"
    generic = yaml.safe_load(outputs["generic"])
    assert set(HOSTILE) <= set(generic["models"])  # every hostile model name, intact
    features = {r["match"].get("feature") for r in generic["rules"]}
    assert set(HOSTILE) <= features, features  # every hostile feature got its own route rule
    assert generic == json.loads(json.dumps(spec))
    portkey = json.loads(outputs["portkey"])
    _portkey_check(portkey)
    queried = {
        c["query"]["$and"][0]["metadata.feature"]["$eq"]
        for c in portkey["strategy"]["conditions"]
        if "$and" in c["query"] and "metadata.feature" in c["query"]["$and"][0]
    }
    assert set(HOSTILE) <= queried
    assert yaml.safe_load(outputs["litellm"])["model_list"]


def test_hostile_model_keys_are_quoted_in_litellm_and_portkey() -> None:
    source, target = HOSTILE[0], HOSTILE[1]
    spec = {
        "schema_version": 1,
        "kind": "router",
        "policy": {},
        "guards": [],
        "rules": [
            {
                "id": "ROUTE-001",
                "match": {"feature": HOSTILE[2], "model": source},
                "route_to": target,
                "fallback": source,
                "requests": 1,
                "expected_saving": "1",
            }
        ],
        "models": {HOSTILE[3]: source},
        "models_by_provider": {},
        "model_keys": [source, target],
        "providers": {source: "openai", target: HOSTILE[4]},
        "aliases": {},
        "classifier": {
            "format": CLASSIFIER_FORMAT,
            "classes": ["easy", "medium", "hard"],
            "temperature": 1.0,
            "intercept": [0.0, 0.0, 0.0],
            "features": [[f"tok:{HOSTILE[1]}", [0.5, 0.0, 0.0]]],
        },
    }
    litellm_cfg = yaml.safe_load(render_router(spec, "litellm"))
    names = [m["model_name"] for m in litellm_cfg["model_list"]]
    assert names == [HOSTILE[3], source, f"advisor-{source}-to-{target}"]
    # An unknown provider is an OpenAI-compatible endpoint whose variables are sanitised names.
    assert litellm_cfg["model_list"][2]["litellm_params"] == {
        "model": f"openai/{target}",
        "api_base": "os.environ/CUSTOM_API_BASE",
        "api_key": "os.environ/CUSTOM_API_KEY",
    }
    portkey = json.loads(render_router(spec, "portkey"))
    _portkey_check(portkey)
    assert yaml.safe_load(render_router(spec, "generic")) == spec
    assert os.linesep not in names[0]
