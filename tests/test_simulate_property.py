"""Property tests of `simulate` over generated traffic, for every lever in the registry.

Each example is a small random log (a few dozen requests over priced models and one unpriced,
random token counts and cached counts, features, users, timestamps, stream flags, prompts drawn
from a small pool so prefixes repeat), ingested through the real ingest path and priced as
`analyze` prices it. Then: combined <= baseline; the marginal savings add up to baseline -
combined exactly; no standalone saving is negative; switching a lever off removes exactly its
effect (the run without it is the chain of the others, and the run of it alone is its
standalone saving); the per-request final costs add up to the combined cost, with the unpriced
ones counted. Runs a handful of examples by default; ADVISOR_PROPERTY_EXAMPLES=N runs more.
"""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import anthropic_line, openai_line, write_jsonl
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from advisor import api, baseline, store, tokens
from advisor.levers import registry
from advisor.levers.base import STATE_COLUMNS, LeverContext, SimOptions, State
from advisor.ruleset import default_rules_dir
from advisor.simulate import Simulation, simulate, state_cost

EXAMPLES = int(os.environ.get("ADVISOR_PROPERTY_EXAMPLES", "5"))
PRICED = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5")
UNPRICED = "house-model-x"

# long system prompts (past every provider's minimum cacheable prefix) and short ones
SYSTEMS = (
    "You are a support agent for ACME. Follow the policy below. " + "Policy clause. " * 500,
    "Extract the postal address from the user's text and return it as JSON. " * 150,
    "Classify the ticket as billing, bug or other. Answer with exactly one word.",
)
USERS_TEXT = ("hi", "what is 2+2?", "Summarise: the meeting moved to Tuesday.", "Parse: 1 Main St")

request = st.fixed_dictionaries(
    {
        "model": st.sampled_from((*PRICED, UNPRICED)),
        "prompt": st.one_of(st.integers(1, 4000), st.just(3000)),  # 3000: about the long prompts
        "completion": st.one_of(st.integers(1, 8), st.integers(0, 800)),
        "cached_share": st.sampled_from((None, 0.0, 0.5, 0.9)),
        "system": st.sampled_from(SYSTEMS),
        "user_text": st.sampled_from(USERS_TEXT),
        "feature": st.sampled_from(("chat", "extract", "triage")),
        "user": st.sampled_from(("alice", "bob", "svc-nightly")),
        "minute": st.one_of(st.integers(0, 10), st.integers(0, 600)),  # bursts within a TTL
        "stream": st.booleans(),
    }
)
traffic = st.lists(request, min_size=3, max_size=30)


def _line(i: int, r: dict[str, Any]) -> dict[str, Any]:
    ts = f"2026-10-01T{r['minute'] // 60:02d}:{r['minute'] % 60:02d}:{i % 60:02d}Z"
    cached = None if r["cached_share"] is None else int(r["prompt"] * r["cached_share"])
    envelope = {"user": r["user"], "feature": r["feature"]}
    if r["model"].startswith("claude"):
        line = anthropic_line(
            f"a{i}",
            input_tokens=r["prompt"],
            output_tokens=r["completion"],
            cache_read=cached,
            **envelope,
        )
        line["timestamp"] = ts
        line["request"]["system"] = [{"type": "text", "text": r["system"]}]
        line["request"]["messages"][0]["content"][0]["text"] = r["user_text"]
    else:
        messages = [
            {"role": "system", "content": r["system"]},
            {"role": "user", "content": r["user_text"]},
        ]
        line = openai_line(
            f"o{i}",
            model=r["model"],
            ts=ts,
            prompt=r["prompt"],
            completion=r["completion"],
            cached=cached,
            messages=messages,
            **envelope,
        )
    line["request"]["stream"] = r["stream"]
    return line


