"""The prefix model: block hashes equal an independent hash of the serialised prompt, only shareable
text is tokenised, and the vectorised replays agree with a plain sequential cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import openai_line, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor import tokens
from advisor.ingest import ingest
from advisor.levers.caching import prefix

M64 = (1 << 64) - 1
LONG = " ".join(f"rule{i} applies" for i in range(300))  # ~900 tokens of stable instructions


def mix(x: int) -> int:
    """splitmix64's finaliser on Python ints: an implementation independent of the numpy one."""
    x &= M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def reference_hashes(stream: list[int], block: int) -> list[int]:
    """sum(v(tok_i) * R**i, i < p) mod 2**64 at every full block boundary p."""
    r = int(prefix._R)
    out, h, power = [], 0, 1
    for i, value in enumerate(stream, 1):
        h = (h + value * power) & M64
        power = (power * r) & M64
        if i % block == 0:
            out.append(h)
    return out


@pytest.fixture
def enc(needs_tiktoken: None):
    return tokens.get_encoding("o200k_base")


def _store(con, tmp_path: Path, prompts: list[list[tuple[str, str]]]) -> None:
    rows = [
        openai_line(
            f"r{i}",
            ts=f"2026-10-01T12:{i:02d}:00Z",
            messages=[{"role": role, "content": text} for role, text in prompt],
        )
        for i, prompt in enumerate(prompts)
    ]
    ingest(con, [str(write_jsonl(tmp_path / "p.jsonl", rows))])
    con.execute(
        """CREATE OR REPLACE TEMP TABLE q AS
           SELECT request_id, (row_number() OVER (ORDER BY ts, request_id) - 1)::BIGINT AS idx
           FROM requests"""
    )


def _stream(enc, prompt: list[tuple[str, str]]) -> list[int]:
    """The serialised prompt: each message's tokens then its role marker."""
    values: list[int] = []
    for role, text in prompt:
        values += [mix(t + prefix._TOKEN_SALT) for t in enc.encode_ordinary(text)]
        values.append(mix(prefix.ROLES[role] + prefix._MARKER_BASE))
    return values


def test_block_hashes_equal_a_reference_hash_of_the_token_stream(con, tmp_path, enc) -> None:
    shared = [("system", LONG), ("user", "What is rule 7?")]
    prompts = [shared, [*shared, ("assistant", "It applies."), ("user", "And rule 8?")], shared]
    _store(con, tmp_path, prompts)
    model = prefix.build(con, "q", encoding="o200k_base", block_size=16)
    for i, prompt in enumerate(prompts):
        got = model.block_hash[model.block_off[i] : model.block_off[i + 1]].tolist()
        want = reference_hashes(_stream(enc, prompt), 16)
        shareable = model.shared_tokens[i] // 16
        assert got == want[:shareable]
    # requests 0 and 2 are identical, request 1 extends them: all three share request 0's blocks
    assert model.n_shared.tolist() == [2, 2, 2]


def test_a_date_at_the_end_keeps_the_prefix_a_date_at_the_top_does_not(con, tmp_path, enc) -> None:
    prompts = [
        [("system", LONG + " Today is 2026-10-01."), ("user", "a")],
        [("system", LONG + " Today is 2026-10-02."), ("user", "b")],
        [("system", "Today is 2026-10-03. " + LONG), ("user", "c")],
        [("system", "Today is 2026-10-04. " + LONG), ("user", "d")],
    ]
    _store(con, tmp_path, prompts)
    model = prefix.build(con, "q", encoding="o200k_base", block_size=64)
    blocks = np.diff(model.block_off).tolist()
    long_blocks = len(enc.encode_ordinary(LONG)) // 64
    assert blocks[0] == blocks[1] >= long_blocks  # the dated tails diverge only at the end
    assert blocks[2] == blocks[3] == 0  # the dates at the top differ in the first block
    first, second = (model.block_hash[model.block_off[i] : model.block_off[i + 1]] for i in (0, 1))
    assert first.tolist() == second.tolist()
    # only the common part of the two late-dated prompts was tokenised, never the unique ones
    assert model.stats.texts_full == 0
    assert model.stats.texts_partial == 2


