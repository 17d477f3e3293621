"""Implausible values are quarantined at ingest with the field, the value and the limit named; a
token count is a JSON integer; a duplicated usage key is refused; whatever is accepted prices
without overflow. Limits: rules/plausibility.yaml."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import anthropic_line, examples, openai_line, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import store
from advisor.baseline import price_requests, resolve_models
from advisor.ingest import ingest, jsonl
from advisor.pricing import load_prices
from advisor.ruleset import default_rules_dir

MAX_TOKENS = 20_000_000


def _quarantine(con) -> list[tuple[int, str, str]]:
    return con.execute("SELECT source_line, field, reason FROM quarantine ORDER BY 1").fetchall()


def _both_paths(tmp_path: Path, rows: list[Any]) -> list[tuple[int, str, str]]:
    """The quarantine of `rows` through DuckDB's parallel reader, checked against the line-exact
    path: both must say the same."""
    path = write_jsonl(tmp_path / "log.jsonl", rows)
    fast, exact = store.connect(), store.connect()
    try:
        ingest(fast, [str(path)])
        jsonl._ingest_lines(exact, path, "jsonl", "auto", None, None)
        assert _quarantine(fast) == _quarantine(exact)
        return _quarantine(fast)
    finally:
        fast.close()
        exact.close()


def test_a_token_count_beyond_any_context_window_is_quarantined(tmp_path: Path) -> None:
    rows = [
        openai_line("max", prompt=2**63 - 1),
        openai_line("edge", prompt=MAX_TOKENS),  # the limit itself is plausible
        openai_line("over", completion=MAX_TOKENS + 1),
        anthropic_line("anth", cache_read=2**62),
    ]
    got = _both_paths(tmp_path, rows)
    assert got == [
        (1, "response.usage.prompt_tokens",
         "expected at most 20000000 tokens (PLAUS-001), got 9223372036854775807"),
        (3, "response.usage.completion_tokens",
         "expected at most 20000000 tokens (PLAUS-001), got 20000001"),
        (4, "response.usage.cache_read_input_tokens",
         "expected at most 20000000 tokens (PLAUS-001), got 4611686018427387904"),
    ]  # fmt: skip


def test_a_prompt_whose_parts_add_up_beyond_any_context_window_is_quarantined(
    tmp_path: Path,
) -> None:
    """Anthropic's input_tokens, cache reads and cache writes make one prompt."""
    row = anthropic_line("a", input_tokens=8_000_000, cache_read=8_000_000, cache_write=8_000_000)
    (got,) = _both_paths(tmp_path, [row])
    assert got[1] == "response.usage"
    assert got[2] == (
        "expected at most 20000000 tokens (PLAUS-001), "
        "got 24000000 (input, cache reads and cache writes)"
    )


@pytest.mark.parametrize(
    ("value", "stored", "reason"),
    [
        ("12.5", None, "expected a non-negative integer, got 12.5"),
        ('"12"', None, 'expected a non-negative integer, got the string "12"'),
        ('"lots"', None, 'expected a non-negative integer, got the string "lots"'),
        ("true", None, "expected a non-negative integer, got true"),
        ("NaN", None, "expected a non-negative integer, got NaN"),
        ("1e400", None, "expected a non-negative integer, got 1e400"),
        ("12.0", 12, None),  # an integer in JSON Schema's sense (and JavaScript's)
        ("1e3", 1000, None),
        ("12", 12, None),
    ],
)
def test_a_token_count_is_a_json_integer(
    tmp_path: Path, value: str, stored: int | None, reason: str | None
) -> None:
    line = json.dumps(openai_line("r", prompt=1)).replace(
        '"prompt_tokens": 1', f'"prompt_tokens": {value}'
    )
    got = _both_paths(tmp_path, [line])
    if stored is None:
        assert got == [(1, "response.usage.prompt_tokens", reason)]
        return
    assert got == []
    con = store.connect()
    ingest(con, [str(tmp_path / "log.jsonl")])
    assert con.execute("SELECT input_tokens FROM requests").fetchall() == [(stored,)]


