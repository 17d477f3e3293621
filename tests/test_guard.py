"""The guardrails runtime (advisor.guard): window edges, budgets, caps, retry times, loading the
generic export, and that production can import it without the analysis stack."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor.errors import AdvisorError
from advisor.guard import Guard, GuardLimit, load_guardrails

T0 = dt.datetime(2026, 10, 27, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def doc(*limits: dict[str, Any], not_set: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"advisor_guardrails": 1, "period": {}, "limits": list(limits), "not_set": not_set}


def limit(**kw: Any) -> dict[str, Any]:
    base = {"id": "GR-X", "scope": "user", "subject": "*", "metric": "requests", "window": "1m"}
    base.update(sliding=kw.get("window", "1m") in ("1m", "1h"), unit="requests", action="refuse")
    base.update(kw)
    return base


def run(guard: Guard, times: list[float], **request: Any) -> list[bool]:
    out = []
    for t in times:
        verdict = guard.check({"user": "u1", **request}, at(t))
        guard.record(verdict, at(t), tokens=request.get("input_tokens"))
        out.append(verdict.allowed)
    return out


def test_a_request_exactly_one_window_later_is_outside_it() -> None:
    guard = load_guardrails(doc(limit(value=2)))
    assert run(guard, [0, 30, 60]) == [True, True, True]
    assert run(load_guardrails(doc(limit(value=2))), [0, 30, 59.999999]) == [True, True, False]


def test_a_burst_straddling_a_minute_boundary_counts_once() -> None:
    # 00:59.5 .. 01:00.5: two calendar minutes, one sliding window
    guard = load_guardrails(doc(limit(value=3)))
    assert run(guard, [59.5, 59.8, 60.1, 60.5]) == [True, True, True, False]


def test_refused_requests_consume_nothing_and_retry_after_says_when() -> None:
    guard = load_guardrails(doc(limit(value=2)))
    assert run(guard, [0, 10, 20, 30]) == [True, True, False, False]
    verdict = guard.check({"user": "u1"}, at(45))
    assert (verdict.allowed, verdict.limit_id, verdict.retry_after) == (False, "GR-X", 15.0)
    assert guard.check({"user": "u1"}, at(60)).allowed  # t=0 left; refusals left no trace
    assert guard.check({"user": "u2"}, at(45)).allowed  # each user has its own window


def test_a_tokens_window_refuses_once_recorded_tokens_reach_it() -> None:
    guard = load_guardrails(doc(limit(metric="tokens", unit="tokens", value=1000)))
    assert run(guard, [0, 1, 2], input_tokens=600) == [True, True, False]
    verdict = guard.check({"user": "u1"}, at(30))
    assert verdict.retry_after == 30.0  # the first 600 leave at t=60: 600 < 1000


def test_a_budget_admits_the_crossing_request_and_resets_with_the_day() -> None:
    guard = load_guardrails(
        doc(limit(metric="spend", window="1d", unit="USD", value="1.5", sliding=False))
    )
    costs = [Decimal("1"), Decimal("0.75"), Decimal("0.01")]
    seen = []
    for t, cost in zip([0, 10, 20], costs, strict=True):
        verdict = guard.check({"user": "u1"}, at(t))
        guard.record(verdict, at(t), spend=cost)
        seen.append((verdict.allowed, verdict.retry_after))
    assert seen == [(True, None), (True, None), (False, None)]
    assert guard.check({"user": "u1"}, T0.replace(hour=23, minute=59, second=59)).allowed is False
    assert guard.check({"user": "u1"}, T0.replace(hour=0) + dt.timedelta(days=1)).allowed


def test_unknown_spend_adds_nothing() -> None:
    guard = Guard([GuardLimit("GR-S", "global", "all", "spend", "1d", Decimal("0.01"))])
    for t in range(5):
        v = guard.check({}, at(t))
        guard.record(v, at(t), spend=None)
        assert v.allowed


def test_max_tokens_cap_lowers_never_raises_and_input_cap_refuses() -> None:
    guard = load_guardrails(
        doc(
            limit(id="GR-CAP", scope="feature", subject="chat", metric="max_tokens",
                  window="request", unit="tokens", value=500, action="cap"),
            limit(id="GR-IN", scope="feature", subject="chat", metric="input_tokens",
                  window="request", unit="tokens", value=1000),
        )
    )  # fmt: skip
    v = guard.check({"feature": "chat", "max_tokens": 4000, "input_tokens": 10}, T0)
    assert (v.allowed, v.max_tokens, v.capped) == (True, 500, True)
    v = guard.check({"feature": "chat", "max_tokens": 100}, T0)
    assert (v.max_tokens, v.capped) == (100, False)
    assert guard.check({"feature": "chat"}, T0).max_tokens == 500
    assert guard.check({"feature": "other", "max_tokens": 9000}, T0).max_tokens == 9000
    v = guard.check({"feature": "chat", "input_tokens": 1001}, T0)
    assert (v.allowed, v.limit_id, v.retry_after) == (False, "GR-IN", None)


def test_missing_subjects_are_not_limited() -> None:
    guard = load_guardrails(doc(limit(value=1)))
    assert all(guard.check({"user": None}, at(t)).allowed for t in range(5))
    assert all(guard.check({}, at(t)).allowed for t in range(5))


def test_loads_the_yaml_file_and_ignores_limits_not_set(tmp_path: Path) -> None:
    evil = "x'\n- {id: EVIL}\r\nX-Injected: 1 <script>"
    data = doc(
        limit(id="GR-F", scope="feature", subject=evil, metric="input_tokens",
              window="request", unit="tokens", value=10),
        not_set=[{"id": "GR-ACCOUNT-SPEND-MONTH", "subject": "*", "reason": "thin"}],
    )  # fmt: skip
    path = tmp_path / "guardrails.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    guard = load_guardrails(path)
    assert [lim.subject for lim in guard.limits] == [evil]
    assert guard.check({"feature": evil, "input_tokens": 11}, T0).limit_id == "GR-F"
    assert guard.check({"feature": "x'", "input_tokens": 11}, T0).allowed
    (tmp_path / "g.json").write_text(json.dumps(data), encoding="utf-8")
    assert load_guardrails(tmp_path / "g.json").limits == guard.limits


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"value": 1.5}, "whole number"),
        ({"value": True}, "whole number"),
        ({"unit": "USD", "metric": "spend", "window": "1d", "value": "x"}, "decimal"),
        ({"unit": "USD", "metric": "spend", "window": "1d", "value": 0.1}, "decimal string"),
        ({"window": "2m"}, "unknown scope, metric or window"),
        ({"metric": "input_tokens"}, "does not go with"),
        ({"metric": "spend", "unit": "USD", "value": "1"}, "calendar"),
        ({"value": None}, "whole number"),
    ],
)
def test_a_malformed_limit_is_refused_with_its_place(change: dict[str, Any], message: str) -> None:
    with pytest.raises(AdvisorError, match=message) as info:
        load_guardrails(doc(limit(**{"value": 1, **change})))
    assert "limits[0]" in str(info.value)


def test_not_a_guardrails_file() -> None:
    with pytest.raises(AdvisorError, match="not an advisor guardrails file"):
        load_guardrails({"limits": []})
    with pytest.raises(AdvisorError, match="missing field 'scope'"):
        load_guardrails(doc({"id": "x"}))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        load_guardrails(doc(limit(value=1))).check({"user": "u"}, dt.datetime(2026, 1, 1))


def test_runtime_imports_no_heavy_library(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc(limit(value=1))), encoding="utf-8")
    code = (
        "import sys, json, datetime as dt\n"
        "heavy = ('duckdb', 'numpy', 'sklearn', 'polars', 'pydantic', 'pyarrow', 'scipy')\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in heavy: raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from advisor.guard import load_guardrails\n"
        f"g = load_guardrails({str(path)!r})\n"
        "v = g.check({'user': 'u'}, dt.datetime.now(dt.UTC))\n"
        "print(json.dumps([v.allowed, [m for m in heavy if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [True, []]


def test_a_feature_named_all_is_just_a_feature() -> None:
    cap = {"scope": "feature", "subject": "all", "metric": "input_tokens", "window": "request"}
    guard = load_guardrails(doc(limit(**cap, unit="tokens", value=10)))
    assert not guard.check({"feature": "all", "input_tokens": 11}, T0).allowed
    assert guard.check({"feature": "chat", "input_tokens": 11}, T0).allowed
    assert guard.check({"input_tokens": 11}, T0).allowed
