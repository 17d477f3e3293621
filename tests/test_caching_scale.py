"""The caching lever's work at scale gives the results of the plain algorithms: sibling heads
compared in numpy equal a character-by-character common prefix, a replay in chunks of whole
streams equals one over everything, and the chained run reuses the standalone run's findings
and models only where they would come out the same."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import numpy as np
import pytest
from helpers import run_chained, run_standalone, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st
from test_caching import STABLE, chat
from test_prefix import _model_from_paths, sequential_blocks, traffic

from advisor import api, store
from advisor.ingest import ingest
from advisor.levers.base import STATE_COLUMNS, LeverContext, SimOptions, State
from advisor.levers.caching import CachingLever, prefix
from advisor.levers.caching import lever as lever_module
from advisor.ruleset import default_rules_dir


def plain_lcp(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


TEXT = st.text(alphabet="ab\0é🙂", max_size=12)


@given(st.one_of(st.none(), TEXT), st.lists(TEXT, min_size=1, max_size=8))
def test_neighbour_lcp_is_the_common_prefix_with_the_text_before(
    before: str | None, texts: list[str]
) -> None:
    got = prefix._neighbour_lcp(before, texts).tolist()
    assert got == [plain_lcp(a, b) for a, b in itertools.pairwise([before or "", *texts])]


@given(st.lists(st.integers(0, 9), min_size=1, max_size=12), st.integers(1, 12))
def test_chunks_cover_every_run_once_and_never_split_one(lengths: list[int], size: int) -> None:
    bounds = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    prefix_size, prefix._REPLAY_CHUNK = prefix._REPLAY_CHUNK, size
    try:
        pieces = prefix._chunks(bounds)
    finally:
        prefix._REPLAY_CHUNK = prefix_size
    cuts = [i for i, _ in pieces] + [pieces[-1][1]]
    assert cuts[0] == 0 and cuts[-1] == len(bounds) - 1 and cuts == sorted(set(cuts))
    for i, j in pieces:  # a piece over the size is one run (after empty ones)
        assert bounds[j] - bounds[i] <= size or np.count_nonzero(np.diff(bounds[i : j + 1])) == 1


@settings(max_examples=100, deadline=None)
@given(traffic(), st.sampled_from([0.0, 300.0, float("inf")]), st.booleans(), st.integers(1, 6))
def test_block_replay_in_small_chunks_equals_a_sequential_cache(
    data, ttl: float, refresh: bool, chunk: int
) -> None:
    paths, stream, ts, eligible = data
    model = _model_from_paths(paths)
    size, prefix._REPLAY_CHUNK = prefix._REPLAY_CHUNK, chunk
    try:
        got = prefix.replay_blocks(
            model, np.array(stream), np.array(ts), np.array(eligible),
            np.full(len(paths), ttl), refresh,
        )  # fmt: skip
    finally:
        prefix._REPLAY_CHUNK = size
    assert got.tolist() == sequential_blocks(paths, stream, ts, eligible, ttl, refresh)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.integers(1, 4), st.booleans())
def test_replay_in_shares_of_keys_equals_one_sort(keys: list[int], chunk: int, signed: bool):
    """A stream larger than a chunk is sorted a share of its keys at a time: same hits."""
    n = len(keys)
    key = np.array(keys, dtype=np.int64 if signed else np.uint64)
    args = (np.zeros(n, np.int64), key, np.arange(n), np.arange(n, dtype=np.float64) * 100,
            np.full(n, 150.0))  # fmt: skip
    whole = [prefix._previous_within(*args, refresh) for refresh in (True, False)]
    size, prefix._REPLAY_CHUNK = prefix._REPLAY_CHUNK, chunk
    try:
        shared = [prefix._previous_within(*args, refresh) for refresh in (True, False)]
    finally:
        prefix._REPLAY_CHUNK = size
    assert [h.tolist() for h in shared] == [h.tolist() for h in whole]


def _sibling_store(texts: list[str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (text_hash VARCHAR, text VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(f"h{i}", x) for i, x in enumerate(texts)])
    con.execute("CREATE TEMP TABLE _px_tid AS SELECT text_hash, "
                "(row_number() OVER (ORDER BY text_hash) - 1)::BIGINT AS tid FROM t")  # fmt: skip
    return con


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(["", "x" * 20, "x" * 20 + "yz" * 9]),
            st.text(alphabet="xyz", min_size=0, max_size=30),
            st.booleans(),
        ),
        min_size=1,
        max_size=14,
    ),
    st.sampled_from([2, 64]),
)
def test_sibling_cuts_find_the_longest_common_start_with_a_sibling(rows, need: int) -> None:
    """Every first-unshared message that shares enough characters with a sibling (a text
    following the same prefix) gets its longest common start with one. need 2: heads of 16
    characters, every text longer (all truncated, ties go to whole texts); need 64: none is."""
    seen: set[tuple[int, str]] = set()
    msgs = []
    for parent, start, rest, is_div in rows:
        text = (start + rest + "w" * 17) if need == 2 else (start + rest)[:500]
        if (parent, text) not in seen:  # one message per distinct (parent, text)
            seen.add((parent, text))
            msgs.append((parent, text, is_div))
    texts = sorted({t for _, t, _ in msgs})
    con = _sibling_store(texts)
    tid_of = dict(con.execute("SELECT t.text, p.tid FROM t JOIN _px_tid p USING (text_hash)")
                  .fetchall())  # fmt: skip
    parent = np.array([p for p, _, _ in msgs], dtype=np.int64)
    tid = np.array([tid_of[t] for _, t, _ in msgs], dtype=np.int64)
    div = np.array([i for i, (_, _, d) in enumerate(msgs) if d], dtype=np.int64)
    needed = np.full(len(div), need, dtype=np.int64)
    stats = prefix.TokenStats("o200k_base")
    which, chars = prefix._sibling_cuts(con, parent, tid, div, needed, "t", stats)
    want = {}
    for k, m in enumerate(div.tolist()):
        others = [t for p, t, _ in msgs if p == parent[m] and t != msgs[m][1]]
        best = max((plain_lcp(msgs[m][1], t) for t in others), default=0)
        if best >= max(need // 4, 1):
            want[k] = best
    assert dict(zip(which.tolist(), chars.tolist(), strict=True)) == want


def _chain_store(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    rows = [chat(r, i, STABLE, user=f"q{i % 3}") for i, r in enumerate("abcdefgh")]
    con = store.connect()
    ingest(con, [str(write_jsonl(tmp_path / "s.jsonl", rows))])
    con.execute("UPDATE requests SET model_key = model")
    con.execute(f"CREATE TEMP TABLE state_base AS SELECT {', '.join(STATE_COLUMNS)} FROM requests")
    return con


def _context(con: duckdb.DuckDBPyConnection) -> LeverContext:
    return LeverContext(con, api.load_price_table(), default_rules_dir(), SimOptions())


def test_an_edited_prompt_reuses_the_model_only_where_it_left_the_prompts_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chained run over an edited prompt table (as trimming leaves) reuses the standalone run's
    prefix model when the edit changed nothing in the group, and builds again, with the
    result of a fresh lever, when it changed one message."""
    con = _chain_store(tmp_path)
    con.execute("CREATE TEMP TABLE same_msgs AS SELECT * FROM messages")
    con.execute("CREATE TEMP TABLE edited_msgs AS SELECT * FROM messages")
    con.execute("INSERT INTO texts SELECT 'edited', 'q1 rephrased'")
    con.execute("""UPDATE edited_msgs SET text_hash = 'edited'
                   WHERE request_id = 'b' AND role = 'user'""")  # fmt: skip
    builds = []
    build = prefix.build
    monkeypatch.setattr(prefix, "build", lambda *a, **k: builds.append(1) or build(*a, **k))

    def chained(messages: str, standalone_first: bool) -> tuple[list[tuple], int]:
        lever, ctx = CachingLever(), _context(con)
        if standalone_first:
            run_standalone(lever, ctx, "state_base", "state_alone")
        else:
            lever.prepare(ctx)
        builds.clear()
        lever.replay(ctx, State("state_base", messages, "texts"), "state_chain")
        return con.execute("SELECT * FROM state_chain ORDER BY ALL").fetchall(), len(builds)

    for messages, reused in (("same_msgs", True), ("edited_msgs", False)):
        fresh, fresh_builds = chained(messages, standalone_first=False)
        got, got_builds = chained(messages, standalone_first=True)
        assert got == fresh
        assert (got_builds < fresh_builds) is reused


def test_the_chained_run_finds_the_variable_spans_again_only_for_other_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = _chain_store(tmp_path)
    found = []
    find = lever_module.find_variable_spans
    monkeypatch.setattr(lever_module, "find_variable_spans", lambda *a: found.append(1) or find(*a))
    lever, ctx = CachingLever(), _context(con)
    run_standalone(lever, ctx, "state_base", "state_alone")
    run_chained(lever, ctx, "state_base", "state_chain", prepare=False)
    assert len(found) == 1  # the same requests replayed: the standalone run's findings
    con.execute("CREATE TEMP TABLE state_fewer AS SELECT * FROM state_base "
                "WHERE request_id <> 'a'")  # fmt: skip
    lever = CachingLever()
    run_standalone(lever, ctx, "state_base", "state_alone")
    run_chained(lever, ctx, "state_fewer", "state_chain", prepare=False)
    assert len(found) == 3  # another set of requests: found again
