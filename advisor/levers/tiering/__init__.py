"""The tiering lever: route the easy majority to a cheaper tier of the same model family.

Replays the log with every request the difficulty classifier calls easy (with at least the
policy's confidence) re-priced on the cheapest tier of its ladder that serves easy work
(rules/tiers.yaml). Routed requests keep their input; their output length is kept, or scaled by
the target's typical length for that template where the log holds both models on it. Their
cache counts are reset: the caching lever, which runs after this one, re-simulates the cache on
the new model and charges its warm-up.

Besides the new state, it reports a threshold sweep (the savings-vs-share-routed frontier), the
per-feature and per-template trade-off, and it keeps the router (ordered rules, guards, the
classifier) in the store for `advisor export router`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, Literal

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from advisor import __version__, store
from advisor.difficulty import classify
from advisor.errors import RuleError
from advisor.levers import tables as T
from advisor.levers.base import (
    STATE_COLUMNS,
    Findings,
    LeverContext,
    Recommendation,
    Replayed,
    SavingRange,
    State,
)
from advisor.levers.tiering import calibration as Q
from advisor.levers.tiering.models import (
    Calibration,
    DifficultySummary,
    MeasuredGroup,
    MeasuredQuality,
    OperatingPoint,
    RouteRule,
    SweepPoint,
    TemplateTradeOff,
    TieringCoverage,
    TieringDetails,
    TieringRisk,
    TradeOff,
)
from advisor.money import to_json
from advisor.pricing import PriceTable, cost_sql, rates, register_prices
from advisor.redact import excerpt
from advisor.report import fmt
from advisor.routing import CLASSES, MICRO
from advisor.ruleset import load_model, rule_files

META_ROUTER = "tiering.router"
META_FINGERPRINT = "difficulty.fingerprint"
META_CALIBRATION = "difficulty.heldout_calibration"
SWEEP = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999)
MIN_LENGTH_EVIDENCE = 20  # ok requests per (template, model) before its typical length is used
LENGTH_RATIO_BOUNDS = (0.5, 1.5)
MIN_STATIC_RULE = 20  # a feature/template gets its own route rule from this many requests
TABLE_ROWS = 25
SEED = 0

Difficulty = Literal["easy", "medium", "hard"]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Rule):
    models: tuple[str, ...] = Field(min_length=1)
    serves: tuple[Difficulty, ...] = ()


class Ladder(_Rule):
    id: str
    title: str
    source: str | None = None
    rationale: str
    cross_provider: bool = False
    enabled: bool = True
    tiers: tuple[Tier, ...] = Field(min_length=2)


class Policy(_Rule):
    id: str
    title: str
    route: tuple[Difficulty, ...] = Field(min_length=1)
    min_confidence: float = Field(ge=0.5, le=1.0)
    rationale: str


class TiersFile(_Rule):
    schema_version: Literal[1]
    kind: Literal["tiers"]
    policy: Policy | None = None
    ladders: tuple[Ladder, ...]


@dataclass(frozen=True)
class Tiers:
    policy: Policy
    ladders: tuple[Ladder, ...]
    targets: dict[str, dict[str, str]]  # source key -> difficulty -> target key
    ranks: dict[str, tuple[str, int]]  # model key -> (ladder id, rank; 0 = top)
    warnings: tuple[str, ...]


def load_tiers(rules_dir: Path, prices: PriceTable) -> Tiers:
    """Ladders and policy from every `kind: tiers` file; targets checked against the prices."""
    policy: Policy | None = None
    ladders: list[Ladder] = []
    for path in rule_files(rules_dir, "tiers"):
        data = load_model(path, TiersFile)
        policy = data.policy or policy
        ladders += [ladder for ladder in data.ladders if ladder.enabled]
    if policy is None:
        raise RuleError(f"no tiering policy in {rules_dir}", hint="add `policy:` to tiers.yaml")
    ranks: dict[str, tuple[str, int]] = {}
    targets: dict[str, dict[str, str]] = {}
    warnings: list[str] = []
    for ladder in ladders:
        for rank, tier in enumerate(ladder.tiers):
            for model in tier.models:
                prices.ensure(model)  # a ladder may name a community snapshot's model
                if model in ranks and not ladder.cross_provider:
                    raise RuleError(f"{model} is in ladders {ranks[model][0]} and {ladder.id}")
                ranks.setdefault(model, (ladder.id, rank))
        for rank, tier in enumerate(ladder.tiers):
            for source in tier.models:
                for difficulty in CLASSES:
                    below = [t for t in ladder.tiers[rank + 1 :] if difficulty in t.serves]
                    if not below:
                        continue
                    target = below[-1].models[0]  # the cheapest tier that serves it
                    problem = _cheaper(prices, source, target)
                    if problem:
                        if source in prices.models:
                            warnings.append(f"{ladder.id}: {source} -> {target} skipped: {problem}")
                        continue
                    by = targets.setdefault(source, {})
                    if difficulty not in by or _list_price(prices, target) < _list_price(
                        prices, by[difficulty]
                    ):  # an opted-in cross-provider ladder wins where it is cheaper
                        by[difficulty] = target
    for key, entry in prices.models.items():  # a variant (Azure's gpt-4o) climbs its base's ladder
        if entry.base in ranks and key not in ranks:
            ranks[key] = ranks[entry.base]
            for difficulty, target in targets.get(entry.base, {}).items():
                if _cheaper(prices, key, target) is None:
                    targets.setdefault(key, {})[difficulty] = target
    return Tiers(policy, tuple(ladders), targets, ranks, tuple(dict.fromkeys(warnings)))


def _list_price(prices: PriceTable, key: str) -> Decimal:
    r = rates(prices.models[key])
    return r.input + r.output


def _cheaper(prices: PriceTable, source: str, target: str) -> str | None:
    if source not in prices.models:
        return "source not priced"
    if target not in prices.models:
        return "target not priced"
    s, t = rates(prices.models[source]), rates(prices.models[target])
    if t.input > s.input or t.output > s.output:
        return "target is not cheaper"
    return None


def _fingerprint(con: duckdb.DuckDBPyConnection, rules_dir: Path, tiers: Tiers) -> str:
    digest = hashlib.md5()
    for path in [*rule_files(rules_dir, "difficulty")]:
        digest.update(path.read_bytes())
    digest.update(json.dumps(sorted(tiers.ranks.items())).encode())
    row = con.execute(
        """SELECT count(*), md5(string_agg(request_id || ':' || coalesce(model_key, ''), ','
                                           ORDER BY request_id)) FROM requests"""
    ).fetchall()[0]
    digest.update(f"{row[0]}:{row[1]}:{SEED}:{__version__}".encode())
    return digest.hexdigest()


def ensure_classified(ctx: LeverContext, tiers: Tiers) -> dict[str, Any] | None:
    """Classify the store unless the `difficulty` table is current; return the summary if run."""
    con = ctx.con
    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    fingerprint = _fingerprint(con, ctx.rules_dir, tiers)
    if "difficulty" in tables and store.get_meta(con, META_FINGERPRINT) == fingerprint:
        return None
    result = classify(con, ctx.rules_dir, tiers=tiers.ranks, seed=SEED)
    store.set_meta(con, META_FINGERPRINT, fingerprint)
    store.set_meta(con, "difficulty.summary", json.dumps(result.summary(), default=str))
    heldout = Q.reliability(
        result.checked,
        "confidence of the classifier's class vs. the log's own (rule) label, on held-out "
        "requests it was neither trained nor tempered on: agreement with heuristic labels, "
        "not measured quality",
        "agreed with the label",
    )
    store.set_meta(con, META_CALIBRATION, heldout.model_dump_json() if heldout else "")
    return result.summary()


def _share(part: float, whole: float) -> float:
    return round(part / whole, 6) if whole else 0.0


class TieringLever:
    id: ClassVar[str] = "tiering"
    title: ClassVar[str] = "Model tiering: route easy requests to a cheaper tier"

    def prepare(self, ctx: LeverContext) -> None:
        self.tiers = load_tiers(ctx.rules_dir, ctx.prices)
        ensure_classified(ctx, self.tiers)
        register_prices(ctx.con, ctx.prices, T.TIER_PRICES)
        _targets_table(ctx.con, self.tiers)
        self.threshold = round(self.tiers.policy.min_confidence * MICRO)
        self.quality = Q.load_quality_policy(ctx.rules_dir)
        self.measured = Q.measured_groups(ctx.con, self.quality) if Q.has_results(ctx.con) else None
        Q.hold_back(ctx.con, self.measured or [])

    def replay(self, ctx: LeverContext, state: State, out: str) -> Replayed:
        con = ctx.con
        route_in = ", ".join(f"'{d}'" for d in self.tiers.policy.route)
        _candidates(con, state.table, self.threshold, route_in)
        cols = ", ".join(
            {
                "model_key": "CASE WHEN c.routed THEN c.target ELSE s.model_key END AS model_key",
                "output_tokens": "CASE WHEN c.routed THEN c.new_output ELSE s.output_tokens END "
                "AS output_tokens",
                **{
                    k: f"CASE WHEN c.routed THEN 0 ELSE s.{k} END AS {k}"
                    for k in ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")
                },
            }.get(col, f"s.{col}")
            for col in STATE_COLUMNS
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {out} AS
                SELECT {cols} FROM {state.table} s
                LEFT JOIN {T.TIER_CANDIDATES} c USING (request_id)"""
        )
        routed = store.scalar(
            con, f"SELECT count(*) FILTER (WHERE routed) FROM {T.TIER_CANDIDATES}"
        )
        # routing keeps the prompt: a later lever reads the same messages and texts
        return Replayed(State(out, state.messages, state.texts), int(routed or 0))

    def describe(
        self, ctx: LeverContext, base: State, alone: Replayed
    ) -> Findings[TieringDetails, TieringRisk]:
        """From the standalone replay's candidates: the router and the audit trail describe the
        logged traffic only."""
        con, tiers = ctx.con, self.tiers
        rules = _route_rules(con, tiers, self.threshold)
        details, risk = _report(con, tiers, self.threshold, rules, self.measured, self.quality)
        _decisions(con)
        keys = {k for k, by in tiers.targets.items() for k in (k, *by.values())}
        router = {
            "policy": tiers.policy.model_dump(mode="json"),
            "rules": [{**r, "expected_saving": to_json(r["expected_saving"])} for r in rules],
            "targets": tiers.targets,
            "ladders": [lad.id for lad in tiers.ladders],
            "guards": Q.guards(self.measured or []),
            "providers": {
                k: ctx.prices.models[k].provider for k in sorted(keys) if k in ctx.prices.models
            },
        }
        store.set_meta(con, META_ROUTER, json.dumps(router))
        op = details.operating_point
        recommendations = (
            [
                Recommendation(
                    title=f"Route {op.requests_routed} high-confidence easy requests to "
                    "cheaper tiers",
                    lever=self.id,
                    saving=op.saving,
                    action="check quality with `advisor export evalset`, then deploy "
                    "`advisor export router --format litellm` (or portkey / generic)",
                )
            ]
            if op.requests_routed
            else []
        )
        return Findings(
            details, risk, recommendations, "tiering_decisions", _threshold_range(details)
        )


