"""Chaining the levers: standalone and marginal savings, and the combined counterfactual.

Levers run in the fixed order of DESIGN.md section 1. Each lever runs once on the baseline state
(its standalone saving) and once on the previous lever's output (its marginal saving); the last
output is the combined counterfactual. Savings are never summed across levers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import duckdb

from advisor import analysis as A
from advisor.levers import STATE_COLUMNS, Lever, LeverContext
from advisor.pricing import cost_sql
from advisor.store import scalar

# Told what starts next, for a progress display: each replay of a lever can take a while.
Step = Callable[[str], None]

# DESIGN.md section 1: tiering -> trimming and output caps -> caching -> batching.
LEVER_ORDER = ("tiering", "trimming", "output_caps", "caching", "batching")


def available_levers() -> list[Lever]:
    """The levers this build implements, in simulation order."""
    levers = []
    for name in LEVER_ORDER:
        try:
            module = importlib.import_module(f"advisor.levers.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"advisor.levers.{name}":
                raise
            continue
        levers.append(module.LEVER)
    return levers


def state_cost(con: duckdb.DuckDBPyConnection, state: str) -> Decimal:
    """Total cost of a state over priced requests (unpriced rows stay NULL and are not summed)."""
    total = scalar(
        con, f"SELECT sum({cost_sql('s', 'p')}) FROM {state} s JOIN prices p USING (model_key)"
    )
    return Decimal(0) if total is None else Decimal(total)


@dataclass
class Simulation:
    levers: list[A.Lever]
    combined: A.Combined
    recommendations: list[A.Recommendation]


def simulate(
    ctx: LeverContext, levers: list[Lever] | None = None, step: Step | None = None
) -> Simulation:
    """Run every lever standalone and chained; persist per-request results for `export decisions`.

    Writes `sim_final` (request_id, final_cost) and `lever_<id>` per-request tables in the store.
    """
    con = ctx.con
    cols = ", ".join(STATE_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE state_base AS SELECT {cols} FROM requests")
    base_cost = state_cost(con, "state_base")
    results: list[A.Lever] = []
    recommendations: list[A.Recommendation] = []
    prev, prev_cost = "state_base", base_cost
    for lever in available_levers() if levers is None else levers:
        if step is not None:
            step(f"{lever.title}: replaying the log")
        alone = lever.apply(ctx, "state_base", f"state_{lever.id}_alone", standalone=True)
        alone_cost = state_cost(con, alone.state)
        if prev == "state_base":  # nothing changed before this lever: chained run = standalone
            chain, chain_cost = alone, alone_cost
        else:
            if step is not None:
                step(f"{lever.title}: replaying after the levers before it")
            chain = lever.apply(ctx, prev, f"state_{lever.id}_chain", standalone=False)
            chain_cost = state_cost(con, chain.state)
        if alone.per_request is not None:
            con.execute(
                f"CREATE OR REPLACE TABLE lever_{lever.id} AS SELECT * FROM {alone.per_request}"
            )
        results.append(
            A.Lever(
                id=lever.id,
                title=lever.title,
                standalone_saving=base_cost - alone_cost,
                marginal_saving=prev_cost - chain_cost,
                affected_requests=alone.affected_requests,
                risk=alone.risk,
                details=alone.details,
            )
        )
        for rec in alone.details.get("recommendations", []):
            recommendations.append(A.Recommendation.model_validate({"lever": lever.id, **rec}))
        prev, prev_cost = chain.state, chain_cost
    con.execute(
        f"""CREATE OR REPLACE TABLE sim_final AS
            SELECT s.request_id, {cost_sql("s", "p")} AS final_cost
            FROM {prev} s LEFT JOIN prices p USING (model_key)"""
    )
    saving = base_cost - prev_cost
    recommendations.sort(key=lambda r: (-r.saving, r.lever, r.title))
    return Simulation(
        levers=results,
        combined=A.Combined(
            cost=prev_cost,
            saving=saving,
            saving_share=float(saving / base_cost) if base_cost else 0.0,
        ),
        recommendations=recommendations,
    )
