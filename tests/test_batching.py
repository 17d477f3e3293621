"""The batching lever's core on tiny DuckDB tables: feature facts, eligibility, the replay to the
batch tier, the per-feature saving, and a property: batching never raises a cost and leaves
requests already at a discounted tier unchanged."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lever_tables import PRICES, RULES, T0, row, store

from advisor.levers import batching as B
from advisor.levers import tables as T
from advisor.levers.base import Findings, LeverContext, Replayed, SimOptions, State
from advisor.pricing import cost_sql, load_prices

MODELS = B.batch_models(PRICES)


def nightly(feature: str = "digest", nights: int = 3, per_night: int = 30) -> list[dict[str, Any]]:
    """A job: `per_night` calls ten seconds apart at 02:00 from `system`, no streaming."""
    return [
        row(
            f"{feature}-{d}-{i}",
            feature=feature,
            user_id="system",
            ts=T0 + dt.timedelta(days=d, seconds=10 * i),
        )
        for d in range(nights)
        for i in range(per_night)
    ]


def chat(n: int = 96) -> list[dict[str, Any]]:
    """An interactive chat: human users, streaming, one call every 45 minutes around the clock."""
    return [
        row(
            f"chat-{i}",
            feature="chat",
            user_id=f"u_{i % 7}",
            stream=True,
            ts=T0 + dt.timedelta(minutes=45 * i),
        )
        for i in range(n)
    ]


def features(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    cur = con.execute(f"SELECT * FROM {T.BATCH_FEATURES} ORDER BY feature")
    names = [d[0] for d in cur.description]
    return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def measure(
    rows: list[dict[str, Any]],
    offline: tuple[str, ...] = (),
    con: duckdb.DuckDBPyConnection | None = None,
) -> duckdb.DuckDBPyConnection:
    con = store(rows, con)
    B.measure_features(con, B.load_rules(RULES), offline)
    return con


def total(con: duckdb.DuckDBPyConnection, state: str) -> Decimal:
    value = con.execute(
        f"SELECT sum({cost_sql('s', 'p')}) FROM {state} s JOIN prices p USING (model_key)"
    ).fetchone()
    assert value is not None
    return Decimal(value[0] or 0)


def test_rules_load_and_every_level_has_rules() -> None:
    rules = B.load_rules(RULES)
    assert rules.active("strict")
    assert len(rules.active("lenient")) > len(rules.active("strict"))


def test_a_nightly_job_is_strictly_eligible_and_its_evidence_is_measured() -> None:
    con = measure(nightly())
    f = features(con)["digest"]
    assert f["eligible_strict"] and f["eligible_lenient"]
    assert f["non_streaming_share"] == 1.0 and f["unattended_share"] == 1.0
    assert f["burst_share"] == 1.0 and f["peak_burst_requests"] == 30
    assert f["top_hours"] == [2] and f["top_hour_share"] == 1.0 and not f["offline"]
    assert f["days"] == 3 and f["human_users"] == 0
    assert "BATCH-002" in f["rules"]


def test_an_interactive_chat_is_not_eligible_at_any_level() -> None:
    con = measure(chat())
    f = features(con)["chat"]
    assert not f["eligible_strict"] and not f["eligible_lenient"] and f["rules"] == []
    assert f["streaming_share"] == 1.0 and f["human_users"] == 7 and f["burst_share"] == 0.0
    assert con.execute(f"SELECT count(*) FROM {T.BATCH_ELIGIBLE}").fetchone() == (0,)


def test_a_non_streaming_chat_of_people_is_not_eligible_either() -> None:
    rows = [r | {"stream": False} for r in chat()]
    f = features(measure(rows))["chat"]
    assert not f["eligible_strict"] and not f["eligible_lenient"]


def test_an_offline_feature_is_strict_but_its_streaming_calls_stay() -> None:
    rows = [r | {"stream": i % 2 == 0} for i, r in enumerate(chat())]
    con = measure(rows, offline=("chat",))
    f = features(con)["chat"]
    assert f["offline"] and f["eligible_strict"] and f["rules"] == ["BATCH-001"]
    eligible = con.execute(f"SELECT count(*) FROM {T.BATCH_ELIGIBLE} WHERE strict").fetchone()
    assert eligible == (48,)
    assert B.unknown_offline(con, ("chat", "nope")) == ["nope"]


def test_unknown_stream_flags_are_lenient_only() -> None:
    rows = [r | {"stream": None, "source_format": "csv"} for r in nightly()]
    f = features(measure(rows))["digest"]
    assert not f["eligible_strict"] and f["eligible_lenient"]
    assert set(f["rules"]) == {"BATCH-101", "BATCH-102"}


def test_no_stream_flag_in_a_logged_request_body_is_the_api_default_false() -> None:
    rows = [r | {"stream": None, "source_format": "jsonl"} for r in nightly()]
    f = features(measure(rows))["digest"]
    assert f["non_streaming_share"] == 1.0 and f["eligible_strict"]


def test_requests_without_a_feature_are_not_measured() -> None:
    con = measure([r | {"feature": None} for r in nightly()])
    assert features(con) == {}


def test_bursts_are_per_user_not_per_account() -> None:
    # 40 people of one account each asking once within a minute: no burst
    rows = [
        row(f"r{i}", user_id=f"u_{i}", ts=T0 + dt.timedelta(seconds=i), stream=False)
        for i in range(40)
    ]
    assert features(measure(rows))["f"]["burst_share"] == 0.0


def test_replay_moves_only_eligible_non_streaming_supported_undiscounted_requests() -> None:
    rows = nightly(per_night=20) + chat(10)
    rows[0] |= {"service_tier": "flex"}
    rows[1] |= {"service_tier": "batch"}
    rows[2] |= {"model_key": None}
    rows[3] |= {"model_key": "gpt-4o", "service_tier": "priority"}
    con = measure(rows)
    con.execute(B.replay_sql("state_base", "state_batch", MODELS))
    tiers = dict(con.execute("SELECT request_id, service_tier FROM state_batch").fetchall())
    assert tiers["digest-0-0"] == "flex" and tiers["digest-0-1"] == "batch"
    assert tiers["digest-0-2"] == "default"  # unpriced: no batch price known
    assert tiers["digest-0-3"] == "batch"  # priority traffic nobody waits on
    assert tiers["digest-2-19"] == "batch"
    assert {t for k, t in tiers.items() if k.startswith("chat")} == {"default"}
    same = con.execute(
        "SELECT count(*) FROM state_base b JOIN state_batch a USING (request_id)"
        " WHERE (b.model_key, b.input_tokens, b.output_tokens)"
        " IS DISTINCT FROM (a.model_key, a.input_tokens, a.output_tokens)"
    ).fetchone()
    assert same == (0,)


def test_the_saving_is_the_batch_discount_and_stacks_with_cached_reads() -> None:
    rows = nightly(nights=2, per_night=20)
    rows[0] |= {"cache_read_tokens": 800}
    con = measure(rows)
    con.execute(B.replay_sql("state_base", "state_batch", MODELS))
    (s,) = B.feature_savings(con, "state_base", "state_batch", "strict")
    assert (s.feature, s.provider, s.moved, s.already, s.unpriced) == ("digest", "openai", 40, 0, 0)
    # gpt-4o: batch is exactly half of every rate, cached reads included (OpenAI: stacks)
    assert s.saving == s.cost / 2
    assert s.saving == total(con, "state_base") - total(con, "state_batch")


def test_a_model_without_batch_prices_is_counted_not_moved() -> None:
    assert "gpt-4o" in MODELS
    rows = nightly(nights=2, per_night=20)
    con = measure(rows)
    con.execute(B.replay_sql("state_base", "state_batch", [m for m in MODELS if m != "gpt-4o"]))
    (s,) = B.feature_savings(con, "state_base", "state_batch", "strict")
    assert (s.moved, s.unsupported, s.saving) == (0, 40, Decimal(0))


def test_batch_models_refuse_a_batch_price_above_the_standard_one(tmp_path: Path) -> None:
    src = (RULES / "prices" / "openai.yaml").read_text()
    (tmp_path / "prices").mkdir()
    bad = src.replace('batch_input: "1.25"', 'batch_input: "9.25"', 1)
    assert bad != src
    (tmp_path / "prices" / "openai.yaml").write_text(bad)
    assert "gpt-4o" not in B.batch_models(load_prices(tmp_path))


SHARED_CON = store([])
TIERS = st.sampled_from(["default", "batch", "flex", "priority", None])
REQUEST = st.fixed_dictionaries(
    {
        "feature": st.sampled_from(["digest", "chat", "etl", None]),
        "user_id": st.sampled_from(["system", "svc-etl", "u_1", "u_2", None]),
        "stream": st.sampled_from([True, False, None]),
        "minute": st.integers(0, 60 * 24 * 3),
        "model_key": st.sampled_from(["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro", "o3"]),
        "input_tokens": st.integers(0, 300_000),
        "read": st.integers(0, 100),
        "output_tokens": st.integers(0, 20_000),
        "service_tier": TIERS,
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(REQUEST, min_size=1, max_size=60), st.sampled_from(["strict", "lenient"]))
def test_batching_never_raises_a_cost_and_keeps_discounted_requests(
    requests: list[dict[str, Any]], level: B.Level
) -> None:
    rows = [
        row(
            f"r{i}",
            feature=r["feature"],
            user_id=r["user_id"],
            stream=r["stream"],
            ts=T0 + dt.timedelta(minutes=r["minute"]),
            model_key=r["model_key"],
            input_tokens=r["input_tokens"],
            cache_read_tokens=r["input_tokens"] * r["read"] // 100,
            output_tokens=r["output_tokens"],
            service_tier=r["service_tier"],
        )
        for i, r in enumerate(requests)
    ]
    con = measure(rows, offline=("etl",), con=SHARED_CON)
    con.execute(B.replay_sql("state_base", "state_batch", MODELS, level))
    worse = con.execute(
        f"""SELECT count(*) FROM state_base s JOIN state_batch a USING (request_id)
            JOIN prices p ON p.model_key = s.model_key
            WHERE {cost_sql("a", "p")} > {cost_sql("s", "p")}
               OR (s.service_tier IN ('batch', 'flex') AND a.service_tier <> s.service_tier)"""
    ).fetchone()
    assert worse == (0,)
    saved = sum(s.saving for s in B.feature_savings(con, "state_base", "state_batch", level))
    assert saved == total(con, "state_base") - total(con, "state_batch")


@pytest.mark.parametrize("level", ["strict", "lenient"])
def test_lenient_eligibility_never_moves_fewer_requests(level: B.Level) -> None:
    etl = [r | {"stream": None, "source_format": "csv"} for r in nightly("etl")]
    rows = nightly() + etl + chat()
    con = measure(rows)
    con.execute(B.replay_sql("state_base", "s_strict", MODELS, "strict"))
    con.execute(B.replay_sql("state_base", "s_lenient", MODELS, "lenient"))
    moved = {
        name: con.execute(f"SELECT count(*) FROM {name} WHERE service_tier = 'batch'").fetchone()
        for name in ("s_strict", "s_lenient")
    }
    assert moved == {"s_strict": (90,), "s_lenient": (180,)}


def lever_run(
    rows: list[dict[str, Any]], offline: tuple[str, ...] = ()
) -> tuple[duckdb.DuckDBPyConnection, Replayed, Findings[B.BatchingDetails, B.BatchingRisk]]:
    con = store(rows)
    ctx = LeverContext(con, PRICES, RULES, SimOptions(offline_features=offline))
    lever = B.BatchingLever()
    lever.prepare(ctx)
    alone = lever.replay(ctx, State("state_base"), "state_alone")
    return con, alone, lever.describe(ctx, State("state_base"), alone)


def test_the_lever_reports_evidence_range_actions_and_decisions() -> None:
    etl = [r | {"stream": None, "source_format": "csv"} for r in nightly("etl")]
    con, alone, found = lever_run(nightly() + etl + chat(), offline=("absent",))
    d = found.details
    assert alone.affected_requests == 90 == d.range.strict_requests
    assert d.range.lenient_requests == 180 and d.range.strict < d.range.lenient
    assert d.range.strict == total(con, "state_base") - total(con, "state_alone")
    assert [(f.feature, f.level) for f in d.features] == [("digest", "strict"), ("etl", "lenient")]
    digest = d.features[0]
    assert digest.evidence.top_hours == [2] and digest.evidence.burst_share == 1.0
    assert digest.apis == ["OpenAI Batch API"] and digest.saving == digest.cost / 2
    assert d.offline_features_missing == ["absent"] and d.features_measured == 3
    assert found.risk.lenient_only_features == ["etl"]
    titles = [r.title for r in found.recommendations]
    assert titles == [
        "Batch digest (OpenAI Batch API)",
        "Check whether etl can wait for OpenAI Batch API",
    ]
    assert "/v1/batches" in found.recommendations[0].action
    assert found.per_request is not None
    eligible = con.execute(
        f"SELECT count(*) FILTER (WHERE batch_eligible), count(*) FROM {found.per_request}"
    ).fetchone()
    assert eligible == (90, 90 * 2 + 96)


def test_the_lever_moves_nothing_on_an_interactive_chat() -> None:
    _, alone, found = lever_run(chat())
    assert alone.affected_requests == 0 and found.details.features == []
    assert found.recommendations == [] and found.details.range.lenient == 0


def test_each_provider_gets_its_own_batch_api() -> None:
    rows = nightly()
    for i, r in enumerate(rows):
        if i % 2:
            r |= {"model_key": "claude-sonnet-4-5"}
    _, _, found = lever_run(rows)
    assert found.details.features[0].apis == ["Anthropic Message Batches", "OpenAI Batch API"]
    assert {r.title for r in found.recommendations} == {
        "Batch digest (Anthropic Message Batches)",
        "Batch digest (OpenAI Batch API)",
    }