def _threshold_range(details: TieringDetails) -> SavingRange | None:
    """The saving over the confidence thresholds the frontier sweeps (the operating point's
    included): a lower threshold routes more requests, and risks more misroutes."""
    points = [*details.frontier, details.operating_point]
    if len(points) < 2:
        return None
    low, high = min(points, key=lambda p: p.saving), max(points, key=lambda p: p.saving)
    thresholds = sorted({p.min_confidence for p in points})
    return SavingRange(
        low=low.saving,
        high=high.saving,
        assumption=f"routing confidence threshold {thresholds[0]:g} to {thresholds[-1]:g} "
        f"(policy {details.operating_point.min_confidence:g})",
    )


def _targets_table(con: duckdb.DuckDBPyConnection, tiers: Tiers) -> None:
    rows = sorted((s, d, t) for s, by in tiers.targets.items() for d, t in by.items())
    con.execute("SELECT 1").fetchall()  # settle any half-read result: register() refuses otherwise
    con.register(
        "_tier_targets_arrow",
        pa.table(
            {
                "model_key": pa.array([r[0] for r in rows], pa.string()),
                "difficulty": pa.array([r[1] for r in rows], pa.string()),
                "target": pa.array([r[2] for r in rows], pa.string()),
            }
        ),
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T.TIER_TARGETS} AS SELECT * FROM _tier_targets_arrow"
    )
    con.unregister("_tier_targets_arrow")


