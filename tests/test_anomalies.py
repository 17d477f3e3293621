"""Spend anomalies (advisor/guardrails/anomalies.py, rules/anomalies.yaml): each kind on tiny
tables, the edges (empty store, one request, missing ids, clock skew, unpriced requests, hostile
names), and on the sample: the planted runaway user and prompt regression, and nothing else."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from advisor import store
from advisor.errors import RuleError
from advisor.guardrails import ANOMALOUS_TABLE, anomalies
from advisor.guardrails.models import Anomaly
from advisor.ruleset import default_rules_dir

RULES = anomalies.load_rules(default_rules_dir())
DAY0 = dt.datetime(2026, 10, 1)
HOSTILE = '<script>alert(1)</script>\' - {a: b} &amp; "x"\n# y'
SAMPLE = Path(__file__).resolve().parents[1] / "sample_logs"


def req(rid: str, ts: dt.datetime, **kw: Any) -> dict[str, Any]:
    base = {
        "request_id": rid, "ts": ts, "user_id": None, "account_id": None, "feature": "f",
        "session_id": None, "input_tokens": 1000, "token_source": "logged", "system_hash": "s1",
        "prompt_hash": f"p-{rid}", "cost": Decimal("0.01"), "text": f"question {rid} " + rid * 3,
    }  # fmt: skip
    return base | kw


def build(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    """requests, costs, messages and texts of `rows` (cost None: unpriced; text: the last user
    message)."""
    con.execute("CREATE OR REPLACE TABLE costs (request_id VARCHAR, baseline_cost DECIMAL(18,9))")
    if not rows:
        return
    cols = [
        "request_id", "ts", "user_id", "account_id", "feature", "session_id", "input_tokens",
        "token_source", "system_hash", "prompt_hash",
    ]  # fmt: skip
    con.executemany(
        f"INSERT INTO requests ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [[r[c] for c in cols] for r in rows],
    )
    con.executemany("INSERT INTO costs VALUES (?, ?)", [[r["request_id"], r["cost"]] for r in rows])
    texts = {hashlib.md5(r["text"].encode()).hexdigest(): r["text"] for r in rows if r["text"]}
    con.executemany("INSERT INTO texts VALUES (?, ?)", sorted(texts.items()))
    con.executemany(
        "INSERT INTO messages VALUES (?, 1, 'user', ?)",
        [[r["request_id"], hashlib.md5(r["text"].encode()).hexdigest()] for r in rows if r["text"]],
    )


def detect(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> list[Anomaly]:
    build(con, rows)
    return anomalies.detect(con, RULES)


def marked(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r for (r,) in con.execute(f"SELECT request_id FROM {ANOMALOUS_TABLE}").fetchall()}


def daily(user: str, days: int, per_day: int, cost: str, **kw: Any) -> list[dict[str, Any]]:
    """`per_day` requests of `cost` each on `days` days from DAY0, 09:00 onwards."""
    return [
        req(f"{user}-{d}-{i}", DAY0 + dt.timedelta(days=d, hours=9, minutes=7 * i),
            user_id=user, cost=Decimal(cost), **kw)
        for d in range(days) for i in range(per_day)
    ]  # fmt: skip


def test_empty_store_has_no_anomalies_and_an_empty_table(con: duckdb.DuckDBPyConnection) -> None:
    assert detect(con, []) == []
    assert marked(con) == set()
    columns = con.execute(
        "SELECT column_name, data_type, database_name FROM duckdb_columns() WHERE table_name = ?",
        [ANOMALOUS_TABLE],
    ).fetchall()
    assert columns == [("request_id", "VARCHAR", "temp")]
    temp = con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
    assert temp == [(ANOMALOUS_TABLE,)]  # no working table left behind


def test_single_request_and_missing_ids_flag_nothing(con: duckdb.DuckDBPyConnection) -> None:
    rows = [req("only", DAY0, user_id="u1", account_id="a1", session_id="s1")]
    # a loop by nobody known: no user, account or session id is no entity to flag
    rows += [req(f"anon{i}", DAY0 + dt.timedelta(seconds=i), text="same") for i in range(50)]
    # a jump in requests with no feature: no feature to flag
    rows += [
        req(f"nof{d}-{i}", DAY0 + dt.timedelta(days=d, minutes=i), feature=None,
            input_tokens=1000 * (1 + (d > 8)))
        for d in range(12) for i in range(25)
    ]  # fmt: skip
    assert detect(con, rows) == []


def test_a_user_day_spike_against_the_users_other_days(con: duckdb.DuckDBPyConnection) -> None:
    rows = daily("u1", 10, 4, "0.25")  # $1 a day
    rows += [
        req(f"spike{i}", DAY0 + dt.timedelta(days=10, hours=10, minutes=i), user_id="u1",
            cost=Decimal("2"), text=f"distinct question number {i} " + "x" * i)
        for i in range(10)
    ]  # fmt: skip
    (found,) = detect(con, rows)
    assert (found.id, found.entity, found.kind) == ("ANOM-SPIKE-USER-DAY", "u1", "spend_spike")
    assert (found.spend, found.expected_spend, found.excess_spend) == (20, 1, 19)
    assert found.window_start == "2026-10-11T10:00:00Z"
    assert found.window_end == "2026-10-11T10:09:00Z"
    assert found.evidence["history_days"] == 10 and found.evidence["median_spend"] == "1"
    assert found.score >= 5
    assert marked(con) == {f"spike{i}" for i in range(10)}


def test_a_spike_needs_history_and_dollars(con: duckdb.DuckDBPyConnection) -> None:
    short = [
        *daily("u1", 5, 4, "0.25"),
        req("big", DAY0 + dt.timedelta(days=6), user_id="u1", cost=Decimal("50")),
    ]
    cents = [
        *daily("u2", 10, 4, "0.001"),
        req("small", DAY0 + dt.timedelta(days=11), user_id="u2", cost=Decimal("1")),
    ]
    assert detect(con, short + cents) == []


def test_a_new_user_heavy_from_its_first_day(con: duckdb.DuckDBPyConnection) -> None:
    rows = [r for u in range(5) for r in daily(f"u{u}", 10, 2, "0.05")]
    rows += daily("old-heavy", 10, 2, "2")  # heavy, but there from the log's first day
    rows += [
        req(f"new{i}", DAY0 + dt.timedelta(days=8, hours=3, seconds=i), user_id=HOSTILE,
            cost=Decimal("3"), text=f"unique prompt {i} " + "y" * i)
        for i in range(10)
    ]  # fmt: skip
    found = detect(con, rows)
    assert [(a.id, a.entity) for a in found] == [("ANOM-NEW-USER", HOSTILE)]
    assert found[0].spend == 30 and found[0].evidence["days_after_start"] == 8
    # a hostile name is data: kept verbatim, and serialised as a JSON string
    assert json.loads(found[0].model_dump_json())["entity"] == HOSTILE
    assert marked(con) == {f"new{i}" for i in range(10)}


def test_a_tokens_jump_is_flagged_on_its_first_day_only(con: duckdb.DuckDBPyConnection) -> None:
    rows = [
        req(f"d{d}-{i}", DAY0 + dt.timedelta(days=d, hours=8, minutes=i), feature=HOSTILE,
            input_tokens=(2000 if d >= 10 else 1000) + i, user_id=f"u{i % 7}")
        for d in range(14) for i in range(30)
    ]  # fmt: skip
    (found,) = detect(con, rows)
    assert (found.kind, found.entity_type, found.entity) == ("tokens_jump", "feature", HOSTILE)
    assert found.feature == HOSTILE and found.evidence["day"] == "2026-10-11"
    assert found.evidence["tokens_per_request_before"] == 1014.5
    assert found.evidence["tokens_per_request_after"] == 2014.5
    assert found.requests == 30
    assert marked(con) == {f"d10-{i}" for i in range(30)}


def loop(user: str, n: int, start: dt.datetime, per_session: int, **kw: Any) -> list[Any]:
    """A client re-asking the same thing (a counter in it) every 10 s, a new session at times."""
    return [
        req(f"{user}-loop{i}", start + dt.timedelta(seconds=10 * i), user_id=user,
            session_id=f"{user}-s{i // per_session}", text=f"Continue  from page {i}.", **kw)
        for i in range(n)
    ]  # fmt: skip


def test_a_runaway_user_across_sessions(con: duckdb.DuckDBPyConnection) -> None:
    burst_start = DAY0 + dt.timedelta(hours=13)
    rows = loop("u1", 60, burst_start, per_session=3)
    rows += [
        req(f"calm{i}", DAY0 + dt.timedelta(hours=h), user_id="u1") for i, h in enumerate([8, 20])
    ]
    (found,) = [a for a in detect(con, rows) if a.kind == "runaway_loop"]
    assert (found.id, found.entity) == ("ANOM-LOOP-USER", "u1")
    assert found.window_start == "2026-10-01T13:00:00Z"  # the burst, not the day
    assert found.window_end == "2026-10-01T13:09:50Z"
    assert found.requests == 60 and found.evidence["looping_requests"] == 60
    assert found.expected_spend == Decimal("0.01") and found.excess_spend == Decimal("0.59")
    assert found.evidence["sessions"] == 20
    assert "u1-loop0" in marked(con) and "calm0" not in marked(con)


def test_a_loop_inside_one_session_is_listed_once(con: duckdb.DuckDBPyConnection) -> None:
    found = detect(con, loop("u1", 40, DAY0, per_session=100))
    assert [(a.id, a.entity) for a in found] == [("ANOM-LOOP-SESSION", "u1-s0")]


def test_a_dataset_with_repeated_rows_is_not_a_loop(con: duckdb.DuckDBPyConnection) -> None:
    texts = [f"review {k}: " + "z" * k for k in range(30)] + ["Works as described."] * 30
    rows = [
        req(f"r{i}", DAY0 + dt.timedelta(seconds=4 * i), user_id="analyst", text=t)
        for i, t in enumerate(random.Random(1).sample(texts, len(texts)))
    ]
    assert detect(con, rows) == []


def test_unpriced_loops_have_unknown_spend_and_rank_last(con: duckdb.DuckDBPyConnection) -> None:
    rows = loop("priced", 40, DAY0, per_session=2)
    rows += loop("free", 40, DAY0, per_session=2, cost=None)
    found = detect(con, rows)
    assert [a.entity for a in found] == ["priced", "free"]
    assert found[1].spend is None and found[1].expected_spend is None
    assert found[1].excess_spend is None and found[1].evidence["unpriced_requests"] == 40


def test_clock_skew_does_not_change_the_result(tmp_path: Path) -> None:
    rows = loop("u1", 50, DAY0 + dt.timedelta(hours=2), per_session=4)
    rows += daily("u2", 10, 4, "0.25") + [
        req(f"spike{i}", DAY0 + dt.timedelta(days=10, minutes=i), user_id="u2", cost=Decimal(2))
        for i in range(10)
    ]
    shuffled = random.Random(7).sample(rows, len(rows))
    results = []
    for order in (rows, shuffled):
        con = store.connect()
        results.append([a.model_dump_json() for a in detect(con, order)])
        con.close()
    assert results[0] == results[1]
    # ranked by excess spend: the $19 day before the $0.49 loop
    assert [json.loads(a)["id"] for a in results[0]] == ["ANOM-SPIKE-USER-DAY", "ANOM-LOOP-USER"]


def test_rules_are_validated_on_load(tmp_path: Path) -> None:
    text = (default_rules_dir() / anomalies.RULES_FILE).read_text()
    (tmp_path / anomalies.RULES_FILE).write_text(
        text.replace("feature: history_days", "feature: nope", 1)
    )
    with pytest.raises(RuleError, match="unknown feature 'nope'"):
        anomalies.load_rules(tmp_path)
    (tmp_path / anomalies.RULES_FILE).write_text(
        text.replace("ANOM-SPIKE-ACCOUNT-DAY", "ANOM-SPIKE-USER-DAY")
    )
    with pytest.raises(RuleError, match="every id once"):
        anomalies.load_rules(tmp_path)


@pytest.fixture(scope="module")
def sample_anomalies(analysed_sample: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = tmp_path_factory.mktemp("anomalies") / "advisor.duckdb"
    shutil.copy(analysed_sample.files["db"], db)
    con = store.connect(db)
    try:
        return anomalies.detect(con, RULES), marked(con)
    finally:
        con.close()


def test_the_sample_flags_its_plants_and_nothing_else(sample_anomalies: Any) -> None:
    found, _ = sample_anomalies
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    runaway, regression = truth["runaway_user"], truth["plants"]["prompt_regression"]
    assert sorted((a.kind, a.entity) for a in found) == sorted([
        ("runaway_loop", runaway["user"]),  # the loop itself
        ("new_entity", runaway["user"]),  # a user nobody saw before, $8.91 on its first day
        ("spend_spike", "acme-corp"),  # its account's day: the runaway's spend on top
        ("tokens_jump", regression["feature"]),
    ])  # fmt: skip


def test_the_sample_runaway_user_is_flagged_over_its_burst(sample_anomalies: Any) -> None:
    found, ids = sample_anomalies
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())["runaway_user"]
    (loop_,) = [a for a in found if a.kind == "runaway_loop"]
    assert loop_.entity_type == "user" and loop_.feature == truth["feature"]
    assert loop_.window_start[:19] == truth["window_start"][:19]
    assert loop_.window_end[:23] == truth["window_end"][:23]
    assert loop_.requests == truth["requests"] and loop_.excess_spend > 8
    assert len(ids) >= truth["requests"]


def test_the_sample_prompt_regression_is_found(sample_anomalies: Any) -> None:
    found, _ = sample_anomalies
    plant = json.loads((SAMPLE / "ground_truth.json").read_text())["plants"]["prompt_regression"]
    (jump,) = [a for a in found if a.kind == "tokens_jump"]
    assert (jump.entity, jump.evidence["day"]) == (plant["feature"], plant["date"])
    before, after = plant["median_input_tokens_per_request"].values()
    assert abs(jump.evidence["tokens_per_request_before"] - before) < 0.02 * before
    assert abs(jump.evidence["tokens_per_request_since"] - after) < 0.02 * after
