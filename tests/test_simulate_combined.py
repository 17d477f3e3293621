"""The combined counterfactual, end to end: a model switch warms a new cache, `export decisions`
adds up to combined.cost and says NULL for a lever that did not run, the waterfall, and the
recommendations in ranked order in every renderer."""

from __future__ import annotations

import csv
import io
import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest
from helpers import openai_line, write_jsonl
from rich.console import Console
from test_simulate_property import SYSTEMS, _priced_store

from advisor import api
from advisor.analysis import Analysis
from advisor.levers.base import (
    STATE_COLUMNS,
    Findings,
    LeverContext,
    Replayed,
    SimOptions,
    State,
)
from advisor.levers.caching import CachingLever
from advisor.money import Model
from advisor.report import markdown, waterfall
from advisor.report.console import render_console
from advisor.ruleset import default_rules_dir
from advisor.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "sample_analysis.json"


class _Empty(Model):
    pass


class RouteOddToHaiku:
    """Tiering's shape: every other Sonnet request moves to Haiku, its logged cache counts
    dropped (the new model's cache holds nothing of it)."""

    id: ClassVar[str] = "tiering"
    title: ClassVar[str] = "route odd requests"

    def prepare(self, ctx: LeverContext) -> None:
        pass

    def replay(self, ctx: LeverContext, state: State, out: str) -> Replayed:
        moved = (
            "(model_key = 'claude-sonnet-4-5' AND right(request_id, 1) IN ('1','3','5','7','9'))"
        )
        cols = ", ".join(
            f"CASE WHEN {moved} THEN 'claude-haiku-4-5' ELSE model_key END AS model_key"
            if c == "model_key"
            else f"CASE WHEN {moved} THEN 0 ELSE {c} END AS {c}"
            if c.startswith("cache_")
            else c
            for c in STATE_COLUMNS
        )
        ctx.con.execute(f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT {cols} FROM {state.table}")
        return Replayed(State(out, state.messages, state.texts), 5)

    def describe(self, ctx: LeverContext, base: State, alone: Replayed) -> Findings[Model, Model]:
        return Findings(_Empty(), _Empty())


def _sonnet_stream(tmp: Path) -> duckdb.DuckDBPyConnection:
    """Ten Sonnet requests a minute apart sharing a long system prompt (past Haiku's larger
    minimum cacheable prefix too), none cached in the log."""
    rows = [
        {"model": "claude-sonnet-4-5", "prompt": 9000, "completion": 50, "cached_share": None,
         "system": SYSTEMS[0] * 3, "user_text": "hi", "feature": "chat", "user": "alice",
         "minute": i, "stream": False}
        for i in range(10)
    ]  # fmt: skip
    return _priced_store(tmp, rows)


def _writes(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str, int, int]]:
    """(request_id, model_key, cache_read, cache_write) in time order."""
    return [
        (r[0], r[1], int(r[2] or 0), int(r[3] or 0))
        for r in con.execute(
            f"""SELECT s.request_id, s.model_key, s.cache_read_tokens,
                       coalesce(s.cache_write_tokens, 0) + coalesce(s.cache_write_1h_tokens, 0)
                FROM {table} s JOIN requests USING (request_id) ORDER BY ts, request_id"""
        ).fetchall()
    ]


