"""Streaming advice on tiny DuckDB tables: interactive features that do not stream (with their
latency figures), features paying for speed (with the priority premium), and what is left out."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from lever_tables import PRICES, RULES, T0, row, store

from advisor.levers import streaming as S
from advisor.pricing import request_cost


def people(feature: str, n: int = 40, **kw: Any) -> list[dict[str, Any]]:
    return [
        row(
            f"{feature}-{i}",
            feature=feature,
            user_id=f"u_{i % 5}",
            ts=T0 + dt.timedelta(minutes=37 * i),
            latency_ms=1000.0 + 100 * i,
            output_tokens=400,
        )
        | kw
        for i in range(n)
    ]


def test_an_interactive_feature_that_does_not_stream_gets_its_latency_figures() -> None:
    rows = people("support", ttft_ms=450.0)
    advice = S.advise(store(rows), RULES)
    (f,) = advice.non_streaming
    assert (f.feature, f.requests, f.human_users, f.non_streaming_share) == ("support", 40, 5, 1.0)
    assert f.p50_latency_ms == 2950.0 and f.p95_latency_ms == 4705.0 and f.p50_ttft_ms == 450.0
    ((title, action),) = S.actions(advice)
    assert "stream=true" in action and "3.0 s" in action and "0.5 s" in action
    assert "support" in title and advice.premium == []


def test_streaming_chats_jobs_and_short_answers_get_no_streaming_advice() -> None:
    rows = (
        people("chat", stream=True)
        + [r | {"user_id": "system"} for r in people("digest")]
        + people("classify", latency_ms=300.0, output_tokens=3)
    )
    assert S.advise(store(rows), RULES).non_streaming == []


def test_a_feature_batching_finds_eligible_gets_no_streaming_advice() -> None:
    # one person's script: 40 calls ten seconds apart (a burst), not streamed
    rows = [
        r | {"user_id": "u_1", "ts": T0 + dt.timedelta(seconds=10 * i)}
        for i, r in enumerate(people("script"))
    ]
    assert S.advise(store(rows), RULES).non_streaming == []
    assert S.advise(store(people("support")), RULES).non_streaming != []


def test_ttft_not_logged_is_said_not_zero() -> None:
    advice = S.advise(store(people("support")), RULES)
    assert advice.non_streaming[0].p50_ttft_ms is None
    assert "not logged" in S.actions(advice)[0][1]


def test_priority_traffic_nobody_waits_on_shows_its_premium() -> None:
    rows = [r | {"user_id": "svc-etl", "service_tier": "priority"} for r in people("etl", 10)]
    rows += [r | {"service_tier": "default"} for r in people("etl-std", 3)]
    advice = S.advise(store(rows), RULES)
    (p,) = advice.premium
    gpt4o = PRICES.models["gpt-4o"]
    one = {"input_tokens": 1000, "output_tokens": 400}
    each = request_cost(gpt4o, **one, service_tier="priority") - request_cost(gpt4o, **one)
    assert (p.feature, p.priority_requests, p.premium) == ("etl", 10, each * 10)
    assert p.premium == Decimal("0.0455") and p.unattended_share == 1.0
    action = dict(S.actions(advice))["Check etl's speed premium"]
    assert "$0.05 over the standard tier" in action and "nobody waits on 100%" in action


def test_fast_variants_count_and_unpriced_priority_is_counted_not_zero() -> None:
    rows = [r | {"model": "grok-4-fast", "model_key": None} for r in people("chat", 4, stream=True)]
    rows += [r | {"model_key": None, "service_tier": "priority"} for r in people("q", 2)]
    advice = S.advise(store(rows), RULES)
    by = {p.feature: p for p in advice.premium}
    assert by["chat"].fast_models == ["grok-4-fast"] and by["chat"].fast_model_requests == 4
    assert by["q"].premium == 0 and by["q"].unpriced_priority_requests == 2
    assert "2 unpriced" in dict(S.actions(advice))["Check q's speed premium"]


def test_legacy_turbo_models_are_not_speed_variants() -> None:
    rows = [r | {"model": "gpt-3.5-turbo"} for r in people("old", 4, stream=True)]
    assert S.advise(store(rows), RULES).premium == []