def _candidates(con: duckdb.DuckDBPyConnection, state: str, threshold: int, route_in: str) -> None:
    """`_tier_cand`: per request of the state, its class, target, re-priced cost and saving."""
    lo, hi = LENGTH_RATIO_BOUNDS
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {T.TIER_LENGTHS} AS
            SELECT d.template_id, r.model_key, median(r.output_tokens) AS typical
            FROM requests r JOIN difficulty d USING (request_id)
            WHERE r.status = 'ok' AND d.template_id IS NOT NULL AND r.output_tokens IS NOT NULL
            GROUP BY ALL HAVING count(*) >= {MIN_LENGTH_EVIDENCE}"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {T.TIER_CANDIDATES} AS
        WITH c AS (
            SELECT s.*, d.difficulty, d.confidence_micro, d.confidence, d.source, d.template_id,
                   d.feature, t.target,
                   least({hi}, greatest({lo}, coalesce(lt.typical / nullif(ls.typical, 0), 1.0)))
                     AS length_ratio,
                   lt.typical IS NOT NULL AND ls.typical IS NOT NULL AS length_scaled,
                   {Q.held_sql("d")} AS held
            FROM {state} s
            JOIN difficulty d USING (request_id)
            LEFT JOIN {T.TIER_TARGETS} t
              ON t.model_key = s.model_key AND t.difficulty = d.difficulty
            LEFT JOIN {T.TIER_LENGTHS} ls
              ON ls.template_id = d.template_id AND ls.model_key = s.model_key
            LEFT JOIN {T.TIER_LENGTHS} lt
              ON lt.template_id = d.template_id AND lt.model_key = t.target
        ), priced AS (
            SELECT c.*,
                   CAST(round(c.output_tokens * c.length_ratio) AS BIGINT) AS new_output,
                   c.target IS NOT NULL AND c.source = 'classifier'
                     AND c.difficulty IN ({route_in}) AS routable
            FROM c
        )
        SELECT p.request_id, p.model_key, p.difficulty, p.confidence_micro, p.confidence,
               p.source, p.template_id, p.feature, p.target, p.length_ratio, p.length_scaled,
               p.new_output, p.routable AND NOT p.held AS eligible,
               p.routable AND p.held AS held_back,
               p.routable AND NOT p.held AND p.confidence_micro >= {threshold} AS routed,
               {cost_sql("p", "po")} AS old_cost,
               CASE WHEN p.routable THEN {cost_sql("n", "pn")} END AS new_cost
        FROM priced p
        LEFT JOIN {T.TIER_PRICES} po ON po.model_key = p.model_key
        LEFT JOIN (SELECT request_id, input_tokens, 0 AS cache_read_tokens,
                          0 AS cache_write_tokens, 0 AS cache_write_1h_tokens,
                          new_output AS output_tokens, service_tier FROM priced) n
               USING (request_id)
        LEFT JOIN {T.TIER_PRICES} pn ON pn.model_key = p.target"""
    )


def _route_rules(
    con: duckdb.DuckDBPyConnection, tiers: Tiers, threshold: int
) -> list[dict[str, Any]]:
    """Ordered match rules that reproduce the decisions: whole features, then whole templates,
    whose every request moves to one target (cheap to match in a gateway), then the classifier."""
    found: list[dict[str, Any]] = []
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {T.TIER_STATIC}
            (kind VARCHAR, value VARCHAR, model_key VARCHAR)"""
    )
    for kind in ("feature", "template_id"):
        rows = con.execute(
            f"""SELECT c.{kind}, c.model_key, any_value(c.target), count(*),
                       sum(c.old_cost - c.new_cost)
                FROM {T.TIER_CANDIDATES} c LEFT JOIN {T.TIER_STATIC} s
                  ON s.kind = 'feature' AND s.value = c.feature AND s.model_key = c.model_key
                WHERE c.{kind} IS NOT NULL AND c.model_key IS NOT NULL
                GROUP BY ALL
                HAVING count(*) >= {MIN_STATIC_RULE} AND bool_and(c.routed)
                   AND count(DISTINCT c.target) = 1 AND bool_or(s.value IS NULL)
                ORDER BY 5 DESC, 1, 2"""
        ).fetchall()
        for value, model, target, n, saving in rows:
            found.append(
                {
                    "match": {kind: value, "model": model},
                    "route_to": target,
                    "fallback": model,
                    "requests": n,
                    "expected_saving": Decimal(saving),
                }
            )
        if rows:
            con.executemany(
                f"INSERT INTO {T.TIER_STATIC} VALUES (?, ?, ?)", [(kind, r[0], r[1]) for r in rows]
            )
    for difficulty in tiers.policy.route:
        for model, target, n, saving in con.execute(
            # routed requests are priced on both models: a sum over none of them is 0, not unknown
            # the rule stays for new traffic, but counts only what no earlier rule matched first
            f"""WITH c AS (
                   SELECT c.*, routed AND NOT EXISTS (
                            SELECT 1 FROM {T.TIER_STATIC} s WHERE s.model_key = c.model_key
                              AND s.value = CASE s.kind WHEN 'feature' THEN c.feature
                                                        ELSE c.template_id END) AS counted
                   FROM {T.TIER_CANDIDATES} c WHERE eligible AND difficulty = ?)
               SELECT model_key, target, count(*) FILTER (WHERE counted),
                      coalesce(sum(old_cost - new_cost) FILTER (WHERE counted), 0)
               FROM c GROUP BY ALL ORDER BY 1""",
            [difficulty],
        ).fetchall():
            found.append(
                {
                    "match": {
                        "model": model,
                        "difficulty": difficulty,
                        "min_confidence": threshold / MICRO,
                    },
                    "route_to": target,
                    "fallback": model,
                    "requests": n,
                    "expected_saving": Decimal(saving),
                }
            )
    return [{"id": f"ROUTE-{i:03d}", **rule} for i, rule in enumerate(found, start=1)]


