"""Chaining the levers: standalone and marginal savings, and the combined counterfactual.

Levers run in the fixed order of `advisor.levers.registry` (DESIGN.md section 1). Each lever is
prepared, replayed on the baseline state (its standalone saving) and described, then replayed on
the previous lever's output (its marginal saving); the last output is the combined
counterfactual. Savings are never summed across levers, and a request that cannot be priced is
counted, never priced at zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import duckdb
from pydantic import BaseModel

from advisor.levers import registry
from advisor.levers import tables as T
from advisor.levers.base import (
    STATE_COLUMNS,
    Findings,
    Lever,
    LeverContext,
    Recommendation,
    SavingRange,
    State,
)
from advisor.pricing import cost_sql

# Each lever's standalone step per request, when asked for (simulate's standalone_steps).
ALONE_TABLE = "sim_alone"
# Told what starts next, for a progress display: each replay of a lever can take a while.
Step = Callable[[str], None]


def state_cost(con: duckdb.DuckDBPyConnection, table: str) -> tuple[Decimal, int]:
    """Total cost of a state over its priced requests, and how many requests it could not price
    (no model, or a model without prices): those are counted, never summed as 0."""
    total, unpriced = con.execute(
        f"""SELECT sum(cost), count(*) FILTER (WHERE cost IS NULL)
            FROM (SELECT {cost_sql("s", "p")} AS cost
                  FROM {table} s LEFT JOIN prices p USING (model_key))"""
    ).fetchall()[0]
    # an empty or wholly unpriced state costs nothing that is known: its unpriced count says so
    return Decimal(total or 0), int(unpriced)


def record_step(
    con: duckdb.DuckDBPyConnection, lever_id: str, before: str, after: str, into: str = "sim_steps"
) -> None:
    """Append to `into` (`sim_steps`) each request whose cost the lever's chained step changed,
    with its cost before and after the step (NULL: unpriced). Summed over a lever's rows,
    cost_before - cost_after (NULL as 0, as state_cost sums) is exactly its marginal saving: the
    action plan splits it by scope."""
    con.execute(
        f"""INSERT INTO {into}
            SELECT b.request_id, ?, b.cost, a.cost
            FROM (SELECT s.request_id, {cost_sql("s", "p")} AS cost
                  FROM {before} s LEFT JOIN prices p USING (model_key)) b
            JOIN (SELECT s.request_id, {cost_sql("s", "p")} AS cost
                  FROM {after} s LEFT JOIN prices p USING (model_key)) a USING (request_id)
            WHERE b.cost IS DISTINCT FROM a.cost""",
        [lever_id],
    )


def per_request_table(lever_id: str) -> str:
    """The store table a lever's per-request decisions are kept in for `export decisions`."""
    return f"lever_{lever_id}"


@dataclass
class LeverRun:
    """One lever's figures: savings over priced requests, and what it reported."""

    id: str
    title: str
    standalone_saving: Decimal
    marginal_saving: Decimal
    affected_requests: int
    unpriced_requests: int
    range: SavingRange | None
    findings: Findings[BaseModel, BaseModel]


@dataclass
class Combined:
    cost: Decimal | None  # None: no request could be priced
    saving: Decimal
    saving_share: float
    unpriced_requests: int


@dataclass
class Simulation:
    levers: list[LeverRun]
    combined: Combined
    recommendations: list[Recommendation]


def rank(recommendations: list[Recommendation]) -> list[Recommendation]:
    """Recommendations as analysis.json lists them, repeats merged (same lever, title and
    action: one entry, savings summed): largest saving first; ties in the levers' order
    (DESIGN.md section 1, advice that is not a lever last), then by title."""
    merged: dict[tuple[str, str, str], Recommendation] = {}
    for r in recommendations:
        key = (r.lever, r.title, r.action)
        seen = merged.get(key)
        merged[key] = (
            r if seen is None else seen.model_copy(update={"saving": seen.saving + r.saving})
        )
    order = {lever_id: i for i, lever_id in enumerate(registry.ALL_IDS)}
    return sorted(
        merged.values(), key=lambda r: (-r.saving, order.get(r.lever, len(order)), r.title)
    )