def test_a_model_switch_pays_cache_warm_up_on_the_new_model(tmp_path: Path) -> None:
    con = _sonnet_stream(tmp_path)
    try:
        ctx = LeverContext(con, api.load_price_table(), default_rules_dir(), SimOptions())
        caching = CachingLever()
        caching.prepare(ctx)
        con.execute("CREATE TEMP TABLE base AS SELECT * FROM requests")
        caching.replay(ctx, State("base"), "alone")
        alone = _writes(con, "alone")
        router = RouteOddToHaiku()
        router.replay(ctx, State("base"), "routed")
        caching = CachingLever()  # a fresh lever per simulation, as simulate builds them
        caching.prepare(ctx)
        caching.replay(ctx, State("routed"), "chained")
        chained = _writes(con, "chained")
        # caching alone: one warm-up write on Sonnet, then reads
        assert [w > 0 for _, _, _, w in alone].count(True) == 1
        assert alone[0][3] > 0 and all(r > 0 for _, _, r, _ in alone[1:])
        # chained after the switch: Haiku's first request is a cold write, never a free read
        haiku = [row for row in chained if row[1] == "claude-haiku-4-5"]
        assert haiku and haiku[0][2] == 0 and haiku[0][3] > 0
        sonnet = [row for row in chained if row[1] == "claude-sonnet-4-5"]
        assert sonnet[0][2] == 0 and sonnet[0][3] > 0
        written = sum(w for *_, w in chained)
        assert written > sum(w for *_, w in alone)  # two caches warmed, not one
        # and simulate charges it: the chained caching saving is below its standalone one
        sim = simulate(ctx, [RouteOddToHaiku(), CachingLever()])
        assert sim.levers[1].marginal_saving < sim.levers[1].standalone_saving
    finally:
        con.close()


# export decisions


def _decisions(db: Path, tmp: Path) -> list[dict[str, str]]:
    out = tmp / "d.csv"
    api.export_decisions(db, out)
    with out.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _final_sum(rows: list[dict[str, str]]) -> tuple[Decimal, int]:
    costs = [r["final_cost"] for r in rows]
    return sum((Decimal(c) for c in costs if c), Decimal(0)), costs.count("")


def test_decision_final_costs_add_up_to_the_combined_cost_on_a_generated_log(
    tmp_path: Path,
) -> None:
    rows = [
        openai_line(
            f"r{i}",
            model=("gpt-4o", "gpt-4o-mini", "house-model-x")[i % 3],
            ts=f"2026-10-01T12:{i:02d}:00Z",
            prompt=200 + 37 * i,
            completion=5 + 11 * i,
            messages=[
                {"role": "system", "content": SYSTEMS[i % 2]},
                {"role": "user", "content": "Classify: refund please"},
            ],
        )
        for i in range(30)
    ]
    log = write_jsonl(tmp_path / "a.jsonl", rows)
    result = api.analyze([str(log)], out_dir=tmp_path / "o", write_report=False)
    decisions = _decisions(tmp_path / "o" / "advisor.duckdb", tmp_path)
    total, unknown = _final_sum(decisions)
    assert result.analysis.combined.cost is not None
    assert total.quantize(Decimal("0.01")) == result.analysis.combined.cost.quantize(
        Decimal("0.01")
    )
    assert total == result.analysis.combined.cost  # exactly, in fact
    assert unknown == result.analysis.combined.unpriced_requests == 10
    built = set(result.analysis.levers_run)
    for column, lever in (
        ("routed_model", "tiering"),
        ("cache_read_tokens_sim", "caching"),
        ("trimmed_tokens", "trimming"),
        ("output_cap", "output_caps"),
        ("batch_eligible", "batching"),
    ):
        if lever not in built:  # did not run: NULL, never a made-up 0
            assert {r[column] for r in decisions} == {""}, column


def test_a_lever_switched_off_leaves_no_stale_decisions(tmp_path: Path) -> None:
    rows = [openai_line(f"r{i}", ts=f"2026-10-01T12:{i:02d}:00Z") for i in range(6)]
    log = write_jsonl(tmp_path / "a.jsonl", rows)
    db = tmp_path / "s.duckdb"
    api.analyze([str(log)], out_dir=tmp_path / "o1", db=db, write_report=False)
    assert {r["routed_model"] for r in _decisions(db, tmp_path)} != {""}
    # the same store analysed again with tiering off: its column is NULL, not the old run's
    api.analyze(
        [], out_dir=tmp_path / "o2", db=db, write_report=False,
        options=SimOptions(levers=("caching",)),
    )  # fmt: skip
    decisions = _decisions(db, tmp_path)
    assert {r["routed_model"] for r in decisions} == {""}
    assert {r["difficulty"] for r in decisions} == {""}


# the waterfall and the recommendations, from analysis.json only


