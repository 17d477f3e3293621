"""Typing a raw field in SQL, the same for every format: the type each kind of field must have,
the value stored, and the quarantine reasons of a wrong type or an implausible value.

Numbers are read through DOUBLE, so that one check covers 12, 12.0, 1e3, 12.5, 1e400 and NaN.
Integers are what JSON Schema calls integers: numbers with no fractional part (12.0 and 1e3
included: JavaScript cannot tell 12.0 from 12), never a string holding digits. The strictness
about strings applies where the format keeps them apart (JSON); a CSV cell is always text.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor import plausibility


@dataclass(frozen=True)
class Rule:
    """How a kind of field is typed: `ok` tests its number `{n}` (the raw text as DOUBLE) or
    value `{v}`; `value` is what is stored where it passes; `limits` names the plausibility
    feature (rules/plausibility.yaml) whose limits apply to the number."""

    expect: str
    ok: str
    value: str
    limits: plausibility.Feature | None = None


# A DOUBLE holds every integer up to 2^53 exactly, far above any plausibility limit.
_INTEGER = "isfinite({n}) AND {n} >= 0 AND {n} = trunc({n})"
_EXACT = "CASE WHEN {ok} AND {n} <= 9007199254740992 THEN CAST({n} AS BIGINT) END"
RULES = {
    "count": Rule("a non-negative integer", _INTEGER, _EXACT, "tokens"),
    "int32": Rule("a non-negative integer below 2^31", _INTEGER + " AND {n} < 2^31", _EXACT),
    "duration": Rule(
        "a finite non-negative number", "isfinite({n}) AND {n} >= 0",
        "CASE WHEN {ok} THEN {n} END", "duration_ms",
    ),
    # money may come as a decimal string (to keep its precision), so `raw` is read as text
    "money": Rule(
        "a finite non-negative number", "isfinite({n}) AND {n} >= 0",
        "CASE WHEN {ok} THEN TRY_CAST({raw} AS DECIMAL(18,9)) END", "cost_usd",
    ),
    "number": Rule("a finite number", "isfinite({n})", "CASE WHEN {ok} THEN {n} END"),
    "bool": Rule("true or false", "{v} IS NOT NULL", "TRY_CAST({raw} AS BOOLEAN)"),
}  # fmt: skip


def shown_sql(raw: str) -> str:
    """A raw value as quarantine reasons quote it: a JSON string is said to be one."""
    text = f"CAST({raw} AS VARCHAR)"
    string = f"CASE WHEN starts_with({text}, '\"') THEN 'the string ' ELSE '' END"
    return f"({string} || left({text}, 40))"


def typed_sql(rule_name: str, raw: str, name: str, field: str) -> tuple[str, str, list[str]]:
    """For the raw value in column `raw`: (the column num_<name>, the column <name> (over
    num_<name>, in a later select), the CASE arms of its errors, over both). `field` is the SQL
    string naming the field in reasons. Arms: a wrong type, then each plausibility limit, then
    a value that cannot be stored."""
    rule = RULES[rule_name]
    num = f"num_{name}"
    ok = rule.ok.format(n=num, v=name)
    wrong = f"THEN {field} || '|expected {rule.expect}, got ' || {shown_sql(raw)}"
    arms = [f"WHEN {raw} IS NOT NULL AND NOT coalesce({ok}, false) {wrong}"]
    if rule.limits is not None:
        arms.append(plausibility.when_sql(rule.limits, num, field, shown_sql(raw)))
    arms.append(f"WHEN {raw} IS NOT NULL AND {name} IS NULL {wrong}")
    return (
        f"TRY_CAST(CAST({raw} AS VARCHAR) AS DOUBLE) AS {num}",
        f"{rule.value.format(ok=ok, n=num, raw=raw)} AS {name}",
        arms,
    )
