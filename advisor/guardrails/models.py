"""The models of analysis.json's `guardrails` and `anomalies`: limits with their back-test, and
spend anomalies with their evidence.

A limit's `value` is a decimal string whatever its unit (tokens, requests or money) so that one
field holds it exactly; `unit` says which. A limit the history is too thin to set has no value
and says why (`status: too_thin`, `reason`) instead of carrying a silly number.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from advisor.money import MaybeMoney, Model, Share

Scope = Literal["feature", "user", "account", "global"]
Metric = Literal["input_tokens", "max_tokens", "requests", "tokens", "spend"]
Window = Literal["request", "1m", "1h", "1d", "1mo"]
Unit = Literal["tokens", "requests", "USD"]
AnomalyKind = Literal["spend_spike", "new_entity", "tokens_jump", "runaway_loop"]
EntityType = Literal["user", "account", "feature", "session"]


class LimitBasis(Model):
    """Where a limit's value came from: the statistic over the history and its adjustments."""

    statistic: str = Field(description="e.g. p99.9 of each request's trailing-1m request count")
    quantile: float = Field(description="the quantile taken (0..1)")
    observed: float | None = Field(description="the statistic over normal history (None: none)")
    headroom: float = Field(description="factor applied to the observed value")
    floor: float | None = None
    ceiling: float | None = None
    samples: int = Field(description="values the statistic was taken over")
    subjects: int = Field(description="entities (users, accounts, days) behind those values")
    days: float = Field(description="days of history behind the values")


class Limit(Model):
    """One limit and what it would have done to the logged history (the back-test)."""

    id: str = Field(description="the policy id in rules/guardrails.yaml")
    scope: Scope
    subject: str = Field(description="the feature name; '*' = each user or account; 'all'")
    metric: Metric
    window: Window = Field(description="'request' for a per-request cap; else a time window")
    sliding: bool = Field(description="sliding window (rates) or calendar window (budgets, UTC)")
    unit: Unit
    value: Decimal | None = Field(description="None: the history is too thin to set it")
    action: Literal["refuse", "cap"] = Field(
        description="refuse the request, or cap its output (max_tokens)"
    )
    status: Literal["set", "too_thin"]
    reason: str | None = Field(None, description="why no value was set")
    basis: LimitBasis
    applies_to_requests: int = Field(description="requests of the history the limit applies to")
    refused_requests: int
    refused_share: Share = Field(description="refused / applies_to_requests")
    refused_normal_requests: int = Field(description="refused requests outside every anomaly")
    refused_normal_share: Share = Field(description="of the requests outside every anomaly")
    target_share: Share = Field(description="the policy's most refused share of normal requests")
    refused_subjects: int = Field(description="users, accounts or features with a refusal")
    prevented_spend: MaybeMoney = Field(description="baseline cost of the refused requests")
    prevented_anomaly_spend: MaybeMoney = Field(
        description="of which inside the anomalies' windows"
    )


class Guardrails(Model):
    limits: list[Limit] = Field(default_factory=list, description="in rules file order")
    notes: list[str] = Field(default_factory=list, description="e.g. no account ids in the logs")


class Anomaly(Model):
    """Spend (or tokens) well above what the entity's own history, or its peers', expects."""

    id: str = Field(description="the rule id in rules/anomalies.yaml")
    kind: AnomalyKind
    entity_type: EntityType
    entity: str
    feature: str | None = Field(None, description="the feature, where the anomaly is in one")
    window_start: str = Field(description="ISO 8601 UTC, first request of the anomaly")
    window_end: str = Field(description="ISO 8601 UTC, last request of the anomaly")
    requests: int
    spend: MaybeMoney = Field(description="baseline cost inside the window (None: unpriced)")
    expected_spend: MaybeMoney = Field(description="what the entity's history expects")
    excess_spend: MaybeMoney = Field(description="spend - expected_spend (None: either unknown)")
    score: float = Field(description="robust z-score or ratio, as the rule defines it")
    evidence: dict[str, str | int | float | None] = Field(
        description="the figures behind the score (medians, MAD, tokens per request, repeats)"
    )
