"""The levers find what sample_logs/ plants (ground_truth.json "plants", measured by the
generator): prompt bloat for trimming, runaway outputs and reasoning on easy work for output caps,
a nightly service-account burst for batching, and an interactive chat it must not mark."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from advisor import api

ROOT = Path(__file__).resolve().parents[1]
PLANTS = json.loads((ROOT / "sample_logs" / "ground_truth.json").read_text())["plants"]


@pytest.fixture(scope="module")
def analysis(analysed_sample: api.AnalyzeResult) -> dict[str, Any]:
    """The session's analysis of the sample (conftest.py)."""
    return json.loads(analysed_sample.files["analysis"].read_text())


def lever(analysis: dict[str, Any], lever_id: str) -> dict[str, Any]:
    return next(x for x in analysis["levers"] if x["id"] == lever_id)


def feature_row(rows: list[dict[str, Any]], feature: str) -> dict[str, Any]:
    return next(r for r in rows if r["feature"] == feature)


def test_trimming_saving_is_within_1_percent_of_the_planted_tokens(
    analysis: dict[str, Any],
) -> None:
    planted = PLANTS["trimming"]
    trimming = lever(analysis, "trimming")
    row = feature_row(trimming["details"]["rows"], planted["feature"])
    assert row["trimmed_tokens"] == pytest.approx(planted["waste_tokens"], rel=0.01)
    # the planted prompts are never cached, so their saving is at the input price
    assert Decimal(trimming["standalone_saving"]) >= Decimal(
        planted["waste_usd_at_input_price"]
    ) * Decimal("0.99")


def test_output_caps_flag_the_uncapped_feature_and_its_runaways(analysis: dict[str, Any]) -> None:
    planted = PLANTS["output_caps"]
    caps = lever(analysis, "output_caps")
    row = feature_row(caps["details"]["features"], planted["feature"])
    assert row["uncapped"] is True
    found = {r["request_id"] for r in caps["details"]["runaways"]}
    assert {r["id"] for r in planted["runaways"]} <= found
    repeating = {r["request_id"] for r in caps["details"]["runaways"] if r["repetition"]}
    assert {r["id"] for r in planted["runaways"] if r["repetition"]} <= repeating
    assert Decimal(caps["standalone_saving"]) > 0


def test_reasoning_budget_is_priced_for_easy_extraction(analysis: dict[str, Any]) -> None:
    planted = PLANTS["reasoning"]
    caps = lever(analysis, "output_caps")
    row = feature_row(caps["details"]["reasoning"], planted["feature"])
    assert row["reasoning_tokens"] == planted["reasoning_tokens"]
    assert row["visible_output_tokens"] == planted["visible_output_tokens"]
    assert row["budget_tokens"] < planted["reasoning_tokens"] / planted["billed_requests"]
    assert Decimal(row["saving"]) > 0


def test_batching_finds_the_nightly_service_account_burst(analysis: dict[str, Any]) -> None:
    planted = PLANTS["batching"]["eligible"]
    batching = lever(analysis, "batching")
    row = feature_row(batching["details"]["features"], planted["feature"])
    assert row["level"] == "strict"  # in the priced figure, not only its lenient range
    assert row["evidence"]["top_hours"] == planted["hours_utc"]
    assert row["evidence"]["non_streaming_share"] == 1.0
    assert row["moved_requests"] == row["requests"]
    assert Decimal(batching["standalone_saving"]) == Decimal(row["saving"]) > 0


def test_batching_does_not_mark_the_interactive_chat(analysis: dict[str, Any]) -> None:
    control = PLANTS["batching"]["negative_control"]
    batching = lever(analysis, "batching")
    # details.features lists every feature eligible at any level (strict or lenient)
    assert control["feature"] not in {r["feature"] for r in batching["details"]["features"]}