def _decisions(con: duckdb.DuckDBPyConnection) -> None:
    """`tiering_decisions`: the per-request audit trail (request_id, difficulty, confidence,
    routed_model, ...) that `export decisions` and `export evalset` read."""
    con.execute(
        f"""CREATE OR REPLACE TABLE tiering_decisions AS
           SELECT request_id, difficulty, confidence,
                  CASE WHEN routed THEN target ELSE model_key END AS routed_model,
                  routed, model_key, target AS candidate_model, source, template_id, feature,
                  old_cost AS cost_before, CASE WHEN routed THEN new_cost ELSE old_cost END
                    AS cost_after, length_ratio
           FROM {T.TIER_CANDIDATES} ORDER BY request_id"""
    )


def _sweep(
    con: duckdb.DuckDBPyConnection, total: int, base: Decimal, interval: float
) -> list[SweepPoint]:
    aggs = []
    for t in SWEEP:
        cut = f"eligible AND confidence_micro >= {round(t * MICRO)}"
        aggs += _sweep_aggs(cut)
    row = con.execute(f"SELECT {', '.join(aggs)} FROM {T.TIER_CANDIDATES}").fetchall()[0]
    k = len(_sweep_aggs(""))
    return [_point(t, row[k * i : k * i + k], total, base, interval) for i, t in enumerate(SWEEP)]