@pytest.fixture(scope="module")
def sample() -> Analysis:
    """The golden sample analysis (stored without its run-dependent generated_at)."""
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return Analysis.model_validate({**data, "generated_at": "2026-12-03T00:00:00Z"})


def test_waterfall_steps_from_baseline_through_each_marginal_step_to_combined(
    sample: Analysis,
) -> None:
    steps = waterfall.steps(sample)
    assert [s.label for s in steps] == ["baseline", *sample.levers_run, "combined"]
    assert steps[0].after == sample.baseline.cost and steps[-1].after == sample.combined.cost
    for before, step in itertools.pairwise(steps[:-1]):
        assert step.before == before.after
        assert step.after == step.before - step.change  # type: ignore[operator]
    assert steps[-2].after == sample.combined.cost  # the last lever lands on combined
    ranged = {s.label for s in steps if s.range_note}
    assert ranged == {lv.id for lv in sample.levers if lv.range is not None}
    assert "tiering" in ranged  # the threshold sweep moves tiering's figure


def _console(a: Analysis) -> str:
    buf = io.StringIO()
    render_console(a, Console(file=buf, width=200, color_system=None))
    return buf.getvalue()


def test_every_renderer_shows_the_waterfall_and_the_ranges(sample: Analysis) -> None:
    line = waterfall.sentence(sample)
    assert line.startswith("baseline ") and " → combined " in line
    text = _console(sample)
    assert "Waterfall" in text and line in text
    md = api.render_report(sample, "md")
    assert markdown.md(line) in md
    html = api.render_report(sample, "html")
    assert 'id="waterfall"' in html and "chart-waterfall" in html
    for lever in sample.levers:
        if lever.range is not None:
            note = waterfall.range_note(sample, lever.id)
            assert note and note in text and markdown.md(note) in md


def _with_recommendations(a: Analysis, recs: list[dict[str, Any]]) -> Analysis:
    return Analysis.model_validate({**a.model_dump(), "recommendations": recs})


def test_recommendations_show_in_ranked_order_with_their_excerpts(sample: Analysis) -> None:
    recs = [
        {"title": "Cap runaway outputs", "lever": "output_caps", "saving": "9.5",
         "action": "max_tokens: 800"},
        {"title": "Drop the repeated block", "lever": "trimming", "saving": "3.25",
         "action": "edit the system prompt", "excerpt_before": "RULES RULES",
         "excerpt_after": "RULES"},
    ]  # fmt: skip
    a = _with_recommendations(sample, recs)
    text, html, md = _console(a), api.render_report(a, "html"), api.render_report(a, "md")
    for out in (text, html):
        assert out.index("Cap runaway outputs") < out.index("Drop the repeated block")
        assert "RULES RULES" in out and "max_tokens: 800" in out
    # report.md is a pull-request comment: its action plan, not every recommendation
    assert "Cap runaway outputs" not in md and "recommendations" in md and "report.html" in md
    # simulate's own ranking: by saving, ties by lever order then title
    ranked = sample.recommendations
    assert [r.saving for r in ranked] == sorted((r.saving for r in ranked), reverse=True)


def test_the_sample_export_adds_up_to_the_combined_cost(tmp_path: Path) -> None:
    traffic = str(ROOT / "sample_logs" / "traffic.jsonl.gz")
    result = api.analyze([traffic], out_dir=tmp_path / "o", write_report=False)
    total, unknown = _final_sum(_decisions(tmp_path / "o" / "advisor.duckdb", tmp_path))
    assert total == result.analysis.combined.cost
    assert unknown == result.analysis.combined.unpriced_requests


def test_the_terminal_shows_the_top_recommendations_and_says_how_many_more(
    sample: Analysis,
) -> None:
    recs = [
        {"title": f"Recommendation {i:02d}", "lever": "caching", "saving": str(30 - i),
         "action": f"do {i}"}
        for i in range(12)
    ]  # fmt: skip
    text = _console(_with_recommendations(sample, recs))
    assert "Recommendation 09" in text and "Recommendation 10" not in text
    assert "… and 2 more in report.html and analysis.json" in text
    assert "Recommendation 11" in api.render_report(_with_recommendations(sample, recs), "html")
