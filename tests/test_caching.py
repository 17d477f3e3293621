"""The caching lever on small stores: provider rules (TTL, refresh, minimum, explicit breakpoints,
1-hour TTL), invariants (never more cached than input, independent of file order), what cannot be
replayed, the prefix-order advice, and the demo traffic in sample_logs/."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Outcome,
    anthropic_line,
    openai_line,
    require_tiktoken,
    run_chained,
    run_standalone,
    write_jsonl,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import api, baseline, store, tokens
from advisor.conditions import run_cases
from advisor.ingest import ingest
from advisor.levers.base import STATE_COLUMNS, LeverContext, SimOptions
from advisor.levers.caching import CachingLever, load_policy, prefix
from advisor.ruleset import default_rules_dir

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)
STABLE = " ".join(f"Rule {i}: answer politely and cite policy {i}." for i in range(200))  # ~2k tok


@pytest.fixture(autouse=True)
def _tiktoken() -> None:
    require_tiktoken()


def count(messages: list[dict[str, str]]) -> int:
    """Logged prompt tokens as OpenAI counts them: text plus chat-format overhead."""
    enc = tokens.get_encoding("o200k_base")
    assert enc is not None
    return sum(len(enc.encode_ordinary(m["content"])) + 3 for m in messages) + 3


def chat(rid: str, minutes: float, system: str, user: str = "Hello", **kw: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    ts = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    kw.setdefault("prompt", count(messages))
    return openai_line(rid, ts=ts, messages=messages, **kw)


def claude(rid: str, minutes: float, system: str, user: str = "Hello") -> dict[str, Any]:
    line = anthropic_line(rid, input_tokens=count([{"content": system}, {"content": user}]))
    line["timestamp"] = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    line["request"]["system"] = [{"type": "text", "text": system}]
    line["request"]["messages"] = [{"role": "user", "content": user}]
    return line


def run(
    tmp_path: Path, rows: list[Any], *, ttl: int | None = None, name: str = "logs.jsonl"
) -> tuple[Any, Outcome]:
    """Ingest `rows`, price them as api.analyze does, and run the lever on the logged state."""
    con = store.connect()
    ingest(con, [str(write_jsonl(tmp_path / name, rows))])
    con.execute("UPDATE requests SET model_key = model")
    con.execute(
        "UPDATE requests SET model_key = 'claude-sonnet-4-5' WHERE model LIKE 'claude-sonnet-4-5%'"
    )
    return con, apply_to_logged(con, ttl=ttl)


def apply_to_logged(con: Any, *, ttl: int | None = None) -> Outcome:
    """The lever, standalone, on the logged state of the store's requests."""
    con.execute(f"CREATE TEMP TABLE state_base AS SELECT {', '.join(STATE_COLUMNS)} FROM requests")
    ctx = LeverContext(
        con, api.load_price_table(), default_rules_dir(), SimOptions(cache_ttl_seconds=ttl)
    )
    return run_standalone(CachingLever(), ctx, "state_base", "state_caching")


def sim(con: Any, outcome: Outcome) -> dict[str, Any]:
    rows = con.execute(f"SELECT * FROM {outcome.per_request} ORDER BY request_id").fetchall()
    return dict(rows)


def state(con: Any, rid: str) -> tuple[int, int, int]:
    row = con.execute(
        "SELECT cache_read_tokens, cache_write_tokens, cache_write_1h_tokens FROM state_caching "
        "WHERE request_id = ?",
        [rid],
    ).fetchone()
    return tuple(row)


def test_identical_prompts_hit_within_the_ttl_and_miss_outside(tmp_path: Path) -> None:
    con, out = run(tmp_path, [chat("a", 0, STABLE), chat("b", 4, STABLE), chat("c", 10, STABLE)])
    got = sim(con, out)
    assert got["a"] == 0  # cold
    assert got["b"] > 1024 and got["b"] % 128 == 0  # 4 min later: OpenAI's 5-minute TTL holds
    assert got["c"] == 0  # 6 min after b: expired
    assert out.details["replay"]["replayed_requests"] == 3


