"""The plausibility rules file: validated on load, and its SQL means what its cases say."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from advisor import plausibility
from advisor.errors import RuleError


def test_the_shipped_rules_cover_every_feature() -> None:
    rules = plausibility.load().rules
    assert {rule.feature for rule in rules} == set(plausibility.FEATURES)
    assert len({rule.id for rule in rules}) == len(rules)


@pytest.mark.parametrize("rule", plausibility.load().rules, ids=lambda rule: rule.id)
def test_the_sql_of_each_rule_agrees_with_its_cases(rule: plausibility.Limit) -> None:
    """Ingest runs the SQL form of the rules; the rule cases check the Python form."""
    con = duckdb.connect()
    for kind, rows in rule.cases.items():
        for row in rows:
            value = row.get(rule.feature)
            literal = "NULL::DOUBLE" if value is None else f"CAST({value!r} AS DOUBLE)"
            ((matched,),) = con.execute(
                f"SELECT {plausibility.violations(rule.feature, literal)[0][0]}"
            ).fetchall()
            assert matched == (kind == "pass"), (rule.id, kind, row)


BASE = """schema_version: 1
kind: plausibility
title: t
rules:
  - id: PLAUS-900
    title: t
    expect: at most 1
    rationale: r
    cases: {pass: [], fail: []}
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "    when: {all: [{feature: tokens, op: gt, value: 1}, "
            "{feature: year, op: gt, value: 1}]}\n",
            "one feature",
        ),
        ("    when: {feature: bytes, op: gt, value: 1}\n", "unknown feature 'bytes'"),
        ("    when: {feature: tokens, op: gt, value: '1'}\n", "gt needs a number"),
    ],
)
def test_a_malformed_rule_is_refused_with_its_file_and_field(
    tmp_path: Path, extra: str, message: str
) -> None:
    path = tmp_path / "plausibility.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(RuleError, match=message) as caught:
        plausibility.load(path)
    assert str(path) in str(caught.value)
