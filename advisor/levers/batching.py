"""The batching lever: traffic nobody waits on, re-priced at the provider's batch rate.

Each feature is measured over the whole log in SQL (streaming share, unattended share, bursts,
busiest hour, days, latency) and the eligibility rules of rules/batching.yaml run on that row:
strict rules decide the priced figure, strict and lenient together the upper end of its range.
The replay moves an eligible feature's requests that do not stream, are not already at the batch
or flex tier, and run on a model with batch prices, to `service_tier = 'batch'`; pricing
(advisor.pricing.rates) then applies the provider's batch rates and their stacking with cached
input. Nothing else in the request changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from advisor.conditions import (
    FeatureType,
    sql_literal,
    to_sql,
)
from advisor.levers import tables as T
from advisor.levers.base import (
    Findings,
    LeverContext,
    LeverResultBase,
    Recommendation,
    Replayed,
    SavingRange,
    State,
)
from advisor.money import Model, Money, Share
from advisor.pricing import KINDS, PriceTable, cost_sql, rates
from advisor.report import fmt
from advisor.rule_model import ConditionRule
from advisor.ruleset import load_model

RULES_FILE = "batching.yaml"
Level = Literal["strict", "lenient"]
ALREADY = ("batch", "flex")  # tiers already discounted: never counted again


# The features a feature row carries (rules/batching.yaml documents each).
FEATURE_TYPES: dict[str, FeatureType] = {
    "offline": "bool",
    "requests": "number",
    "streaming_share": "number",
    "non_streaming_share": "number",
    "unattended_share": "number",
    "human_users": "number",
    "burst_share": "number",
    "top_hour_share": "number",
    "days": "number",
    "p50_latency_ms": "number",
}
USER_FEATURES: dict[str, FeatureType] = {"user_id": "string"}


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Burst(_Rule):
    window_seconds: int = Field(gt=0)
    min_requests: int = Field(ge=2)


class StreamDefault(_Rule):
    """Formats whose logs carry the request body: there, no stream flag means stream=false."""

    formats: tuple[str, ...]
    source: str


class ServiceUser(ConditionRule):
    """Which user ids are a service or system identity (a condition over `user_id`)."""

    FEATURES = USER_FEATURES


class EligibilityRule(ConditionRule):
    FEATURES = FEATURE_TYPES
    id: str = Field(pattern=r"^BATCH-\d{3}$")
    level: Level
    deprecated: bool = False


class BatchApi(_Rule):
    title: str
    action: str = Field(pattern=r"\{feature\}")
    source: str


class BatchingRules(_Rule):
    schema_version: Literal[1]
    kind: Literal["batching"]
    title: str
    burst: Burst
    stream_default: StreamDefault
    service_user: ServiceUser
    rules: tuple[EligibilityRule, ...] = Field(min_length=1)
    apis: dict[str, BatchApi]

    @model_validator(mode="after")
    def _unique(self) -> BatchingRules:
        ids = [r.id for r in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError("rule ids must be unique")
        if not any(r.level == "strict" and not r.deprecated for r in self.rules):
            raise ValueError("at least one active strict rule is needed (it decides the figure)")
        return self

    def active(self, level: Level) -> list[EligibilityRule]:
        """The rules that make a feature eligible at `level` (strict rules count for lenient)."""
        levels = ("strict",) if level == "strict" else ("strict", "lenient")
        return [r for r in self.rules if not r.deprecated and r.level in levels]


def load_rules(rules_dir: Path) -> BatchingRules:
    return load_model(rules_dir / RULES_FILE, BatchingRules)


def stream_sql(rules: BatchingRules, alias: str = "") -> str:
    """Whether a request streamed: its logged flag, else false in a format that logs the request
    body (the APIs' default), else NULL (unknown)."""
    a = f"{alias}." if alias else ""
    formats = rules.stream_default.formats
    if not formats:
        return f"{a}stream"
    return f"coalesce({a}stream, CASE WHEN {a}source_format IN {_in_list(formats)} THEN FALSE END)"


def batch_models(prices: PriceTable) -> list[str]:
    """Model keys a request can be moved to the batch tier on: the model lists batch prices, its
    provider does not say batch is unsupported, and no batch rate exceeds the standard one (so
    the move never raises a cost, whatever a price file says)."""
    keys = []
    for key, model in sorted(prices.models.items()):
        provider = prices.providers.get(model.provider or "")
        if model.prices.batch_input is None or (
            provider is not None and provider.batch is not None and not provider.batch.supported
        ):
            continue
        longs = (False, True) if model.prices.long_context else (False,)
        if all(
            getattr(rates(model, "batch", long), kind)
            <= getattr(rates(model, "default", long), kind)
            for long in longs
            for kind in KINDS
        ):
            keys.append(key)
    return keys


def _in_list(values: Iterable[str]) -> str:
    items = [sql_literal(v) for v in values]
    return f"({', '.join(items)})" if items else "(NULL)"


def measure_features(
    con: duckdb.DuckDBPyConnection,
    rules: BatchingRules,
    offline: Sequence[str] = (),
    requests: str = "requests",
) -> None:
    """Write T.BATCH_FEATURES (one row per logged feature: its facts, matched rules, eligibility)
    and T.BATCH_ELIGIBLE (request_id, strict, lenient: the feature's eligibility, for every request
    of an eligible feature that does not stream). Requests without a feature are not measured:
    no action could name them."""
    service = to_sql(rules.service_user.condition, lambda _name: "lower(user_id)")
    burst = rules.burst
    matched = ", ".join(
        f"CASE WHEN {to_sql(r.condition)} THEN {sql_literal(r.id)} END"
        for r in rules.rules
        if not r.deprecated
    )

    def eligible(level: Level) -> str:
        return " OR ".join(to_sql(r.condition) for r in rules.active(level)) or "FALSE"

    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {T.BATCH_FEATURES} AS
        WITH facts AS (
            SELECT request_id, feature, {stream_sql(rules)} AS stream, latency_ms, ts,
                   user_id IS NULL OR {service} AS unattended,
                   CASE WHEN user_id IS NOT NULL AND NOT {service} THEN user_id END AS human,
                   CASE WHEN ts IS NOT NULL THEN count(*) OVER (
                       PARTITION BY feature, account_id, user_id, ts IS NULL ORDER BY epoch(ts)
                       RANGE BETWEEN {burst.window_seconds} PRECEDING
                             AND {burst.window_seconds} FOLLOWING) END AS nearby
            FROM {requests} WHERE feature IS NOT NULL
        ),
        hours AS (
            SELECT feature, hour(ts) AS hour, count(*) AS n,
                   row_number() OVER (PARTITION BY feature ORDER BY count(*) DESC, hour(ts)) AS rank
            FROM facts WHERE ts IS NOT NULL GROUP BY feature, hour(ts)
        ),
        top AS (
            SELECT feature, list(hour ORDER BY rank) AS top_hours,
                   max(n) FILTER (WHERE rank = 1) AS top_n
            FROM hours WHERE rank <= 3 GROUP BY feature
        ),
        agg AS (
            SELECT f.feature,
                   count(*) AS requests,
                   count(*) FILTER (WHERE stream) AS streaming_requests,
                   count(*) FILTER (WHERE stream) / count(*) AS streaming_share,
                   count(*) FILTER (WHERE NOT stream) / count(*) AS non_streaming_share,
                   count(*) FILTER (WHERE unattended) / count(*) AS unattended_share,
                   count(DISTINCT human) AS human_users,
                   count(*) FILTER (WHERE nearby >= {burst.min_requests}) / count(*) AS burst_share,
                   coalesce(max(nearby), 0) AS peak_burst_requests,
                   count(DISTINCT CAST(ts AS DATE)) AS days,
                   quantile_cont(latency_ms, 0.5) AS p50_latency_ms,
                   {f"f.feature IN {_in_list(offline)}" if offline else "FALSE"} AS offline
            FROM facts f GROUP BY f.feature
        ),
        row AS (
            SELECT agg.*, coalesce(top.top_hours, []) AS top_hours,
                   coalesce(top.top_n / agg.requests, 0.0) AS top_hour_share
            FROM agg LEFT JOIN top USING (feature)
        )
        SELECT *, list_filter([{matched}], lambda x: x IS NOT NULL) AS rules,
               {eligible("strict")} AS eligible_strict,
               {eligible("lenient")} AS eligible_lenient
        FROM row
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {T.BATCH_ELIGIBLE} AS
        SELECT r.request_id, f.eligible_strict AS strict, f.eligible_lenient AS lenient
        FROM {requests} r JOIN {T.BATCH_FEATURES} f USING (feature)
        WHERE f.eligible_lenient AND {stream_sql(rules, "r")} IS NOT TRUE
        """
    )


def replay_sql(state: str, out: str, models: Sequence[str], level: Level = "strict") -> str:
    """SQL writing state `out` from `state`: the eligible requests (T.BATCH_ELIGIBLE at `level`)
    on a batch-capable model and not already at a discounted tier move to the batch tier."""
    return f"""
        CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT s.* REPLACE (
            CASE WHEN s.request_id IN (SELECT request_id FROM {T.BATCH_ELIGIBLE} WHERE {level})
                  AND s.model_key IN {_in_list(models)}
                  AND coalesce(s.service_tier, 'default') NOT IN {_in_list(ALREADY)}
                 THEN 'batch' ELSE s.service_tier END AS service_tier)
        FROM {state} s
    """


@dataclass(frozen=True)
class FeatureSaving:
    """What moving one feature's eligible requests at one level saves, per provider."""

    feature: str
    provider: str | None
    moved: int  # requests re-priced at the batch tier
    unpriced: int  # eligible requests on an unpriced model (saving unknown)
    unsupported: int  # eligible requests on a model without batch prices
    already: int  # requests of the feature already at the batch or flex tier
    cost: Decimal  # the moved requests' cost before
    saving: Decimal


def feature_savings(
    con: duckdb.DuckDBPyConnection,
    state: str,
    replayed: str,
    level: Level,
    requests: str = "requests",
    prices: str = "prices",
) -> list[FeatureSaving]:
    """Per (feature eligible at `level`, provider): what the replay `replayed` of `state` moved
    to the batch tier and saved, priced with cost_sql against the registered price table."""
    before, after = cost_sql("s", "p"), cost_sql("a", "p")
    rows = con.execute(
        f"""
        WITH j AS (
            SELECT r.feature, p.provider, p.model_key IS NULL AS unpriced,
                   coalesce(s.service_tier, 'default') IN {_in_list(ALREADY)} AS already,
                   s.service_tier IS DISTINCT FROM a.service_tier AS moved,
                   s.request_id IN (SELECT request_id FROM {T.BATCH_ELIGIBLE} WHERE {level})
                       AS eligible,
                   {before} AS before, {after} AS after
            FROM {state} s JOIN {replayed} a USING (request_id)
            JOIN {requests} r USING (request_id)
            JOIN {T.BATCH_FEATURES} f ON f.feature = r.feature AND f.eligible_{level}
            LEFT JOIN {prices} p ON p.model_key = s.model_key
        )
        SELECT feature, provider,
               count(*) FILTER (WHERE moved),
               count(*) FILTER (WHERE eligible AND unpriced AND NOT already),
               count(*) FILTER (WHERE eligible AND NOT moved AND NOT unpriced AND NOT already),
               count(*) FILTER (WHERE already),
               coalesce(sum(before) FILTER (WHERE moved), 0),
               coalesce(sum(before - after) FILTER (WHERE moved), 0)
        FROM j GROUP BY feature, provider ORDER BY feature, provider NULLS LAST
        """
    ).fetchall()
    return [
        FeatureSaving(f, provider, moved, unpriced, unsupported, already, Decimal(c), Decimal(s))
        for f, provider, moved, unpriced, unsupported, already, c, s in rows
    ]


def unknown_offline(con: duckdb.DuckDBPyConnection, offline: Sequence[str]) -> list[str]:
    """Features named with --offline-feature that the log never holds (said, never ignored)."""
    seen = {row[0] for row in con.execute(f"SELECT feature FROM {T.BATCH_FEATURES}").fetchall()}
    return sorted(set(offline) - seen)


# --- analysis.json: levers[id=batching] ------------------------------------------------------


class Evidence(Model):
    """Why a feature looks like traffic nobody waits on (the facts its rules matched)."""

    offline: bool = Field(description="named with --offline-feature")
    non_streaming_share: Share
    streaming_share: Share
    unattended_share: Share = Field(description="service/system users or no user id")
    human_users: int
    burst_share: Share = Field(description="share of requests inside a burst")
    peak_burst_requests: int = Field(description="most requests of one identity in one window")
    top_hours: list[int] = Field(description="its busiest UTC hours of day, busiest first")
    top_hour_share: Share
    days: int
    p50_latency_ms: float | None = Field(description="null: latency not logged")


class BatchFeature(Model):
    """One feature eligible for batching, its figures at the batch rate and its evidence."""

    feature: str
    level: Level = Field(description="strict: in the priced figure; lenient: in the range only")
    rules: list[str] = Field(description="ids of the eligibility rules it matches")
    requests: int
    moved_requests: int = Field(description="re-priced at the batch tier")
    streaming_requests: int = Field(description="kept interactive: they stream")
    already_batch_requests: int = Field(description="logged at the batch or flex tier already")
    unsupported_requests: int = Field(description="on a model without batch prices")
    unpriced_requests: int = Field(description="on an unpriced model: saving unknown")
    cost: Money = Field(description="the moved requests' cost at their logged tier")
    saving: Money
    apis: list[str] = Field(description="the batch APIs of its providers, sorted")
    evidence: Evidence


class EligibilityRange(Model):
    """The saving under strict eligibility (the figure) and lenient eligibility (upper end)."""

    strict: Money
    lenient: Money
    strict_requests: int
    lenient_requests: int
    assumption: str


class BatchingDetails(Model):
    range: EligibilityRange
    features: list[BatchFeature] = Field(description="strict first, then by saving, largest first")
    features_measured: int
    no_feature_requests: int = Field(description="requests without a feature: never batched")
    already_batch_requests: int = Field(description="in the whole log")
    offline_features_missing: list[str] = Field(
        description="named with --offline-feature but absent from the log"
    )
    burst_window_seconds: int
    burst_min_requests: int


class BatchingRisk(Model):
    lenient_only_features: list[str] = Field(
        description="eligible only under lenient rules: check that nobody waits on them"
    )
    turnaround: str


class BatchingResult(LeverResultBase):
    id: Literal["batching"]
    details: BatchingDetails
    risk: BatchingRisk


TURNAROUND = (
    "Batch results arrive within the provider's completion window (24 hours), not in seconds;"
    " flex processing answers synchronously but slower and may be refused at peak."
)
ASSUMPTION = (
    "eligibility: strict (offline features, service jobs that never stream) to lenient"
    " (also unattended, bursty or slow features)"
)


class BatchingLever:
    """levers[id=batching]: eligible features' non-streaming requests at the batch tier."""

    id: ClassVar[str] = "batching"
    title: ClassVar[str] = "Batching"

    def prepare(self, ctx: LeverContext) -> None:
        self.rules = load_rules(ctx.rules_dir)
        self.models = batch_models(ctx.prices)
        measure_features(ctx.con, self.rules, ctx.options.offline_features)

    def replay(self, ctx: LeverContext, state: State, out: str) -> Replayed:
        ctx.con.execute(replay_sql(state.table, out, self.models))
        moved = ctx.con.execute(
            f"SELECT count(*) FROM {state.table} s JOIN {out} a USING (request_id)"
            " WHERE s.service_tier IS DISTINCT FROM a.service_tier"
        ).fetchall()[0][0]
        return Replayed(State(out, state.messages, state.texts), int(moved))

    def describe(
        self, ctx: LeverContext, base: State, alone: Replayed
    ) -> Findings[BatchingDetails, BatchingRisk]:
        con = ctx.con
        con.execute(replay_sql(base.table, T.BATCH_LENIENT, self.models, "lenient"))
        savings = feature_savings(con, base.table, T.BATCH_LENIENT, "lenient")
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {T.BATCH_DECISIONS} AS
                SELECT s.request_id, s.service_tier IS DISTINCT FROM a.service_tier
                       AS batch_eligible
                FROM {base.table} s JOIN {alone.state.table} a USING (request_id)"""
        )
        cur = con.execute(f"SELECT * FROM {T.BATCH_FEATURES} WHERE eligible_lenient")
        names = [d[0] for d in cur.description]
        facts = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
        features = sorted(
            (
                self._feature(ctx, facts[name], [s for s in savings if s.feature == name])
                for name in facts
            ),
            key=lambda f: (f.level != "strict", -f.saving, f.feature),
        )
        strict = [f for f in features if f.level == "strict"]
        measured, no_feature, already = con.execute(
            f"""SELECT (SELECT count(*) FROM {T.BATCH_FEATURES}),
                       count(*) FILTER (WHERE feature IS NULL),
                       count(*) FILTER (WHERE service_tier IN {_in_list(ALREADY)})
                FROM requests"""
        ).fetchall()[0]
        details = BatchingDetails(
            range=EligibilityRange(
                strict=sum((f.saving for f in strict), Decimal(0)),
                lenient=sum((f.saving for f in features), Decimal(0)),
                strict_requests=sum(f.moved_requests for f in strict),
                lenient_requests=sum(f.moved_requests for f in features),
                assumption=ASSUMPTION,
            ),
            features=features,
            features_measured=int(measured),
            no_feature_requests=int(no_feature),
            already_batch_requests=int(already),
            offline_features_missing=unknown_offline(con, ctx.options.offline_features),
            burst_window_seconds=self.rules.burst.window_seconds,
            burst_min_requests=self.rules.burst.min_requests,
        )
        risk = BatchingRisk(
            lenient_only_features=[f.feature for f in features if f.level == "lenient"],
            turnaround=TURNAROUND,
        )
        recs = [
            rec
            for f in features
            for s in savings
            if s.feature == f.feature and s.moved
            for rec in [self._recommendation(ctx, f, s)]
        ]
        span = details.range
        return Findings(
            details,
            risk,
            recs,
            per_request=T.BATCH_DECISIONS,
            range=SavingRange(low=span.strict, high=span.lenient, assumption=span.assumption),
        )

    def _api(self, ctx: LeverContext, provider: str | None) -> tuple[str, str]:
        """(title, action template) of a provider's batch API: rules/batching.yaml, else the
        provider's batch rules in the price table."""
        api = self.rules.apis.get(provider or "")
        if api is not None:
            return api.title, api.action
        rules = ctx.prices.providers.get(provider or "")
        title = rules.batch.title if rules and rules.batch else f"{provider}'s batch API"
        return title, f"Send {{feature}} through {title}."

    def _feature(
        self, ctx: LeverContext, row: dict[str, Any], savings: list[FeatureSaving]
    ) -> BatchFeature:
        return BatchFeature(
            feature=row["feature"],
            level="strict" if row["eligible_strict"] else "lenient",
            rules=list(row["rules"]),
            requests=row["requests"],
            moved_requests=sum(s.moved for s in savings),
            streaming_requests=row["streaming_requests"],
            already_batch_requests=sum(s.already for s in savings),
            unsupported_requests=sum(s.unsupported for s in savings),
            unpriced_requests=sum(s.unpriced for s in savings),
            cost=sum((s.cost for s in savings), Decimal(0)),
            saving=sum((s.saving for s in savings), Decimal(0)),
            apis=sorted({self._api(ctx, s.provider)[0] for s in savings if s.moved}),
            evidence=Evidence(**{k: row[k] for k in Evidence.model_fields}),
        )

    def _recommendation(
        self, ctx: LeverContext, f: BatchFeature, s: FeatureSaving
    ) -> Recommendation:
        title, action = self._api(ctx, s.provider)
        e = f.evidence
        hours = ", ".join(f"{h:02d}:00" for h in e.top_hours)
        why = (
            f"{e.non_streaming_share:.0%} not streamed, {e.unattended_share:.0%} from service"
            f" users or no user id, {e.burst_share:.0%} in bursts (up to"
            f" {e.peak_burst_requests:,} requests), {e.top_hour_share:.0%} in its busiest hour"
            f" ({hours} UTC) over {e.days} days" + ("; marked offline by you" if e.offline else "")
        )
        figures = (
            f"{fmt.plural(s.moved, 'request')}, {fmt.money(s.cost)} at the logged tier, "
            f"{fmt.money(s.saving)} less"
        )
        text = action.format(feature=f.feature)
        if f.level == "lenient":
            return Recommendation(
                title=f"Check whether {f.feature} can wait for {title}",
                lever=self.id,
                saving=Decimal(0),  # not in the lever's saving: the figure is in the action
                action=f"If nobody waits on {f.feature} ({why}): {text} ({figures}; not in the"
                " batching figure, which counts strict eligibility only).",
            )
        return Recommendation(
            title=f"Batch {f.feature} ({title})",
            lever=self.id,
            saving=s.saving,
            action=f"{text} ({figures}; evidence: {why}).",
        )
