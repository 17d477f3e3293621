"""`advisor export evalset`: a stratified sample of the requests the router would move, in chat
format with the original answer, and a promptfoo suite replaying them on both models."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest
import yaml
from test_tiering import analysed_sample

from advisor.export import export_evalset
from advisor.redact import redact


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    db = analysed_sample(tmp_path_factory)[0]
    out = tmp_path_factory.mktemp("evalset")
    con = duckdb.connect(str(db), read_only=True)
    try:
        return db, export_evalset(con, out, per_stratum=5)
    finally:
        con.close()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_records_are_routed_requests_in_chat_format(exported: tuple[Path, list[Path]]) -> None:
    db, (evalset, *_) = exported
    records = _jsonl(evalset)
    assert records
    con = duckdb.connect(str(db), read_only=True)
    try:
        routed = dict(
            con.execute(
                "SELECT request_id, routed_model FROM tiering_decisions WHERE routed"
            ).fetchall()
        )
        strata = {
            (f, m, t)
            for f, m, t in con.execute(
                """SELECT DISTINCT coalesce(d.feature, d.template_id), d.model_key, d.routed_model
                   FROM tiering_decisions d JOIN requests r USING (request_id)
                   WHERE d.routed AND r.status = 'ok'"""
            ).fetchall()
        }
    finally:
        con.close()
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for record in records:
        meta = record["metadata"]
        assert routed[meta["request_id"]] == meta["proposed_model"] != meta["original_model"]
        messages = record["messages"]
        assert messages[-1]["role"] == "assistant" and messages[-1]["content"]
        assert any(m["role"] == "user" for m in messages[:-1])
        assert all(set(m) == {"role", "content"} for m in messages)
        assert meta["confidence"] >= 0.9 and meta["confidence_band"].startswith("0.9")
        counts[
            (
                meta["feature"] or meta["template_id"],
                meta["original_model"],
                meta["proposed_model"],
                meta["confidence_band"],
            )
        ] += 1
    assert max(counts.values()) <= 5
    assert {k[:3] for k in counts} == strata  # every routed feature and route is represented


def test_promptfoo_suite_replays_on_both_models(exported: tuple[Path, list[Path]]) -> None:
    _, (evalset, tests_file, config_file, _) = exported
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    assert config["prompts"] == ["{{ messages | dump }}"]
    assert config["tests"] == "file://tests.jsonl" and tests_file.parent == config_file.parent
    labels = {p["label"]: p["id"] for p in config["providers"]}
    assert labels["gpt-4o-mini"] == "openai:chat:gpt-4o-mini"
    assert labels["claude-haiku-4-5"] == "anthropic:messages:claude-haiku-4-5"
    tests = _jsonl(tests_file)
    assert len(tests) == len(_jsonl(evalset))
    for test in tests:
        meta = test["metadata"]
        assert test["providers"] == [meta["original_model"], meta["proposed_model"]]
        assert set(test["providers"]) <= set(labels)
        assert (
            test["vars"]["messages"][-1]["role"] != "assistant" or len(test["vars"]["messages"]) > 1
        )
        assert test["vars"]["original_response"]
        assert {a["type"] for a in test["assert"]} <= {"is-json", "similar", "javascript"}
    kinds = {a["type"] for t in tests for a in t["assert"]}
    assert {"is-json", "javascript"} <= kinds  # invoices are JSON, labels are compared exactly


def test_evalset_is_deterministic(exported: tuple[Path, list[Path]], tmp_path: Path) -> None:
    db, files = exported
    con = duckdb.connect(str(db), read_only=True)
    try:
        again = export_evalset(con, tmp_path, per_stratum=5)
    finally:
        con.close()
    for first, second in zip(files, again, strict=True):
        assert first.read_bytes() == second.read_bytes()


def test_readme_says_the_prompts_are_unredacted(exported: tuple[Path, list[Path]]) -> None:
    readme = exported[1][-1]
    text = readme.read_text(encoding="utf-8")
    assert readme.name == "README.md"
    assert "unredacted" in text and "--redact" in text


def test_redact_masks_prompts_answers_and_ids(
    exported: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    db, (plain, *_) = exported
    con = duckdb.connect(str(db), read_only=True)
    try:
        evalset, tests_file, _, readme = export_evalset(con, tmp_path, per_stratum=5, redact=True)
    finally:
        con.close()
    before, after = _jsonl(plain), _jsonl(evalset)
    assert len(after) == len(before) and after != before  # the sample's prompts hold PII
    for record in after:
        for message in record["messages"]:
            assert redact(message["content"]) == message["content"]  # nothing left to mask
        assert redact(record["metadata"]["request_id"]) == record["metadata"]["request_id"]
    for test in _jsonl(tests_file):
        answer = test["vars"]["original_response"]
        assert redact(answer) == answer
    assert "redacted" in readme.read_text(encoding="utf-8")
    assert "unredacted" not in readme.read_text(encoding="utf-8")
