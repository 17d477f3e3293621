"""A lever figure that rests on token counts of our own says how exact they are: the caching lever
calibrates its counts against the logged usage of the same requests and states a range, and the
coverage warning for estimated counts says how to get exact ones."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import anthropic_line, openai_line, run_chained, run_standalone, write_jsonl

from advisor import api, store, tokens
from advisor.ingest import ingest
from advisor.levers.base import STATE_COLUMNS, LeverContext, SimOptions
from advisor.levers.caching import CachingLever
from advisor.ruleset import default_rules_dir
from advisor.simulate import state_cost

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)
_WORDS = (
    "account billing customer refund policy order shipping delivery invoice support agent "
    "escalate priority ticket product warranty return exchange payment card address email "
    "verify identity summary reply tone polite concise answer question request update status "
    "international regulation compliance documentation reference internal procedure manual"
)
WORDS = _WORDS.split()
# Anthropic's tokenizer is not tiktoken's: the log's counts are o200k_base's times this.
ANTHROPIC_FACTOR = 1.2


@pytest.fixture(autouse=True)
def _tiktoken() -> Any:
    if not tokens.encoding_available("o200k_base"):
        pytest.fail("o200k_base is not in TIKTOKEN_CACHE_DIR: ../shared/tiktoken-cache missing?")
    tokens.get_encoding.cache_clear()
    yield
    tokens.get_encoding.cache_clear()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def _o200k(text: str) -> int:
    enc = tokens.get_encoding("o200k_base")
    assert enc is not None
    return len(enc.encode_ordinary(text))


def traffic(seed: int = 7) -> list[dict[str, Any]]:
    """OpenAI- and Anthropic-shaped requests, usage logged: templates of many lengths (some near
    the providers' 1,024-token minimum), each request with a question of its own."""
    rng = random.Random(seed)
    templates = [_text(rng, n) for n in (500, 800, 950, 1200, 1800, 3000)]
    rows: list[dict[str, Any]] = []
    for i in range(240):
        system = templates[rng.randrange(len(templates))]
        user = _text(rng, rng.randrange(10, 400))
        ts = (T0 + timedelta(seconds=50 * i)).isoformat().replace("+00:00", "Z")
        if i % 2:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            prompt = _o200k(system) + _o200k(user) + 9  # OpenAI's chat-format overhead
            rows.append(openai_line(f"o{i:03d}", ts=ts, prompt=prompt, messages=messages))
        else:
            logged = int((_o200k(system) + _o200k(user)) * ANTHROPIC_FACTOR) + 8
            line = anthropic_line(f"a{i:03d}", input_tokens=logged)
            line["timestamp"] = ts
            line["request"]["system"] = [{"type": "text", "text": system}]
            line["request"]["messages"] = [{"role": "user", "content": user}]
            rows.append(line)
    return rows


def caching(tmp_path: Path, *, encodings: bool, monkeypatch: Any) -> tuple[Decimal, Any]:
    """The caching lever alone on the logged traffic: its saving and details."""
    rows = traffic()
    if not encodings:
        monkeypatch.setenv("ADVISOR_TOKENIZER", "estimate")
    tokens.get_encoding.cache_clear()
    con = store.connect()
    path = tmp_path / ("with.jsonl" if encodings else "without.jsonl")
    ingest(con, [str(write_jsonl(path, rows))])
    con.execute("UPDATE requests SET model_key = model")
    prices = api.load_price_table()
    from advisor.pricing import register_prices

    register_prices(con, prices, "prices")
    con.execute(f"CREATE TEMP TABLE state_base AS SELECT {', '.join(STATE_COLUMNS)} FROM requests")
    ctx = LeverContext(con, prices, default_rules_dir(), SimOptions())
    out = run_standalone(CachingLever(), ctx, "state_base", "state_caching")
    saving = state_cost(con, "state_base")[0] - state_cost(con, out.state)[0]
    monkeypatch.delenv("ADVISOR_TOKENIZER", raising=False)
    tokens.get_encoding.cache_clear()
    return saving, out.details


def test_caching_details_say_how_tokens_were_counted(tmp_path: Path, monkeypatch) -> None:
    saving, details = caching(tmp_path, encodings=True, monkeypatch=monkeypatch)
    counts = details["token_counts"]
    by_model = {m["model_key"]: m for m in counts["by_model"]}
    assert by_model["gpt-4o"]["counts"] == "exact"
    claude = by_model["claude-sonnet-4-5"]
    assert claude["counts"] == "approximate"
    assert "o200k_base approximates" in claude["why"]
    # calibrated against the logged usage of the same requests: Anthropic's counts are 1.2x ours
    assert claude["scale"] == pytest.approx(ANTHROPIC_FACTOR, rel=0.05)
    assert counts["counts"] == "approximate"
    low, high = Decimal(counts["low_saving"]), Decimal(counts["high_saving"])
    assert low <= saving <= high


def test_estimated_counts_give_a_range_that_holds_the_exact_figure(
    tmp_path: Path, monkeypatch
) -> None:
    exact, _ = caching(tmp_path, encodings=True, monkeypatch=monkeypatch)
    estimate, details = caching(tmp_path, encodings=False, monkeypatch=monkeypatch)
    counts = details["token_counts"]
    assert counts["counts"] == "estimated"
    assert all(m["counts"] == "estimated" for m in counts["by_model"])
    assert all("no tiktoken encoding files" in m["why"] for m in counts["by_model"])
    low, high = Decimal(counts["low_saving"]), Decimal(counts["high_saving"])
    assert low < high
    assert low <= exact <= high
    assert low <= estimate <= high
    assert abs(estimate - exact) / exact < Decimal("0.1")


def test_the_chained_run_scales_a_model_as_the_standalone_run_did(
    tmp_path: Path, monkeypatch
) -> None:
    """After tiering moves requests between models, a model keeps the calibration of its
    standalone run; only a model the standalone run did not see is calibrated again."""
    from advisor.levers.caching import replay as lever_module

    rows = traffic()
    monkeypatch.setenv("ADVISOR_TOKENIZER", "estimate")
    tokens.get_encoding.cache_clear()
    con = store.connect()
    ingest(con, [str(write_jsonl(tmp_path / "chain.jsonl", rows))])
    con.execute("UPDATE requests SET model_key = model")
    cols = ", ".join(STATE_COLUMNS)
    con.execute(f"CREATE TEMP TABLE state_base AS SELECT {cols} FROM requests")
    moved = "CASE WHEN request_id LIKE 'o%5' THEN 'gpt-4o-mini' ELSE model_key END AS model_key"
    con.execute(
        f"CREATE TEMP TABLE state_tiered AS SELECT {cols.replace('model_key', moved)} FROM requests"
    )
    calibrated: list[list[str]] = []
    real = lever_module.calibrate
    monkeypatch.setattr(
        lever_module,
        "calibrate",
        lambda con, q, shared, counts, *a: (
            calibrated.append([c.model_key for c in counts]) or real(con, q, shared, counts, *a)
        ),
    )
    ctx = LeverContext(con, api.load_price_table(), default_rules_dir(), SimOptions())
    lever = CachingLever()
    alone = run_standalone(lever, ctx, "state_base", "state_alone")
    assert sorted(k for keys in calibrated for k in keys) == ["claude-sonnet-4-5", "gpt-4o"]
    calibrated.clear()
    run_chained(lever, ctx, "state_tiered", "state_chain", prepare=False)
    assert calibrated == [["gpt-4o-mini"]]
    assert alone.details["token_counts"]["counts"] == "estimated"


# --- rendering -------------------------------------------------------------------------------


def _with_caching(kind: str) -> Any:
    from test_report import _caching, empty_analysis

    from advisor.levers.caching.models import TokenCountsSummary

    analysis = empty_analysis()
    model = {
        "model_key": "claude-sonnet-4-5",
        "counts": kind,
        "tokenizer": "length: 4 bytes per token",
        "why": "no tiktoken encoding files (set TIKTOKEN_CACHE_DIR for exact counts): "
        "length-based estimate",
        "calibrated_on": "shared prefixes",
        "calibration_requests": 120,
        "scale": 0.59,
        "low_scale": 0.58,
        "high_scale": 0.6,
    }
    token_counts = {
        "counts": kind,
        "low_saving": "0.61",
        "high_saving": "0.71",
        "low_cache_read_share": 0.5,
        "high_cache_read_share": 0.55,
        "by_model": [model],
    }
    lever = _caching("0.65", "0.65", 10)
    lever.details.token_counts = TokenCountsSummary.model_validate(token_counts)
    analysis.levers = [lever]
    return analysis


def _rendered(analysis: Any) -> dict[str, str]:
    from test_report import _console_text

    from advisor.report.html import render_html
    from advisor.report.markdown import render_markdown

    return {
        "html": render_html(analysis),
        "markdown": render_markdown(analysis).replace("\\", ""),
        "terminal": " ".join(_console_text(analysis, width=400).split()),
    }


def test_an_approximate_lever_figure_is_marked_with_its_range_everywhere() -> None:
    for name, text in _rendered(_with_caching("estimated")).items():
        assert "≈" in text, name
        assert "approximate: $0.61 to $0.71; token counts estimated" in text, name
        assert "TIKTOKEN_CACHE_DIR" in text, name


def test_an_exact_lever_figure_is_not_marked() -> None:
    for name, text in _rendered(_with_caching("exact")).items():
        assert "≈" not in text and "approximate:" not in text, name


def test_the_estimated_counts_warning_says_how_to_get_exact_counts() -> None:
    from advisor.analysis import TokenSources
    from advisor.report import fmt

    analysis = _with_caching("exact")
    analysis.coverage.token_source = TokenSources(logged=10, estimated=5)
    analysis.coverage.tokenizer = "estimate"
    warning = fmt.estimated_warning(analysis.coverage)
    assert warning is not None
    assert "set TIKTOKEN_CACHE_DIR to a folder holding tiktoken's encoding files" in warning
    assert "o200k_base, cl100k_base" in warning
    for name, text in _rendered(analysis).items():
        assert "For exact counts, set TIKTOKEN_CACHE_DIR" in text, name
    # a provider whose tokenizer tiktoken does not have: only logged usage is exact
    analysis.coverage.tokenizer = "tiktoken"
    warning = fmt.estimated_warning(analysis.coverage)
    assert warning is not None and "log the provider's usage" in warning


def test_prefix_order_findings_say_how_their_tokens_were_counted(
    tmp_path: Path, monkeypatch
) -> None:
    rng = random.Random(3)
    stable = _text(rng, 1500)
    rows = [
        openai_line(
            f"d{i}",
            ts=(T0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
            prompt=2000,
            messages=[
                {"role": "system", "content": f"Today is 2026-10-0{i + 1}.\n{stable}"},
                {"role": "user", "content": f"q{i}"},
            ],
        )
        for i in range(6)
    ]
    monkeypatch.setenv("ADVISOR_TOKENIZER", "estimate")
    tokens.get_encoding.cache_clear()
    con = store.connect()
    ingest(con, [str(write_jsonl(tmp_path / "dates.jsonl", rows))])
    con.execute("UPDATE requests SET model_key = model")
    con.execute(f"CREATE TEMP TABLE state_base AS SELECT {', '.join(STATE_COLUMNS)} FROM requests")
    ctx = LeverContext(con, api.load_price_table(), default_rules_dir(), SimOptions())
    out = run_standalone(CachingLever(), ctx, "state_base", "state_caching")
    (finding,) = out.details["prefix_order"]
    assert finding["counted_with"] == "length estimate (no tiktoken encoding files)"
