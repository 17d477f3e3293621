"""The tiering lever's quality loop: measured pass rates in, routing and honest risk out.

`advisor tiering calibrate RESULTS` reads the results of the evaluation set (`advisor export
evalset`, replayed by the user with promptfoo on their own keys, or a CSV of request_id,pass) and
keeps one verdict per request in the store (`tiering_quality_results`). Every later analysis of
that store groups the measured requests by feature, template and difficulty class; a feature or
template that a rule of rules/tiering_quality.yaml matches is kept off routing (`_tier_held`, and
a guard in the exported router). The measured failure rate, with its Wilson interval, is what the
risk figures quote: never the classifier's own confidence restated. advisor calls no model.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from advisor import conditions, store
from advisor.errors import InputError, RuleError
from advisor.levers import tables as T
from advisor.levers.tiering.models import Calibration, MeasuredGroup, ReliabilityBin
from advisor.ruleset import load_model, rule_files

RESULTS_TABLE = "tiering_quality_results"
FACTS: dict[str, conditions.FeatureType] = {
    name: "number" for name in ("measured", "failed", "failure_rate", "failure_low", "failure_high")
}
BINS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)  # reliability bins of a confidence
_TRUE = {"pass", "passed", "true", "1", "yes", "ok"}
_FALSE = {"fail", "failed", "false", "0", "no"}
_PROMPTFOO_ERROR = 2  # promptfoo's ResultFailureReason.ERROR: the call failed, no verdict


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QualityRule(_Rule):
    id: str
    title: str
    applies_to: tuple[Literal["feature", "template"], ...] = Field(min_length=1)
    when: dict[str, Any]
    rationale: str
    cases: dict[str, Any] | None = None


class QualityFile(_Rule):
    schema_version: Literal[1]
    kind: Literal["tiering_quality"]
    title: str
    interval: float = Field(gt=0.5, lt=1.0)
    rules: tuple[QualityRule, ...]


@dataclass(frozen=True)
class QualityPolicy:
    interval: float
    rules: tuple[tuple[QualityRule, conditions.Condition], ...]


def load_quality_policy(rules_dir: Path) -> QualityPolicy:
    """The rules of every `kind: tiering_quality` file (the last file's interval)."""
    interval, rules = 0.95, []
    for path in rule_files(rules_dir, "tiering_quality"):
        data = load_model(path, QualityFile)
        interval = data.interval
        for rule in data.rules:
            try:
                rules.append((rule, conditions.parse(rule.when, FACTS, f"{rule.id}.when")))
            except conditions.ConditionError as exc:
                raise RuleError(f"{path}: {exc}") from None
    return QualityPolicy(interval, tuple(rules))


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (0..1 with no trials)."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)


def misroute_interval(
    expected: float, variance: float, confidence: float = 0.95
) -> tuple[float, float]:
    """The interval of a count of misroutes whose per-request chances sum to `expected` with
    `variance` (the sum of p(1 - p)): the normal approximation, never below zero. It is the
    spread if every confidence were exact, so it is the least doubt the estimate deserves."""
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * max(variance, 0.0) ** 0.5
    return round(max(0.0, expected - half), 2), round(expected + half, 2)


@dataclass(frozen=True)
class Results:
    verdicts: dict[str, bool]  # request id -> passed (every result of it passed)
    errored: int


def read_results(path: Path) -> Results:
    """Verdicts from a promptfoo results JSON (`promptfoo eval --output results.json`) or a CSV
    with columns request_id and pass; a malformed file is an InputError naming file and field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no results file at {path}")
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: not JSON ({exc})",
            hint="give `promptfoo eval --output results.json`, or a CSV of request_id,pass",
        ) from None
    return _read_promptfoo(path, data)


def _read_promptfoo(path: Path, data: Any) -> Results:
    inner = data.get("results") if isinstance(data, Mapping) else None
    rows = inner.get("results") if isinstance(inner, Mapping) else inner
    where = "results.results" if isinstance(inner, Mapping) else "results"
    if not isinstance(rows, list):
        raise InputError(
            f"{path}: no `results.results` list: not a promptfoo results file",
            hint="write it with `promptfoo eval -c promptfoo/promptfooconfig.yaml "
            "--output results.json`",
        )
    verdicts: dict[str, bool] = {}
    errored = 0
    for i, row in enumerate(rows):
        at = f"{where}[{i}]"
        if not isinstance(row, Mapping):
            raise InputError(f"{path}: {at}: expected an object")
        test = row.get("testCase")
        meta = (test.get("metadata") if isinstance(test, Mapping) else None) or row.get("metadata")
        if not isinstance(meta, Mapping):
            meta = {}
        rid = meta.get("request_id")
        if not isinstance(rid, str) or not rid:
            raise InputError(
                f"{path}: {at}.testCase.metadata.request_id: missing",
                hint="the results must come from the tests `advisor export evalset` wrote",
            )
        if not _on_proposed(row.get("provider"), meta.get("proposed_model")):
            continue  # the original model's replay: the check's own noise, not the route's
        if row.get("failureReason") == _PROMPTFOO_ERROR:
            errored += 1
            continue
        success = row.get("success")
        if not isinstance(success, bool):
            raise InputError(f"{path}: {at}.success: expected true or false, got {success!r}")
        verdicts[rid] = verdicts.get(rid, True) and success
    if not verdicts and not errored:
        raise InputError(
            f"{path}: no result on a proposed model",
            hint="each test's metadata.proposed_model names the provider label to read",
        )
    return Results(verdicts, errored)


def _on_proposed(provider: Any, proposed: Any) -> bool:
    """Whether a result ran on the test's proposed model (label, or id ending in its name)."""
    if not isinstance(proposed, str) or provider is None:
        return True  # nothing to tell the two replays apart: every result counts
    if isinstance(provider, str):
        names = {provider}
    elif isinstance(provider, Mapping):
        names = {str(provider[k]) for k in ("label", "id") if provider.get(k)}
    else:
        return True
    return any(n == proposed or n.endswith(":" + proposed) for n in names)


def _read_csv(path: Path) -> Results:
    verdicts: dict[str, bool] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        rid_col = columns.get("request_id")
        pass_col = next((columns[c] for c in ("pass", "passed", "success") if c in columns), None)
        if rid_col is None or pass_col is None:
            raise InputError(
                f"{path}: header needs columns request_id and pass (found: "
                f"{', '.join(columns) or 'none'})"
            )
        for line, row in enumerate(reader, start=2):
            rid = (row.get(rid_col) or "").strip()
            value = (row.get(pass_col) or "").strip().lower()
            if not rid:
                raise InputError(f"{path}: line {line}: request_id: empty")
            if value not in _TRUE | _FALSE:
                raise InputError(
                    f"{path}: line {line}: {pass_col}: {value!r} is not pass/fail, true/false "
                    "or 1/0"
                )
            verdicts[rid] = verdicts.get(rid, True) and value in _TRUE
    if not verdicts:
        raise InputError(f"{path}: no result rows")
    return Results(verdicts, 0)


def save_results(con: duckdb.DuckDBPyConnection, results: Results, source: str) -> int:
    """Replace the store's measured results with these; return how many match a request."""
    con.execute(
        f"""CREATE OR REPLACE TABLE {RESULTS_TABLE}
            (request_id VARCHAR, passed BOOLEAN, source VARCHAR, errored INTEGER)"""
    )
    rows = [(rid, ok, source, results.errored) for rid, ok in sorted(results.verdicts.items())]
    if rows:
        con.executemany(f"INSERT INTO {RESULTS_TABLE} VALUES (?, ?, ?, ?)", rows)
    return int(
        store.scalar(
            con,
            f"""SELECT count(*) FROM {RESULTS_TABLE} q
                WHERE EXISTS (SELECT 1 FROM requests r WHERE r.request_id = q.request_id)""",
        )
        or 0
    )


def has_results(con: duckdb.DuckDBPyConnection) -> bool:
    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    return RESULTS_TABLE in tables


_KINDS = {"feature": "feature", "template": "template_id", "difficulty": "difficulty"}


def measured_groups(con: duckdb.DuckDBPyConnection, policy: QualityPolicy) -> list[MeasuredGroup]:
    """Per feature, template and difficulty class: the measured verdicts and the rule (if any)
    that keeps the group off routing. Needs `difficulty` and the results table."""
    parts = " UNION ALL ".join(
        f"""SELECT '{kind}' AS kind, d.{column} AS value, count(*) AS n,
                   count(*) FILTER (WHERE q.passed) AS k
            FROM {RESULTS_TABLE} q JOIN difficulty d USING (request_id) GROUP BY ALL"""
        for kind, column in _KINDS.items()
    )
    groups = []
    for kind, value, n, k in con.execute(
        f"SELECT * FROM ({parts}) ORDER BY kind, n - k DESC, n DESC, value NULLS LAST"
    ).fetchall():
        low, high = wilson(k, n, policy.interval)
        facts = {
            "measured": n,
            "failed": n - k,
            "failure_rate": (n - k) / n,
            "failure_low": round(1 - high, 6),
            "failure_high": round(1 - low, 6),
        }
        rule = next(
            (
                r.id
                for r, cond in policy.rules
                if kind in r.applies_to and value is not None and conditions.evaluate(cond, facts)
            ),
            None,
        )
        groups.append(
            MeasuredGroup(
                kind=kind,
                value=value,
                requests=n,
                passed=k,
                pass_rate=round(k / n, 6),
                pass_low=low,
                pass_high=high,
                excluded=rule is not None,
                rule=rule,
            )
        )
    return groups


def hold_back(con: duckdb.DuckDBPyConnection, groups: Iterable[MeasuredGroup]) -> None:
    """`_tier_held` (kind, value): the features and templates kept off routing."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {T.TIER_HELD} (kind VARCHAR, value VARCHAR)")
    rows = [(_KINDS[g.kind], g.value) for g in groups if g.excluded]
    if rows:
        con.executemany(f"INSERT INTO {T.TIER_HELD} VALUES (?, ?)", rows)


def held_sql(alias: str) -> str:
    """Whether the request of candidate row `alias` is in a held-back feature or template."""
    return f"""EXISTS (SELECT 1 FROM {T.TIER_HELD} h WHERE h.value = CASE h.kind
                 WHEN 'feature' THEN {alias}.feature ELSE {alias}.template_id END)"""


def guards(groups: Iterable[MeasuredGroup]) -> list[dict[str, Any]]:
    """Router guards that keep the held-back features and templates on their model."""
    return [
        {
            "id": f"{g.rule}:{g.kind}",
            "title": f"measured: {g.passed} of {g.requests} passed on the cheaper model",
            "label": "hard",
            "priority": 100,
            "when": {"feature": _KINDS[g.kind], "op": "eq", "value": g.value},
        }
        for g in groups
        if g.excluded
    ]


def reliability(pairs: list[tuple[float, bool]], basis: str, outcome: str) -> Calibration | None:
    """Brier score and reliability table of (confidence, outcome held) pairs; None if none."""
    if not pairs:
        return None
    brier = sum((c - float(ok)) ** 2 for c, ok in pairs) / len(pairs)
    bins = []
    for low, high in pairwise(BINS):
        inside = [(c, ok) for c, ok in pairs if low <= c < high or (high == 1.0 and c == 1.0)]
        if inside:
            bins.append(
                ReliabilityBin(
                    low=low,
                    high=high,
                    requests=len(inside),
                    mean_confidence=round(sum(c for c, _ in inside) / len(inside), 6),
                    observed=round(sum(ok for _, ok in inside) / len(inside), 6),
                )
            )
    return Calibration(
        basis=basis, outcome=outcome, requests=len(pairs), brier=round(brier, 6), bins=bins
    )
