"""The caching lever's policy: rules/caching.yaml (how it simulates and recommends, no provider
facts), loaded and validated, and the recommendation rule that fits a template's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from advisor.conditions import evaluate, parse
from advisor.ruleset import default_rules_dir, load_model


class RecommendationRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    title: str
    action: str
    rationale: str
    when: dict[str, Any]
    cases: dict[str, Any]


class CachingPolicy(BaseModel):
    """rules/caching.yaml: how the lever simulates and recommends (no provider facts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int
    kind: str
    id: str
    title: str
    source: str
    rationale: str
    token_block_size: int
    per_account: bool
    min_option_gain_share: float
    max_templates: int
    prefix_order: dict[str, Any]
    recommendations: tuple[RecommendationRule, ...]


def load_policy(rules_dir: Path | None) -> CachingPolicy:
    path = Path(rules_dir or default_rules_dir()) / "caching.yaml"
    if not path.is_file():
        path = default_rules_dir() / "caching.yaml"
    policy = load_model(path, CachingPolicy)
    for rule in policy.recommendations:
        parse(rule.when, where=f"{rule.id}.when")
    return policy


def recommend(policy: CachingPolicy, metrics: dict[str, Any]) -> RecommendationRule | None:
    """The first recommendation rule whose condition holds for a template's metrics."""
    for rule in policy.recommendations:
        if evaluate(parse(rule.when), metrics):
            return rule
    return None
