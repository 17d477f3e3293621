"""Difficulty heuristics: the rules of rules/difficulty.yaml, validated and applied in DuckDB.

Each rule labels the requests its condition matches (easy, medium or hard). Where several rules
match, the highest `priority` wins, and among equals the most severe label (a request that looks
both like classification and like code is treated as code). Rules marked `guard` use only
request-time features and are applied by the router too: a request a guard matches is never moved
to a cheaper model, whatever the classifier says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from advisor.conditions import Condition, ConditionError, features_used, parse, sql_literal, to_sql
from advisor.difficulty.features import FEATURE_TYPES, REQUEST_TIME
from advisor.difficulty.vocabulary import VocabularyPolicy
from advisor.errors import RuleError
from advisor.routing import CLASSES, SEVERITY
from advisor.ruleset import load_model, rule_files

Label = Literal["easy", "medium", "hard"]


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^DIF-\d{3}$")
    title: str
    label: Label
    priority: int = Field(0, ge=0, le=9)
    guard: bool = False
    deprecated: bool = False
    aliases: tuple[str, ...] = ()
    rationale: str
    when: dict[str, Any]
    cases: dict[str, list[dict[str, Any]]]

    @field_validator("cases")
    @classmethod
    def _cases(cls, value: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        if not set(value) <= {"pass", "fail"} or not value.get("pass") or not value.get("fail"):
            raise ValueError("cases needs a non-empty `pass` and a non-empty `fail` list")
        return value


class DifficultyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    kind: Literal["difficulty"]
    title: str | None = None
    rules: tuple[RuleSpec, ...]
    vocabulary: VocabularyPolicy | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    label: str
    priority: int
    guard: bool
    rationale: str
    when: Condition
    raw_when: dict[str, Any]

    @property
    def score(self) -> int:
        """Priority first, then severity: the resolution order of matching rules."""
        return self.priority * 10 + SEVERITY[self.label]


def load_rules(rules_dir: Path) -> list[Rule]:
    """Every active difficulty rule under `rules_dir`, validated (ids unique, features known)."""
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for path in rule_files(rules_dir, "difficulty"):
        for spec in load_model(path, DifficultyFile).rules:
            for name in (spec.id, *spec.aliases):
                if name in seen:
                    raise RuleError(f"{path}: rule id {name} is already used in {seen[name]}")
                seen[name] = path
            try:
                cond = parse(spec.when, FEATURE_TYPES, f"{spec.id}.when")
            except ConditionError as exc:
                raise RuleError(f"{path}: {exc}") from exc
            outcome = features_used(cond) - REQUEST_TIME
            if spec.guard and outcome:
                raise RuleError(
                    f"{path}: {spec.id} is a guard but uses outcome features {sorted(outcome)}",
                    hint="guards run in the router, before the response exists",
                )
            if not spec.deprecated:
                rules.append(
                    Rule(
                        spec.id,
                        spec.title,
                        spec.label,
                        spec.priority,
                        spec.guard,
                        spec.rationale,
                        cond,
                        spec.when,
                    )
                )
    return rules


def load_vocabulary(rules_dir: Path) -> VocabularyPolicy:
    """The one vocabulary policy of the difficulty rules under `rules_dir`."""
    found = [
        (path, policy)
        for path in rule_files(rules_dir, "difficulty")
        if (policy := load_model(path, DifficultyFile).vocabulary) is not None
    ]
    if len(found) != 1:
        raise RuleError(
            f"{rules_dir}: expected one difficulty vocabulary policy, found {len(found)}"
            + (f" ({', '.join(str(p) for p, _ in found)})" if found else ""),
            hint="the `vocabulary` section of advisor's rules/difficulty.yaml decides which words "
            "the router may carry",
        )
    return found[0][1]


def resolve(matched: list[Rule]) -> str | None:
    """The label of the best-scoring matching rule (None when nothing matched)."""
    if not matched:
        return None
    return max(matched, key=lambda r: r.score).label


def _label_sql(score: str) -> str:
    arms = " ".join(f"WHEN {SEVERITY[c]} THEN '{c}'" for c in CLASSES)
    return f"CASE {score} % 10 {arms} END"


def apply_rules(con: duckdb.DuckDBPyConnection, rules: list[Rule]) -> None:
    """Write `dif_labels` (request_id, rule_label, rules[], guard_label, guard_rules[])."""

    def col(name: str) -> str:
        return f"f.{name}"

    def parts(selected: list[Rule]) -> tuple[str, str]:
        if not selected:
            return "NULL::INTEGER", "[]::VARCHAR[]"
        conds = [to_sql(r.when, col) for r in selected]
        score = (
            "greatest("
            + ", ".join(
                f"CASE WHEN {c} THEN {r.score} END" for c, r in zip(conds, selected, strict=True)
            )
            + ")"
        )
        ids = (
            "list_filter(list_value("
            + ", ".join(
                f"CASE WHEN {c} THEN {sql_literal(r.id)} END"
                for c, r in zip(conds, selected, strict=True)
            )
            + "), lambda x: x IS NOT NULL)"
        )
        return score, ids

    score, ids = parts(rules)
    guard_score, guard_ids = parts([r for r in rules if r.guard])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE dif_labels AS
            SELECT request_id, {_label_sql("s")} AS rule_label, ids AS rules,
                   {_label_sql("gs")} AS guard_label, gids AS guard_rules
            FROM (SELECT f.request_id, {score} AS s, {ids} AS ids,
                         {guard_score} AS gs, {guard_ids} AS gids
                  FROM dif_features f)"""
    )
