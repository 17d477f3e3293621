"""The output caps lever's core on tiny DuckDB tables: caps per feature and template, what they
cut, runaway outputs, reasoning budgets (with and without a difficulty table), the replay, and
the priced saving; and a property test of the replay over generated traffic."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import store
from advisor.conditions import evaluate, parse
from advisor.errors import RuleError
from advisor.levers.output_caps import core
from advisor.levers.output_caps.policy import OutputCapsPolicy, load_policy
from advisor.pricing import load_prices, register_prices
from advisor.ruleset import default_rules_dir, read_yaml
from advisor.store import scalar

RULES = default_rules_dir()
PRICES = load_prices(RULES)
STATE = "request_id, model_key, input_tokens, cache_read_tokens, cache_write_tokens, "
STATE += "cache_write_1h_tokens, output_tokens, service_tier"


def policy(**cap: Any) -> OutputCapsPolicy:
    data = read_yaml(RULES / "output_caps.yaml")
    data["cap"] = {**data["cap"], **cap}
    return OutputCapsPolicy.model_validate(data)


def con_with(rows: list[dict[str, Any]], texts: dict[str, str] | None = None) -> Any:
    con = duckdb.connect()
    con.execute(store.SCHEMA_SQL)
    full = [
        {
            "request_id": f"r{i:04d}",
            "feature": "f",
            "provider": "openai",
            "model": "gpt-4o",
            "model_key": "gpt-4o",
            "input_tokens": 100,
            "output_tokens": 10,
            "status": "ok",
            "token_source": "logged",
            "service_tier": "default",
            **row,
        }
        for i, row in enumerate(rows)
    ]
    names = sorted({name for row in full for name in row})
    marks = ", ".join("?" for _ in names)
    con.executemany(
        f"INSERT INTO requests ({', '.join(names)}) VALUES ({marks})",
        [[row.get(name) for name in names] for row in full],
    )
    for h, text in (texts or {}).items():
        con.execute("INSERT INTO texts VALUES (?, ?)", [h, text])
    return con


def state_of(con: Any) -> str:
    con.execute(f"CREATE OR REPLACE TEMP TABLE state_base AS SELECT {STATE} FROM requests")
    return "state_base"


def outputs(con: Any, table: str) -> dict[str, int | None]:
    return dict(con.execute(f"SELECT request_id, output_tokens FROM {table}").fetchall())


def test_the_rules_file_loads() -> None:
    p = load_policy(RULES)
    assert p.cap.percentile == 0.99
    assert p.provider("anthropic").reasoning_parameter == "thinking.budget_tokens"
    assert p.provider("google").reasoning_parameter == "thinkingConfig.thinkingBudget"
    assert p.provider("some-vllm").id == p.default_provider  # OpenAI-compatible by default


def test_a_bad_rules_file_is_refused_naming_the_field(tmp_path: Path) -> None:
    text = (RULES / "output_caps.yaml").read_text().replace("headroom: 1.2", "headroom: 0.5")
    (tmp_path / "output_caps.yaml").write_text(text)
    with pytest.raises(RuleError, match=r"cap\.headroom"):
        load_policy(tmp_path)


def test_a_runaway_rule_over_group_features_is_refused() -> None:
    data = read_yaml(RULES / "output_caps.yaml")
    data["runaway"]["when"] = {"feature": "uncapped_share", "op": "ge", "value": 1}
    with pytest.raises(ValueError, match="not a per-response feature"):
        OutputCapsPolicy.model_validate(data)


def test_cap_cuts_only_the_tail_and_counts_truncations() -> None:
    # 99 answers of 100 tokens and one of 1000: cap = ceil(p99 * 1.2) of the group
    rows = [{"output_tokens": 100} for _ in range(99)] + [{"output_tokens": 1000}]
    con = con_with(rows)
    p = policy(percentile=0.9, range_percentiles=[0.6, 0.999], min_requests=10)
    plan = core.plan(con, p)
    (g,) = plan.caps
    assert g.cap == 120  # p90 = 100, x 1.2
    assert (g.tokens_saved, g.truncated) == (880, 1)
    assert g.uncapped == 100 and g.rule == "OUTCAP-001"  # the 1000 is 10x the median: runaway
    (long,) = plan.runaways
    assert long.beyond_norm and not long.repetition  # no text logged: not scanned
    assert g.tokens_saved_less <= g.tokens_saved <= g.tokens_saved_more
    assert core.replay(con, state_of(con), "after") == 1
    assert outputs(con, "after")["r0099"] == 120
    assert outputs(con, "after")["r0000"] == 100


def test_a_cap_on_visible_output_leaves_reasoning_alone() -> None:
    rows = [{"output_tokens": 300, "reasoning_tokens": 200} for _ in range(60)]
    rows.append({"output_tokens": 5200, "reasoning_tokens": 200})  # 5000 visible
    con = con_with(rows)
    plan = core.plan(con, policy(percentile=0.9, range_percentiles=[0.6, 0.999], min_requests=10))
    (g,) = plan.caps
    assert g.cap == 120 and g.max_reasoning == 200
    core.replay(con, state_of(con), "after")
    assert outputs(con, "after")["r0060"] == 120 + 200


def test_the_cap_is_set_from_the_answers_that_are_not_runaways() -> None:
    # 3 of 203 answers ran to the logged max_tokens (1024): a p99 over all answers would sit at
    # 1024 and cut nothing; set from the others, the cap stops the runaways
    rows = [{"output_tokens": 100, "max_tokens": 1024} for _ in range(200)]
    rows += [{"output_tokens": 1024, "max_tokens": 1024, "finish_reason": "length"}] * 3
    (g,) = core.plan(con_with(rows), policy()).caps
    assert g.runaway == 3 and g.at_cap == 3
    assert g.cap == 120 and g.tokens_saved == 3 * (1024 - 120) and g.truncated == 3
    assert g.rule == "OUTCAP-001"


def test_a_cap_above_every_answer_is_not_applied() -> None:
    rows = [{"output_tokens": 100 + i % 50, "max_tokens": 1024} for i in range(200)]
    (g,) = core.plan(con_with(rows), policy()).caps
    assert g.tokens_saved == 0 and g.rule is None


def test_too_few_requests_get_no_cap() -> None:
    con = con_with([{"output_tokens": 100} for _ in range(5)] + [{"output_tokens": 9000}])
    plan = core.plan(con, policy())
    (g,) = plan.caps
    assert g.cap is None and g.rule is None
    assert core.replay(con, state_of(con), "after") == 0


def test_templates_split_a_feature_when_each_has_enough_requests() -> None:
    rows = [{"system_hash": "a", "output_tokens": 10} for _ in range(60)]
    rows += [{"system_hash": "b", "output_tokens": 500} for _ in range(60)]
    rows += [{"system_hash": "c", "output_tokens": 50}]  # too few: pooled with the feature
    rows += [{"feature": None, "output_tokens": 50}]  # no feature: counted, not capped
    con = con_with(rows)
    plan = core.plan(con, policy())
    assert [(g.template, g.requests, g.cap) for g in plan.caps] == [
        (None, 1, None),
        ("a", 60, 16),
        ("b", 60, 600),
    ]
    assert plan.unattributed == 1


def test_one_template_is_the_whole_feature() -> None:
    con = con_with([{"system_hash": "a"} for _ in range(60)])
    assert [g.template for g in core.plan(con, policy()).caps] == [None]


def test_errors_and_unbilled_rows_are_not_read() -> None:
    rows = [{"output_tokens": 10} for _ in range(60)]
    rows += [{"status": "error", "output_tokens": 9000}, {"token_source": "unbilled"}]
    (g,) = core.plan(con_with(rows), policy()).caps
    assert g.requests == 60


def test_flags_requests_already_at_their_cap_and_uncapped_ones() -> None:
    rows = [{"output_tokens": 10, "max_tokens": 64} for _ in range(50)]
    rows += [{"output_tokens": 64, "max_tokens": 64, "finish_reason": "length"} for _ in range(5)]
    rows += [{"output_tokens": 10} for _ in range(5)]
    (g,) = core.plan(con_with(rows), policy()).caps
    assert (g.at_cap, g.uncapped) == (5, 5)


def test_repeated_share_sql() -> None:
    con = duckdb.connect()

    def share(text: str) -> float | None:
        value: float | None = scalar(con, f"SELECT {core.repeated_share_sql('?', 4)}", [text])
        return value

    loop = " ".join(["the cat sat on the mat"] * 20)
    prose = " ".join(f"word{i}" for i in range(200))
    assert share(loop) == pytest.approx(1 - 6 / 117)
    assert share(prose) == 0.0
    assert share("too short") is None


def test_a_repeating_response_is_a_runaway_even_at_normal_length() -> None:
    loop = " ".join(["I will check that for you."] * 100)
    rows = [{"output_tokens": 300} for _ in range(60)]
    rows.append({"output_tokens": 320, "response_hash": "h1"})
    con = con_with(rows, {"h1": loop})
    plan = core.plan(con, policy())
    assert [r.request_id for r in plan.runaways] == ["r0060"]
    (loop,) = plan.runaways
    assert loop.repeated_share is not None and loop.repeated_share > 0.9
    assert loop.repetition and not loop.beyond_norm
    assert plan.runaway_count == 1


def test_a_short_or_ordinary_response_is_no_runaway() -> None:
    rows = [{"output_tokens": 300, "response_hash": f"h{i}"} for i in range(60)]
    texts = {f"h{i}": " ".join(f"w{i}_{j}" for j in range(300)) for i in range(60)}
    assert core.plan(con_with(rows, texts), policy()).runaway_count == 0


REASONING = [{"model": "gpt-5", "model_key": "gpt-5", "output_tokens": 1010 + 10 * i,
              "reasoning_tokens": 1000 + 10 * i} for i in range(60)]  # fmt: skip


def test_no_difficulty_table_no_reasoning_budget() -> None:
    plan = core.plan(con_with(REASONING), policy())
    (r,) = plan.reasoning
    assert not plan.classified
    assert r.easy_medium is None and r.rule is None
    assert r.budget == 1295  # the median of 1000..1590
    assert r.reasoning_saved > 0  # priced, but not applied


def with_difficulty(con: Any, label: str) -> Any:
    con.execute(
        "CREATE TABLE difficulty AS SELECT request_id, ? AS difficulty FROM requests", [label]
    )
    return con


def test_easy_work_that_mostly_reasons_gets_a_budget() -> None:
    con = with_difficulty(con_with(REASONING), "easy")
    plan = core.plan(con, policy())
    (r,) = plan.reasoning
    assert plan.classified and r.rule == "OUTCAP-010"
    assert r.easy_medium == 60 and r.hard == 0
    assert r.above_budget == 30
    assert r.reasoning_saved == sum(max(1000 + 10 * i - 1295, 0) for i in range(60))
    core.replay(con, state_of(con), "after")
    assert outputs(con, "after")["r0059"] == 1600 - (1590 - 1295)


def test_a_budget_follows_the_feature_onto_another_model() -> None:
    # an earlier lever (tiering) moved one request: the budget is the call site's setting
    con = with_difficulty(con_with(REASONING), "easy")
    core.plan(con, policy())
    base = state_of(con)
    con.execute(
        f"""CREATE TEMP TABLE routed AS SELECT * REPLACE (CASE WHEN request_id = 'r0059'
            THEN 'gpt-5-nano' ELSE model_key END AS model_key,
            CASE WHEN request_id = 'r0058' THEN 100 ELSE output_tokens END AS output_tokens)
            FROM {base}"""
    )
    core.replay(con, "routed", "after")
    assert outputs(con, "after")["r0059"] == 1600 - (1590 - 1295)
    assert outputs(con, "after")["r0058"] == 0  # a cut larger than the state's output: clamped


def test_hard_work_gets_no_budget() -> None:
    con = with_difficulty(con_with(REASONING), "hard")
    (r,) = core.plan(con, policy()).reasoning
    assert r.rule is None and r.hard == 60


def test_the_provider_minimum_budget_holds() -> None:
    rows = [{**r, "provider": "anthropic", "model": "claude-sonnet-4-5"} for r in REASONING]
    (r,) = core.plan(con_with(rows), policy()).reasoning
    assert r.budget == 1295  # above Anthropic's 1024
    low = [{**r, "reasoning_tokens": 100, "output_tokens": 110} for r in rows]
    (r,) = core.plan(con_with(low), policy()).reasoning
    assert r.budget == 1024 and r.reasoning_saved == 0


def test_the_saving_is_priced_with_the_cost_formula() -> None:
    rows = [{"output_tokens": 100} for _ in range(99)] + [{"output_tokens": 1000}]
    rows.append({"output_tokens": 1000, "model_key": None, "model": "mystery"})
    con = con_with(rows)
    register_prices(con, PRICES)
    core.plan(con, policy(percentile=0.9, range_percentiles=[0.6, 0.999], min_requests=10))
    priced = core.price(con, state_of(con))
    gpt4o_output = PRICES.models["gpt-4o"].prices.output / Decimal(1_000_000)
    assert priced.total == 880 * gpt4o_output
    assert priced.by_cap_group == {("f", None): 880 * gpt4o_output}
    assert priced.unpriced == 1  # the unknown model's cut is counted, not priced at 0
    assert priced.less <= priced.total <= priced.more


def test_a_cap_no_rule_applies_is_priced_but_not_replayed() -> None:
    # 10% of answers are long: the cap would cut 10% of requests, over the rules' 2%
    rows = [{"output_tokens": 100} for _ in range(90)] + [{"output_tokens": 1000}] * 10
    con = con_with(rows)
    register_prices(con, PRICES)
    (g,) = core.plan(con, policy(percentile=0.9, range_percentiles=[0.6, 0.999])).caps
    assert g.cap == 120 and g.truncated == 10 and g.rule is None
    assert core.replay(con, state_of(con), "after") == 0
    priced = core.price(con, "state_base")
    assert priced.by_cap_group[("f", None)] > 0
    assert priced.total == 0 and priced.more == 0


def test_recommendation_rules_read_the_metrics() -> None:
    p = load_policy(RULES)
    (rule,) = [r for r in p.recommendations if r.id == "OUTCAP-002"]
    assert evaluate(parse(rule.when), {"tokens_saved_share": 0.1, "truncated_share": 0.0})


# -- property: the replay over generated traffic ---------------------------------------------------

ROW = st.fixed_dictionaries(
    {
        "feature": st.sampled_from(["a", "b", None]),
        "output_tokens": st.integers(0, 5000) | st.none(),
        "reasoning_tokens": st.integers(0, 5000) | st.none(),
        "max_tokens": st.sampled_from([None, 256]),
        "system_hash": st.sampled_from([None, "s1", "s2"]),
        "model": st.sampled_from(["gpt-5", "gpt-4o"]),
    }
)


def _consistent(row: dict[str, Any]) -> dict[str, Any]:
    out, reasoning = row["output_tokens"], row["reasoning_tokens"]
    if out is not None and reasoning is not None:
        row["reasoning_tokens"] = min(reasoning, out)  # reasoning is a subset of output
    return {**row, "model_key": row["model"]}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, min_size=1, max_size=80), st.sampled_from(["easy", "hard", None]))
def test_replay_never_raises_output(rows: list[dict[str, Any]], label: str | None) -> None:
    con = con_with([_consistent(r) for r in rows])
    if label is not None:
        with_difficulty(con, label)
    register_prices(con, PRICES)
    core.plan(con, policy(min_requests=5))
    base = state_of(con)
    core.replay(con, base, "after")
    before, after = outputs(con, base), outputs(con, "after")
    assert before.keys() == after.keys()
    for rid, out in before.items():
        if out is None:
            assert after[rid] is None
        else:
            assert 0 <= after[rid] <= out  # type: ignore[operator]
    priced = core.price(con, base)
    assert priced.total >= 0 and priced.more >= 0 and priced.less >= 0


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=60))
def test_a_cap_above_every_output_changes_nothing(sizes: list[int]) -> None:
    con = con_with([{"output_tokens": n} for n in sizes])
    # headroom so large that every cap lies above every output; no reasoning logged
    core.plan(con, policy(min_requests=1, headroom=1000.0, min_cap_tokens=4000))
    assert core.replay(con, state_of(con), "after") == 0
    assert outputs(con, "after") == outputs(con, "state_base")


# -- the lever: details, risk, recommendations, per-request caps -----------------------------------


def run_lever(con: Any) -> tuple[Any, Any]:
    from advisor.levers.base import LeverContext, SimOptions, State
    from advisor.levers.output_caps import OutputCapsLever

    register_prices(con, PRICES)
    lever = OutputCapsLever()
    ctx = LeverContext(con, PRICES, RULES, SimOptions())
    lever.prepare(ctx)
    base = State(state_of(con))
    alone = lever.replay(ctx, base, "state_output_caps_alone")
    return alone, lever.describe(ctx, base, alone)


def test_the_lever_reports_caps_with_their_risk_and_the_config_line() -> None:
    loop = " ".join(["Let me know if you need anything else!"] * 300)
    rows = [{"output_tokens": 100 + i % 7, "max_tokens": None} for i in range(200)]
    rows += [{"output_tokens": 3000, "response_hash": "loop"}]
    con = con_with(rows, {"loop": loop})
    alone, found = run_lever(con)
    assert alone.affected_requests == 1
    (cap,) = found.details.features
    assert cap.applied and cap.rule == "OUTCAP-001" and cap.uncapped
    assert cap.parameter == "max_completion_tokens"
    assert cap.tokens_saved == 3000 - cap.cap
    assert found.details.uncapped_features == ["f"]
    assert found.risk.truncated_requests == 1 and found.risk.truncated_features == ["f"]
    assert found.details.range_low.saving <= cap.saving <= found.details.range_high.saving
    ((rid, why),) = [(r.request_id, r.excerpt) for r in found.details.runaways]
    assert rid == "r0200" and why.startswith("Let me know")
    (rec,) = found.recommendations
    assert rec.action.startswith(f"set max_completion_tokens: {cap.cap} on feature f")
    assert rec.saving == cap.saving > 0
    caps = dict(con.execute(f"SELECT * FROM {found.per_request}").fetchall())
    assert len(caps) == 201 and set(caps.values()) == {cap.cap}


def test_the_lever_prices_a_reasoning_budget_only_with_a_difficulty_class() -> None:
    _, found = run_lever(con_with(REASONING))
    (row,) = found.details.reasoning
    assert not row.applied and row.saving > 0
    assert found.details.reasoning_note is not None and "tiering" in found.details.reasoning_note
    assert [r.title for r in found.recommendations if "reasoning" in r.action] == []
    _, found = run_lever(with_difficulty(con_with(REASONING), "easy"))
    (row,) = found.details.reasoning
    assert row.applied and row.setting == "reasoning_effort: low"
    (cap,) = found.details.features  # no max_tokens logged: a safety cap above visible + reasoning
    assert cap.rule == "OUTCAP-003" and cap.setting == cap.cap + 1590  # type: ignore[operator]
    (rec,) = [r for r in found.recommendations if "reasoning" in r.action]
    assert "reasoning_effort: low" in rec.action and rec.saving == row.saving
    assert found.risk.reasoning_cut_requests == 30
