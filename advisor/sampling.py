"""Sampled lever replay for logs too large to replay whole: draw, scale and bound the savings.

The baseline (totals and the breakdowns by model, feature, user and day), the coverage, the
guardrails, the anomalies and the streaming advice stay exact over every stored request. Only
the levers' replay (`simulate`) runs on a sample, and their savings are scaled back to the log.

The sampling unit is one hash key that nests everything a lever's replay depends on:
**(template, UTC day)**, where the template is the request's feature (else its system prompt),
and a session belongs wholly to the unit of its first request. So a sampled unit holds
- every request of a prefix/template group over a whole day, in time order: the caching replay
  sees the group's true request rate within any TTL of an hour or less (what the provider keeps
  warm), and the batching bursts of a feature's day are whole;
- every call of a session: conversation history and its cache reads stay intact;
- the feature's traffic on whole days: output-cap percentiles and tiering see real requests.
Accounts are not part of the key: caches are shared across accounts by default
(rules/caching.yaml `per_account`), so a finer key would thin a shared cache. What a unit cuts:
a cache kept warm across midnight (24 h retention) and a session's continuation into a day whose
other traffic was not drawn; both change one request per template and day, a small edge effect.
Guardrail windows need no sample: the limits and anomalies are computed over every request.

A rule's minimum request count over the whole period (output caps: a cap or a reasoning budget
needs 50 requests of a feature) compares with the sample's count scaled by the fraction
(`SimOptions.sample_fraction`), so the sample decides as the full log would; a threshold the
levers learn that way and do not scale yet (the difficulty vocabulary's document frequency) is
an error the intervals do not state.

The same log, fraction and seed draw the same sample: the same input gives a byte-identical
analysis.json.

Design: stratified by feature (requests without one form one stratum). Within each stratum the
units are ranked by a stable hash (md5 of the key and a seed) and the first `fraction` of them
drawn, two at the least (so the spread can be estimated; a stratum of one or two units goes
whole). Strata keep a small feature's saving from hanging on whether one of its days was drawn.

Estimation: each saving S (a lever's standalone and marginal saving, the combined saving, an
action-plan row) is a separate ratio estimate, S = sum_h s_h / x_h * X_h over strata h, where
s_h is the stratum's sampled saving, x_h its sampled baseline cost and X_h its exact baseline
cost over the whole log. Its 95 % interval is S +/- 1.96 sqrt(V), V = sum_h (1 - n_h/N_h)
k_h^2 n_h/(n_h-1) sum_i (s_i - R_h x_i)^2 over the stratum's n_h drawn units of N_h (k_h =
X_h / x_h, R_h = s_h / x_h): the linearised variance of a ratio estimator under simple random
sampling of units. Every figure scales the same per-stratum savings, so the levers' marginal
savings and the action plan's rows still add up to the combined saving (rounding to 1e-10 goes
to the plan's `other`). The intervals state sampling error only, not the levers' assumptions
(their `range`); a lever whose policy the sample itself decides (a percentile, a classifier)
also varies by what was drawn, which the spread between units covers only in part.

Figures scaled: levers' savings and ranges, the combined cost and saving, recommendations and the
action plan. Left as measured on the sample, and said so: the levers' details, request counts
of the levers and the plan, and the unit economics.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext

import duckdb

from advisor import analysis as A
from advisor.action_plan import NO_FEATURE, month
from advisor.errors import InputError
from advisor.levers.base import LeverContext
from advisor.simulate import ALONE_TABLE, Simulation, Step, simulate

# The schema the levers read the sampled requests from (first in search_path), always named with
# the store's catalog: a store file called sampled.duckdb is a catalog of that name.
SCHEMA = "_advisor_sample"
UNITS = "_sample_units"  # request_id -> stratum, unit, over the sampled requests
STRATA = "_sample_strata"  # per stratum: units, units drawn, exact and sampled baseline cost
# The store tables a sample narrows to its requests; every other table is read whole.
NARROWED = ("requests", "messages", "costs", "texts")
UNIT_DESCRIPTION = (
    "template (feature, else system prompt) x UTC day, drawn within each feature; sessions whole"
)
METHOD = (
    "separate ratio estimator per feature (sampled saving / sampled baseline cost x exact "
    "baseline cost); 95% intervals from the between-unit variance (sampling error only)"
)
# Above this many requests `analyze` samples by itself: the scale bar is a 1M-request
# log in 2 GiB and time linear in the log, so 20M requests is where a full replay takes hours
# on a laptop; a sample of AUTO_TARGET requests keeps intervals narrow (thousands of units).
AUTO_ABOVE = 20_000_000
AUTO_TARGET = 5_000_000
Z95 = Decimal("1.959963984540054")
PLACES = Decimal("1e-10")
SCALE_PLACES = Decimal("1e-12")


@dataclass(frozen=True)
class SamplePlan:
    """What to replay: a fraction of units, and whether the size of the log chose it."""

    fraction: float
    automatic: bool = False
    seed: int = 0  # another seed draws another sample of the same size (repeated-draw checks)


def parse_fraction(text: str) -> float:
    """'5%', '0.05' or '100%' as a fraction in (0, 1]; anything else is an InputError."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise InputError(
            f"--sample {text!r} is not a fraction of the log",
            hint="give a percentage in (0, 100], e.g. --sample 5% (100% replays everything)",
        )
    return value