def _sweep_aggs(cut: str) -> list[str]:
    # an empty cut routes nothing: its saving is zero, not unknown (routed requests are priced)
    return [
        f"count(*) FILTER (WHERE {cut})",
        f"coalesce(sum(old_cost - new_cost) FILTER (WHERE {cut}), 0)",
        f"coalesce(sum(1 - confidence) FILTER (WHERE {cut}), 0)",
        f"coalesce(sum(confidence * (1 - confidence)) FILTER (WHERE {cut}), 0)",
    ]


def _point(threshold: float, row: Any, total: int, base: Decimal, interval: float) -> SweepPoint:
    n, saving, misroutes = int(row[0]), Decimal(row[1]), float(row[2])
    low, high = Q.misroute_interval(misroutes, float(row[3]), interval)
    return SweepPoint(
        min_confidence=threshold,
        requests_routed=n,
        share_routed=_share(n, total),
        saving=saving,
        saving_share=float(saving / base) if base else 0.0,
        expected_misrouted=round(misroutes, 2),
        expected_misrouted_low=low,
        expected_misrouted_high=high,
    )


def _table(con: duckdb.DuckDBPyConnection, key: str) -> list[dict[str, Any]]:
    excerpt_sql = "NULL"
    join = ""
    if key == "template_id":
        join = """LEFT JOIN (SELECT d.template_id, arg_min(t.text, r.request_id) AS text
                             FROM difficulty d JOIN requests r USING (request_id)
                             JOIN texts t ON t.text_hash = r.system_hash
                             GROUP BY d.template_id) x ON x.template_id = c.template_id"""
        excerpt_sql = "min(x.text)"
    rows = con.execute(
        f"""SELECT c.{key}, min(c.feature), c.model_key, min(c.target) FILTER (WHERE c.routed),
                   count(*),
                   count(*) FILTER (WHERE c.routed),
                   coalesce(sum(c.old_cost - c.new_cost) FILTER (WHERE c.routed), 0),
                   avg(c.confidence), avg(1 - c.confidence) FILTER (WHERE c.routed),
                   count(*) FILTER (WHERE c.difficulty = 'easy'),
                   count(*) FILTER (WHERE c.difficulty = 'medium'),
                   count(*) FILTER (WHERE c.difficulty = 'hard'),
                   count(*) FILTER (WHERE c.routed AND c.length_scaled), {excerpt_sql}
            FROM {T.TIER_CANDIDATES} c {join}
            GROUP BY c.{key}, c.model_key
            ORDER BY 7 DESC, 5 DESC, 1 NULLS LAST, 3 NULLS LAST LIMIT {TABLE_ROWS}"""
    ).fetchall()
    out = []
    for r in rows:
        entry = {
            "feature": r[1],
            "model": r[2],
            "target": r[3],
            "requests": r[4],
            "share_routable": _share(r[5], r[4]),
            "saving": Decimal(r[6]),
            "mean_confidence": round(float(r[7]), 4) if r[7] is not None else None,
            "risk": round(float(r[8]), 4) if r[8] is not None else None,
            "easy": r[9],
            "medium": r[10],
            "hard": r[11],
            "output": "scaled" if r[12] else "kept",
        }
        if key == "template_id":
            entry |= {"template_id": r[0], "prompt": excerpt(r[13], 80)}
        else:
            entry["feature"] = r[0]
        out.append(entry)
    return out


