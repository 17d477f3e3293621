"""Spend by model groups by the resolved model: aliases, dated snapshots and mapped deployments
are one row, with the names they were logged under as `via`; an unresolved name stays its own
(unpriced) row."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from helpers import openai_line, write_jsonl
from rich.console import Console

from advisor import api
from advisor.analysis import CostRow
from advisor.report.console import render_console


def _rows() -> list[dict]:
    deployment = openai_line("az", model="prod-gpt4o-eu", prompt=1000, completion=0)
    deployment["provider"] = "azure"
    return [
        openai_line("a", model="gpt-4o", prompt=1000, completion=0),  # $0.0025
        openai_line("b", model="gpt-4o-2024-08-06", prompt=1000, completion=0),  # dated snapshot
        openai_line("c", model="openai/gpt-4o", prompt=1000, completion=0),  # provider prefix
        openai_line("m", model="gpt-4o-mini", prompt=1000, completion=0),
        deployment,  # no response model: priced only when mapped
    ]


def _by_model(tmp_path: Path, deployments: dict[str, str]) -> dict[str | None, CostRow]:
    log = write_jsonl(tmp_path / "logs.jsonl", _rows())
    result = api.analyze(
        [str(log)],
        out_dir=tmp_path / ("mapped" if deployments else "plain"),
        write_report=False,
        options=api.SimOptions(deployments=deployments, levers=()),
    )
    return {row.key: row for row in result.analysis.baseline.by_model}


def test_aliases_and_snapshots_are_one_row_and_the_mapping_merges_a_deployment(
    tmp_path: Path,
) -> None:
    plain = _by_model(tmp_path, {})
    assert sorted(plain, key=str) == ["gpt-4o", "gpt-4o-mini", "prod-gpt4o-eu"]
    gpt4o = plain["gpt-4o"]
    assert (gpt4o.requests, gpt4o.model_key) == (3, "gpt-4o")
    assert gpt4o.cost == Decimal("0.0075")
    assert gpt4o.via == ["gpt-4o-2024-08-06", "openai/gpt-4o"]  # sorted, the key itself left out
    assert plain["gpt-4o-mini"].via == []
    unpriced = plain["prod-gpt4o-eu"]  # unresolved: its own row, counted unpriced, cost unknown
    assert (unpriced.model_key, unpriced.cost, unpriced.unpriced_requests) == (None, None, 1)

    mapped = _by_model(tmp_path, {"prod-gpt4o-eu": "gpt-4o"})
    assert sorted(mapped, key=str) == ["gpt-4o", "gpt-4o-mini"]  # the deployment merged in
    gpt4o = mapped["gpt-4o"]
    assert (gpt4o.requests, gpt4o.unpriced_requests) == (4, 0)
    assert gpt4o.cost == Decimal("0.01")
    assert gpt4o.via == ["gpt-4o-2024-08-06", "openai/gpt-4o", "prod-gpt4o-eu"]


def test_console_names_the_via_names(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "logs.jsonl", _rows())
    result = api.analyze(
        [str(log)],
        out_dir=tmp_path / "out",
        write_report=False,
        options=api.SimOptions(deployments={"prod-gpt4o-eu": "gpt-4o"}, levers=()),
    )
    console = Console(record=True, width=200, color_system=None)
    render_console(result.analysis, console)
    text = console.export_text()
    spend = text[text.index("Spend by model") : text.index("Spend by feature")]
    assert "gpt-4o via gpt-4o-2024-08-06, openai/gpt-4o" in spend  # long names: cut, not wrapped
