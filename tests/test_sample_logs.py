"""The committed demo traffic in sample_logs/: reproducible, well-formed where it should be, and
described truthfully by its ground truth."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime
from decimal import Decimal
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
    assert all("T02:" in r["timestamp"] and r["user"] == "svc-nightly-digest" for r in nightly)
    models = {r["request"]["model"] for r in recs}
    assert {case["model"] for case in truth()["alias_cases"]} <= models
    assert set(truth()["unpriced_models"]) <= models


# --- the plants of issue 11's levers: the ground truth says what the log holds ----------------
def plant(name: str) -> dict[str, Any]:
    return truth()["plants"][name]


def feature_records(feature: str) -> list[dict[str, Any]]:
    return [r for r in records() if r["feature"] == feature]


def losslessly_trimmed(system: str, user: str, policy: str) -> tuple[str, str]:
    """The returns-agent prompt with its second policy copy removed and its JSON minified."""
    i = system.rindex("\n" + policy + "\n")
    start, end = user.index("\n{\n") + 1, user.rindex("\n}\n") + 2
    record = json.loads(user[start:end])
    assert json.dumps(record, indent=2) == user[start:end]  # pretty-printed, nothing else
    minified = json.dumps(record, separators=(",", ":"))
    return system[:i] + system[i + len(policy) + 2 :], user[:start] + minified + user[end:]


def test_trimming_plant_duplicates_a_paragraph_and_pretty_prints_json(needs_tiktoken: None) -> None:
    import tiktoken

    gt = plant("trimming")
    encode = tiktoken.get_encoding(gt["encoding"]).encode_ordinary
    policy = gt["duplicated_paragraph"]
    recs = feature_records(gt["feature"])
    assert len(recs) == gt["requests"] == len(gt["waste_tokens_by_request_id"])
    dup = pretty = 0
    for r in recs:
        assert r["request"]["model"] == gt["model"]
        system, user = (m["content"] for m in r["request"]["messages"])
        paragraphs = [p.strip() for p in system.split("\n\n")]
        assert paragraphs.count(policy) == 2  # the same paragraph twice in one prompt
        assert len(set(paragraphs)) == len(paragraphs) - 1  # and no other duplicate
        trimmed_system, trimmed_user = losslessly_trimmed(system, user, policy)
        for text in (trimmed_system, trimmed_user):  # no other bloat for the lever to find
            assert "  " not in text and " \n" not in text and "\n\n\n" not in text
        saved = [
            len(encode(system)) - len(encode(trimmed_system)),
            len(encode(user)) - len(encode(trimmed_user)),
        ]
        assert gt["waste_tokens_by_request_id"][r["id"]] == sum(saved)
        if r["error"] is None:
            dup, pretty = dup + saved[0], pretty + saved[1]
            assert r["response"]["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert (dup, pretty) == (gt["waste_tokens_duplicate_paragraph"], gt["waste_tokens_pretty_json"])
    assert gt["waste_tokens"] == dup + pretty > 0.2 * gt["input_tokens"]
    assert Decimal(gt["waste_usd_at_input_price"]) == Decimal("2.00") * (dup + pretty) / 10**6


def test_output_caps_plant_has_uncapped_runaways_some_repeating() -> None:
    gt = plant("output_caps")
    recs = [r for r in feature_records(gt["feature"]) if r["error"] is None]
    assert len(recs) == gt["billed_requests"]
    assert not any(
        "max_tokens" in r["request"] or "max_completion_tokens" in r["request"] for r in recs
    )
    output = {r["id"]: r["response"]["usage"]["completion_tokens"] for r in recs}
    runaways = {x["id"]: x for x in gt["runaways"]}
    assert 5 <= len(runaways) <= 0.05 * len(recs)  # a few
    normal = gt["normal_output_tokens"]
    assert {i for i, n in output.items() if n > normal["max"]} == set(runaways)
    for r in recs:
        if r["id"] in runaways:
            assert output[r["id"]] == runaways[r["id"]]["output_tokens"] >= 15 * normal["p95"]
            text = r["response"]["choices"][0]["message"]["content"]
            sentences = Counter(text.split(". "))
            assert (sentences.most_common(1)[0][1] >= 20) == runaways[r["id"]]["repetition"]
    assert {x["repetition"] for x in gt["runaways"]} == {True, False}


def test_reasoning_plant_is_easy_extraction_dominated_by_reasoning() -> None:
    gt, difficulty = plant("reasoning"), truth()["difficulty_by_request_id"]
    recs = [r for r in feature_records(gt["feature"]) if r["error"] is None]
    assert len(recs) == gt["billed_requests"]
    assert {r["request"]["model"] for r in recs} == {gt["model"]}
    assert {difficulty[r["id"]] for r in recs} == {"easy"}
    usage = [r["response"]["usage"] for r in recs]
    reasoning = sum(u["completion_tokens_details"]["reasoning_tokens"] for u in usage)
    visible = sum(u["completion_tokens"] for u in usage) - reasoning
    assert (reasoning, visible) == (gt["reasoning_tokens"], gt["visible_output_tokens"])
    assert gt["reasoning_share_of_output"] > 0.9
    assert all(json.loads(r["response"]["choices"][0]["message"]["content"]) for r in recs)


def test_batching_plant_bursts_nightly_and_the_chat_control_streams() -> None:
    gt = plant("batching")
    eligible, control = gt["eligible"], gt["negative_control"]
    nightly = feature_records(eligible["feature"])
    assert {r["user"] for r in nightly} == set(eligible["users"]) == {"svc-nightly-digest"}
    assert not any(r["request"].get("stream") for r in nightly) and not eligible["streaming"]
    nights = Counter(r["timestamp"][:10] for r in nightly)
    assert len(nights) == eligible["nights"] == 14  # every night of the two weeks
    assert {r["timestamp"][11:13] for r in nightly} == {"02"}  # the same hour daily
    assert all(r["timestamp"][14:16] < "30" for r in nightly)  # within half an hour
    assert min(nights.values()) == eligible["requests_per_night"]["min"] >= 100
    chat = feature_records(control["feature"])
    assert all(r["request"].get("stream") for r in chat) and control["streaming"]
    assert all(str(r["user"]).startswith("u_") for r in chat)  # people, not service accounts
    assert len({r["user"] for r in chat}) == control["users"] >= 40
    hours = {int(r["timestamp"][11:13]) for r in chat}
    assert sorted(hours) == control["hours_utc"] and len(hours) >= 20  # spread over the day


def test_prompt_regression_plant_grows_one_features_system_prompt_from_one_date() -> None:
    gt = plant("prompt_regression")
    recs = feature_records(gt["feature"])
    cut = gt["deployed_at"]

    def system(r: dict[str, Any]) -> str:
        return str(r["request"]["messages"][0]["content"])

    before = {system(r) for r in recs if r["timestamp"] < cut}
    after = {system(r) for r in recs if r["timestamp"] >= cut}
    assert len(before) == len(after) == 1  # one template each side of the deploy
    (old,), (new,) = before, after
    assert new.startswith(old) and "Vendor master data" in new[len(old) :]
    billed = [r for r in recs if r["error"] is None and "usage" in (r["response"] or {})]
    tokens = {
        side: sorted(
            r["response"]["usage"]["prompt_tokens"]
            for r in billed
            if (r["timestamp"] >= cut) == (side == "after")
        )
        for side in ("before", "after")
    }
    for side, values in tokens.items():  # the medians, from the requests that logged usage
        median = values[len(values) // 2]
        assert abs(median - gt["median_input_tokens_per_request"][side]) < 20
    assert gt["system_prompt_tokens"]["after"] - gt["system_prompt_tokens"]["before"] > 1000
    assert gt["date"] == cut[:10]
    # no other plant uses the feature
    others = [v for k, v in truth()["plants"].items() if k != "prompt_regression"]
    assert gt["feature"] not in json.dumps(others)