def _priced_store(tmp: Path, rows: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    """The store `analyze` would simulate on: ingested, models resolved, token counts filled,
    every request priced."""
    log = write_jsonl(tmp / "log.jsonl", [_line(i, r) for i, r in enumerate(rows)])
    db = tmp / "s.duckdb"
    db.unlink(missing_ok=True)
    api.ingest([str(log)], db)
    con = store.connect(db)
    prices = api.load_price_table()
    baseline.resolve_models(con, prices, {})
    tokens.fill_token_counts(con, {key: m.encoding for key, m in prices.models.items()})
    baseline.price_requests(con, prices)
    return con


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped rules with tiering's confidence threshold lowered to 0.5, so that the small
    generated logs (too few requests for a confident classifier) route some requests too."""
    out = tmp_path_factory.mktemp("rules") / "rules"
    shutil.copytree(default_rules_dir(), out)
    tiers = out / "tiers.yaml"
    text = tiers.read_text(encoding="utf-8")
    assert "  min_confidence: 0.9\n" in text
    tiers.write_text(text.replace("  min_confidence: 0.9\n", "  min_confidence: 0.5\n"))
    return out


def _run(con: duckdb.DuckDBPyConnection, rules: Path, ids: tuple[str, ...] | None) -> Simulation:
    return simulate(_ctx(con, rules, ids))


def _ctx(con: duckdb.DuckDBPyConnection, rules: Path, ids: tuple[str, ...] | None) -> LeverContext:
    return LeverContext(con, api.load_price_table(rules), rules, SimOptions(levers=ids))


def _chain_cost(con: duckdb.DuckDBPyConnection, rules: Path, ids: tuple[str, ...]) -> Decimal:
    """The chain of `ids` replayed by hand (fresh levers, registry order): its priced cost."""
    ctx = _ctx(con, rules, ids)
    state = State("chain_in")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE chain_in AS SELECT "
        + ", ".join(STATE_COLUMNS)
        + " FROM requests"
    )
    for n, lever in enumerate(registry.select(ids)):
        lever.prepare(ctx)
        state = lever.replay(ctx, state, f"chain_{n}").state
    return state_cost(con, state.table)[0]


def _final_costs(con: duckdb.DuckDBPyConnection) -> tuple[Decimal, int]:
    total, unknown = con.execute(
        "SELECT sum(final_cost), count(*) FILTER (WHERE final_cost IS NULL) FROM sim_final"
    ).fetchall()[0]
    return Decimal(total or 0), int(unknown)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=traffic)
@example(  # a burst on one long prompt: caching saves, tiering may route some of it
    rows=[
        {"model": ("gpt-4o", "claude-sonnet-4-5")[i % 2], "prompt": 3000, "completion": 3,
         "cached_share": None, "system": SYSTEMS[0], "user_text": USERS_TEXT[i % 4],
         "feature": "chat", "user": "alice", "minute": i, "stream": False}
        for i in range(12)
    ]
)  # fmt: skip
def test_simulate_properties_hold_on_generated_traffic(
    tmp_path: Path, rules: Path, rows: list[dict[str, Any]]
) -> None:
    con = _priced_store(tmp_path, rows)
    try:
        base_cost, base_unpriced = state_cost(con, "requests")
        full = _run(con, rules, None)
        assert [run.id for run in full.levers] == list(registry.BUILT)
        combined = full.combined
        cost = combined.cost if combined.cost is not None else Decimal(0)
        # combined <= baseline, and the marginal steps add up to it exactly (Decimal)
        assert cost <= base_cost
        assert sum((run.marginal_saving for run in full.levers), Decimal(0)) == base_cost - cost
        assert combined.saving == base_cost - cost
        for run in full.levers:
            assert run.standalone_saving >= 0, run.id
            if run.range is not None:
                assert run.range.low <= run.range.high, run.id
        # the first lever's chained run is its standalone run
        assert full.levers[0].marginal_saving == full.levers[0].standalone_saving
        # decision rows: final costs add up to the combined cost, unknown ones counted
        final, unknown = _final_costs(con)
        assert final == cost
        assert unknown == combined.unpriced_requests
        assert base_unpriced <= len(rows)
        standalone = {run.id: run.standalone_saving for run in full.levers}
        event(f"levers that save: {sorted(i for i, v in standalone.items() if v > 0)}")
        runs: dict[tuple[str, ...], Simulation] = {}
        for lever_id in registry.BUILT:
            others = tuple(i for i in registry.BUILT if i != lever_id)
            # switching a lever off: the run is the chain of the others, nothing more
            if others not in runs:
                runs[others] = _run(con, rules, others)
            without = runs[others]
            assert lever_id not in [run.id for run in without.levers]
            assert (without.combined.cost or Decimal(0)) == _chain_cost(con, rules, others)
            # ... and the lever alone brings exactly its standalone saving
            if (lever_id,) not in runs:
                runs[(lever_id,)] = _run(con, rules, (lever_id,))
            assert runs[(lever_id,)].combined.saving == standalone[lever_id]
    finally:
        con.close()


def test_no_lever_run_is_the_baseline(tmp_path: Path, rules: Path) -> None:
    rows = [
        {"model": m, "prompt": 500, "completion": 50, "cached_share": None,
         "system": SYSTEMS[2], "user_text": "hi", "feature": "chat", "user": "alice",
         "minute": i, "stream": False}
        for i, m in enumerate((*PRICED, UNPRICED))
    ]  # fmt: skip
    con = _priced_store(tmp_path, rows)
    try:
        base_cost, base_unpriced = state_cost(con, "requests")
        sim = _run(con, rules, ())
        assert sim.levers == [] and sim.combined.saving == 0
        assert sim.combined.cost == base_cost and base_unpriced == 1
        assert _final_costs(con) == (base_cost, 1)
    finally:
        con.close()
