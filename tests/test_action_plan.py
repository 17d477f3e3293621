"""The action plan adds up (rows + other == the combined saving, exactly), is de-duplicated,
moves rows below the minimum rule into `other`, normalises to 30 days; unit economics sums to the
combined saving; a lever's recommendations never sum to more than its saving."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from helpers import write_jsonl
from hypothesis import HealthCheck, given, settings
from test_simulate_property import EXAMPLES, _line, rules, traffic  # noqa: F401 -- rules: fixture

from advisor import analysis as A
from advisor import api
from advisor.action_plan import build_action_plan, load_rules, month
from advisor.ruleset import default_rules_dir


def _adds_up(analysis: A.Analysis) -> None:
    plan = analysis.action_plan
    assert sum((r.saving for r in plan.rows), plan.other) == analysis.combined.saving
    assert plan.total == analysis.combined.saving
    assert sum((u.saving for u in analysis.unit_economics), Decimal(0)) == analysis.combined.saving
    ids = [r.id for r in plan.rows]
    assert len(ids) == len(set(ids))
    assert len({(r.lever, r.scope) for r in plan.rows}) == len(ids)


def test_sample_plan_adds_up_to_the_combined_saving(analysed_sample: api.AnalyzeResult) -> None:
    analysis = analysed_sample.analysis
    plan = analysis.action_plan
    _adds_up(analysis)
    assert plan.rows and plan.rows == sorted(plan.rows, key=lambda r: -r.saving)
    assert all(r.saving >= plan.minimum for r in plan.rows)
    assert all(r.risk in ("low", "medium", "high") and r.risk_reason for r in plan.rows)
    assert all(r.effort in ("config", "prompt edit", "code") for r in plan.rows)
    assert plan.period_days == analysis.period.days
    assert plan.total_per_month == month(plan.total, plan.period_days)
    assert plan.interactions
    # each lever's chained step, split by request, is exactly its marginal saving
    con = duckdb.connect(str(analysed_sample.out_dir / "advisor.duckdb"), read_only=True)
    try:
        steps = dict(
            con.execute(
                "SELECT lever, sum(coalesce(cost_before, 0) - coalesce(cost_after, 0)) "
                "FROM sim_steps GROUP BY lever"
            ).fetchall()
        )
    finally:
        con.close()
    for lever in analysis.levers:
        assert steps.get(lever.id, Decimal(0)) == lever.marginal_saving, lever.id


def test_sample_recommendations_never_sum_past_their_lever(
    analysed_sample: api.AnalyzeResult,
) -> None:
    analysis = analysed_sample.analysis
    for lever in analysis.levers:
        recs = [r.saving for r in analysis.recommendations if r.lever == lever.id]
        assert sum(recs, Decimal(0)) <= lever.standalone_saving, lever.id
    keys = [(r.lever, r.title, r.action) for r in analysis.recommendations]
    assert len(keys) == len(set(keys))
    tiering = next(lv for lv in analysis.levers if lv.id == "tiering")
    rules_total = sum((r.expected_saving for r in tiering.details.route_rules), Decimal(0))
    assert rules_total == tiering.standalone_saving  # ROUTE rules no longer repeat each other


def test_unit_economics_per_request(analysed_sample: api.AnalyzeResult) -> None:
    rows = analysed_sample.analysis.unit_economics
    costs = [r.cost_before for r in rows if r.cost_before is not None]
    assert costs == sorted(costs, reverse=True)
    for r in rows:
        if r.cost_before is None:
            assert r.per_request_before is None and r.unpriced_requests == r.requests
        else:
            priced = r.requests - r.unpriced_requests
            assert abs(r.per_request_before * priced - r.cost_before) < Decimal("1e-6")


def _tiny_store(steps: list[tuple[str, str, str | None, str, str]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE requests (request_id VARCHAR, feature VARCHAR)")
    con.execute(
        "CREATE TABLE sim_steps (request_id VARCHAR, lever VARCHAR, "
        "cost_before DECIMAL(38, 18), cost_after DECIMAL(38, 18))"
    )
    for request_id, lever, feature, before, after in steps:
        con.execute("INSERT INTO requests VALUES (?, ?)", [request_id, feature])
        con.execute("INSERT INTO sim_steps VALUES (?, ?, ?, ?)", [request_id, lever, before, after])
    return con


def _plan(steps: list[Any], days: float) -> A.ActionPlan:
    con = _tiny_store(steps)
    total = sum((Decimal(b or 0) - Decimal(a or 0) for *_, b, a in steps), Decimal(0))
    combined = A.Combined(cost=Decimal(0), saving=total, saving_share=0.5, unpriced_requests=0)
    period = A.Period(start=None, end=None, days=days)
    return build_action_plan(con, [], combined, period, default_rules_dir())


def test_minimum_rule_moves_small_rows_into_other() -> None:
    steps = [
        ("a", "tiering", "chat", "50", "10"),  # $40 over 30 days: a row
        ("b", "batching", "chat", "0.60", "0.10"),  # $0.50 a month: below $1
        ("c", "caching", None, "20.30", "20.00"),  # $0.30: below $1 and below 0.5%
        ("d", "caching", "chat", "30", "10"),  # $20: a row
    ]
    plan = _plan(steps, 30.0)
    assert [r.id for r in plan.rows] == ["tiering:chat", "caching:chat"]
    assert plan.other == Decimal("0.80") and plan.other_changes == 2
    assert plan.total == Decimal("60.80") == sum((r.saving for r in plan.rows), plan.other)
    per_month, share = load_rules(default_rules_dir()).thresholds()
    assert plan.minimum == max(per_month, share * plan.total)
    assert plan.rows[0].change.startswith("apply the tiering policy")  # no lever details given


def test_per_month_normalises_to_30_days_and_guards_short_periods() -> None:
    plan = _plan([("a", "tiering", "chat", "14", "0")], 7.0)
    assert plan.rows[0].saving == Decimal(14)
    assert plan.rows[0].saving_per_month == Decimal(60)
    assert plan.total_per_month == Decimal(60)
    assert month(Decimal(3), 0.0) == Decimal(90)  # under a day counts as a day, never / 0


def test_no_feature_and_unpriced_steps_still_add_up() -> None:
    steps = [
        ("a", "tiering", None, "5", "1"),
        ("b", "tiering", "chat", "3", None),  # priced before, unknown after: 3 as state_cost sums
    ]
    plan = _plan(steps, 30.0)
    assert {r.scope for r in plan.rows} == {"(no feature)", "chat"}
    assert next(r for r in plan.rows if r.scope == "chat").requests == 0  # not a priced drop
    assert sum((r.saving for r in plan.rows), plan.other) == plan.total == Decimal(7)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=traffic)
def test_plan_adds_up_on_generated_traffic(
    tmp_path: Path,
    rules: Path,  # noqa: F811 -- the fixture test_simulate_property defines
    rows: list[dict[str, Any]],
) -> None:
    log = write_jsonl(tmp_path / "log.jsonl", [_line(i, r) for i, r in enumerate(rows)])
    out = tmp_path / "out"
    result = api.analyze([str(log)], out_dir=out, rules_dir=rules, write_report=False)
    _adds_up(result.analysis)
