"""levers[id=tiering] in analysis.json: the typed details, risk and result of the tiering lever.

details: the operating point (the policy's threshold) and the frontier (the same figures at
other thresholds), coverage, the trade-off per feature and per template, the route rules that
reproduce the decisions, the ladders used, the difficulty classifier's summary and warnings.
"""

from __future__ import annotations

from typing import Literal

from advisor.levers.base import LeverResultBase
from advisor.money import Model, Money, Share


class SweepPoint(Model):
    """Routing at one confidence threshold."""

    min_confidence: float
    requests_routed: int
    share_routed: Share
    saving: Money
    saving_share: Share
    expected_misrouted: float  # sum of (1 - confidence) over routed requests


class OperatingPoint(SweepPoint):
    route: list[str]  # the difficulty classes routed
    policy: str
    why: str


class TieringCoverage(Model):
    requests: int
    unpriced: int
    guarded: int  # held back by a guard rule (never routed)
    easy_without_cheaper_tier: int


class TradeOff(Model):
    """Routing of one feature (or template) on one model."""

    feature: str | None
    model: str | None
    target: str | None
    requests: int
    share_routable: Share
    saving: Money
    mean_confidence: float | None
    risk: float | None  # expected misroutes per routed request
    easy: int
    medium: int
    hard: int
    output: Literal["scaled", "kept"]  # the routed output length


class TemplateTradeOff(TradeOff):
    template_id: str | None
    prompt: str | None  # redacted excerpt of the system prompt


class RouteMatch(Model):
    model: str | None
    feature: str | None = None
    template_id: str | None = None
    difficulty: str | None = None
    min_confidence: float | None = None


class RouteRule(Model):
    id: str
    match: RouteMatch
    route_to: str
    requests: int
    expected_saving: Money


class DifficultyRule(Model):
    id: str
    title: str
    label: str
    guard: bool
    matched: int


class Classifier(Model):
    seed: int
    labelled_rows: int
    trained_on: int
    heldout: int
    heldout_agreement: float | None = None
    temperature: float
    classes_present: list[str]
    features: int
    vocabulary: int
    templates: int
    fallback: str | None = None
    vocabulary_hashed: int = 0
    vocabulary_withheld: int = 0


class DifficultySummary(Model):
    requests: int
    by_difficulty: dict[str, int]
    by_source: dict[str, int]
    rules: list[DifficultyRule]
    classifier: Classifier


class TieringDetails(Model):
    operating_point: OperatingPoint
    frontier: list[SweepPoint]
    frontier_monotone: bool
    coverage: TieringCoverage
    by_feature: list[TradeOff]
    by_template: list[TemplateTradeOff]
    route_rules: list[RouteRule]
    ladders: list[str]
    difficulty: DifficultySummary | None
    warnings: list[str]


class TieringRisk(Model):
    expected_misrouted: float
    expected_misrouted_share: Share
    routed_with_negative_feedback: int
    routed_that_failed: int
    routed_that_were_cut_off: int
    lowest_routed_confidence: float | None
    routed_costlier_until_cache_warms: int  # cached on the source, uncached until the cache warms
    note: str


class TieringResult(LeverResultBase):
    id: Literal["tiering"]
    details: TieringDetails
    risk: TieringRisk
