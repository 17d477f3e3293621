"""The output caps lever's policy: rules/output_caps.yaml as a validated model.

Knobs (cap percentile, headroom, minimum sample, runaway scan, reasoning budget percentile), the
per-provider parameter names a recommendation writes (`max_tokens`, `reasoning_effort`,
`thinking.budget_tokens`, `thinkingBudget`), and the rules, in the closed condition language of
advisor/conditions.py, that decide which groups get a cap or a reasoning budget and which outputs
are runaways. Conditions are checked against FEATURES on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from advisor.conditions import FeatureType, features_used
from advisor.rule_model import ConditionRule
from advisor.ruleset import load_model

RULES_FILE = "output_caps.yaml"

# What the rules' conditions may test. Per cap group (feature, template): requests, the share of
# its visible output tokens above the cap, the share of its requests the cap would cut, of those
# logged without max_tokens, of those that already ended at their cap (finish_reason = length),
# and its runaway outputs. Per reasoning group (feature, model): reasoning tokens / output tokens,
# the share of requests classified easy or medium (missing when nothing was classified), and the
# share of reasoning tokens above the budget. Per response: its visible tokens, their ratio to
# the feature's median, and the share of repeated word n-grams (missing when the text was not
# logged or not scanned).
FEATURES: dict[str, FeatureType] = {
    "requests": "number",
    "tokens_saved_share": "number",
    "truncated_share": "number",
    "uncapped_share": "number",
    "at_cap_share": "number",
    "runaway_requests": "number",
    "reasoning_share": "number",
    "easy_medium_share": "number",
    "reasoning_saved_share": "number",
    "visible_tokens": "number",
    "norm_ratio": "number",
    "repeated_share": "number",
}
RESPONSE_FEATURES = ("visible_tokens", "norm_ratio", "repeated_share")


class _Rule(ConditionRule):
    FEATURES = FEATURES
    id: str = Field(pattern=r"^OUTCAP-\d{3}$")


class Recommend(_Rule):
    """Which groups get a cap (`action: cap`) or a reasoning budget; first match wins."""

    action: Literal["cap", "reasoning_budget"]


class CapKnobs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    percentile: float = Field(gt=0.5, le=1)  # of a group's visible output tokens
    headroom: float = Field(ge=1)  # cap = ceil(percentile x headroom)
    min_requests: int = Field(ge=1)  # fewer requests: no cap (too few to see the tail)
    min_cap_tokens: int = Field(ge=1)
    range_percentiles: tuple[float, float]  # the saving at a lower and a higher percentile

    @model_validator(mode="after")
    def _range(self) -> CapKnobs:
        low, high = self.range_percentiles
        if not 0.5 < low < self.percentile < high <= 1:
            raise ValueError("range_percentiles: expected 0.5 < low < percentile < high <= 1")
        return self


class Runaway(_Rule):
    """Which outputs are runaways, and how much text the repetition scan reads."""

    scan_min_tokens: int = Field(ge=1)  # shorter responses are not scanned for repetition
    scan_chars: int = Field(ge=100)  # the scan reads the first N characters of a response
    ngram_words: int = Field(ge=2, le=8)
    max_listed: int = Field(ge=0)

    @model_validator(mode="after")
    def _per_response(self) -> Runaway:
        # Compiled to SQL over one row per response: only per-response features exist there.
        used = features_used(self.condition) - set(RESPONSE_FEATURES)
        if used:
            raise ValueError(f"{self.id}.when: not a per-response feature: {sorted(used)}")
        return self


class ReasoningKnobs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    percentile: float = Field(gt=0, lt=1)  # of a group's reasoning tokens per request
    range_percentiles: tuple[float, float]
    min_requests: int = Field(ge=1)
    easy_classes: tuple[str, ...] = Field(min_length=1)  # difficulty classes a budget may serve

    @model_validator(mode="after")
    def _range(self) -> ReasoningKnobs:
        low, high = self.range_percentiles
        if not 0 < low < self.percentile < high < 1:
            raise ValueError("range_percentiles: expected 0 < low < percentile < high < 1")
        return self


class Provider(BaseModel):
    """The request parameters one provider family takes, with where that is documented."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^OUTCAP-P\d{2}$")
    providers: tuple[str, ...] = Field(min_length=1)  # requests.provider values
    cap_parameter: str
    reasoning_parameter: str
    reasoning_kind: Literal["effort", "budget"]  # an effort level, or a budget in tokens
    effort_value: str | None = None  # the level to set, for reasoning_kind effort
    min_budget_tokens: int = Field(default=0, ge=0)  # the smallest budget the provider accepts
    source: str
    rationale: str

    @model_validator(mode="after")
    def _effort(self) -> Provider:
        if (self.reasoning_kind == "effort") != (self.effort_value is not None):
            raise ValueError(f"{self.id}: effort_value goes with reasoning_kind effort only")
        return self


class OutputCapsPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int
    kind: Literal["output_caps_policy"]
    id: str
    title: str
    source: str
    rationale: str
    cap: CapKnobs
    reasoning: ReasoningKnobs
    runaway: Runaway
    providers: tuple[Provider, ...] = Field(min_length=1)
    default_provider: str  # the id of the entry used for a provider no entry names
    recommendations: tuple[Recommend, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids(self) -> OutputCapsPolicy:
        ids = [p.id for p in self.providers] + [r.id for r in self.recommendations]
        ids.append(self.runaway.id)
        if len(ids) != len(set(ids)):
            raise ValueError("rule ids must be unique")
        named = [name for p in self.providers for name in p.providers]
        if len(named) != len(set(named)):
            raise ValueError("a provider is named by more than one providers entry")
        if self.default_provider not in {p.id for p in self.providers}:
            raise ValueError(f"default_provider {self.default_provider!r} is no providers id")
        return self

    def rules(self, action: str) -> list[Recommend]:
        return [r for r in self.recommendations if r.action == action]

    def provider(self, name: str | None) -> Provider:
        for entry in self.providers:
            if name in entry.providers:
                return entry
        return next(p for p in self.providers if p.id == self.default_provider)


def load_policy(rules_dir: Path) -> OutputCapsPolicy:
    return load_model(rules_dir / RULES_FILE, OutputCapsPolicy)
