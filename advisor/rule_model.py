"""The model every conditional rule shares: a stable id, a title, a rationale, a condition
(`when`, in the language of advisor.conditions) over the features its rules file may test, and
pass/fail `cases`. The condition is checked when the rules file is read, so a misspelt feature or
a value of the wrong type fails at load with the rule's id, never mid-run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, model_validator

from advisor.conditions import Condition, FeatureType, parse, to_sql


class ConditionRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # What `when` may test, with types; None: any feature name (the rules file's own check).
    FEATURES: ClassVar[Mapping[str, FeatureType] | None] = None

    id: str
    title: str
    rationale: str
    when: dict[str, Any]
    cases: dict[str, Any]

    @model_validator(mode="after")
    def _valid_condition(self) -> Self:
        self.condition  # noqa: B018 -- a ConditionError is a ValueError: pydantic reports it
        return self

    @property
    def condition(self) -> Condition:
        return parse(self.when, self.FEATURES, f"{self.id}.when")

    def matches_sql(self, column: Callable[[str], str] = lambda name: f'"{name}"') -> str:
        """The condition as a SQL predicate, each feature read from `column(name)`."""
        return to_sql(self.condition, column)
