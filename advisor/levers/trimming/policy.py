"""rules/trimming.yaml as a validated model: the lossless transforms with their cases, the lossy
candidates' thresholds and the recommendations."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from advisor.conditions import FeatureType
from advisor.rule_model import ConditionRule
from advisor.ruleset import default_rules_dir, load_model

Transform = Literal["pretty_json", "whitespace", "markdown_rules", "duplicates"]
# What a trimming row (feature, kind) is described by, for the recommendation conditions.
ROW_FEATURES: dict[str, FeatureType] = {
    "kind": "string",
    "tokens": "number",
    "share": "number",
    "requests": "number",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransformCases(_Strict):
    class Case(_Strict):
        before: str
        after: str

    pass_: tuple[Case, ...] = Field(alias="pass")
    fail: tuple[str, ...] = ()


class TransformRule(_Strict):
    id: str
    transform: Transform
    title: str
    rationale: str
    cases: TransformCases


class RecommendationRule(ConditionRule):
    FEATURES = ROW_FEATURES
    action: str  # `{feature}` is replaced by the feature's name


class Lossy(_Strict):
    recent_turns: int = Field(ge=1)
    few_shot_min_examples: int = Field(ge=2)
    context_answer_ratio: float = Field(gt=1)
    min_input_tokens: int = Field(ge=0)


class TrimmingPolicy(_Strict):
    schema_version: int
    kind: Literal["trimming_policy"]
    id: str
    title: str
    source: str
    rationale: str
    min_duplicate_chars: int = Field(ge=20)
    lossy: Lossy
    max_rows: int = Field(ge=1)
    excerpt_chars: int = Field(ge=20)
    transforms: tuple[TransformRule, ...]
    recommendations: tuple[RecommendationRule, ...]

    @property
    def kinds(self) -> tuple[Transform, ...]:
        return tuple(t.transform for t in self.transforms)


def load_policy(rules_dir: Path | None) -> TrimmingPolicy:
    """rules/trimming.yaml from `rules_dir`, else the shipped one (conditions checked by the
    model)."""
    path = Path(rules_dir or default_rules_dir()) / "trimming.yaml"
    if not path.is_file():
        path = default_rules_dir() / "trimming.yaml"
    return load_model(path, TrimmingPolicy)