def test_refresh_on_hit_keeps_a_busy_prefix_warm(tmp_path: Path) -> None:
    rows = [chat(f"r{i:02d}", 4 * i, STABLE) for i in range(15)]  # every 4 minutes for an hour
    con, out = run(tmp_path, rows)
    got = sim(con, out)
    assert got["r00"] == 0
    assert all(got[f"r{i:02d}"] > 1024 for i in range(1, 15))  # each hit restarts the TTL


def test_without_refresh_a_busy_prefix_is_rewritten_when_its_ttl_ends(tmp_path: Path) -> None:
    # Gemini's implicit cache (as rules/prices states it): 5 minutes from the write, no refresh
    rows = [
        chat(f"g{i}", 4 * i, STABLE, model="gemini-2.5-flash", provider="google") for i in range(6)
    ]
    con, out = run(tmp_path, rows)
    got = sim(con, out)
    hits = [got[f"g{i}"] > 0 for i in range(6)]
    assert hits == [False, True, False, True, False, True]  # written at 0, 8, 16 min


def test_a_prompt_under_the_minimum_never_caches(tmp_path: Path) -> None:
    short = " ".join(["Answer briefly."] * 150)  # ~450 tokens, under OpenAI's 1,024
    con, out = run(tmp_path, [chat(f"s{i}", i, short) for i in range(5)])
    assert set(sim(con, out).values()) == {0}
    template = out.details["by_template"][0]
    assert template["below_minimum"] == 5
    assert template["recommendation"]["id"] == "CACHE-002"


def test_a_changed_early_token_kills_the_rest_of_the_prefix(tmp_path: Path) -> None:
    early = "Note: 7. " + STABLE
    late = STABLE + " Note: 7."
    rows = [
        chat("a", 0, STABLE),
        chat("b", 1, "Note: 8. " + STABLE),
        chat("c", 2, early),
        chat("d", 3, late),
    ]
    con, out = run(tmp_path, rows)
    got = sim(con, out)
    assert got["b"] == 0 and got["c"] == 0  # differ from every earlier prompt in the first tokens
    assert got["d"] >= count([{"content": STABLE}]) - 128 - 16  # shares all of STABLE with a


def test_logged_cache_reads_are_kept_where_they_read_more(tmp_path: Path) -> None:
    rows = [chat("a", 0, STABLE, cached=1536)]  # warm before the log starts
    con, out = run(tmp_path, rows)
    assert sim(con, out)["a"] == 0
    assert state(con, "a")[0] == 1536
    assert out.affected_requests == 0


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 30), st.floats(0.05, 1.5)),
        min_size=1,
        max_size=8,
    )
)
def test_cached_tokens_never_exceed_input_tokens(tmp_path_factory, plan) -> None:
    # logged prompt counts anywhere from far below to above what the text holds
    tails = ["", " Extra.", " Today is Monday.", STABLE[:3000]]
    rows = []
    for i, (tail, minute, scale) in enumerate(plan):
        line = chat(f"p{i}", minute, STABLE + tails[tail], user=f"question {i}")
        line["response"]["usage"]["prompt_tokens"] = int(count(line["request"]["messages"]) * scale)
        rows.append(line)
    con, _ = run(tmp_path_factory.mktemp("p"), rows)
    bad = con.execute(
        """SELECT count(*) FROM state_caching
           WHERE cache_read_tokens + cache_write_tokens > input_tokens
              OR cache_write_1h_tokens > cache_write_tokens OR cache_read_tokens < 0"""
    ).fetchone()
    assert bad == (0,)


def test_results_do_not_depend_on_file_order(tmp_path: Path) -> None:
    rows = [chat(f"o{i}", i % 7, STABLE + (" x" * (i % 3)), user=str(i)) for i in range(12)]
    first = sim(*run(tmp_path, rows, name="a.jsonl"))
    random.Random(3).shuffle(rows)
    assert sim(*run(tmp_path, rows, name="b.jsonl")) == first
    assert any(v for v in first.values())


def test_explicit_caching_writes_then_reads(tmp_path: Path) -> None:
    con, out = run(tmp_path, [claude(f"c{i}", 2 * i, STABLE) for i in range(4)])
    first, later = state(con, "c0"), [state(con, f"c{i}") for i in (1, 2, 3)]
    assert first[0] == 0 and first[1] > 1024 and first[2] == 0  # a 5-minute write
    assert all(read == first[1] and write == 0 for read, write, _ in later)
    template = out.details["by_template"][0]
    assert template["option"] == "default" and template["mode"] == "explicit"
    assert template["recommendation"]["id"] == "CACHE-006"  # the log did not cache: enable it