def simulate(
    ctx: LeverContext,
    levers: list[Lever] | None = None,
    step: Step | None = None,
    standalone_steps: bool = False,
) -> Simulation:
    """Run every lever standalone and chained; persist per-request results for `export decisions`.

    `levers` None: the registry's, as `ctx.options.levers` selects. Writes `sim_final`
    (request_id, final_cost), `sim_steps` (record_step) and `lever_<id>` per-request tables in
    the store; with `standalone_steps`, also `sim_alone`: each lever's standalone step per
    request, as record_step writes it (a sample's intervals need the savings per unit).
    """
    con = ctx.con
    if levers is None:
        levers = registry.select(ctx.options.levers)
    # a lever that does not run this time leaves no per-request table from an earlier analysis
    # of the same store: `export decisions` shows NULL (did not run), never stale decisions
    for lever_id in registry.ALL_IDS:
        con.execute(f"DROP TABLE IF EXISTS {per_request_table(lever_id)}")
    con.execute(
        """CREATE OR REPLACE TABLE sim_steps (request_id VARCHAR, lever VARCHAR,
           cost_before DECIMAL(38, 18), cost_after DECIMAL(38, 18))"""
    )
    if standalone_steps:
        con.execute(f"CREATE OR REPLACE TABLE {ALONE_TABLE} AS FROM sim_steps LIMIT 0")
    else:  # nor a sampled run's steps of an earlier analysis of the same store
        con.execute(f"DROP TABLE IF EXISTS {ALONE_TABLE}")
    cols = ", ".join(STATE_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {T.STATE_BASE} AS SELECT {cols} FROM requests")
    base = State(T.STATE_BASE)
    base_cost, base_unpriced = state_cost(con, base.table)
    requests = int(con.execute(f"SELECT count(*) FROM {T.STATE_BASE}").fetchall()[0][0])
    runs: list[LeverRun] = []
    recommendations: list[Recommendation] = []
    prev, prev_cost, prev_unpriced = base, base_cost, base_unpriced
    try:
        for lever in levers:
            if step is not None:
                step(f"{lever.title}: replaying the log")
            lever.prepare(ctx)
            alone = lever.replay(ctx, base, T.state_table(lever.id, "alone"))
            alone_cost, alone_unpriced = state_cost(con, alone.state.table)
            findings = lever.describe(ctx, base, alone)
            if standalone_steps:
                record_step(con, lever.id, base.table, alone.state.table, into=ALONE_TABLE)
            if findings.per_request is not None:
                con.execute(
                    f"CREATE OR REPLACE TABLE {per_request_table(lever.id)} AS "
                    f"SELECT * FROM {findings.per_request}"
                )
            if prev == base:  # nothing changed before this lever: chained run = standalone
                chain, chain_cost, chain_unpriced = alone, alone_cost, alone_unpriced
            else:
                if step is not None:
                    step(f"{lever.title}: replaying after the levers before it")
                chain = lever.replay(ctx, prev, T.state_table(lever.id, "chain"))
                chain_cost, chain_unpriced = state_cost(con, chain.state.table)
            record_step(con, lever.id, prev.table, chain.state.table)
            T.drop_working_tables(con, lever.id)
            runs.append(
                LeverRun(
                    id=lever.id,
                    title=lever.title,
                    standalone_saving=base_cost - alone_cost,
                    marginal_saving=prev_cost - chain_cost,
                    affected_requests=alone.affected_requests,
                    unpriced_requests=alone_unpriced,
                    range=findings.range,
                    findings=findings,
                )
            )
            recommendations += findings.recommendations
            prev, prev_cost, prev_unpriced = chain.state, chain_cost, chain_unpriced
        con.execute(
            f"""CREATE OR REPLACE TABLE sim_final AS
                SELECT s.request_id, {cost_sql("s", "p")} AS final_cost
                FROM {prev.table} s LEFT JOIN prices p USING (model_key)"""
        )
    finally:
        T.drop_all(con, tuple(lever.id for lever in levers))
    saving = base_cost - prev_cost
    recommendations = rank(recommendations)
    return Simulation(
        levers=runs,
        combined=Combined(
            cost=prev_cost if requests > prev_unpriced else None,
            saving=saving,
            saving_share=float(saving / base_cost) if base_cost else 0.0,
            unpriced_requests=prev_unpriced,
        ),
        recommendations=recommendations,
    )
