"""`advisor diff` per feature and per model, and the note that says when a changed price table
(or advisor version) explains part of a change, with the part it explains."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from helpers import openai_line, write_jsonl
from test_report import small_analysis

from advisor import api
from advisor.analysis import Analysis, CostRow, PriceSource, PriceTableIdentity
from advisor.diff import diff_analyses
from advisor.report import fmt


def _row(key: str | None, requests: int, tokens: int, cost: str | None, **kw: Any) -> CostRow:
    return CostRow(
        key=key,
        requests=requests,
        input_tokens=tokens,
        cache_read_tokens=0,
        output_tokens=0,
        cost=None if cost is None else Decimal(cost),
        share=0.0,
        unpriced_requests=requests if cost is None else 0,
        **kw,
    )


def _analysis(
    by_model: list[CostRow],
    by_feature: list[CostRow],
    digests: dict[str, str] | None,
    version: str = "0.1.0",
) -> Analysis:
    priced = sum(r.requests - r.unpriced_requests for r in by_model)
    requests = sum(r.requests for r in by_model)
    cost = sum((r.cost for r in by_model if r.cost is not None), Decimal(0))
    prices = None
    if digests is not None:
        source = PriceSource(
            name="prices/openai.yaml", kind="rules", retrieved="2026-11-26", models=1
        )
        prices = PriceTableIdentity(
            sources=[source], digest="table-" + "-".join(sorted(digests.values())), models=digests
        )
    base = small_analysis()  # the report tests' analysis, with these figures
    return base.model_copy(
        update={
            "advisor_version": version,
            "coverage": base.coverage.model_copy(
                update={
                    "requests": requests,
                    "priced_requests": priced,
                    "unpriced_requests": requests - priced,
                }
            ),
            "baseline": base.baseline.model_copy(
                update={"cost": cost, "by_model": by_model, "by_feature": by_feature}
            ),
            "combined": base.combined.model_copy(update={"cost": cost}),
            "prices": prices,
        }
    )


# gpt-4o at $2.50 per 1M tokens, then at $3 and with more traffic (tokens per request up too)
OLD = _analysis(
    [_row("gpt-4o", 100, 100_000, "0.25", model_key="gpt-4o")],
    [_row("chat", 100, 100_000, "0.25")],
    {"gpt-4o": "a"},
)
NEW = _analysis(
    [_row("gpt-4o", 200, 300_000, "0.90", model_key="gpt-4o")],
    [_row("chat", 150, 200_000, "0.60"), _row("search", 50, 100_000, "0.30")],
    {"gpt-4o": "b"},
)


def test_price_change_explains_its_part_of_the_change() -> None:
    result = diff_analyses(OLD, NEW)
    per_request = result.get("baseline cost per priced request")
    assert (per_request.old, per_request.new) == (Decimal("0.0025"), Decimal("0.0045"))
    assert result.prices is not None
    # 300k new tokens x ($3 - $2.50) per 1M = $0.15 of the new spend; over 200 requests
    assert result.prices.explained == Decimal("0.15")
    assert result.prices.explained_per_request == Decimal("0.00075")
    [note] = result.notes
    assert "the price table changed: prices differ for gpt-4o" in note
    assert "explain about +$0.00075 of the +$0.002 (+30.0 points of the +80.0%) change" in note
    assert "gpt-4o: $2.50 → $3.00 per 1M tokens, +20.0%" in note
    assert "estimated" in note  # an estimate, said so
    assert " USD" not in note  # money in prose: "$0.00075", never "0.00075 USD"
    shown = result.as_dict()["prices"]
    assert isinstance(shown, dict) and shown["explained_per_request"] == "0.00075"


def test_same_price_table_and_version_no_note() -> None:
    same = _analysis(NEW.baseline.by_model, NEW.baseline.by_feature, {"gpt-4o": "a"})
    result = diff_analyses(OLD, same)
    assert result.prices is None and result.notes == []
    assert result.as_dict()["prices_changed"] is False


def test_unused_price_change_explains_nothing_and_version_change_is_said() -> None:
    old = _analysis(OLD.baseline.by_model, [], {"gpt-4o": "a"})
    # another table, whose only new price is for a model the old run did not use
    new = _analysis(NEW.baseline.by_model, [], {"gpt-4o": "a", "o3": "y"}, version="0.2.0")
    result = diff_analyses(old, new)
    assert result.prices is not None and result.prices.models == []
    notes = result.notes
    assert "the new prices explain none of the change" in notes[0]
    assert notes[1].startswith("the analyses were written by different advisor versions")
    assert "(0.1.0 → 0.2.0)" in notes[1]


def test_a_model_without_tokens_in_a_run_is_not_estimated() -> None:
    old = _analysis(OLD.baseline.by_model, [], {"gpt-4o": "a", "o3": "x"})
    new = _analysis(NEW.baseline.by_model, [], {"gpt-4o": "b", "o3": "y"})
    result = diff_analyses(old, new)  # o3's digest listed, but no by_model row: nothing to go on
    assert result.prices is not None and result.prices.explained is None
    [note] = result.notes
    assert "How much of the change they explain cannot be estimated" in note
    assert "o3: no tokens in one run" in note


def test_per_feature_and_per_model_cost_per_request() -> None:
    # an analysis written before by_model grouped by model: one row per logged name
    old = _analysis(
        [
            _row("gpt-4o", 60, 60_000, "0.15", model_key="gpt-4o"),
            _row("prod-gpt4o-eu", 40, 40_000, "0.10", model_key="gpt-4o"),
            _row("acme-ft", 10, 5_000, None),
        ],
        OLD.baseline.by_feature,
        {"gpt-4o": "a"},
    )
    result = diff_analyses(old, NEW)
    models = {u.key: u for u in result.models}
    assert list(models) == ["gpt-4o", "acme-ft"]  # the costliest first; unpriced last
    gpt4o = models["gpt-4o"]
    assert (gpt4o.old and gpt4o.old.requests, gpt4o.new and gpt4o.new.requests) == (100, 200)
    assert (gpt4o.per_request.old, gpt4o.per_request.new) == (Decimal("0.0025"), Decimal("0.0045"))
    gone = models["acme-ft"]  # unpriced, then not logged: unknown both times, never $0
    assert gone.new is None and gone.per_request.old is None and gone.per_request.share is None
    features = {u.key: u for u in result.features}
    assert features["search"].old is None and features["search"].per_request.new == Decimal("0.006")
    assert features["chat"].per_request.share == 0.6  # $0.0025 -> $0.004
    shown = result.as_dict()["features"]
    assert isinstance(shown, list) and shown[0] == {
        "key": "chat", "old_requests": 100, "new_requests": 150, "old_per_request": "0.0025",
        "new_per_request": "0.004", "share": 0.6,
    }  # fmt: skip


def _prices(path: Path, gpt4o_input: str) -> Path:
    entry = {
        "id": "gpt-4o", "title": "gpt-4o", "provider": "openai", "encoding": "o200k_base",
        "source": "test", "retrieved": "2026-11-26",
        "prices": {"input": gpt4o_input, "output": "10", "cached_input": "1.25"},
    }  # fmt: skip
    document = {"schema_version": 1, "kind": "prices", "currency": "USD", "source": "test",
                "retrieved": "2026-11-26", "models": [entry]}  # fmt: skip
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_end_to_end_a_dearer_table_explains_the_whole_rise(tmp_path: Path) -> None:
    """The same log analysed with gpt-4o's input at $2.50, then at $3 per 1M tokens."""
    log = write_jsonl(
        tmp_path / "a.jsonl",
        [
            openai_line("a", prompt=1000, completion=0),
            openai_line("b", model="gpt-4o-mini", prompt=1000, completion=0),
        ],
    )
    runs = []
    for name, price in (("old", "2.5"), ("new", "3")):
        result = api.analyze(
            [str(log)],
            out_dir=tmp_path / name,
            prices_files=[_prices(tmp_path / f"{name}.yaml", price)],
            write_report=False,
            options=api.SimOptions(levers=()),
        )
        runs.append(result.files["analysis"])
    result = api.diff(*runs)
    # ($0.0025 + $0.00015) / 2 -> ($0.003 + $0.00015) / 2: all of it the new price
    assert result.get("baseline cost per priced request").delta == Decimal("0.00025")
    [note] = result.notes
    assert "explain about +$0.00025 of the +$0.00025 (+18.9 points of the +18.9%)" in note
    models = {u.key: u.per_request.share for u in result.models}
    assert models == {"gpt-4o": 0.2, "gpt-4o-mini": 0.0}
    assert fmt.signed(Decimal("0.00025"), fmt.money_per_unit(Decimal("0.00025"))) == "+$0.00025"