# A field is named by its first path (request.* before the flattened top level: envelope._TYPED).
@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ('"latency_ms": 1e400', "latency_ms",
         "expected a finite non-negative number, got 1e400"),
        ('"latency_ms": NaN', "latency_ms", "expected a finite non-negative number, got NaN"),
        ('"ttft_ms": 86400001', "ttft_ms",
         "expected at most 86400000 ms (one day) (PLAUS-002), got 86400001"),
        ('"cost": 1e25', "cost",
         "expected at most 100000 USD for one request (PLAUS-003), got 1e+25"),
        ('"cost": "-0.5"', "cost", "expected a finite non-negative number, got -0.5"),
        ('"temperature": Infinity', "request.temperature",
         "expected a finite number, got Infinity"),
        ('"max_tokens": "512"', "request.max_completion_tokens",
         'expected a non-negative integer below 2^31, got the string "512"'),
    ],
)  # fmt: skip
def test_numbers_are_finite_and_plausible(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    line = json.dumps(openai_line("r")).replace('"provider"', text + ', "provider"')
    assert _both_paths(tmp_path, [line]) == [(1, field, reason)]


@pytest.mark.parametrize(
    ("ts", "shown"),
    [
        (0, "0 (1970-01-01T00:00:00Z)"),
        ("2019-12-31T23:59:59Z", "2019-12-31T23:59:59Z"),
        ("1900-01-01T00:00:00Z", "1900-01-01T00:00:00Z"),
        ("2100-01-01T00:00:00Z", "2100-01-01T00:00:00Z"),
        (4102444800000, "4102444800000 (2100-01-01T00:00:00Z)"),
    ],
)
def test_a_time_before_2020_or_from_2100_is_quarantined(
    tmp_path: Path, ts: Any, shown: str
) -> None:
    got = _both_paths(tmp_path, [openai_line("r", ts=ts), openai_line("ok")])
    assert got == [
        (1, "timestamp", f"expected a time in the years 2020-2099 (PLAUS-004), got {shown}")
    ]


def test_csv_values_are_checked_alike(con, tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "ts,model,input_tokens,output_tokens,latency_ms,cost\n"
        "2026-10-01T12:00:00Z,gpt-4o,12,1,800,0.01\n"
        "2026-10-01T12:00:00Z,gpt-4o,12.5,1,800,0.01\n"
        "2026-10-01T12:00:00Z,gpt-4o,12.0,1,800,0.01\n"
        "2026-10-01T12:00:00Z,gpt-4o,9223372036854775807,1,800,0.01\n"
        "2026-10-01T12:00:00Z,gpt-4o,12,1,1e400,0.01\n"
        "2026-10-01T12:00:00Z,gpt-4o,12,1,800,-0.01\n"
        "2026-10-01T12:00:00Z,gpt-4o,12,1,800,1e25\n"
        "0,gpt-4o,12,1,800,0.01\n"
    )
    report = ingest(con, [str(path)])
    assert (report.totals.ingested, report.totals.quarantined) == (2, 6)
    assert con.execute("SELECT source_line, input_tokens FROM requests ORDER BY 1").fetchall() == [
        (2, 12), (4, 12)
    ]  # fmt: skip
    assert _quarantine(con) == [
        (3, "input_tokens", "expected a non-negative integer, got 12.5"),
        (5, "input_tokens",
         "expected at most 20000000 tokens (PLAUS-001), got 9223372036854775807"),
        (6, "latency_ms", "expected a finite non-negative number, got 1e400"),
        (7, "cost", "expected a finite non-negative number, got -0.01"),
        (8, "cost", "expected at most 100000 USD for one request (PLAUS-003), got 1e25"),
        (9, "ts",
         "expected a time in the years 2020-2099 (PLAUS-004), got 0 (1970-01-01T00:00:00Z)"),
    ]  # fmt: skip


DUPLICATE_REASON = (
    "duplicate key: JSON readers disagree on its value (Python and JavaScript keep the last, "
    "DuckDB the first)"
)


def test_a_duplicated_usage_key_is_quarantined(tmp_path: Path) -> None:
    """Python and JavaScript read the last of two equal keys, DuckDB the first: a line that
    every other tool reads as 900 tokens must not be read as 1."""
    good = json.dumps(openai_line("ok"))
    rows = [
        good.replace('"prompt_tokens": 1000', '"prompt_tokens": 1, "prompt_tokens": 900'),
        json.dumps(openai_line("c", cached=10)).replace(
            '"cached_tokens": 10', '"cached_tokens": 10, "cached_tokens": 600'
        ),
        json.dumps(anthropic_line("a")).replace(
            '"output_tokens": 50', '"output_tokens": 50, "output_tokens": 5000'
        ),
        # keys advisor does not read may repeat: every reader gets the same counts
        good.replace('"prompt_tokens": 1000', '"prompt_tokens": 1000, "x": 1, "x": 2'),
    ]
    assert _both_paths(tmp_path, rows) == [
        (1, "response.usage.prompt_tokens", DUPLICATE_REASON),
        (2, "response.usage.prompt_tokens_details.cached_tokens", DUPLICATE_REASON),
        (3, "response.usage.output_tokens", DUPLICATE_REASON),
    ]


# Values a token count may take in a log, JSON-encoded as an exporter would write them.
COUNTS = st.one_of(
    st.integers(0, MAX_TOKENS),
    st.integers(-(2**70), 2**70),
    st.sampled_from([MAX_TOKENS, MAX_TOKENS + 1, 2**31, 2**53 + 1, 2**63 - 1, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 10**6).map(float),
    st.integers(0, 10**6).map(str),
)


def _plausible_count(value: Any) -> bool:
    if isinstance(value, bool | str):
        return False
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        return False
    return 0 <= value <= MAX_TOKENS


USAGE_FIELDS = {
    "openai": ("prompt_tokens", "completion_tokens"),
    "anthropic": ("input_tokens", "output_tokens", "cache_read_input_tokens",
                  "cache_creation_input_tokens"),
}  # fmt: skip


@st.composite
def usage_lines(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A line with drawn token counts, and the fields that make it implausible (empty: none)."""
    style = draw(st.sampled_from(sorted(USAGE_FIELDS)))
    rid = draw(st.text("abcdef0123456789", min_size=8, max_size=8))
    line = openai_line(rid) if style == "openai" else anthropic_line(rid)
    usage = line["response"]["usage"]
    bad = []
    for name in USAGE_FIELDS[style]:
        usage[name] = draw(COUNTS)
        if not _plausible_count(usage[name]):
            bad.append(f"response.usage.{name}")
    if not bad and style == "anthropic":
        total = sum(usage[n] for n in USAGE_FIELDS["anthropic"] if n != "output_tokens")
        if total > MAX_TOKENS:
            bad.append("response.usage")
    return line, bad


@settings(
    max_examples=examples(12, 40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(drawn=st.lists(usage_lines(), min_size=1, max_size=8, unique_by=lambda d: d[0]["id"]))
def test_accepted_counts_price_without_overflow(
    tmp_path: Path, drawn: list[tuple[dict[str, Any], list[str]]]
) -> None:
    """Every implausible count is quarantined with its field named; every accepted row is
    priced exactly, far inside DuckDB's DECIMAL and BIGINT ranges."""
    path = write_jsonl(tmp_path / "log.jsonl", [line for line, _ in drawn])
    con = store.connect()
    try:
        ingest(con, [str(path)])
        held = {line: field for line, field, _ in _quarantine(con)}
        for number, (_, bad) in enumerate(drawn, start=1):
            if bad:
                assert held.get(number) in bad, (number, bad, held)
            else:
                assert number not in held, (number, held)
        prices = load_prices(default_rules_dir())
        resolve_models(con, prices, {})
        price_requests(con, prices)
        costs = con.execute(
            "SELECT baseline_cost FROM costs JOIN requests USING (request_id)"
        ).fetchall()
        assert len(costs) == sum(1 for _, bad in drawn if not bad)
        for (cost,) in costs:
            assert isinstance(cost, Decimal) and cost.is_finite()
            assert Decimal(0) <= cost < Decimal(100_000)  # PLAUS-003's ceiling holds for ours
        total = con.execute("SELECT sum(baseline_cost) FROM costs").fetchone()
        assert total[0] is None or total[0].is_finite()
    finally:
        con.close()