def plan(requests: int, fraction: float | None, seed: int = 0) -> SamplePlan | None:
    """The sample to replay: the fraction asked for (1.0: none), else automatic above AUTO_ABOVE
    requests; None: replay every request."""
    if fraction is not None:
        return None if fraction >= 1 else SamplePlan(fraction, seed=seed)
    if requests > AUTO_ABOVE:
        return SamplePlan(max(round(AUTO_TARGET / requests, 4), 0.0001), True, seed)
    return None


@dataclass(frozen=True)
class Drawn:
    strata: int
    units: int
    units_sampled: int
    requests_sampled: int


def draw(con: duckdb.DuckDBPyConnection, sample: SamplePlan) -> Drawn:
    """Build schema `sampled` holding the NARROWED tables for the drawn units, UNITS (request ->
    stratum, unit) and STRATA (per stratum: units, units drawn, exact and sampled baseline cost).
    Needs `costs` (the baseline priced)."""
    template = "coalesce(feature, system_hash, '')"
    day = "coalesce(strftime(ts, '%Y-%m-%d'), '')"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _sample_all AS
            WITH keyed AS (
              SELECT request_id, session_id, ts, coalesce(feature, '') AS stratum,
                     coalesce(feature, '') || '|' || {template} || '|' || {day} AS unit
              FROM requests
            ), sessions AS (  -- a session goes whole with the unit of its first call
              SELECT session_id, first(stratum ORDER BY ts, request_id) AS stratum,
                     first(unit ORDER BY ts, request_id) AS unit
              FROM keyed WHERE session_id IS NOT NULL GROUP BY session_id)
            SELECT k.request_id, coalesce(s.stratum, k.stratum) AS stratum,
                   coalesce(s.unit, k.unit) AS unit
            FROM keyed k LEFT JOIN sessions s USING (session_id)"""
    )
    # within each stratum, the units first by a stable hash: a fixed share of them (two at the
    # least, so that its spread can be estimated) is drawn
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _sample_keys AS
            SELECT stratum, unit, rk <= least(n, greatest(2, round(n * {float(sample.fraction)})))
                   AS kept
            FROM (SELECT stratum, unit, count(*) OVER (PARTITION BY stratum) AS n,
                         row_number() OVER (PARTITION BY stratum
                             ORDER BY md5(unit || '#{int(sample.seed)}'), unit) AS rk
                  FROM (SELECT DISTINCT stratum, unit FROM _sample_all))"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {UNITS} AS
            SELECT a.request_id, a.stratum, a.unit
            FROM _sample_all a JOIN _sample_keys k USING (stratum, unit) WHERE k.kept"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {STRATA} AS
            SELECT a.stratum, count(DISTINCT a.unit) AS units,
                   count(DISTINCT a.unit) FILTER (WHERE k.kept) AS units_sampled,
                   coalesce(sum(c.baseline_cost), 0) AS exact_cost,
                   coalesce(sum(c.baseline_cost) FILTER (WHERE k.kept), 0) AS sampled_cost
            FROM _sample_all a JOIN _sample_keys k USING (stratum, unit)
            LEFT JOIN costs c USING (request_id)
            GROUP BY 1"""
    )
    strata, units, kept = con.execute(
        f"SELECT count(*), sum(units), sum(units_sampled) FROM {STRATA}"
    ).fetchall()[0]
    con.execute("DROP TABLE _sample_all; DROP TABLE _sample_keys")
    smp = sample_schema(con)
    con.execute(f"DROP SCHEMA IF EXISTS {smp} CASCADE; CREATE SCHEMA {smp}")
    con.execute(f"CREATE TABLE {smp}.requests AS SELECT * FROM requests SEMI JOIN {UNITS} "
                "USING (request_id)")  # fmt: skip
    for table in ("messages", "costs"):
        con.execute(
            f"CREATE TABLE {smp}.{table} AS SELECT * FROM {table} "
            f"SEMI JOIN {smp}.requests USING (request_id)"
        )
    con.execute(
        f"""CREATE TABLE {smp}.texts AS SELECT * FROM texts SEMI JOIN (
              SELECT text_hash FROM {smp}.messages
              UNION SELECT unnest([prompt_hash, system_hash, response_hash]) FROM {smp}.requests
            ) USING (text_hash)"""
    )
    n = int(con.execute(f"SELECT count(*) FROM {smp}.requests").fetchall()[0][0])
    return Drawn(int(strata), int(units or 0), int(kept or 0), n)