def _report(
    con: duckdb.DuckDBPyConnection,
    tiers: Tiers,
    threshold: int,
    rules: list[dict[str, Any]],
    measured: list[MeasuredGroup] | None,
    policy: Q.QualityPolicy,
) -> tuple[TieringDetails, TieringRisk]:
    total, base, unpriced, guarded, no_ladder = con.execute(
        f"""SELECT count(*), coalesce(sum(old_cost), 0), count(*) FILTER (WHERE model_key IS NULL),
                  count(*) FILTER (WHERE source = 'guard'),
                  count(*) FILTER (WHERE model_key IS NOT NULL AND difficulty = 'easy'
                                   AND target IS NULL)
           FROM {T.TIER_CANDIDATES}"""
    ).fetchall()[0]
    base = Decimal(base)
    frontier = _sweep(con, total, base, policy.interval)
    at = [p for p in frontier if round(p.min_confidence * MICRO) == threshold]
    if at:
        point = at[0]
    else:
        cut = f"eligible AND confidence_micro >= {threshold}"
        row = con.execute(f"SELECT {', '.join(_sweep_aggs(cut))} FROM {T.TIER_CANDIDATES}")
        point = _point(threshold / MICRO, row.fetchall()[0], total, base, policy.interval)
    monotone = all(
        a.requests_routed >= b.requests_routed and a.saving >= b.saving
        for a, b in pairwise(frontier)
    )
    lower = [p for p in frontier if p.min_confidence < tiers.policy.min_confidence]
    step = lower[-1] if lower else None
    quality = (
        _measured_quality(con, point, threshold, total, measured, policy)
        if measured is not None
        else None
    )
    why = (
        f"At this operating point {fmt.plural(point.requests_routed, 'request')} "
        f"({fmt.pct(point.share_routed)}) move to a cheaper tier, saving "
        f"{fmt.money(point.saving)} ({fmt.pct(point.saving_share)} of the baseline). "
        + (
            f"Quality {quality.summary}. "
            if quality
            else "Quality not measured yet: check it with `advisor export evalset`, then "
            "`advisor tiering calibrate`. "
        )
        + tiers.policy.rationale.strip()
    )
    if step:
        why += (
            f" Lowering the threshold to {step.min_confidence:.0%} would move "
            f"{fmt.count(step.requests_routed - point.requests_routed)} more requests for "
            f"{fmt.money(step.saving - point.saving)} more."
        )
    flags = con.execute(
        f"""SELECT count(*) FILTER (WHERE r.feedback < 0),
                  count(*) FILTER (WHERE r.status = 'error'),
                  count(*) FILTER (WHERE r.finish_reason IN ('length', 'max_tokens')),
                  min(c.confidence), count(*) FILTER (WHERE c.new_cost > c.old_cost)
           FROM {T.TIER_CANDIDATES} c JOIN requests r USING (request_id) WHERE c.routed"""
    ).fetchall()[0]
    summary_raw = store.get_meta(con, "difficulty.summary")
    risk = TieringRisk(
        expected_misrouted=point.expected_misrouted,
        expected_misrouted_low=point.expected_misrouted_low,
        expected_misrouted_high=point.expected_misrouted_high,
        misroute_interval=policy.interval,
        expected_misrouted_share=_share(point.expected_misrouted, point.requests_routed),
        routed_with_negative_feedback=flags[0],
        routed_that_failed=flags[1],
        routed_that_were_cut_off=flags[2],
        lowest_routed_confidence=flags[3],
        # e.g. a prompt cached on the source model, billed uncached here: the caching lever,
        # which runs next, re-simulates the cache on the target
        routed_costlier_until_cache_warms=flags[4],
        note="expected_misrouted = sum of (1 - confidence) over routed requests: the "
        "classifier's own estimate, not evidence (it learns from heuristic labels); its interval "
        "is only the spread it would have if every confidence were exact; "
        + (
            "the measured figure, with its interval, is details.measured_quality"
            if quality
            else "measure quality with `advisor export evalset` and `advisor tiering calibrate` "
            "before switching"
        ),
    )
    details = TieringDetails(
        operating_point=OperatingPoint(
            **point.model_dump(),
            route=list(tiers.policy.route),
            policy=tiers.policy.id,
            why=why,
        ),
        frontier=frontier,
        frontier_monotone=monotone,
        coverage=TieringCoverage(
            requests=total, unpriced=unpriced, guarded=guarded, easy_without_cheaper_tier=no_ladder
        ),
        by_feature=[TradeOff(**row) for row in _table(con, "feature")],
        by_template=[TemplateTradeOff(**row) for row in _table(con, "template_id")],
        route_rules=[RouteRule(**{k: v for k, v in r.items() if k != "fallback"}) for r in rules],
        ladders=[lad.id for lad in tiers.ladders],
        difficulty=DifficultySummary.model_validate_json(summary_raw) if summary_raw else None,
        warnings=list(tiers.warnings),
        measured_quality=quality,
        calibration=[c for c in (_heldout_calibration(con), _measured_calibration(con)) if c],
    )
    return details, risk