def test_the_one_hour_ttl_is_chosen_when_repeats_are_minutes_apart(tmp_path: Path) -> None:
    con, out = run(tmp_path, [claude(f"h{i}", 20 * i, STABLE) for i in range(8)])
    template = out.details["by_template"][0]
    assert template["option"] == "1h"
    assert template["recommendation"]["id"] == "CACHE-003"
    _, write, write_1h = state(con, "h0")
    assert write > 0 and write_1h == write
    assert state(con, "h5")[0] > 1024


def test_caching_stays_off_where_writes_would_not_pay(tmp_path: Path) -> None:
    con, out = run(tmp_path, [claude(f"x{i}", 120 * i, STABLE) for i in range(4)])  # 2 h apart
    assert out.details["by_template"][0]["option"] == "off"
    assert all(state(con, f"x{i}") == (0, 0, 0) for i in range(4))


def test_the_ttl_override_is_a_what_if(tmp_path: Path) -> None:
    rows = [chat("a", 0, STABLE), chat("b", 20, STABLE)]
    assert sim(*run(tmp_path, rows, name="a.jsonl"))["b"] == 0
    con, out = run(tmp_path, rows, ttl=3600, name="b.jsonl")
    assert sim(con, out)["b"] > 1024
    assert out.details["replay"]["ttl_override_seconds"] == 3600
    assert out.details["by_template"][0]["option"] == "what-if"


def test_a_switched_model_starts_cold(tmp_path: Path) -> None:
    rows = [chat("a", 0, STABLE, cached=0), chat("b", 1, STABLE, cached=1536), chat("c", 2, STABLE)]
    con = store.connect()
    ingest(con, [str(write_jsonl(tmp_path / "s.jsonl", rows))])
    con.execute("UPDATE requests SET model_key = model")
    # as tiering leaves it: b moved to a smaller model, with the old model's cache counts cleared
    switched = {
        "model_key": "CASE WHEN request_id = 'b' THEN 'gpt-4o-mini' ELSE model_key END",
        "cache_read_tokens": "CASE WHEN request_id = 'b' THEN 0 ELSE cache_read_tokens END",
    }
    cols = ", ".join(f"{switched.get(c, c)} AS {c}" for c in STATE_COLUMNS)
    con.execute(f"CREATE TEMP TABLE state_tiered AS SELECT {cols} FROM requests")
    ctx = LeverContext(con, api.load_price_table(), default_rules_dir(), SimOptions())
    run_chained(CachingLever(), ctx, "state_tiered", "state_caching")
    assert state(con, "b")[0] == 0  # first request on gpt-4o-mini: cold
    assert state(con, "c")[0] > 1024  # gpt-4o's cache, warmed by a, is its own


