"""The committed demo traffic in sample_logs/: reproducible, well-formed where it should be, and
described truthfully by its ground truth."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"
TRAFFIC = SAMPLE / "traffic.jsonl.gz"
TRUTH = SAMPLE / "ground_truth.json"


@cache
def lines() -> list[bytes]:
    return gzip.decompress(TRAFFIC.read_bytes()).split(b"\n")


@cache
def truth() -> dict[str, Any]:
    return json.loads(TRUTH.read_text(encoding="utf-8"))


def problem(line: bytes) -> str | None:
    """Why a line is not a usable record in the logging format, or None if it is."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return type(exc).__name__
    if not isinstance(record, dict):
        return "not an object"
    try:
        datetime.fromisoformat(record["timestamp"])
    except (KeyError, TypeError, ValueError):
        return "timestamp"
    if not (record["request"].get("model") or (record["response"] or {}).get("model")):
        return "model"
    if not record.get("id") or not record.get("feature"):
        return "id/feature"
    usage = (record["response"] or {}).get("usage") or {}
    if any(not isinstance(v, int) or v < 0 for v in usage.values() if not isinstance(v, dict)):
        return "usage"
    return None


def records() -> list[dict[str, Any]]:
    planted = {m["line"] for m in truth()["malformed_lines"]}
    return [json.loads(x) for i, x in enumerate(lines(), 1) if i not in planted]


def test_regenerating_gives_byte_identical_files(tmp_path: Path, needs_tiktoken: None) -> None:
    # The generator counts tokens with o200k_base, which must load offline (never download).
    out, gt = tmp_path / "traffic.jsonl.gz", tmp_path / "ground_truth.json"
    cmd = [sys.executable, str(SAMPLE / "generate.py"), "--out", str(out), "--truth", str(gt)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    assert gt.read_bytes() == TRUTH.read_bytes()
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(TRAFFIC.read_bytes())
    assert out.read_bytes() == TRAFFIC.read_bytes(), "same content, different gzip bytes (zlib?)"


def test_only_the_planted_lines_are_malformed() -> None:
    bad = {i for i, line in enumerate(lines(), 1) if problem(line) is not None}
    assert bad == {m["line"] for m in truth()["malformed_lines"]}
    assert TRAFFIC.stat().st_size < 10_000_000


def test_ground_truth_counts_match_the_file() -> None:
    gt, recs = truth(), records()
    assert gt["requests"] == len(recs)
    assert len({r["id"] for r in recs}) == len(recs)
    assert list(gt["difficulty_by_request_id"]) == [r["id"] for r in recs]
    by_feature = Counter(r["feature"] for r in recs)
    assert {f: v["requests"] for f, v in gt["features"].items()} == dict(by_feature)
    for feature, facts in gt["features"].items():
        assert facts["models"] == sorted(
            {r["request"]["model"] for r in recs if r["feature"] == feature}
        )
    counts = gt["counts"]
    assert counts["errors"] == sum(r["error"] is not None for r in recs)
    assert counts["with_cost"] == sum("cost" in r for r in recs)
    assert counts["usage_missing"] == sum(
        r["response"] is not None and "usage" not in r["response"] for r in recs
    )
    runaway = [r for r in recs if r["user"] == gt["runaway_user"]["user"]]
    assert len(runaway) == gt["runaway_user"]["requests"] >= 500
    assert min(r["timestamp"] for r in runaway) == gt["runaway_user"]["window_start"]
    assert max(r["timestamp"] for r in runaway) == gt["runaway_user"]["window_end"]


def test_planted_traits_are_present() -> None:
    recs = records()
    stamps = [r["timestamp"] for r in recs]
    assert min(stamps) >= "2026-10-18" and max(stamps) < "2026-11-01"
    triage = next(r for r in recs if r["feature"] == "ticket-triage" and r["provider"] == "openai")
    assert triage["request"]["messages"][0]["content"].startswith("Today is ")
    nightly = [r for r in recs if r["feature"] == "nightly-digest"]
    assert all("T02:" in r["timestamp"] and r["user"] == "system" for r in nightly)
    models = {r["request"]["model"] for r in recs}
    assert {case["model"] for case in truth()["alias_cases"]} <= models
    assert set(truth()["unpriced_models"]) <= models
