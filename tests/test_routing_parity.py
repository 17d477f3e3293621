"""The pure-Python routing runtime, fed the exported router file, decides exactly what the analysis
decided for every request of the sample logs, and imports no scikit-learn, numpy or DuckDB."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from test_tiering import analysed_sample

from advisor.export import export_router
from advisor.routing import load_router, request_features


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    db, _, traffic, _ = analysed_sample(tmp_path_factory)
    path = tmp_path_factory.mktemp("router") / "router.yaml"
    con = duckdb.connect(str(db), read_only=True)
    try:
        path.write_text(export_router(con, "generic"), encoding="utf-8")
    finally:
        con.close()
    return db, path, traffic


def _lines(traffic: Path) -> list[dict[str, Any]]:
    out = []
    with gzip.open(traffic, "rb") as fh:
        for raw in fh:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                out.append(line)
    return out


def test_runtime_decisions_are_identical_to_the_analysis(exported: tuple[Path, Path, Path]) -> None:
    db, path, traffic = exported
    con = duckdb.connect(str(db), read_only=True)
    try:
        analysis = {
            r[0]: tuple(r[1:])
            for r in con.execute(
                """SELECT request_id, difficulty, confidence, routed_model, routed
                   FROM tiering_decisions"""
            ).fetchall()
        }
    finally:
        con.close()
    router = load_router(path)
    compared, mismatches = 0, []
    for line in _lines(traffic):
        expected = analysis.get(line.get("id"))
        if expected is None:  # quarantined at ingest
            continue
        d = router.decide(line)
        compared += 1
        if (d.difficulty, d.confidence, d.routed_model, d.routed) != expected:
            mismatches.append((line["id"], expected, d))
    assert compared >= 0.99 * len(analysis)
    assert not mismatches, mismatches[:5]
    routed = sum(1 for v in analysis.values() if v[3])
    assert routed > 0.25 * len(analysis)


def test_a_bare_request_body_decides_like_its_log_line(exported: tuple[Path, Path, Path]) -> None:
    _, path, traffic = exported
    router = load_router(path)
    seen = 0
    for line in _lines(traffic)[:400]:
        body = dict(line["request"])
        body["metadata"] = {**(body.get("metadata") or {}), "feature": line.get("feature")}
        a, b = router.decide(line), router.decide(body)
        if line.get("provider") in ("openai", "anthropic", "google"):
            assert (a.difficulty, a.confidence, a.model, a.routed) == (
                b.difficulty,
                b.confidence,
                b.model,
                b.routed,
            )
            seen += 1
    assert seen > 300


def test_routed_decisions_name_a_litellm_alias(exported: tuple[Path, Path, Path]) -> None:
    _, path, traffic = exported
    router = load_router(path)
    for line in _lines(traffic)[:300]:
        d = router.decide(line)
        if d.routed:
            assert d.alias == f"advisor-{d.model_key}-to-{d.routed_model}"
            assert d.model == d.routed_model and d.rule and d.rule.startswith("ROUTE-")
        else:
            assert d.alias is None and d.model == (line["request"].get("model") or "")


def test_runtime_imports_no_heavy_library(exported: tuple[Path, Path, Path]) -> None:
    _, path, _ = exported
    code = (
        "import sys, json\n"
        "from advisor.routing import load_router\n"
        f"r = load_router({str(path)!r})\n"
        "d = r.decide({'model': 'gpt-4o', 'messages': [{'role': 'user', 'content': 'Label: x'}]})\n"
        "heavy = [m for m in ('sklearn', 'numpy', 'scipy', 'duckdb', 'pyarrow', 'pydantic')\n"
        "         if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_features_read_text_as_ingest_does() -> None:
    feats = request_features(
        {
            "model": "claude-sonnet-4-5",
            "system": [
                {"type": "text", "text": "You classify tickets. "},
                {"type": "text", "text": "Return one label.", "cache_control": {}},
            ],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Parcel late"}, {"type": "image"}],
                },
                {"role": "assistant", "content": "shipping"},
                {"role": "user", "content": "and the invoice?"},
            ],
            "tools": [{"name": "a"}],
            "max_tokens": "8",
        }
    )
    assert feats["system_text"] == "You classify tickets. Return one label."
    assert feats["user_text"] == "and the invoice?"
    assert feats["message_count"] == 3 and feats["tools_count"] == 1 and feats["max_tokens"] == 8
    assert feats["cue_classify"] and not feats["cue_code"]