def test_the_chained_run_reuses_the_standalone_build_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests moved between models of one cache group (as tiering moves them) leave the
    group's prompts as they were: the chained run reorders the standalone run's prefix model
    instead of building it again, and prices exactly what a fresh build would."""
    rows = [chat(r, i, STABLE, user=f"q{i % 3}") for i, r in enumerate("abcdefgh")]
    con = store.connect()
    ingest(con, [str(write_jsonl(tmp_path / "s.jsonl", rows))])
    con.execute("UPDATE requests SET model_key = model")
    moved = {"model_key": "CASE WHEN request_id IN ('b', 'e', 'f') THEN 'gpt-4o-mini' "
                          "ELSE model_key END"}  # fmt: skip
    cols = ", ".join(f"{moved.get(c, c)} AS {c}" for c in STATE_COLUMNS)
    con.execute(f"CREATE TEMP TABLE state_tiered AS SELECT {cols} FROM requests")
    con.execute(f"CREATE TEMP TABLE state_base AS SELECT {', '.join(STATE_COLUMNS)} FROM requests")
    builds = []
    build = prefix.build
    monkeypatch.setattr(prefix, "build", lambda *a, **k: builds.append(1) or build(*a, **k))

    def chained(
        ctx: LeverContext, lever: CachingLever, fresh_lever: bool = True
    ) -> dict[str, tuple[int, ...]]:
        run_chained(lever, ctx, "state_tiered", "state_chain", prepare=fresh_lever)
        return {r[0]: r[1:] for r in con.execute("SELECT * FROM state_chain").fetchall()}

    def context() -> LeverContext:
        return LeverContext(con, api.load_price_table(), default_rules_dir(), SimOptions())

    fresh = chained(context(), CachingLever())
    fresh_builds = len(builds)
    ctx = context()
    lever = CachingLever()
    run_standalone(lever, ctx, "state_base", "state_alone")
    builds.clear()
    assert chained(ctx, lever, fresh_lever=False) == fresh
    assert len(builds) < fresh_builds  # the main replay's model was reused
    assert not lever.models  # let go after the chained run


def test_a_request_whose_text_the_store_lacks_is_not_replayed(tmp_path: Path) -> None:
    con = store.connect()
    rows = [chat("a", 0, STABLE, user="first question"), chat("b", 1, STABLE, user="second one")]
    ingest(con, [str(write_jsonl(tmp_path / "logs.jsonl", rows))])
    con.execute(  # b's user message: its text is gone from the store
        """DELETE FROM texts WHERE text_hash IN (SELECT text_hash FROM messages
           WHERE request_id = 'b' AND role = 'user')"""
    )
    con.execute("UPDATE requests SET model_key = model")
    out = apply_to_logged(con)
    replay = out.details["replay"]
    assert replay["not_replayable"] == {"no_text": 1} and replay["replayed_requests"] == 1
    assert sim(con, out)["b"] is None  # unknown, not zero


def test_token_only_rows_are_counted_as_not_replayable(tmp_path: Path) -> None:
    con = store.connect()
    csv = tmp_path / "azure.csv"
    csv.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,4808,10\n"
        "2023-11-16 18:15:50,3180,8\n"
    )
    ingest(
        con,
        [str(csv)],
        mapping={
            "ts": "TIMESTAMP",
            "input_tokens": "ContextTokens",
            "output_tokens": "GeneratedTokens",
        },
        model="gpt-4o",
    )
    con.execute("UPDATE requests SET model_key = 'gpt-4o'")
    out = apply_to_logged(con)
    replay = out.details["replay"]
    assert replay["not_replayable"] == {"no_text": 2} and replay["replayed_requests"] == 0
    assert out.risk["not_replayable_requests"] == 2
    assert set(sim(con, out).values()) == {None}  # unknown, not zero


def test_prefix_order_finds_a_date_at_the_top(tmp_path: Path) -> None:
    rows = [
        chat(
            f"d{i}",
            i,
            f"Today is 2026-10-0{i + 1}, agent ops{i}@acme.com.\n" + STABLE,
            user=f"q{i}",
        )
        for i in range(6)
    ]
    con, out = run(tmp_path, rows)
    assert all(v == 0 for v in sim(con, out).values())  # no two prompts share a first block
    (finding,) = out.details["prefix_order"]
    assert finding["distinct_texts"] == 6 and finding["requests"] == 6
    assert finding["cacheable_tokens_lost"] > 1500
    assert finding["extra_cached_tokens"] > 5 * 1500  # moved to the end: five requests hit
    assert float(finding["saving"]) > 0
    assert finding["before"].startswith("Today is 2026-10-0")
    assert finding["after"].startswith("Rule 0:") and "Today is" in finding["after"]
    assert "@acme.com" not in json.dumps(finding) and "[EMAIL]" in finding["before"]
    template = out.details["by_template"][0]
    assert template["recommendation"]["id"] == "CACHE-001"
    assert out.recommendations[0]["title"].startswith("Move the variable text")


def test_details_are_json_and_name_their_parts(tmp_path: Path) -> None:
    _, out = run(tmp_path, [chat("a", 0, STABLE), chat("b", 1, STABLE)])
    d = json.loads(json.dumps(out.details))
    assert {
        "replay",
        "achieved",
        "achievable",
        "simulated",
        "rules",
        "tokenization",
        "by_feature",
        "by_template",
        "prefix_order",
        "assumptions",
    } <= set(d)
    assert d["replay"]["blocks"] > 0
    assert d["achievable"]["cache_read_share"] > d["achieved"]["cache_read_share"] == 0


def _recommendation_rules() -> list[Any]:
    return list(load_policy(default_rules_dir()).recommendations)


@pytest.mark.parametrize("rule", _recommendation_rules(), ids=lambda r: r.id)
def test_recommendation_rule_cases(rule: Any) -> None:
    assert run_cases(rule.model_dump()) == []


# --- the demo traffic -------------------------------------------------------------------------

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"


@pytest.fixture(scope="module")
def sample() -> Iterator[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """The demo traffic ingested and priced as `advisor analyze` does, and the lever's details."""
    traffic = SAMPLE / "traffic.jsonl.gz"
    assert traffic.is_file(), "sample_logs/traffic.jsonl.gz is missing: run sample_logs/generate.py"
    require_tiktoken()
    con = store.connect()
    ingest(con, [str(traffic)])
    prices = api.load_price_table()
    baseline.resolve_models(con, prices, {})
    tokens.fill_token_counts(con, {key: m.encoding for key, m in prices.models.items()})
    con.execute(f"CREATE TEMP TABLE state_base AS SELECT {', '.join(STATE_COLUMNS)} FROM requests")
    ctx = LeverContext(con, prices, default_rules_dir(), SimOptions())
    details = run_standalone(CachingLever(), ctx, "state_base", "state_caching").details
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    yield con, details, truth
    con.close()