def replay(
    ctx: LeverContext, sample: SamplePlan, step: Step | None = None
) -> tuple[Simulation, Drawn]:
    """Draw the sample and run the levers on it (`simulate`, with the standalone steps the
    intervals need); its tables land in the store as an exact run's do."""
    if step is not None:
        step(f"drawing a {sample.fraction:.2%} sample of whole templates and sessions")
    drawn = draw(ctx.con, sample)
    options = replace(ctx.options, sample_fraction=sample.fraction)
    with narrowed(ctx.con):
        sim = simulate(replace(ctx, options=options), step=step, standalone_steps=True)
    return sim, drawn


@contextmanager
def narrowed(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """While open, unqualified names find the sampled tables first (the levers read `requests`,
    `messages`... by name). On leaving, the tables the levers made (sim_final, lever_<id>...)
    move to the main schema, where the exports read them, and the sampled schema goes."""
    before = str(con.execute("SELECT current_setting('search_path')").fetchall()[0][0])
    smp, main = sample_schema(con), sample_schema(con, "main")
    con.execute(f"SET search_path = {_literal(f'{smp},{main}')}")
    try:
        yield
    finally:
        if before:
            con.execute(f"SET search_path = {_literal(before)}")
        else:
            con.execute("RESET search_path")
    made = con.execute(
        """SELECT table_name FROM information_schema.tables
           WHERE table_catalog = current_database() AND table_schema = ?
             AND table_type = 'BASE TABLE' ORDER BY 1""",
        [SCHEMA],
    ).fetchall()
    for (name,) in made:
        if name not in NARROWED:
            con.execute(f"CREATE OR REPLACE TABLE {main}.{name} AS SELECT * FROM {smp}.{name}")
    con.execute(f"DROP SCHEMA {smp} CASCADE")


def sample_schema(con: duckdb.DuckDBPyConnection, schema: str = SCHEMA) -> str:
    """`schema` of the store's catalog, quoted: never confused with a catalog of its name."""
    catalog = str(con.execute("SELECT current_database()").fetchall()[0][0])
    return '"{}".{}'.format(catalog.replace('"', '""'), schema)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Figure:
    """One saving: the sample's figure, its estimate over the log and its 95 % interval."""

    sampled: Decimal
    estimate: Decimal
    low: Decimal
    high: Decimal

    def interval(self) -> A.Interval:
        return A.Interval(low=self.low, high=self.high)


@dataclass(frozen=True)
class Stratum:
    units: int
    units_sampled: int
    exact_cost: Decimal
    sampled_cost: Decimal

    @property
    def scale(self) -> Decimal:
        """Exact over sampled baseline cost; by units where the drawn units cost nothing."""
        if self.sampled_cost:
            return self.exact_cost / self.sampled_cost
        return Decimal(self.units) / self.units_sampled if self.units_sampled else Decimal(0)


class Estimator:
    """Scales the sample's savings to the log and bounds them (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.strata = {
            h: Stratum(int(n), int(m), Decimal(big), Decimal(small))
            for h, n, m, big, small in con.execute(
                f"""SELECT stratum, units, units_sampled, exact_cost, sampled_cost
                    FROM {STRATA} ORDER BY 1"""
            ).fetchall()
        }
        self.exact_cost = sum((h.exact_cost for h in self.strata.values()), Decimal(0))
        self.sampled_cost = sum((h.sampled_cost for h in self.strata.values()), Decimal(0))
        # figures with no split by stratum (ranges, recommendations) scale by the overall ratio
        self.scale = (
            (self.exact_cost / self.sampled_cost).quantize(SCALE_PLACES)
            if self.sampled_cost
            else Decimal(0)
        )
        self.unit_stratum: dict[str, str] = {}
        self.x: dict[str, Decimal] = {}
        for h, unit, x in con.execute(
            f"""SELECT u.stratum, u.unit, coalesce(sum(c.baseline_cost), 0)
                FROM {UNITS} u LEFT JOIN costs c USING (request_id) GROUP BY ALL ORDER BY 1, 2"""
        ).fetchall():
            self.unit_stratum[unit], self.x[unit] = h, Decimal(x)
        self.x2: dict[str, Decimal] = defaultdict(Decimal)
        with localcontext() as ctx:
            ctx.prec = 80  # sums of squares, differenced: no digit lost to cancellation
            for unit, x in self.x.items():
                self.x2[self.unit_stratum[unit]] += x * x
        self.per_unit = self._per_unit(con)

    @staticmethod
    def _per_unit(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Decimal]]:
        """figure key -> unit -> the unit's saving: each lever's marginal step (`sim_steps`),
        its standalone step (ALONE_TABLE), the combined saving and each action-plan row."""
        delta = "sum(coalesce(s.cost_before, 0) - coalesce(s.cost_after, 0))"
        rows = con.execute(
            f"""SELECT 'marginal:' || s.lever, u.unit, {delta}
                FROM sim_steps s JOIN {UNITS} u USING (request_id) GROUP BY ALL
                UNION ALL
                SELECT 'standalone:' || s.lever, u.unit, {delta}
                FROM {ALONE_TABLE} s JOIN {UNITS} u USING (request_id) GROUP BY ALL
                UNION ALL
                SELECT 'combined', u.unit, {delta}
                FROM sim_steps s JOIN {UNITS} u USING (request_id) GROUP BY ALL
                UNION ALL
                SELECT 'row:' || s.lever || ':' || coalesce(r.feature, '{NO_FEATURE}'), u.unit,
                       {delta}
                FROM sim_steps s JOIN {UNITS} u USING (request_id)
                JOIN requests r USING (request_id) GROUP BY ALL
                ORDER BY 1, 2"""
        ).fetchall()
        out: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for key, unit, y in rows:
            out[key][unit] = Decimal(y)
        return out

    def scaled(self, amount: Decimal) -> Decimal:
        return (amount * self.scale).quantize(PLACES)

    def figure(self, key: str, estimate: Decimal | None = None) -> Figure:
        """The figure `key` of _per_unit; `estimate` overrides the scaled sum (a sum of scaled
        parts, kept so that parts add up)."""
        y: dict[str, Decimal] = defaultdict(Decimal)
        y2: dict[str, Decimal] = defaultdict(Decimal)
        xy: dict[str, Decimal] = defaultdict(Decimal)
        with localcontext() as ctx:
            ctx.prec = 80
            for unit, v in self.per_unit.get(key, {}).items():
                h = self.unit_stratum[unit]
                y[h] += v
                y2[h] += v * v
                xy[h] += v * self.x[unit]
            total, variance = Decimal(0), Decimal(0)
            for h, ys in y.items():
                st = self.strata[h]
                k = st.scale
                total += k * ys
                n = st.units_sampled
                if n < 2 or n >= st.units:
                    continue  # a stratum drawn whole has no sampling error
                r = ys / st.sampled_cost if st.sampled_cost else Decimal(0)
                residual = max(y2[h] - 2 * r * xy[h] + r * r * self.x2[h], Decimal(0))
                variance += (1 - Decimal(n) / st.units) * k * k * n / (n - 1) * residual
            sd = variance.sqrt()
        mid = total.quantize(PLACES) if estimate is None else estimate
        half = (Z95 * sd).quantize(PLACES)
        return Figure(sum(y.values(), Decimal(0)), mid, mid - half, mid + half)


def estimate(
    con: duckdb.DuckDBPyConnection,
    analysis: A.Analysis,
    sample: SamplePlan,
    drawn: Drawn,
) -> A.Analysis:
    """`analysis` (its levers replayed on the drawn sample) with the savings scaled to the whole
    log, their intervals, and the `sample` block that says so."""
    exact = analysis.baseline.cost or Decimal(0)
    est = Estimator(con)
    levers, intervals = [], []
    for lever in analysis.levers:
        alone = est.figure(f"standalone:{lever.id}")
        marginal = est.figure(f"marginal:{lever.id}")
        rng = lever.range
        if rng is not None:
            rng = rng.model_copy(update={"low": est.scaled(rng.low), "high": est.scaled(rng.high)})
        levers.append(
            lever.model_copy(
                update={
                    "standalone_saving": alone.estimate,
                    "marginal_saving": marginal.estimate,
                    "range": rng,
                }
            )
        )
        intervals.append(
            A.LeverInterval(id=lever.id, standalone=alone.interval(), marginal=marginal.interval())
        )
    saving = sum((lever.marginal_saving for lever in levers), Decimal(0))
    combined_figure = est.figure("combined", saving)
    combined = analysis.combined.model_copy(
        update={
            "saving": saving,
            "cost": None if analysis.combined.cost is None else exact - saving,
            "saving_share": float(saving / exact) if exact else 0.0,
        }
    )
    plan_, row_intervals = _scaled_plan(est, analysis.action_plan, saving, analysis.period.days)
    recommendations = [
        r.model_copy(update={"saving": est.scaled(r.saving)}) for r in analysis.recommendations
    ]
    block = A.Sample(
        fraction=sample.fraction,
        automatic=sample.automatic,
        auto_above=AUTO_ABOVE,
        unit=UNIT_DESCRIPTION,
        strata=drawn.strata,
        units=drawn.units,
        units_sampled=drawn.units_sampled,
        requests=analysis.coverage.requests,
        requests_sampled=drawn.requests_sampled,
        baseline_cost_sampled=est.sampled_cost,
        scale=float(est.scale),
        method=METHOD,
        levers=intervals,
        combined=combined_figure.interval(),
        action_plan=row_intervals,
        notes=_notes(drawn),
    )
    return analysis.model_copy(
        update={
            "levers": levers,
            "combined": combined,
            "action_plan": plan_,
            "recommendations": recommendations,
            "sample": block,
        }
    )


def _scaled_plan(
    est: Estimator, plan_: A.ActionPlan, total: Decimal, days: float
) -> tuple[A.ActionPlan, list[A.RowInterval]]:
    """The plan's rows scaled; `other` takes what rounding each row leaves, so rows + other is
    the combined saving exactly, as in an exact run."""
    rows, intervals = [], []
    for row in plan_.rows:
        fig = est.figure(f"row:{row.id}")
        rows.append(
            row.model_copy(
                update={"saving": fig.estimate, "saving_per_month": month(fig.estimate, days)}
            )
        )
        intervals.append(A.RowInterval(id=row.id, low=fig.low, high=fig.high))
    scaled = plan_.model_copy(
        update={
            "rows": rows,
            "other": total - sum((r.saving for r in rows), Decimal(0)),
            "total": total,
            "total_per_month": month(total, days),
            "minimum": est.scaled(plan_.minimum),
        }
    )
    return scaled, intervals


def _notes(drawn: Drawn) -> list[str]:
    return [
        "baseline, coverage, guardrails, anomalies and streaming advice: exact, every request",
        "lever savings, ranges, recommendations, combined and the action plan: scaled estimates",
        f"lever details, request counts of levers and the plan, unit economics: the "
        f"{drawn.requests_sampled:,} sampled requests as measured",
    ]
