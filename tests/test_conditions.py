"""The closed condition language: validation, Python evaluation, and SQL that means the same."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor.conditions import (
    All,
    AnyOf,
    Compare,
    ConditionError,
    Not,
    evaluate,
    features_used,
    parse,
    rules_with_cases,
    run_cases,
    sql_literal,
    to_sql,
)

TYPES: dict[str, Any] = {"n": "number", "b": "bool", "s": "string"}


def test_parse_builds_the_tree() -> None:
    cond = parse(
        {
            "all": [
                {"feature": "n", "op": "ge", "value": 3},
                {
                    "not": {
                        "any": [
                            {"feature": "s", "op": "in", "value": ["a", "b"]},
                            {"feature": "b", "op": "eq", "value": True},
                        ]
                    }
                },
            ]
        },
        TYPES,
    )
    assert cond == All(
        (
            Compare("n", "ge", 3),
            Not(AnyOf((Compare("s", "in", ("a", "b")), Compare("b", "eq", True)))),
        )
    )
    assert features_used(cond) == {"n", "s", "b"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"feature": "n", "op": "between", "value": 3}, "not one of"),
        ({"feature": "zz", "op": "eq", "value": 3}, "unknown feature"),
        ({"feature": "n", "op": "eq", "value": "3"}, "is not a number"),
        ({"feature": "n", "op": "lt", "value": True}, "needs a number"),
        ({"feature": "s", "op": "lt", "value": "a"}, "needs a number"),
        ({"feature": "s", "op": "in", "value": "a"}, "non-empty list"),
        ({"feature": "n", "op": "contains", "value": "1"}, "applies to strings"),
        ({"feature": "n", "op": "gt", "value": None}, "only eq/ne"),
        ({"all": []}, "non-empty list"),
        ({"all": [{"feature": "n", "op": "eq", "value": 1}], "any": []}, "expected one of"),
        ({"feature": "n", "op": "eq"}, "expected one of"),
        ({"eval": "__import__('os')"}, "expected one of"),
        ("n > 3", "expected a mapping"),
        ({"feature": "n", "op": "eq", "value": float("nan")}, "finite"),
        ({"feature": "n", "op": "eq", "value": [1]}, "must be a number"),
    ],
)
def test_parse_rejects_what_is_not_in_the_language(data: Any, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        parse(data, TYPES)


def test_missing_values_follow_sql() -> None:
    assert not evaluate(parse({"feature": "n", "op": "lt", "value": 3}), {})
    assert not evaluate(parse({"feature": "n", "op": "ne", "value": 3}), {"n": None})
    assert evaluate(parse({"not": {"feature": "n", "op": "lt", "value": 3}}), {})
    assert evaluate(parse({"feature": "n", "op": "eq", "value": None}), {})
    assert evaluate(parse({"feature": "n", "op": "ne", "value": None}), {"n": 0})
    assert evaluate(parse({"feature": "s", "op": "contains", "value": "ab"}), {"s": "xaby"})
    assert evaluate(parse({"feature": "s", "op": "in", "value": ["x", "y"]}), {"s": "y"})


FEATURE_VALUES = {
    "n": st.one_of(st.none(), st.integers(-5, 5), st.floats(-5, 5, allow_nan=False)),
    "b": st.one_of(st.none(), st.booleans()),
    "s": st.one_of(st.none(), st.sampled_from(["", "a", "ab", "b'c", "x y"])),
}
LEAVES = st.one_of(
    st.builds(
        lambda op, v: {"feature": "n", "op": op, "value": v},
        st.sampled_from(["lt", "le", "gt", "ge", "eq", "ne"]),
        st.integers(-5, 5),
    ),
    st.builds(
        lambda op, v: {"feature": "b", "op": op, "value": v},
        st.sampled_from(["eq", "ne"]),
        st.one_of(st.booleans(), st.none()),
    ),
    st.builds(
        lambda v: {"feature": "s", "op": "contains", "value": v},
        st.sampled_from(["a", "'", "b'c", ""]),
    ),
    st.builds(
        lambda v: {"feature": "s", "op": "in", "value": v},
        st.lists(st.sampled_from(["a", "ab", "b'c"]), min_size=1, max_size=3),
    ),
    st.builds(
        lambda v: {"feature": "n", "op": "in", "value": v},
        st.lists(st.integers(-2, 2), min_size=1, max_size=3),
    ),
)
CONDITIONS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def db() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@settings(max_examples=300, deadline=None)
@given(data=CONDITIONS, row=st.fixed_dictionaries(FEATURE_VALUES))
def test_sql_and_python_agree(
    db: duckdb.DuckDBPyConnection, data: Any, row: dict[str, Any]
) -> None:
    cond = parse(data, TYPES)
    cols = {"n": "DOUBLE", "b": "BOOLEAN", "s": "VARCHAR"}
    select = ", ".join(f"CAST({sql_literal(row[k])} AS {cols[k]}) AS {k}" for k in ("n", "b", "s"))
    result = db.execute(f"SELECT {to_sql(cond)} FROM (SELECT {select})").fetchall()[0][0]
    assert result is evaluate(cond, row)


def test_sql_literals_are_quoted() -> None:
    cond = parse({"feature": "s", "op": "eq", "value": "x'); DROP TABLE t; --"})
    assert "'x''); DROP TABLE t; --'" in to_sql(cond)


def test_run_cases_reports_each_wrong_case() -> None:
    rule = {
        "id": "X-001",
        "when": {"feature": "n", "op": "ge", "value": 2},
        "cases": {"pass": [{"n": 3}, {"n": 1}], "fail": [{"n": 0}, {"n": 9}]},
    }
    failures = run_cases(rule, TYPES)
    assert [(f.kind, f.index) for f in failures] == [("pass", 1), ("fail", 1)]
    assert "X-001: pass case #1 should match" in str(failures[0])


def test_run_cases_refuses_unknown_features_and_empty_cases() -> None:
    rule = {
        "id": "X-002",
        "when": {"feature": "n", "op": "ge", "value": 2},
        "cases": {"pass": [{"nn": 3}]},
    }
    with pytest.raises(ConditionError, match="unknown features"):
        run_cases(rule, TYPES)
    with pytest.raises(ConditionError, match="no cases"):
        run_cases({**rule, "cases": {}}, TYPES)


def test_rules_with_cases_finds_nested_rules() -> None:
    data = {
        "kind": "x",
        "groups": [{"rules": [{"id": "A", "when": {}, "cases": {}}]}],
        "other": {"id": "B", "when": {}, "cases": {}},
    }
    found = dict(rules_with_cases(data))
    assert set(found) == {"groups[0].rules[0]", "other"}
