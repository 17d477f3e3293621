"""Baseline: exact per-request costs through the whole pipeline, roll-ups, reconciliation."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from helpers import anthropic_line, openai_line, write_jsonl

from advisor import api


def _analyze(tmp_path: Path, rows: list, **kwargs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_jsonl(tmp_path / "logs.jsonl", rows)
    return api.analyze([str(path)], out_dir=tmp_path / "out", write_report=False, **kwargs)


def _costs(result) -> dict[str, Decimal]:
    import duckdb

    con = duckdb.connect(str(result.files["db"]), read_only=True)
    try:
        return {
            k: v for k, v in con.execute("SELECT request_id, baseline_cost FROM costs").fetchall()
        }
    finally:
        con.close()


def test_hand_computed_costs_per_convention(tmp_path: Path) -> None:
    rows = [
        # gpt-4o: 400 uncached x $2.50/M + 600 cached x $1.25/M + 200 out x $10/M
        openai_line("oa", cached=600, user="u1", feature="chat", cost=0.0050),
        # claude-sonnet-4-5 (dated alias): 100 in x $3 + 3000 read x $0.30 + 300 5-min writes
        # x $3.75 + 200 1-h writes x $6 + 50 out x $15, per 1M
        anthropic_line("an", model="claude-sonnet-4-5-20250929", input_tokens=100,
                       cache_read=3000, cache_write=500, cache_write_1h=200, user="u2"),
        # o3: reasoning tokens are billed as output: 1000 in x $2 + 500 out x $8
        openai_line("o3", model="o3", prompt=1000, completion=500, reasoning=400, user="u1"),
        # batch tier: gpt-4o at half price: 1000 x $1.25 + 200 x $5
        openai_line("bt", prompt=1000, completion=200, service_tier="batch"),
        # provider prefix resolves
        openai_line("px", model="openai/gpt-4o-mini", prompt=1000, completion=100),
        openai_line("un", model="acme-llama-70b-ft", prompt=1000, completion=100),
    ]  # fmt: skip
    result = _analyze(tmp_path, rows)
    costs = _costs(result)
    assert costs["oa"] == Decimal("0.00375")
    assert costs["an"] == Decimal("0.0003") + Decimal("0.0009") + Decimal("0.001125") + Decimal(
        "0.0012"
    ) + Decimal("0.00075")
    assert costs["o3"] == Decimal("0.002") + Decimal("0.004")
    assert costs["bt"] == Decimal("0.00125") + Decimal("0.001")
    assert costs["px"] == Decimal("0.00015") + Decimal("0.00006")
    assert costs["un"] is None
    a = result.analysis
    assert a.baseline.cost == sum(v for v in costs.values() if v is not None)
    assert a.coverage.unpriced_requests == 1
    assert [m.model for m in a.coverage.unpriced_models] == ["acme-llama-70b-ft"]
    assert a.coverage.model_resolution == {"alias": 1, "exact": 3, "prefix": 1, "unpriced": 1}
    # Reconciliation: the log said $0.0050 where the price table says $0.00375.
    rec = a.baseline.reconciliation
    assert rec.rows_with_logged_cost == 1
    assert rec.gap == Decimal("0.00125")
    by_user = {row.key: row.cost for row in a.baseline.by_user}
    assert by_user["u1"] == costs["oa"] + costs["o3"]
    unpriced_row = next(row for row in a.baseline.by_model if row.key == "acme-llama-70b-ft")
    assert unpriced_row.unpriced_requests == 1 and unpriced_row.cost is None  # unknown, not 0


def test_azure_deployment_mapping(tmp_path: Path) -> None:
    line = openai_line("az", model="prod-gpt4o-eu", prompt=1000, completion=0)
    line["provider"] = "azure"
    result = _analyze(
        tmp_path, [line], options=api.SimOptions(deployments={"prod-gpt4o-eu": "gpt-4o"})
    )
    assert _costs(result)["az"] == Decimal("0.0025")
    assert result.analysis.coverage.model_resolution == {"deployment": 1}


def test_analysis_is_deterministic(tmp_path: Path) -> None:
    rows = [openai_line(f"r{i}", user=f"u{i % 3}", feature=f"f{i % 2}") for i in range(20)]
    first = _analyze(tmp_path / "a", rows).analysis.model_dump(mode="json")
    second = _analyze(tmp_path / "b", rows).analysis.model_dump(mode="json")
    first.pop("generated_at")
    second.pop("generated_at")
    assert first == second
