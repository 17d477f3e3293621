"""The closed condition language of every rules file: parse, validate, evaluate, compile to SQL.

A condition is plain data, never code:

    {all: [C, ...]}    every sub-condition holds        {any: [C, ...]}  at least one holds
    {not: C}           C does not hold
    {feature: NAME, op: lt|le|gt|ge|eq|ne|in|contains, value: X}

Missing values follow SQL: a comparison with a missing (None) feature is false, except `eq`/`ne`
against `value: null`, which test for missing explicitly. `in` takes a list; `contains` tests a
substring of a string feature (or membership in a list feature). The same semantics run in Python
(`evaluate`, used by the routing runtime and the rule cases) and in DuckDB (`to_sql`, used to label
millions of rows at once), so a rule means the same thing everywhere.

Rules that carry `when` (a condition) and `cases: {pass: [...], fail: [...]}` (feature rows that
must and must not match) are checked by `run_cases`; `rules_with_cases` finds them in any
rules file.
This module imports nothing heavy: the pure-Python router uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

OPS = ("lt", "le", "gt", "ge", "eq", "ne", "in", "contains")
FeatureType = Literal["number", "bool", "string"]
Scalar = bool | int | float | str | None


class ConditionError(ValueError):
    """A condition that is not in the language, with the path to the offending part."""


@dataclass(frozen=True)
class Compare:
    feature: str
    op: str
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Compare | All | AnyOf | Not


def _scalar(value: Any, where: str) -> Scalar:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConditionError(f"{where}: value must be finite, got {value!r}")
        return value
    raise ConditionError(f"{where}: value must be a number, string, boolean or null")


def _check_type(kind: FeatureType, value: Scalar, where: str) -> None:
    ok = (
        value is None
        or (kind == "number" and isinstance(value, int | float) and not isinstance(value, bool))
        or (kind == "bool" and isinstance(value, bool))
        or (kind == "string" and isinstance(value, str))
    )
    if not ok:
        raise ConditionError(f"{where}: {value!r} is not a {kind}")


def parse(
    data: Any, features: Mapping[str, FeatureType] | None = None, where: str = "when"
) -> Condition:
    """Validate raw data (from YAML) into a Condition; with `features`, check names and types."""
    if not isinstance(data, Mapping):
        raise ConditionError(f"{where}: expected a mapping, got {type(data).__name__}")
    keys = set(data)
    if keys == {"all"} or keys == {"any"}:
        (key,) = keys
        items = data[key]
        if not isinstance(items, list) or not items:
            raise ConditionError(f"{where}.{key}: expected a non-empty list of conditions")
        parsed = tuple(parse(c, features, f"{where}.{key}[{i}]") for i, c in enumerate(items))
        return All(parsed) if key == "all" else AnyOf(parsed)
    if keys == {"not"}:
        return Not(parse(data["not"], features, f"{where}.not"))
    if keys != {"feature", "op", "value"}:
        raise ConditionError(
            f"{where}: expected one of all/any/not or feature/op/value, got keys {sorted(keys)}"
        )
    name, op, raw = data["feature"], data["op"], data["value"]
    if not isinstance(name, str) or not name:
        raise ConditionError(f"{where}.feature: expected a feature name")
    if op not in OPS:
        raise ConditionError(f"{where}.op: {op!r} is not one of {', '.join(OPS)}")
    kind = None
    if features is not None:
        if name not in features:
            raise ConditionError(f"{where}.feature: unknown feature {name!r}")
        kind = features[name]
    value: Scalar | tuple[Scalar, ...]
    if op == "in":
        if not isinstance(raw, list) or not raw:
            raise ConditionError(f"{where}.value: 'in' takes a non-empty list")
        value = tuple(_scalar(v, f"{where}.value[{i}]") for i, v in enumerate(raw))
        for v in value:
            if kind:
                _check_type(kind, v, f"{where}.value")
    else:
        value = _scalar(raw, f"{where}.value")
        if value is None and op not in ("eq", "ne"):
            raise ConditionError(f"{where}.value: only eq/ne compare with null")
        if op in ("lt", "le", "gt", "ge") and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise ConditionError(f"{where}.value: {op} needs a number")
        if op == "contains" and not isinstance(value, str):
            raise ConditionError(f"{where}.value: contains needs a string")
        if kind is not None and kind != "string" and op == "contains":
            raise ConditionError(f"{where}.op: contains applies to strings, {name!r} is a {kind}")
        if kind and op not in ("contains",):
            _check_type(kind, value, f"{where}.value")
    return Compare(name, op, value)


def features_used(cond: Condition) -> set[str]:
    if isinstance(cond, Compare):
        return {cond.feature}
    if isinstance(cond, Not):
        return features_used(cond.item)
    return set().union(*(features_used(c) for c in cond.items))


def _compare(actual: Any, op: str, value: Any) -> bool:
    if value is None:  # explicit null tests
        return (actual is None) if op == "eq" else (actual is not None)
    if actual is None:
        return False
    if op == "in":
        return any(actual == v for v in value if v is not None)
    if op == "contains":
        if isinstance(actual, str):
            return value in actual
        if isinstance(actual, list | tuple):
            return value in actual
        return False
    if op in ("eq", "ne"):
        same = actual == value
        return same if op == "eq" else not same
    try:
        if op == "lt":
            return bool(actual < value)
        if op == "le":
            return bool(actual <= value)
        if op == "gt":
            return bool(actual > value)
        return bool(actual >= value)
    except TypeError:
        return False


def evaluate(cond: Condition, row: Mapping[str, Any]) -> bool:
    """Does `row` (feature name -> value; absent = missing) satisfy the condition?"""
    if isinstance(cond, Compare):
        return _compare(row.get(cond.feature), cond.op, cond.value)
    if isinstance(cond, All):
        return all(evaluate(c, row) for c in cond.items)
    if isinstance(cond, AnyOf):
        return any(evaluate(c, row) for c in cond.items)
    return not evaluate(cond.item, row)


def sql_literal(value: Scalar) -> str:
    """A SQL literal for a scalar: strings quoted with '' escaping, never interpolated raw."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def to_sql(cond: Condition, column: Callable[[str], str] = lambda name: name) -> str:
    """A DuckDB boolean expression (never NULL) with the semantics of `evaluate`.

    `column` maps a feature name to its SQL column expression; callers pass only validated names.
    """
    if isinstance(cond, All):
        return "(" + " AND ".join(to_sql(c, column) for c in cond.items) + ")"
    if isinstance(cond, AnyOf):
        return "(" + " OR ".join(to_sql(c, column) for c in cond.items) + ")"
    if isinstance(cond, Not):
        return f"(NOT {to_sql(cond.item, column)})"
    col, op, value = column(cond.feature), cond.op, cond.value
    if value is None:
        return f"({col} IS NULL)" if op == "eq" else f"({col} IS NOT NULL)"
    if op == "in":
        assert isinstance(value, tuple)
        items = ", ".join(sql_literal(v) for v in value if v is not None)
        expr = f"{col} IN ({items})"
    elif op == "contains":
        assert isinstance(value, str)
        expr = f"contains(CAST({col} AS VARCHAR), {sql_literal(value)})"
    else:
        assert not isinstance(value, tuple)
        symbol = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=", "ne": "<>"}[op]
        expr = f"{col} {symbol} {sql_literal(value)}"
    return f"coalesce({expr}, FALSE)"


