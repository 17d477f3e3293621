"""levers[id=tiering] in analysis.json: the typed details, risk and result of the tiering lever.

details: the operating point (the policy's threshold) and the frontier (the same figures at
other thresholds), coverage, the trade-off per feature and per template, the route rules that
reproduce the decisions, the ladders used, the difficulty classifier's summary and warnings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from advisor.levers.base import LeverResultBase
from advisor.money import Model, Money, Share


class SweepPoint(Model):
    """Routing at one confidence threshold."""

    min_confidence: float
    requests_routed: int
    share_routed: Share
    saving: Money
    saving_share: Share
    # sum of (1 - confidence) over routed requests: the classifier's own estimate, not evidence;
    # the interval is its spread if the confidences were exact (TieringRisk.misroute_interval)
    expected_misrouted: float
    expected_misrouted_low: float
    expected_misrouted_high: float


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


class MeasuredGroup(Model):
    """The evaluation-set results of one feature, template or difficulty class: the checks of
    its requests replayed on the proposed model (`advisor tiering calibrate`)."""

    kind: Literal["feature", "template", "difficulty"]
    value: str | None
    requests: int  # results with a verdict
    passed: int
    pass_rate: float
    pass_low: float  # Wilson interval of the pass rate (rules/tiering_quality.yaml: interval)
    pass_high: float
    excluded: bool  # kept off routing by a rule of rules/tiering_quality.yaml
    rule: str | None


class MeasuredQuality(Model):
    """What the measured results did to the operating point."""

    source: str  # the results file (its name)
    requests: int
    passed: int
    pass_rate: float
    pass_low: float
    pass_high: float
    unmatched: int  # results whose request id is not in the store (left out)
    errored: int  # results the eval could not run (provider errors): no verdict
    requests_routed_before: int
    share_routed_before: Share
    requests_routed: int
    share_routed: Share
    saving_before: Money
    saving: Money
    # routed requests x the failure rate of the measured requests still routed, with its interval
    expected_misrouted: float | None
    expected_misrouted_low: float | None
    expected_misrouted_high: float | None
    groups: list[MeasuredGroup]
    summary: str


class ReliabilityBin(Model):
    low: float
    high: float
    requests: int
    mean_confidence: float
    observed: float  # share of the bin whose outcome held (Calibration.outcome)


class Calibration(Model):
    """How well a confidence predicts an outcome it was not trained on (a held-out set)."""

    basis: str  # which confidence, against which outcome
    outcome: str  # what the observed share counts, as a verb phrase: "passed"
    requests: int
    brier: float  # mean squared gap between confidence and outcome (0 best)
    bins: list[ReliabilityBin]


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
    measured_quality: MeasuredQuality | None = None  # when evaluation results were given
    calibration: list[Calibration] = Field(default_factory=list)


class TieringRisk(Model):
    expected_misrouted: float
    expected_misrouted_low: float
    expected_misrouted_high: float
    misroute_interval: float  # the confidence level of the misroute intervals
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
