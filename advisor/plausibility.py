"""Plausibility limits (rules/plausibility.yaml): values no real LLM call produces, as SQL checks.

Each rule is a condition over one feature, a kind of field (`tokens`, `duration_ms`, `cost_usd`,
`year`); ingest compiles it once per field of that kind and quarantines a row that matches, with
a reason that names the limit, the rule and the value. The rules are validated on load and their
cases run in tests/test_rule_cases.py.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from advisor.conditions import FeatureType, features_used, to_sql
from advisor.rule_model import ConditionRule
from advisor.ruleset import default_rules_dir, load_model

Feature = Literal["tokens", "duration_ms", "cost_usd", "year"]
FEATURES: dict[str, FeatureType] = {
    "tokens": "number",
    "duration_ms": "number",
    "cost_usd": "number",
    "year": "number",
}
RULES_FILE = "plausibility.yaml"


class Limit(ConditionRule):
    FEATURES = FEATURES
    id: str = Field(pattern=r"^PLAUS-\d{3}$")
    expect: str = Field(min_length=1)
    deprecated: bool = False

    @model_validator(mode="after")
    def _one_feature(self) -> Limit:
        used = features_used(self.condition)
        if len(used) != 1:
            raise ValueError(f"{self.id}: a limit tests one feature, got {sorted(used)}")
        if re.search(r"[|']", self.expect):  # it goes into SQL text and the quarantine reason
            raise ValueError(f"{self.id}.expect: no | or ' characters")
        return self

    @property
    def feature(self) -> Feature:
        (name,) = features_used(self.condition)
        return cast(Feature, name)  # parse() checked it against FEATURES


class Plausibility(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int
    kind: Literal["plausibility"]
    title: str
    rules: list[Limit]

    @model_validator(mode="after")
    def _unique_ids(self) -> Plausibility:
        ids = [rule.id for rule in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError("rule ids must be unique")
        return self


@cache
def load(path: Path | None = None) -> Plausibility:
    """The plausibility rules (the shipped file unless `path` is given)."""
    return load_model(path or default_rules_dir() / RULES_FILE, Plausibility)


def violations(feature: Feature, value_sql: str) -> list[tuple[str, str]]:
    """(SQL condition, reason up to ", got ") for each active limit on `feature`, where
    `value_sql` is the field's value as a number. A NULL value matches no limit."""
    return [
        (to_sql(rule.condition, lambda _name: value_sql), f"expected {rule.expect} ({rule.id})")
        for rule in load().rules
        if not rule.deprecated and rule.feature == feature
    ]


def when_sql(feature: Feature, value_sql: str, field_sql: str, shown_sql: str) -> str:
    """CASE arms `WHEN <implausible> THEN '<field>|expected ... (PLAUS-nnn), got <shown>'` for
    the staging queries' error column; `field_sql` and `shown_sql` are SQL string expressions."""
    return " ".join(
        f"WHEN {cond} THEN {field_sql} || '|{reason}, got ' || {shown_sql}"
        for cond, reason in violations(feature, value_sql)
    )
