"""Limits derived from a history and back-tested on it (advisor.guardrails.limits), on tiny stores:
window edges, thin data, clock skew, missing and hostile ids, unpriced requests, and parity with
replaying every request through the runtime (advisor.guard)."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import store
from advisor.errors import RuleError
from advisor.guard import load_guardrails
from advisor.guardrails import ANOMALOUS_TABLE
from advisor.guardrails.generic import generic_document, generic_limit
from advisor.guardrails.limits import derive, load_rules
from advisor.guardrails.models import Guardrails, Limit
from advisor.guardrails.policy import Policy
from advisor.pricing import load_prices, register_prices
from advisor.ruleset import default_rules_dir

if TYPE_CHECKING:
    from advisor.api import AnalyzeResult

T0 = dt.datetime(2026, 10, 27, 0, 0)
RULES = load_rules(default_rules_dir())
BY_ID = {p.id: p for p in RULES}


@dataclass(frozen=True)
class Row:
    rid: str
    t: float  # seconds after T0
    user: str | None = "u1"
    account: str | None = None
    feature: str | None = "chat"
    input_tokens: int | None = 100
    output_tokens: int | None = 10
    cost: Decimal | None = Decimal("0.01")
    anomalous: bool = False


def make_store(rows: Sequence[Row]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(store.SCHEMA_SQL)
    con.execute("CREATE TABLE costs (request_id VARCHAR, baseline_cost DECIMAL(38, 18))")
    con.execute(f"CREATE TEMP TABLE {ANOMALOUS_TABLE} (request_id VARCHAR)")
    if not rows:
        return con
    frame = pl.DataFrame(
        {
            "request_id": [r.rid for r in rows],
            "ts": [T0 + dt.timedelta(seconds=r.t) for r in rows],
            "user_id": [r.user for r in rows],
            "account_id": [r.account for r in rows],
            "feature": [r.feature for r in rows],
            "input_tokens": [r.input_tokens for r in rows],
            "output_tokens": [r.output_tokens for r in rows],
            "cost": [None if r.cost is None else str(r.cost) for r in rows],
            "anomalous": [r.anomalous for r in rows],
        },
        schema_overrides={"ts": pl.Datetime("us"), "user_id": pl.String, "account_id": pl.String,
                          "feature": pl.String, "cost": pl.String, "input_tokens": pl.Int64,
                          "output_tokens": pl.Int64},
    )  # fmt: skip
    con.register("_rows", frame)
    con.execute(
        """INSERT INTO requests (request_id, ts, user_id, account_id, feature, input_tokens,
                                 output_tokens, model_key)
           SELECT request_id, ts, user_id, account_id, feature, input_tokens, output_tokens,
                  'gpt-4o' FROM _rows"""
    )
    con.execute("INSERT INTO costs SELECT request_id, CAST(cost AS DECIMAL(38, 18)) FROM _rows")
    con.execute(f"INSERT INTO {ANOMALOUS_TABLE} SELECT request_id FROM _rows WHERE anomalous")
    con.unregister("_rows")
    return con


def loose(policy: Policy, **update: object) -> Policy:
    """A policy that sets a value from any data: the median, no headroom, a tiny floor."""
    floor = Decimal("0.000001") if policy.unit == "USD" else Decimal(1)
    base = {"quantile": 0.5, "headroom": 1.0, "floor": floor, "min_samples": 1,
            "min_subjects": 1, "min_days": 0.0}  # fmt: skip
    return policy.model_copy(update={**base, **update})


def one(guardrails: Guardrails, limit_id: str, subject: str | None = None) -> Limit:
    found = [
        lim
        for lim in guardrails.limits
        if lim.id == limit_id and (subject is None or lim.subject == subject)
    ]
    assert len(found) == 1, found
    return found[0]


def with_value(policy: Policy, value: str) -> Policy:
    """A policy whose value is exactly `value` (floor = ceiling)."""
    return loose(policy, floor=Decimal(value), ceiling=Decimal(value))


# --- window edges -------------------------------------------------------------------------------


def test_a_burst_straddling_a_minute_boundary_counts_once() -> None:
    # 59.5 s .. 60.5 s: two calendar minutes, one sliding window of 4 requests
    rows = [Row(f"r{i}", t) for i, t in enumerate([59.5, 59.8, 60.1, 60.5])]
    limit = one(derive(make_store(rows), [with_value(BY_ID["GR-USER-RPM"], "3")]), "GR-USER-RPM")
    assert (limit.value, limit.refused_requests, limit.refused_subjects) == (3, 1, 1)


def test_a_request_exactly_60_seconds_later_is_outside_the_window() -> None:
    rows = [Row("a", 0), Row("b", 30), Row("c", 60)]
    limit = one(derive(make_store(rows), [with_value(BY_ID["GR-USER-RPM"], "2")]), "GR-USER-RPM")
    assert limit.refused_requests == 0
    rows = [Row("a", 0), Row("b", 30), Row("c", 59.999)]
    limit = one(derive(make_store(rows), [with_value(BY_ID["GR-USER-RPM"], "2")]), "GR-USER-RPM")
    assert limit.refused_requests == 1


def test_refused_requests_do_not_count_toward_the_window() -> None:
    # value 2: 0 and 30 admitted, 31 refused; at 60.5 only 30 is in the window -> admitted;
    # an attempt-based count (3 in (0.5, 60.5]) would have refused it
    rows = [Row("a", 0), Row("b", 30), Row("c", 31), Row("d", 60.5)]
    limit = one(derive(make_store(rows), [with_value(BY_ID["GR-USER-RPM"], "2")]), "GR-USER-RPM")
    assert limit.refused_requests == 1


def test_ties_are_ordered_by_request_id() -> None:
    rows = [Row("b", 0), Row("a", 0), Row("c", 0)]
    con = make_store(rows)
    limit = one(derive(con, [with_value(BY_ID["GR-USER-RPM"], "2")]), "GR-USER-RPM")
    assert limit.refused_requests == 1


def test_a_budget_admits_the_crossing_request_and_resets_at_utc_midnight() -> None:
    costs = ["0.6", "0.6", "0.6", "0.6"]
    times = [0, 10, 20, 86400]
    rows = [
        Row(f"r{i}", t, cost=Decimal(c)) for i, (t, c) in enumerate(zip(times, costs, strict=True))
    ]
    policy = with_value(BY_ID["GR-USER-SPEND-DAY"], "1")
    limit = one(derive(make_store(rows), [policy]), "GR-USER-SPEND-DAY")
    assert (limit.refused_requests, limit.prevented_spend) == (1, Decimal("0.6"))


# --- thin data ----------------------------------------------------------------------------------


def test_an_empty_store_lists_every_limit_too_thin() -> None:
    result = derive(make_store([]), RULES)
    assert result.notes == ["no requests in the store: no limit set"]
    assert [lim.id for lim in result.limits] == [p.id for p in RULES]
    assert all(lim.status == "too_thin" and lim.value is None for lim in result.limits)
    assert all(lim.reason for lim in result.limits)


def test_single_request_users_are_too_thin() -> None:
    rows = [Row(f"r{i}", i * 7.0, user=f"u{i}") for i in range(3)]
    result = derive(make_store(rows), RULES)
    rpm = one(result, "GR-USER-RPM")
    assert rpm.status == "too_thin" and rpm.value is None
    assert rpm.reason == "only 3 normal requests to derive it from (at least 1000)"
    assert rpm.refused_requests == 0 and rpm.prevented_spend == 0
    few = derive(make_store(rows), [loose(BY_ID["GR-USER-RPM"], min_subjects=5)])
    assert one(few, "GR-USER-RPM").reason == "only 3 users in the logs (at least 5)"


def test_one_hour_of_logs_sets_no_daily_or_monthly_budget() -> None:
    rows = [Row(f"r{i:04d}", i * 3.0, user=f"u{i % 7}", account="a1") for i in range(1200)]
    result = derive(make_store(rows), RULES)
    for limit_id in ("GR-USER-SPEND-DAY", "GR-USER-TOKENS-DAY", "GR-ACCOUNT-SPEND-DAY",
                     "GR-ACCOUNT-SPEND-MONTH", "GR-GLOBAL-SPEND-DAY"):  # fmt: skip
        limit = one(result, limit_id)
        assert limit.status == "too_thin", limit_id
        assert limit.reason is not None and "days of history" in limit.reason
    assert one(result, "GR-USER-RPM").status == "set"
    assert one(result, "GR-GLOBAL-RPM").status == "set"


def test_no_user_or_account_ids_say_so() -> None:
    rows = [Row(f"r{i}", i, user=None, feature=None) for i in range(5)]
    result = derive(make_store(rows), [loose(p) for p in RULES])
    assert one(result, "GR-USER-RPM").reason == "no user ids in the logs"
    assert one(result, "GR-ACCOUNT-SPEND-DAY").reason == "no account ids in the logs"
    assert "no user ids in the logs: per-user limits not set" in result.notes
    assert "no account ids in the logs: per-account limits not set" in result.notes
    # no feature names: one cap over all requests
    cap = one(result, "GR-FEATURE-INPUT-TOKENS")
    assert (cap.scope, cap.subject) == ("global", "all")


# --- missing ids, clock skew, hostile names -----------------------------------------------------


def test_null_user_account_and_feature_are_not_limited() -> None:
    rows = [Row("a", 0), Row("b", 1), Row("c", 2, user=None), Row("d", 3, user=None),
            Row("e", 4, feature=None, user=None)]  # fmt: skip
    result = derive(
        make_store(rows),
        [with_value(BY_ID["GR-USER-RPM"], "1"), with_value(BY_ID["GR-FEATURE-INPUT-TOKENS"], "50")],
    )
    rpm = one(result, "GR-USER-RPM")
    assert (rpm.applies_to_requests, rpm.refused_requests) == (2, 1)
    cap = one(result, "GR-FEATURE-INPUT-TOKENS", "chat")
    assert (cap.applies_to_requests, cap.refused_requests) == (4, 4)
    assert "1 requests have no feature name: no per-feature cap covers them" in result.notes


def test_the_log_order_does_not_change_any_figure() -> None:
    rng = random.Random(7)
    rows = [
        Row(f"r{i:03d}", rng.choice([0, 0.5, 30, 59, 60, 61, 3599, 3600, 86399, 86400]) + i % 3,
            user=rng.choice(["u1", "u2", None]), account=rng.choice(["a1", None]),
            cost=rng.choice([Decimal("0.2"), None]), anomalous=rng.random() < 0.1)
        for i in range(120)
    ]  # fmt: skip
    policies = [loose(p) for p in RULES]
    expected = derive(make_store(rows), policies)
    for _ in range(3):
        rng.shuffle(rows)
        assert derive(make_store(rows), policies) == expected


INJECTIONS = [
    "<script>alert(1)</script>",
    "x: 1\n- {id: EVIL, value: 0}",
    "'; DROP TABLE requests; --",
    "ok\r\nX-Evil: 1",
    "&{anchor} *alias !!python/object:os.system",
]


def test_hostile_ids_flow_through_derive_and_the_generic_document() -> None:
    rows = [Row(f"r{i:03d}", i * 5.0, user=INJECTIONS[i % 5], feature=INJECTIONS[(i + 1) % 5],
                account=INJECTIONS[(i + 2) % 5]) for i in range(50)]  # fmt: skip
    result = derive(make_store(rows), [loose(p) for p in RULES])
    features = sorted(lim.subject for lim in result.limits if lim.id == "GR-FEATURE-INPUT-TOKENS")
    assert features == sorted(INJECTIONS)
    document = generic_document(result, "2026-10-27T00:00:00Z", None)
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    assert yaml.safe_load(text) == document
    assert "EVIL" not in [lim.get("id") for lim in yaml.safe_load(text)["limits"]]
    guard = load_guardrails(yaml.safe_load(text))
    assert {lim.subject for lim in guard.limits if lim.scope == "feature"} == set(INJECTIONS)


# --- money --------------------------------------------------------------------------------------


def test_unpriced_requests_are_never_counted_as_zero_prevented() -> None:
    policy = with_value(BY_ID["GR-USER-RPM"], "1")
    unpriced = [Row("a", 0, cost=None), Row("b", 1, cost=None), Row("c", 2, cost=None)]
    limit = one(derive(make_store(unpriced), [policy]), "GR-USER-RPM")
    assert (limit.refused_requests, limit.prevented_spend) == (2, None)
    mixed = [Row("a", 0), Row("b", 1, cost=None), Row("c", 2, cost=Decimal("0.5"))]
    limit = one(derive(make_store(mixed), [policy]), "GR-USER-RPM")
    assert (limit.refused_requests, limit.prevented_spend) == (2, Decimal("0.5"))
    assert limit.prevented_anomaly_spend == 0


def test_anomalies_are_left_out_of_the_value_and_counted_apart() -> None:
    normal = [Row(f"n{i:03d}", i * 600.0, user=f"u{i % 5}") for i in range(100)]
    burst = [Row(f"x{i:03d}", 100 + i, user="u_runaway", anomalous=True) for i in range(30)]
    policy = loose(BY_ID["GR-USER-RPM"], quantile=0.999, headroom=1.0)
    limit = one(derive(make_store(normal + burst), [policy]), "GR-USER-RPM")
    assert limit.basis.observed == 1 and limit.value == 1  # the burst is not normal
    assert limit.refused_requests == 29 and limit.refused_normal_requests == 0
    assert limit.refused_subjects == 1
    assert limit.prevented_spend == limit.prevented_anomaly_spend == Decimal("0.29")


def test_a_cap_prevents_the_output_tokens_over_it_at_the_output_price() -> None:
    rows = [Row("a", 0, output_tokens=100), Row("b", 1, output_tokens=1100)]
    con = make_store(rows)
    register_prices(con, load_prices(default_rules_dir()))
    limit = one(derive(con, [with_value(BY_ID["GR-FEATURE-MAX-TOKENS"], "300")]),
                "GR-FEATURE-MAX-TOKENS")  # fmt: skip
    # gpt-4o output: $10 per 1M tokens; 800 tokens over the cap
    assert (limit.action, limit.refused_requests) == ("cap", 1)
    assert limit.prevented_spend == Decimal("0.008")


def test_values_are_rounded_up_to_readable_numbers() -> None:
    rows = [Row(f"r{i}", i * 1.0, input_tokens=1234) for i in range(3)]
    policy = loose(BY_ID["GR-FEATURE-INPUT-TOKENS"], headroom=1.0)
    assert one(derive(make_store(rows), [policy]), "GR-FEATURE-INPUT-TOKENS").value == 1300
    spend = [Row(f"r{i}", i * 1.0, cost=Decimal("0.01234")) for i in range(3)]
    policy = loose(BY_ID["GR-USER-SPEND-DAY"], quantile=0.99)
    assert one(derive(make_store(spend), [policy]), "GR-USER-SPEND-DAY").value == Decimal(
        "0.025"
    )  # p99 of spend earlier that day: 0.02468 x 1.0, up to 2 digits


# --- parity with the runtime --------------------------------------------------------------------


def replay(rows: Sequence[Row], limit: Limit) -> tuple[int, int, int, int, Decimal | None]:
    """(applies, refused, refused normal, refused subjects, prevented spend) of one limit alone,
    every request through the runtime in (ts, request_id) order."""
    guard = load_guardrails({"advisor_guardrails": 1, "limits": [generic_limit(limit)]})
    (lim,) = guard.limits
    applies, refused, normal, subjects, priced, saved = 0, 0, 0, set(), 0, Decimal(0)
    for r in sorted(rows, key=lambda r: (r.t, r.rid)):
        now = (T0 + dt.timedelta(seconds=r.t)).replace(tzinfo=dt.UTC)
        request = {"user": r.user, "account": r.account, "feature": r.feature,
                   "input_tokens": r.input_tokens}  # fmt: skip
        subject = lim.subject_of(request)
        applies += subject is not None
        verdict = guard.check(request, now)
        tokens = (r.input_tokens or 0) + (r.output_tokens or 0)
        guard.record(verdict, now, tokens=tokens, spend=r.cost)
        cap = verdict.max_tokens if verdict.capped else None
        if not verdict.allowed or (cap is not None and (r.output_tokens or 0) > cap):
            refused += 1
            normal += not r.anomalous
            subjects.add(subject)
            if r.cost is not None and limit.action == "refuse":
                priced += 1
                saved += r.cost
    prevented = Decimal(0) if not refused else (saved if priced else None)
    return applies, refused, normal, len(subjects), prevented


rows_strategy = st.lists(
    st.builds(
        lambda t, frac, user, account, feature, tin, tout, cost, anomalous: (
            t + frac,
            user,
            account,
            feature,
            tin,
            tout,
            cost,
            anomalous,
        ),
        st.one_of(
            st.sampled_from([0, 1, 30, 59, 60, 61, 119, 120, 3599, 3600, 86399, 86400, 2678400]),
            st.integers(0, 400),
        ),
        st.sampled_from([0.0, 0.0, 0.25, 0.999999]),
        st.sampled_from(["u1", "u2", "u3", None]),
        st.sampled_from(["a1", "a2", None]),
        st.sampled_from(["f1", "f2", None]),
        st.integers(0, 60),
        st.one_of(st.none(), st.integers(0, 60)),
        st.one_of(st.none(), st.integers(0, 90).map(lambda c: Decimal(c) / 100)),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=rows_strategy, seed=st.integers(0, 1000), quantile=st.sampled_from([0.3, 0.5, 0.8]))
def test_backtest_equals_replaying_every_request_through_the_runtime(
    raw: list[tuple[object, ...]], seed: int, quantile: float
) -> None:
    ids = [f"r{i:03d}" for i in range(len(raw))]
    random.Random(seed).shuffle(ids)  # id order differs from log order: ties break on it
    rows = [
        Row(rid, t, user, account, feature, tin, tout, cost, anomalous)  # type: ignore[arg-type]
        for rid, (t, user, account, feature, tin, tout, cost, anomalous) in zip(
            ids, raw, strict=True
        )
    ]
    result = derive(make_store(rows), [loose(p, quantile=quantile) for p in RULES])
    checked = 0
    for limit in result.limits:
        if limit.value is None:
            continue
        expected = replay(rows, limit)
        got = (limit.applies_to_requests, limit.refused_requests, limit.refused_normal_requests,
               limit.refused_subjects, limit.prevented_spend)  # fmt: skip
        if limit.action == "cap":  # no price table here: the runtime cannot price a cap
            got, expected = got[:4], expected[:4]
        assert got == expected, limit.id
        checked += 1
    assert checked or all(r.anomalous for r in rows)


def test_generic_document_follows_the_export_shape() -> None:
    rows = [Row(f"r{i:02d}", i * 10.0, user=f"u{i % 3}") for i in range(20)]
    result = derive(make_store(rows), RULES)
    set_rpm = one(result, "GR-USER-RPM").model_copy(
        update={"value": Decimal(40), "status": "set", "reason": None}
    )
    spend = one(result, "GR-USER-SPEND-DAY").model_copy(
        update={"value": Decimal("12.50"), "status": "set", "reason": None}
    )
    thin = one(result, "GR-ACCOUNT-SPEND-MONTH")
    doc = generic_document(Guardrails(limits=[set_rpm, spend, thin]), "2026-10-18T00:00:00Z", "e")
    assert doc["advisor_guardrails"] == 1
    assert doc["period"] == {"start": "2026-10-18T00:00:00Z", "end": "e"}
    rpm, budget = doc["limits"]
    assert list(rpm) == ["id", "scope", "subject", "metric", "window", "sliding", "unit",
                         "value", "action", "backtest"]  # fmt: skip
    assert (rpm["value"], rpm["unit"], rpm["sliding"]) == (40, "requests", True)
    assert (budget["value"], budget["unit"], budget["sliding"]) == ("12.5", "USD", False)
    assert rpm["backtest"] == {"refused_requests": 0, "refused_share": 0.0,
                               "refused_normal_share": 0.0, "refused_subjects": 0,
                               "prevented_spend": "0"}  # fmt: skip
    assert doc["not_set"] == [{"id": "GR-ACCOUNT-SPEND-MONTH", "subject": "*",
                               "reason": thin.reason}]  # fmt: skip
    assert load_guardrails(doc).limits[1].value == Decimal("12.5")


def test_rules_file_loads_every_default_policy(tmp_path: Path) -> None:
    ids = [p.id for p in RULES]
    assert ids == ["GR-FEATURE-INPUT-TOKENS", "GR-FEATURE-MAX-TOKENS", "GR-USER-RPM",
                   "GR-USER-RPH", "GR-USER-TOKENS-DAY", "GR-USER-SPEND-DAY",
                   "GR-ACCOUNT-SPEND-DAY", "GR-ACCOUNT-SPEND-MONTH", "GR-GLOBAL-SPEND-DAY",
                   "GR-GLOBAL-RPM", "GR-GLOBAL-TPM"]  # fmt: skip
    assert all(p.target_share == 0.001 for p in RULES)
    bad = (default_rules_dir() / "guardrails.yaml").read_text(encoding="utf-8")
    (tmp_path / "guardrails.yaml").write_text(bad.replace("window: 1m", "window: 1d", 1))
    with pytest.raises(RuleError, match="requests are limited per sliding window"):
        load_rules(tmp_path)


# --- real traces --------------------------------------------------------------------------------


@pytest.mark.parametrize("trace", ["code", "conv"])
def test_azure_trace_limits_refuse_at_most_their_target(
    shared_data: Path, tmp_path: Path, trace: str
) -> None:
    """One hour of Azure's production arrivals and token counts, one account, no users: the
    request caps and deployment rpm/tpm are set and stay under 0.1 % refused; budgets per day
    and every per-user or per-account limit are too thin to set, and say why."""
    from advisor import api, baseline

    path = shared_data / "real" / f"AzureLLMInferenceTrace_{trace}.csv"
    db = tmp_path / "advisor.duckdb"
    api.ingest([str(path)], db, model="gpt-4o")
    con = store.connect(db)
    try:
        prices = api.load_price_table()
        baseline.resolve_models(con, prices, {})
        baseline.price_requests(con, prices)
        result = derive(con, RULES)
    finally:
        con.close()
    set_ids = {lim.id for lim in result.limits if lim.status == "set"}
    assert set_ids == {"GR-FEATURE-INPUT-TOKENS", "GR-FEATURE-MAX-TOKENS", "GR-GLOBAL-RPM",
                       "GR-GLOBAL-TPM"}  # fmt: skip
    for limit in result.limits:
        assert limit.refused_normal_share <= limit.target_share, limit.id
        if limit.status == "set":
            assert limit.subject == "all" and limit.basis.samples > 8000
    for limit_id in ("GR-GLOBAL-SPEND-DAY", "GR-USER-SPEND-DAY", "GR-ACCOUNT-SPEND-DAY"):
        assert one(result, limit_id).status == "too_thin"
    assert "days of history" in (one(result, "GR-GLOBAL-SPEND-DAY").reason or "")
    assert "no user ids in the logs: per-user limits not set" in result.notes


# --- the sample logs ----------------------------------------------------------------------------


def test_the_sample_runaway_user_is_stopped_and_no_one_else(
    analysed_sample: AnalyzeResult, repo_root: Path
) -> None:
    """The whole pipeline (`advisor analyze`): the planted runaway (612 support-chat requests in
    2 h) is flagged by the anomaly detector, and the limits derived without it refuse its
    requests and nobody else's: every refusal is inside an anomaly, and the user and account
    limits that refuse anything refuse one subject."""
    truth = json.loads((repo_root / "sample_logs" / "ground_truth.json").read_text("utf-8"))
    runaway = truth["runaway_user"]
    analysis = analysed_sample.analysis
    assert any(a.entity == runaway["user"] for a in analysis.anomalies)
    result = analysis.guardrails
    for limit in result.limits:
        assert limit.refused_normal_requests == 0, limit.id
        if limit.refused_requests:
            assert limit.scope == "feature" or limit.refused_subjects == 1, limit.id
            assert limit.prevented_anomaly_spend == limit.prevented_spend, limit.id
    rph = one(result, "GR-USER-RPH")
    assert rph.refused_requests > 0 and rph.refused_subjects == 1
    assert one(result, "GR-USER-SPEND-DAY").refused_requests > runaway["requests"] / 2