@dataclass(frozen=True)
class CaseFailure:
    rule_id: str
    kind: Literal["pass", "fail"]
    index: int
    row: Mapping[str, Any]

    def __str__(self) -> str:
        expected = "match" if self.kind == "pass" else "not match"
        return f"{self.rule_id}: {self.kind} case #{self.index} should {expected}: {dict(self.row)}"


def run_cases(
    rule: Mapping[str, Any], features: Mapping[str, FeatureType] | None = None
) -> list[CaseFailure]:
    """Check a rule's `cases`: every `pass` row must satisfy `when`, every `fail` row must not.

    Raises ConditionError when the rule's condition or cases are malformed.
    """
    rule_id = str(rule.get("id", "?"))
    cond = parse(rule["when"], features, f"{rule_id}.when")
    cases = rule.get("cases") or {}
    if not isinstance(cases, Mapping) or not set(cases) <= {"pass", "fail"}:
        raise ConditionError(f"{rule_id}.cases: expected a mapping with pass and/or fail lists")
    if not cases.get("pass") and not cases.get("fail"):
        raise ConditionError(f"{rule_id}.cases: no cases")
    failures = []
    for kind in ("pass", "fail"):
        rows = cases.get(kind) or []
        if not isinstance(rows, list):
            raise ConditionError(f"{rule_id}.cases.{kind}: expected a list of feature rows")
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ConditionError(f"{rule_id}.cases.{kind}[{i}]: expected a mapping")
            if features is not None:
                unknown = set(row) - set(features)
                if unknown:
                    raise ConditionError(
                        f"{rule_id}.cases.{kind}[{i}]: unknown features {sorted(unknown)}"
                    )
            if evaluate(cond, row) != (kind == "pass"):
                failures.append(CaseFailure(rule_id, "pass" if kind == "pass" else "fail", i, row))
    return failures


def rules_with_cases(data: Any, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every rule (a mapping with `when` and `cases`) anywhere inside a loaded rules file."""
    if isinstance(data, Mapping):
        if "when" in data and "cases" in data:
            yield path, data
            return
        for key, value in data.items():
            yield from rules_with_cases(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from rules_with_cases(value, f"{path}[{i}]")