@pytest.mark.parametrize("block_size", [16, None])
def test_a_build_in_another_order_is_the_same_model_reordered(con, tmp_path, enc, block_size):
    """What lets a lever reuse a build for the same requests in another order (PrefixModel.take):
    the model depends on the set of requests only, siblings' partial matches included."""
    turn = [("system", LONG), ("user", "What is rule 7?")]
    prompts = [
        turn,
        [*turn, ("assistant", "It applies."), ("user", "And rule 8?")],
        [("system", LONG + " Today is 2026-10-01."), ("user", "a")],
        [("system", LONG + " Today is 2026-10-02."), ("user", "b")],
        [("system", LONG + " Today is 2026-10-03, a Saturday."), ("user", "c")],
        turn,
        [("user", "alone")],
    ]
    _store(con, tmp_path, prompts)
    model = prefix.build(con, "q", encoding="o200k_base", block_size=block_size)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE q2 AS
           SELECT request_id, (row_number() OVER (ORDER BY hash(request_id), request_id) - 1)
                  ::BIGINT AS idx FROM q"""
    )
    again = prefix.build(con, "q2", encoding="o200k_base", block_size=block_size)
    got = con.execute("SELECT q.idx FROM q2 JOIN q USING (request_id) ORDER BY q2.idx")
    order = np.asarray([r[0] for r in got.fetchall()])
    assert order.tolist() != list(range(len(order)))  # the test means something
    taken = model.take(order)
    for name in ("msg_off", "msg_node", "msg_role", "msg_tid", "msg_end", "n_shared",
                 "shared_tokens", "block_off", "block_hash"):  # fmt: skip
        assert getattr(taken, name).tolist() == getattr(again, name).tolist(), name
    assert taken.n == again.n and taken.block_size == again.block_size


def test_unique_trailing_messages_are_not_tokenised(con, tmp_path, enc) -> None:
    questions = ["Where is my parcel?", "Cancel order 17 please.", "Do you ship to Oslo?"]
    _store(con, tmp_path, [[("system", LONG), ("user", q)] for q in questions])
    model = prefix.build(con, "q", encoding="o200k_base", block_size=128)
    assert model.stats.texts_full == 1  # the system prompt, once
    assert model.stats.tokens_full == len(enc.encode_ordinary(LONG))
    assert model.stats.tokens_partial == 0
    assert model.shared_tokens.tolist() == [model.stats.tokens_full + 1] * 3


def test_the_tokenizer_encodes_each_distinct_text_once_across_calls(enc) -> None:
    tok = prefix.Tokenizer("o200k_base")
    calls: list[str] = []

    class Counting:
        def encode_ordinary(self, text: str) -> list[int]:
            calls.append(text)
            return enc.encode_ordinary(text)

    tok.enc = Counting()
    first = tok.encode(["a cat", "a dog", "a cat"])
    second = tok.encode(["a dog", "a bird"])
    assert sorted(calls) == ["a bird", "a cat", "a dog"]
    assert [t.tolist() for t in first + second] == [
        enc.encode_ordinary(t) for t in ("a cat", "a dog", "a cat", "a dog", "a bird")
    ]
    assert tok.encode([]) == []
    full = prefix.Tokenizer("o200k_base", cache_tokens=0)  # no room: nothing kept, still correct
    assert [t.tolist() for t in full.encode(["a cat", "a cat"])] == [
        enc.encode_ordinary("a cat")
    ] * 2
    assert full.seen == {}


def test_without_a_tokenizer_pseudo_tokens_keep_the_prefix_structure(con, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_TOKENIZER", "estimate")
    tokens.get_encoding.cache_clear()
    _store(con, tmp_path, [[("system", LONG), ("user", q)] for q in ("x", "y")])
    model = prefix.build(con, "q", encoding="o200k_base", block_size=64)
    tokens.get_encoding.cache_clear()
    assert model.stats.estimated
    assert np.diff(model.block_off).tolist()[0] == np.diff(model.block_off).tolist()[1] > 0


# --- replays against a sequential reference ---------------------------------------------------


def _model_from_paths(paths: list[list[int]]) -> prefix.PrefixModel:
    """A PrefixModel whose request i has one block per element of paths[i] (prefix-closed ids)."""
    ids: dict[tuple[int, ...], int] = {}
    hashes = [ids.setdefault(tuple(p[: k + 1]), len(ids)) for p in paths for k in range(len(p))]
    off = np.zeros(len(paths) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in paths], out=off[1:])
    empty = np.zeros(0, dtype=np.int64)
    model = prefix.PrefixModel(
        len(paths),
        1,
        np.zeros(len(paths) + 1, np.int64),
        empty,
        empty,
        empty,
        empty,
        np.zeros(len(paths), np.int64),
        np.zeros(len(paths), np.int64),
    )
    model.block_off = off
    model.block_hash = np.array(hashes, dtype=np.uint64)
    return model


def sequential_blocks(paths, stream, ts, eligible, ttl, refresh) -> list[int]:
    """The obvious cache: one dict per stream, requests in order."""
    caches: dict[int, dict[tuple[int, ...], float]] = {}
    matched = []
    for i, path in enumerate(paths):
        cache = caches.setdefault(int(stream[i]), {})
        keys = [tuple(path[: k + 1]) for k in range(len(path))]
        alive = [k in cache and ts[i] - cache[k] <= ttl for k in keys]
        n = 0
        while eligible[i] and n < len(keys) and alive[n]:
            n += 1
        matched.append(n)
        if eligible[i]:
            for key, was in zip(keys, alive, strict=True):
                if refresh or not was:
                    cache[key] = ts[i]
    return matched


@st.composite
def traffic(draw):
    bases = draw(
        st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), min_size=1, max_size=4)
    )
    n = draw(st.integers(1, 30))
    paths, streams, times = [], [], []
    for _ in range(n):
        base = draw(st.sampled_from(bases))
        path = base[: draw(st.integers(1, len(base)))]
        if draw(st.booleans()):  # a changed token somewhere in the prompt
            j = draw(st.integers(0, len(path) - 1))
            path = [*path[:j], 9, *path[j + 1 :]]
        paths.append(path)
        streams.append(draw(st.integers(0, 2)))
        times.append(draw(st.integers(0, 2000)))
    order = sorted(range(n), key=lambda i: (streams[i], times[i], i))  # the replay's order
    eligible = [draw(st.booleans()) or draw(st.booleans()) for _ in range(n)]
    return (
        [paths[i] for i in order],
        [streams[i] for i in order],
        [float(times[i]) for i in order],
        eligible,
    )


@settings(max_examples=200, deadline=None)
@given(traffic(), st.sampled_from([0.0, 60.0, 300.0, float("inf")]), st.booleans())
def test_block_replay_equals_a_sequential_cache(data, ttl, refresh) -> None:
    paths, stream, ts, eligible = data
    model = _model_from_paths(paths)
    got = prefix.replay_blocks(
        model, np.array(stream), np.array(ts), np.array(eligible), np.full(len(paths), ttl), refresh
    )
    assert got.tolist() == sequential_blocks(paths, stream, ts, eligible, ttl, refresh)


def sequential_breakpoints(paths, ends, roles, stream, ts, min_end, limit, ttl):
    """Explicit caching the long way: choose breakpoints, read the deepest live one, touch all."""
    counts: dict[tuple[int, tuple[int, ...]], int] = {}
    for i, path in enumerate(paths):
        for k in range(len(path)):
            key = (stream[i], tuple(path[: k + 1]))
            counts[key] = counts.get(key, 0) + 1
    touched: dict[tuple[int, tuple[int, ...]], float] = {}
    reads, writes = [], []
    for i, path in enumerate(paths):
        keys = [(stream[i], tuple(path[: k + 1])) for k in range(len(path))]
        cand = [k for k in range(len(path)) if counts[keys[k]] >= 2 and ends[i][k] >= min_end]
        chosen = cand[-limit:]
        static = [k for k in cand if roles[i][k] in prefix.STATIC_ROLES]
        if static and static[-1] not in chosen:
            chosen = sorted([static[-1], *chosen[1:]])
        live = [k for k in chosen if keys[k] in touched and ts[i] - touched[keys[k]] <= ttl]
        read = ends[i][live[-1]] if live else 0
        deepest = ends[i][chosen[-1]] if chosen else 0
        reads.append(read)
        writes.append(deepest - read)
        for k in chosen:
            touched[keys[k]] = ts[i]
    return reads, writes


@settings(max_examples=200, deadline=None)
@given(
    traffic(),
    st.sampled_from([0.0, 300.0, float("inf")]),
    st.integers(1, 4),
    st.integers(0, 40),
    st.randoms(use_true_random=False),
)
def test_breakpoint_replay_equals_a_sequential_cache(data, ttl, limit, min_end, rnd) -> None:
    paths, stream, ts, _ = data
    # message prefixes: node ids per (request, message), lengths growing along the path
    ids: dict[tuple[int, ...], int] = {}
    size = {v: rnd.randint(1, 20) for v in range(10)}
    role_of = {v: rnd.choice([2, 4, 5]) for v in range(10)}
    nodes, ends, roles = [], [], []
    for path in paths:
        nodes += [ids.setdefault(tuple(path[: k + 1]), len(ids)) for k in range(len(path))]
        ends.append(list(np.cumsum([size[v] for v in path])))
        roles.append([role_of[v] for v in path])
    off = np.zeros(len(paths) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in paths], out=off[1:])
    model = prefix.PrefixModel(
        len(paths),
        None,
        off,
        np.array(nodes, dtype=np.int64),
        np.array([r for rr in roles for r in rr], dtype=np.int8),
        np.zeros(len(nodes), np.int64),
        np.array([e for ee in ends for e in ee], dtype=np.int64),
        np.zeros(len(paths), np.int64),
        np.zeros(len(paths), np.int64),
    )
    read, write = prefix.replay_breakpoints(
        model,
        np.array(stream),
        np.array(ts),
        np.full(len(paths), min_end),
        limit,
        np.full(len(paths), ttl),
        True,
    )
    want = sequential_breakpoints(paths, ends, roles, stream, ts, min_end, limit, ttl)
    assert (read.tolist(), write.tolist()) == want
