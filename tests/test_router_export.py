"""`advisor export router`: the generic YAML loads in the runtime, the LiteLLM config loads in
litellm.Router, the Portkey config has the documented conditional-routing shape, and names from
logs are always quoted, never interpreted."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import duckdb
import jsonschema
import pytest
import yaml
from helpers import openai_line, write_jsonl
from test_tiering import analysed_sample, build_store

from advisor.export import export_evalset, export_router, render_router, router_spec
from advisor.routing import CLASSIFIER_FORMAT, Router

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


def test_litellm_config_loads_in_litellm_router(
    sample_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(key, "sk-test")
    import litellm

    text = _export(sample_db, "litellm")
    config = yaml.safe_load(text)
    router = litellm.Router(model_list=config["model_list"], **config["router_settings"])
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
        if "$and" in c["query"]
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
    assert names == [source, f"advisor-{source}-to-{target}"]
    assert litellm_cfg["model_list"][1]["litellm_params"]["model"] == f"{HOSTILE[4]}/{target}"
    portkey = json.loads(render_router(spec, "portkey"))
    _portkey_check(portkey)
    assert yaml.safe_load(render_router(spec, "generic")) == spec
    assert os.linesep not in names[0]