def test_sample_prefix_order_finds_the_planted_variable_prefixes(sample) -> None:
    _, details, truth = sample
    found = {f["features"][0]: f for f in details["prefix_order"]}
    planted = {
        k: v["variable_prefix"] for k, v in truth["features"].items() if v["variable_prefix"]
    }
    assert set(planted) <= set(found)
    for feature, plant in planted.items():
        finding = found[feature]
        assert finding["stable_head_tokens"] == 0  # the variable text is the very first thing
        assert abs(finding["variable_span_tokens"] - plant["tokens_before_stable_part"]) <= 4
        stable = truth["features"][feature]["system_prompt_tokens"]
        assert abs(finding["cacheable_tokens_lost"] - stable) <= 0.05 * stable
        assert float(finding["saving"]) > 0


def test_sample_planted_shared_prefixes_give_the_expected_cached_share(sample) -> None:
    """Single-turn OpenAI features: each prompt is the planted system prompt plus a unique
    message. With the generator's longest TTL (600 s) the replay must find at least what the
    generator logged (it drops 5 % of hits at random) and at most the planted prefix per request
    (plus the message header it may share, under two 128-token increments)."""
    con, _, truth = sample
    regression = truth["plants"]["prompt_regression"]
    con.execute(f"CREATE TEMP TABLE sb AS SELECT {', '.join(STATE_COLUMNS)} FROM requests")
    ctx = LeverContext(
        con, api.load_price_table(), default_rules_dir(), SimOptions(cache_ttl_seconds=600)
    )
    out = run_standalone(CachingLever(), ctx, "sb", "sc")
    rows = con.execute(
        f"""SELECT r.feature, sum(r.cache_read_tokens), sum(p.cache_read_tokens_sim),
                   list((r.input_tokens, r.ts >= ?))
            FROM requests r JOIN {out.per_request} p USING (request_id)
            WHERE r.provider = 'openai' AND p.cache_read_tokens_sim IS NOT NULL
              AND r.feature IN ('nightly-digest', 'invoice-extract', 'sentiment', 'math-solver')
            GROUP BY ALL""",
        [regression["deployed_at"][:-1]],
    ).fetchall()
    assert len(rows) == 4
    for feature, logged, simulated, inputs in rows:
        stable = truth["features"][feature]["system_prompt_tokens"]
        # the planted prompt regression grows invoice-extract's system prompt from its deploy on
        grown = (
            regression["system_prompt_tokens"]["after"]
            if feature == regression["feature"]
            else stable
        )
        ceiling = sum(min(n, (grown if after else stable) + 256) for n, after in inputs)
        assert 0.95 * logged <= simulated <= ceiling, feature