def _measured_quality(
    con: duckdb.DuckDBPyConnection,
    point: SweepPoint,
    threshold: int,
    total: int,
    groups: list[MeasuredGroup],
    policy: Q.QualityPolicy,
) -> MeasuredQuality:
    """The measured results against the operating point: pass rate, what the held-back groups
    took off routing, and the misroutes the measured failure rate implies, with its interval."""
    results = Q.RESULTS_TABLE
    source, errored, stored = con.execute(
        f"SELECT any_value(source), coalesce(max(errored), 0), count(*) FROM {results}"
    ).fetchall()[0]
    n, k = con.execute(
        f"""SELECT count(*), count(*) FILTER (WHERE q.passed)
            FROM {results} q JOIN difficulty d USING (request_id)"""
    ).fetchall()[0]
    cut = f"(eligible OR held_back) AND confidence_micro >= {threshold}"
    before, saving_before = con.execute(
        f"""SELECT count(*) FILTER (WHERE {cut}),
                   coalesce(sum(old_cost - new_cost) FILTER (WHERE {cut}), 0)
            FROM {T.TIER_CANDIDATES}"""
    ).fetchall()[0]
    # the failure rate of the measured requests that are still routed
    rn, rk = con.execute(
        f"""SELECT count(*), count(*) FILTER (WHERE q.passed)
            FROM {results} q JOIN {T.TIER_CANDIDATES} c USING (request_id) WHERE c.routed"""
    ).fetchall()[0]
    low, high = Q.wilson(k, n, policy.interval)
    misroutes: tuple[float | None, ...] = (None, None, None)
    if rn:
        pass_low, pass_high = Q.wilson(rk, rn, policy.interval)
        routed = point.requests_routed
        misroutes = tuple(
            round(routed * rate, 2) for rate in ((rn - rk) / rn, 1 - pass_high, 1 - pass_low)
        )
    share_before = _share(before, total)
    summary = f"measured on {fmt.plural(n, 'request')}: {fmt.count(k)} passed; " + (
        f"routed share adjusted from {fmt.pct(share_before)} to {fmt.pct(point.share_routed)}"
        if before != point.requests_routed
        else f"routed share unchanged at {fmt.pct(point.share_routed)}"
    )
    if misroutes[0] is not None:
        summary += (
            f"; expected misroutes {fmt.number(misroutes[0])} "
            f"({fmt.number(misroutes[1])} to {fmt.number(misroutes[2])}, "
            f"{policy.interval:.0%} interval)"
        )
    return MeasuredQuality(
        source=str(source or ""),
        requests=n,
        passed=k,
        pass_rate=round(k / n, 6) if n else 0.0,
        pass_low=low,
        pass_high=high,
        unmatched=int(stored) - int(n),
        errored=int(errored),
        requests_routed_before=int(before),
        share_routed_before=share_before,
        requests_routed=point.requests_routed,
        share_routed=point.share_routed,
        saving_before=Decimal(saving_before),
        saving=point.saving,
        expected_misrouted=misroutes[0],
        expected_misrouted_low=misroutes[1],
        expected_misrouted_high=misroutes[2],
        groups=groups,
        summary=summary,
    )


def _heldout_calibration(con: duckdb.DuckDBPyConnection) -> Calibration | None:
    """Reliability of the classifier's confidence against the log's own labels on the held-out
    rows it neither trained nor was tempered on (kept with the classification)."""
    raw = store.get_meta(con, META_CALIBRATION)
    return Calibration.model_validate_json(raw) if raw else None


def _measured_calibration(con: duckdb.DuckDBPyConnection) -> Any:
    """Reliability of the classifier's confidence against the measured verdicts: a held-out set
    by construction (the classifier never sees a pass or a fail)."""
    if not Q.has_results(con):
        return None
    pairs = con.execute(
        f"""SELECT c.confidence, q.passed FROM {Q.RESULTS_TABLE} q
            JOIN {T.TIER_CANDIDATES} c USING (request_id)
            WHERE c.source = 'classifier' ORDER BY c.request_id"""
    ).fetchall()
    return Q.reliability(
        [(float(c), bool(ok)) for c, ok in pairs],
        "confidence of the classifier's class vs. the measured pass on the proposed model "
        "(evaluation-set results, never seen in training)",
        "passed",
    )
