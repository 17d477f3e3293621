"""Streaming advice: latency needs met by streaming rather than by paying for speed.

Not a priced lever: it changes no state. Each feature is measured over the log in SQL (who waits
on it, whether it streams, its latency and time to first token, what it pays for speed) and the
rules of rules/streaming.yaml pick out interactive features that do not stream, and features on a
premium speed tier (service_tier = priority) or a fast model variant whose only evident need is
latency. Both come back as typed advice with their figures; the priority premium is priced (what
those requests cost over the standard tier) as a figure, never as a saving.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from advisor.conditions import FeatureType, sql_literal, to_sql
from advisor.levers import batching
from advisor.levers import tables as T
from advisor.levers.base import Recommendation
from advisor.money import Model, Money, Share
from advisor.pricing import cost_sql
from advisor.report import fmt
from advisor.rule_model import ConditionRule
from advisor.ruleset import load_model

RULES_FILE = "streaming.yaml"

FEATURE_TYPES: dict[str, FeatureType] = {
    "requests": "number",
    "human_share": "number",
    "unattended_share": "number",
    "streaming_share": "number",
    "non_streaming_share": "number",
    "p50_latency_ms": "number",
    "p95_latency_ms": "number",
    "p50_ttft_ms": "number",
    "p50_output_tokens": "number",
    "premium_share": "number",
    "batch_eligible": "bool",
}
MODEL_FEATURES: dict[str, FeatureType] = {"model": "string"}
LIMIT = 25  # features listed per kind of advice, the largest first


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FastModel(ConditionRule):
    FEATURES = MODEL_FEATURES


class AdviceRule(ConditionRule):
    FEATURES = FEATURE_TYPES
    id: Literal["STREAM-001", "STREAM-002"]  # the two kinds of advice this module gives


class StreamingRules(_Rule):
    schema_version: Literal[1]
    kind: Literal["streaming"]
    title: str
    fast_model: FastModel
    rules: tuple[AdviceRule, ...]

    @model_validator(mode="after")
    def _both(self) -> StreamingRules:
        if sorted(r.id for r in self.rules) != ["STREAM-001", "STREAM-002"]:
            raise ValueError("rules: STREAM-001 and STREAM-002, once each")
        return self

    def rule(self, rule_id: str) -> AdviceRule:
        return next(r for r in self.rules if r.id == rule_id)


def load_rules(rules_dir: Path) -> StreamingRules:
    return load_model(rules_dir / RULES_FILE, StreamingRules)


class Latency(Model):
    p50_latency_ms: float | None = Field(description="median logged latency; null: not logged")
    p95_latency_ms: float | None
    p50_ttft_ms: float | None = Field(description="median time to first token; null: not logged")


class NonStreamingFeature(Latency):
    """An interactive feature that does not stream (STREAM-001)."""

    feature: str
    requests: int
    human_users: int
    human_share: Share
    non_streaming_share: Share
    p50_output_tokens: float | None


class PremiumFeature(Latency):
    """A feature paying for speed (STREAM-002): priority tier or a fast model variant."""

    feature: str
    requests: int
    priority_requests: int
    fast_model_requests: int
    fast_models: list[str] = Field(description="fast variants it runs on, sorted")
    unattended_share: Share
    streaming_share: Share
    premium: Money = Field(
        description="what its priced priority requests cost over the standard tier (a figure,"
        " not a saving)"
    )
    unpriced_priority_requests: int


class StreamingAdvice(Model):
    """Advice with figures, never a priced saving (recommendations[] carry it with saving 0)."""

    non_streaming: list[NonStreamingFeature] = Field(
        default_factory=list, description="largest first (requests)"
    )
    premium: list[PremiumFeature] = Field(default_factory=list, description="largest premium first")


def measure(
    con: duckdb.DuckDBPyConnection,
    rules: StreamingRules,
    policy: batching.BatchingRules,
    offline: Sequence[str] = (),
    requests: str = "requests",
    prices: str = "prices",
) -> None:
    """Write T.STREAM_FEATURES: one row per logged feature with its facts, the priority premium of
    its priced priority requests (cost_sql against the registered price table), and the rule
    ids that match it. Who is a service user and whether a request streamed follow the
    batching policy (rules/batching.yaml), and a feature batching finds eligible (at its lenient
    level) is `batch_eligible`, so the two never advise both ways on one feature."""
    batching.measure_features(con, policy, offline, requests)
    service = to_sql(policy.service_user.condition, lambda _name: "lower(user_id)")
    fast = to_sql(rules.fast_model.condition, lambda _name: "lower(model)")
    matched = ", ".join(
        f"CASE WHEN {to_sql(r.condition)} THEN {sql_literal(r.id)} END" for r in rules.rules
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {T.STREAM_FEATURES} AS
        WITH facts AS (
            SELECT feature, {batching.stream_sql(policy)} AS stream, latency_ms, ttft_ms,
                   output_tokens, model,
                   user_id IS NULL OR {service} AS unattended,
                   CASE WHEN user_id IS NOT NULL AND NOT {service} THEN user_id END AS human,
                   service_tier = 'priority' AS priority, {fast} AS fast
            FROM {requests} WHERE feature IS NOT NULL
        ),
        standard AS (
            SELECT * REPLACE ('default' AS service_tier)
            FROM {requests} WHERE service_tier = 'priority' AND feature IS NOT NULL
        ),
        premium AS (
            SELECT r.feature, sum({cost_sql("r", "p")} - {cost_sql("d", "p")}) AS premium,
                   count(*) FILTER (WHERE p.model_key IS NULL) AS unpriced_priority_requests
            FROM {requests} r JOIN standard d USING (request_id)
            LEFT JOIN {prices} p ON p.model_key = r.model_key
            GROUP BY r.feature
        ),
        agg AS (
            SELECT feature,
                   count(*) AS requests,
                   count(*) FILTER (WHERE human IS NOT NULL) / count(*) AS human_share,
                   count(DISTINCT human) AS human_users,
                   count(*) FILTER (WHERE unattended) / count(*) AS unattended_share,
                   count(*) FILTER (WHERE stream) / count(*) AS streaming_share,
                   count(*) FILTER (WHERE NOT stream) / count(*) AS non_streaming_share,
                   quantile_cont(latency_ms, 0.5) AS p50_latency_ms,
                   quantile_cont(latency_ms, 0.95) AS p95_latency_ms,
                   quantile_cont(ttft_ms, 0.5) AS p50_ttft_ms,
                   quantile_cont(output_tokens, 0.5) AS p50_output_tokens,
                   count(*) FILTER (WHERE priority OR fast) / count(*) AS premium_share,
                   count(*) FILTER (WHERE priority) AS priority_requests,
                   count(*) FILTER (WHERE fast) AS fast_model_requests,
                   coalesce(list(DISTINCT lower(model) ORDER BY lower(model))
                            FILTER (WHERE fast), []) AS fast_models
            FROM facts GROUP BY feature
        ),
        row AS (
            SELECT agg.*, coalesce(premium.premium, 0) AS premium,
                   coalesce(premium.unpriced_priority_requests, 0) AS unpriced_priority_requests,
                   b.eligible_lenient AS batch_eligible
            FROM agg LEFT JOIN premium USING (feature)
            JOIN {T.BATCH_FEATURES} b USING (feature)
        )
        SELECT *, list_filter([{matched}], lambda x: x IS NOT NULL) AS rules FROM row
        """
    )


