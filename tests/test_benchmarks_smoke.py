"""The scale benchmark (benchmarks/) runs end to end on a small log; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

REQUESTS = 2_000


def _generate(repo_root: Path, path: Path, *args: str) -> dict[str, Any]:
    script = repo_root / "benchmarks" / "generate_log.py"
    subprocess.run(
        [sys.executable, str(script), "--seed", "3", "-o", str(path), *args],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    meta: dict[str, Any] = json.loads(path.with_name(path.name + ".meta.json").read_text())
    return meta


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


@pytest.mark.parametrize("profile", ["default", "heavy", "agent"])
def test_generated_log_is_seeded_and_valid(tmp_path: Path, repo_root: Path, profile: str) -> None:
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    metas = [_generate(repo_root, p, "--requests", "300", "--profile", profile) for p in paths]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    meta = metas[0]
    assert meta["profile"] == profile
    lines = paths[0].read_text(encoding="utf-8").splitlines()
    assert len(lines) == meta["lines"] == 300
    # Every line but the deliberately malformed ones (some are valid JSON of the wrong shape).
    assert len(_records(paths[0])) >= meta["requests"] >= 300 - meta["malformed"]
    assert meta["malformed"] >= 3


def test_heavy_profile_has_the_issue_shape(tmp_path: Path, repo_root: Path) -> None:
    path = tmp_path / "heavy.jsonl"
    meta = _generate(repo_root, path, "--requests", "1500", "--profile", "heavy")
    assert (meta["features"], meta["models"], meta["system_prompts"]) == (20, 8, 30)
    low, high = meta["system_tokens_range"]
    assert 450 <= low < 600 and 2700 < high <= 3000
    records = [r for r in _records(path) if isinstance(r.get("request"), dict)]
    users = [_text(r["request"]["messages"][-1]["content"]) for r in records]
    assert len(set(users)) == len(users)  # every user message unique
    assert 600 < meta["user_text_bytes"] / meta["lines"] < 1300  # ~215 tokens each
    assert 8_000 < meta["bytes"] / meta["lines"] < 11_000  # ~9.4 GB per 1M requests


def test_agent_sessions_resend_a_growing_history(tmp_path: Path, repo_root: Path) -> None:
    path = tmp_path / "agent.jsonl"
    _generate(repo_root, path, "--requests", "600", "--profile", "agent")
    by_session: dict[str, list[int]] = defaultdict(list)
    roles: set[str] = set()
    for r in _records(path):
        if isinstance(r.get("request"), dict):
            messages = r["request"]["messages"]
            by_session[r["session_id"]].append(len(messages))
            roles.update(m["role"] for m in messages)
    assert "tool" in roles  # OpenAI tool results in the history
    finished = list(by_session.values())[:-1]  # the last may be cut off
    # 10-40 calls; a deliberately malformed line may take one away
    assert finished and all(9 <= len(calls) <= 40 for calls in finished)
    assert max(len(calls) for calls in finished) >= 10
    assert all(calls == sorted(calls) and calls[-1] > calls[0] for calls in finished)


def _run_bench(repo_root: Path, out: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "run.py"), *args, "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


def test_benchmark_runs_every_stage(tmp_path: Path, repo_root: Path) -> None:
    results = _run_bench(repo_root, tmp_path / "bench", "--requests", str(REQUESTS))

    stages = results["stages"]
    assert list(stages) == [
        "scan", "groupby", "ingest", "baseline", "caching", "tiering", "guardrails", "analyze"
    ]  # fmt: skip
    for name in ("scan", "groupby", "ingest", "baseline"):
        assert stages[name]["status"] == "ok", stages[name]["note"]
    for name, stage in stages.items():
        # A lever whose module is not written yet is skipped, never failed.
        assert stage["status"] in ("ok", "skipped"), f"{name}: {stage['note']}"
        if stage["status"] == "ok":
            assert stage["seconds"] > 0, name
            assert stage["ratio"] > 0, name
            assert stage["groupby_ratio"] > 0, name
            assert stage["peak_rss_bytes"] > 0, name
            assert stage["requests_per_s"] > 0, name
    assert stages["scan"]["ratio"] == 1.0
    assert stages["groupby"]["groupby_ratio"] == 1.0
    # the GROUP BY reads what the scan reads: same lines, same token sums
    assert stages["groupby"]["counts"]["prompt_tokens"] == stages["scan"]["counts"]["prompt_tokens"]
    assert stages["groupby"]["counts"]["groups"] > 10
    assert stages["ingest"]["counts"]["requests"] == results["requests"] > 0.99 * REQUESTS
    targets = results["targets"]
    assert targets["analyze_groupby_ratio"] > 0 and targets["analyze_peak_rss_bytes"] > 0
    assert {"within_ratio_target", "within_rss_target"} <= set(targets)
    assert results["log"]["lines"] == REQUESTS
    assert results["log"]["profile"] == "default"
    assert results["log"]["usage_missing"] > 0  # the tokenizer path ran
    # the main job end to end, on a store of its own, finds the same requests
    assert stages["analyze"]["counts"]["requests"] == results["requests"]
    assert stages["analyze"]["counts"]["levers"] >= 2


def test_benchmark_sizes_mode(tmp_path: Path, repo_root: Path) -> None:
    """--sizes: one log per size (gzipped from --gzip-from), analyze's time and RSS per size."""
    out = tmp_path / "bench"
    results = _run_bench(repo_root, out, "--profile", "heavy", "--sizes", "300,600",
                         "--gzip-from", "600", "--scan-repeats", "1", "--cprofile")  # fmt: skip
    sizes = results["sizes"]
    assert [s["requests"] for s in sizes] == [300, 600]
    assert sizes[0]["log"].endswith("log-heavy-300.jsonl")
    assert sizes[1]["log"].endswith("log-heavy-600.jsonl.gz")
    for size in sizes:
        assert size["analyze_status"] == "ok"
        assert size["analyze_peak_rss_bytes"] > 0 and size["seconds_per_million"] > 0
        assert list(size["results"]["stages"]) == ["scan", "groupby", "analyze"]
        assert (out / f"size-{size['requests']}" / "profile-analyze.prof").is_file()
    assert set(results["flatness"]) == {"peak_rss_spread", "seconds_per_million_spread"}
