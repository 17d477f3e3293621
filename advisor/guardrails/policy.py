"""The limit policies of rules/guardrails.yaml: their validated model, and their example cases.

A policy says how one kind of limit is derived (which usage, which quantile, headroom, floor,
ceiling, rounding, how much history it needs) and what the limit does. Its `cases` are short
request histories replayed through the runtime (advisor.guard) with the case's value: in a
`pass` history the last request gets through untouched, in a `fail` history it is refused (or,
for a `cap`, has its output capped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from advisor.guard import SLIDING_SECONDS, Guard, GuardLimit
from advisor.guardrails.models import Metric, Scope, Unit, Window
from advisor.ruleset import load_model, rule_files

KIND = "guardrails"
# Case histories start here: offsets in seconds, so a day boundary is t: 86400 and the month
# ends one day in (a monthly budget's boundary is t: 86400 too).
CASE_EPOCH = dt.datetime(2026, 1, 31, tzinfo=dt.UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseRequest(_Strict):
    t: float = Field(description="seconds after CASE_EPOCH")
    user: str | None = None
    account: str | None = None
    feature: str | None = None
    input_tokens: int | None = None
    max_tokens: int | None = None
    output_tokens: int | None = None
    tokens: int | None = Field(None, description="recorded after the call (input + output)")
    spend: Decimal | None = Field(None, description="recorded after the call; None: unpriced")


class Cases(_Strict):
    value: Decimal
    pass_: list[list[CaseRequest]] = Field(alias="pass")
    fail: list[list[CaseRequest]]


class Policy(_Strict):
    id: str
    title: str
    rationale: str
    source: str = "advisor"
    scope: Scope
    metric: Metric
    window: Window
    action: Literal["refuse", "cap"] = "refuse"
    quantile: float = Field(gt=0, lt=1)
    headroom: float = Field(ge=1)
    floor: Decimal = Field(gt=0, description="never below: a limit of 0 would refuse everything")
    ceiling: Decimal | None = None
    significant_digits: int = Field(2, ge=1, le=6, description="rounded up to this many")
    target_share: float = Field(gt=0, lt=1)
    min_samples: int = Field(ge=1)
    min_subjects: int = Field(1, ge=1)
    min_days: float = Field(0, ge=0)
    cases: Cases

    @property
    def sliding(self) -> bool:
        return self.window in SLIDING_SECONDS

    @property
    def unit(self) -> Unit:
        return (
            "USD"
            if self.metric == "spend"
            else "requests"
            if self.metric == "requests"
            else "tokens"
        )

    @model_validator(mode="after")
    def _coherent(self) -> Policy:
        per_request = self.metric in ("input_tokens", "max_tokens")
        if per_request != (self.window == "request"):
            raise ValueError(f"{self.metric} does not go with window {self.window!r}")
        if (self.action == "cap") != (self.metric == "max_tokens"):
            raise ValueError("only a max_tokens limit caps; every other limit refuses")
        if self.metric == "requests" and not self.sliding:
            raise ValueError("requests are limited per sliding window (1m, 1h)")
        if self.metric == "spend" and self.sliding:
            raise ValueError("spend is budgeted per calendar day or month (1d, 1mo)")
        if per_request and self.scope != "feature":
            raise ValueError("per-request caps are set per feature")
        if self.ceiling is not None and self.ceiling < self.floor:
            raise ValueError("ceiling below floor")
        return self

    def guard_limit(self, subject: str, value: Decimal) -> GuardLimit:
        """This policy as a runtime limit on one subject."""
        exact: int | Decimal = value if self.unit == "USD" else int(value)
        return GuardLimit(
            self.id, self.scope, subject, self.metric, self.window, exact, self.action
        )


class GuardrailsRules(_Strict):
    schema_version: int
    kind: Literal["guardrails"]
    title: str
    policies: list[Policy]

    @model_validator(mode="after")
    def _unique(self) -> GuardrailsRules:
        ids = [p.id for p in self.policies]
        if len(ids) != len(set(ids)):
            raise ValueError("policy ids must be unique")
        return self


def load_rules(rules_dir: Path) -> list[Policy]:
    """Every guardrails policy under a rules folder, in file order."""
    return [
        policy
        for path in rule_files(rules_dir, KIND)
        for policy in load_model(path, GuardrailsRules).policies
    ]


def policy_rules(data: Any) -> Iterator[Mapping[str, Any]]:
    """The policies of a loaded guardrails rules file (for tests/test_rule_cases.py)."""
    if isinstance(data, Mapping) and data.get("kind") == KIND:
        yield from data.get("policies") or []


def _last_verdict(policy: Policy, value: Decimal, history: list[CaseRequest]) -> tuple[bool, bool]:
    """(allowed, capped) of a history's last request under the policy alone at `value`."""
    subject = "all" if policy.scope == "global" else "*"
    if policy.scope == "feature":
        subject = next(r.feature for r in history if r.feature)  # cases name their feature
    guard = Guard([policy.guard_limit(subject, value)])
    allowed, capped = True, False
    for req in history:
        now = CASE_EPOCH + dt.timedelta(seconds=req.t)
        verdict = guard.check(req.model_dump(exclude={"t", "tokens", "spend"}), now)
        guard.record(verdict, now, tokens=req.tokens, spend=req.spend)
        out = req.output_tokens
        allowed = verdict.allowed
        capped = verdict.max_tokens is not None and out is not None and out > verdict.max_tokens
    return allowed, capped


def run_policy_cases(rule: Mapping[str, Any]) -> list[str]:
    """Failures of one policy's cases (the policy is validated first)."""
    policy = Policy.model_validate(rule)
    failures = []
    for kind, histories in (("pass", policy.cases.pass_), ("fail", policy.cases.fail)):
        for i, history in enumerate(histories):
            allowed, capped = _last_verdict(policy, policy.cases.value, history)
            passed = allowed and not capped
            if passed != (kind == "pass"):
                failures.append(f"{policy.id}: {kind} case {i}: allowed={allowed} capped={capped}")
    return failures