def _rows(con: duckdb.DuckDBPyConnection, rule_id: str, order: str) -> list[dict[str, Any]]:
    cur = con.execute(
        f"SELECT * FROM {T.STREAM_FEATURES} WHERE list_contains(rules, ?) ORDER BY {order}, feature"
        f" LIMIT {LIMIT}",
        [rule_id],
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _pick(model: type[BaseModel], row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in model.model_fields}


def advise(
    con: duckdb.DuckDBPyConnection,
    rules_dir: Path,
    offline: Sequence[str] = (),
    requests: str = "requests",
    prices: str = "prices",
) -> StreamingAdvice:
    """The streaming advice of the log in `requests`, priced against the table `prices`;
    `offline`: the features the user marks offline (--offline-feature)."""
    policy = batching.load_rules(rules_dir)
    try:
        measure(con, load_rules(rules_dir), policy, offline, requests, prices)
        return _advice(con)
    finally:
        T.drop_working_tables(con, "streaming")
        T.drop_working_tables(con, "batching")


def _advice(con: duckdb.DuckDBPyConnection) -> StreamingAdvice:
    return StreamingAdvice(
        non_streaming=[
            NonStreamingFeature(**_pick(NonStreamingFeature, row))
            for row in _rows(con, "STREAM-001", "requests DESC")
        ],
        premium=[
            PremiumFeature(**_pick(PremiumFeature, row) | {"premium": Decimal(row["premium"])})
            for row in _rows(con, "STREAM-002", "premium DESC, requests DESC")
        ],
    )


def _seconds(ms: float | None) -> str:
    return "not logged" if ms is None else f"{ms / 1000:.1f} s"


def actions(advice: StreamingAdvice) -> list[tuple[str, str]]:
    """(title, action) of each piece of advice, with its figures: the recommendations."""
    out = []
    for f in advice.non_streaming:
        first = (
            f"the first tokens after a median {_seconds(f.p50_ttft_ms)} (logged time to first"
            " token)"
            if f.p50_ttft_ms is not None
            else "the first tokens after the time to first token (not logged)"
        )
        out.append(
            (
                f"Stream {f.feature}'s responses",
                f"Set stream=true for {f.feature}: {f.requests:,} requests from {f.human_users:,}"
                f" people ({f.non_streaming_share:.0%} not streamed) waited a median"
                f" {_seconds(f.p50_latency_ms)} (p95 {_seconds(f.p95_latency_ms)}) for the whole"
                f" answer; streamed, they see {first}.",
            )
        )
    for p in advice.premium:
        what = []
        if p.priority_requests:
            what.append(
                f"{p.priority_requests:,} requests on service_tier=priority"
                f" ({fmt.money(p.premium)} over the standard tier"
                + (
                    f", {p.unpriced_priority_requests} unpriced)"
                    if p.unpriced_priority_requests
                    else ")"
                )
            )
        if p.fast_model_requests:
            what.append(f"{p.fast_model_requests} on {', '.join(p.fast_models)}")
        need = (
            f"nobody waits on {p.unattended_share:.0%} of its calls: use the standard tier"
            " (or flex/batch)"
            if p.unattended_share >= 0.5
            else f"{p.streaming_share:.0%} of its calls already stream (median latency"
            f" {_seconds(p.p50_latency_ms)}, time to first token {_seconds(p.p50_ttft_ms)}):"
            " try the standard tier with streaming"
        )
        out.append(
            (f"Check {p.feature}'s speed premium", f"{p.feature}: {'; '.join(what)}; {need}.")
        )
    return out


def recommendations(advice: StreamingAdvice) -> list[Recommendation]:
    """The advice as recommendations[] entries: figures in the action, no priced saving."""
    return [
        Recommendation(title=title, lever="streaming", saving=Decimal(0), action=action)
        for title, action in actions(advice)
    ]
