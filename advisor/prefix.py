"""The prefix model: every request's prompt, in the order the provider reads it, as cumulative
hashes of fixed-size token blocks, and the cache replays that walk those hashes.

The serialised prompt is the messages in `messages.position` order (tools, system, messages), each
message's tokens followed by one role marker token. The hash of a prefix of length p is the
polynomial sum(v(tok_i) * R**i, i < p) mod 2**64 with v a 64-bit mix of the token id, so it depends
on the token sequence alone: two requests whose streams agree up to p get the same hash there, however
their messages were cut. That makes "longest cached prefix" a lookup of block-boundary hashes.

Work is O(total blocks) on numpy arrays, and tokenisation is kept to what can be shared (DESIGN §8):
1. Prompts are first hashed at message granularity; a message prefix seen in two or more requests is
   *shared* and its texts are tokenised (each distinct text once).
2. At the first unshared message of a request, a partial prefix can still be shared with a sibling
   (a system prompt whose date is at the end): the message is compared character-wise with the other
   texts that follow the same prefix, and only its longest common part with one of them is tokenised.
   Unique trailing text is never tokenised: its length comes from the logged usage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from advisor.store import scalar
from advisor.tokens import DEFAULT_ENCODING, get_encoding

U64 = np.uint64
_R = U64(0x9E3779B97F4A7C15)  # odd base of the polynomial prefix hash
_TOKEN_SALT = 0x5BD1E9955BD1E995
_MARKER_BASE = 1 << 40  # role markers live far above any vocabulary id
ROLES = {"tools": 1, "system": 2, "developer": 3, "user": 4, "assistant": 5, "tool": 6}
STATIC_ROLES = (1, 2, 3)  # tools, system, developer: where a template's stable part lives
_HEAD_FACTOR = 8  # characters fetched per needed token before falling back to whole texts
_BATCH_CHARS = 8_000_000  # text handed to the tokenizer at once: bounds memory, keeps threads busy


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads small integers over 64 bits (wrapping uint64 arithmetic)."""
    x = x.astype(U64, copy=True)
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


def pow_r(exponent: np.ndarray) -> np.ndarray:
    """R**e mod 2**64, elementwise, by binary exponentiation."""
    e = exponent.astype(U64, copy=True)
    result = np.ones(len(e), dtype=U64)
    base = np.full(len(e), _R, dtype=U64)
    while e.any():
        odd = (e & U64(1)).astype(bool)
        result[odd] *= base[odd]
        base *= base
        e >>= U64(1)
    return result


_POWERS = np.ones(1, dtype=U64)


def powers(n: int) -> np.ndarray:
    """R**0 .. R**(n-1), grown on demand and shared between calls."""
    global _POWERS
    if len(_POWERS) < n:
        steps = np.full(max(n, 2 * len(_POWERS)), _R, dtype=U64)
        steps[0] = 1
        _POWERS = np.cumprod(steps, dtype=U64)
    return _POWERS[:n]


def token_values(tokens: np.ndarray) -> np.ndarray:
    return mix64(tokens.astype(U64) + U64(_TOKEN_SALT))


def marker_values(roles: np.ndarray) -> np.ndarray:
    return mix64(roles.astype(U64) + U64(_MARKER_BASE))


def segment_starts(offsets: np.ndarray) -> np.ndarray:
    """For CSR offsets, the start offset of the segment each element belongs to."""
    counts = np.diff(offsets)
    return np.repeat(offsets[:-1], counts)


def seg_cumsum(values: np.ndarray, offsets: np.ndarray, *, inclusive: bool = True) -> np.ndarray:
    """Cumulative sums restarting at every CSR segment (uint64 wraps, int64 does not overflow here)."""
    total = np.concatenate([np.zeros(1, values.dtype), np.cumsum(values, dtype=values.dtype)])
    starts = segment_starts(offsets)
    end = np.arange(1, len(values) + 1) if inclusive else np.arange(len(values))
    return total[end] - total[starts]


@dataclass
class TokenStats:
    """What the prefix model tokenised: the cost floor of the caching lever."""

    encoding: str
    estimated: bool = False  # no tiktoken encoding on disk: 4-byte pseudo-tokens
    texts_full: int = 0
    tokens_full: int = 0
    texts_partial: int = 0
    tokens_partial: int = 0
    sibling_candidates: int = 0


@dataclass
class PrefixModel:
    """Requests 0..n-1 (the caller's order) as message prefixes and token-block hashes.

    Messages are CSR over requests (`msg_off`); blocks likewise (`block_off`). `msg_end` is the
    token count up to the end of a message, -1 where the message was not tokenised (unshared).
    """

    n: int
    block_size: int | None
    msg_off: np.ndarray
    msg_node: np.ndarray  # dense id of the message prefix ending at this message
    msg_role: np.ndarray
    msg_tid: np.ndarray
    msg_end: np.ndarray
    n_shared: np.ndarray  # leading messages whose prefix recurs in another request
    shared_tokens: np.ndarray  # tokens of the shareable prefix (shared messages + partial match)
    block_off: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    block_hash: np.ndarray = field(default_factory=lambda: np.zeros(0, U64))
    stats: TokenStats = field(default_factory=lambda: TokenStats(DEFAULT_ENCODING))


class _Tokenizer:
    def __init__(self, encoding: str, stats: TokenStats) -> None:
        exact = encoding in ("o200k_base", "cl100k_base")
        self.enc = get_encoding(encoding if exact else DEFAULT_ENCODING)
        stats.encoding = encoding if exact else DEFAULT_ENCODING
        stats.estimated = self.enc is None
        self.threads = os.cpu_count() or 1

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        if self.enc is None:  # no tokenizer: 4-byte pseudo-tokens keep the prefix structure
            out = []
            for text in texts:
                raw = text.encode("utf-8")
                raw += b"\0" * (-len(raw) % 4)
                out.append(np.frombuffer(raw, dtype="<u4").astype(np.int64))
            return out
        lists = self.enc.encode_ordinary_batch(texts, num_threads=self.threads)
        return [np.array(t, dtype=np.int64) for t in lists]


def _relation(sql: str) -> str:
    """A table name as is, a query in parentheses."""
    return f"({sql})" if " " in sql.strip() else sql


def _register(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, np.ndarray]) -> None:
    con.register(name, pa.table({k: pa.array(v) for k, v in columns.items()}))


def _batches(cur: duckdb.DuckDBPyConnection, size: int = 2000) -> Iterator[list[tuple]]:
    while rows := cur.fetchmany(size):
        yield rows


def _char_batches(rows: Iterator[list[tuple]], text_col: int) -> Iterator[list[tuple]]:
    """Regroup fetched rows so that each batch holds about _BATCH_CHARS of text."""
    pending: list[tuple] = []
    chars = 0
    for chunk in rows:
        for row in chunk:
            pending.append(row)
            chars += len(row[text_col])
            if chars >= _BATCH_CHARS:
                yield pending
                pending, chars = [], 0
    if pending:
        yield pending


def _lcp(a: str, b: str) -> int:
    """Length of the longest common prefix: slice comparisons in C, then a binary search."""
    n = min(len(a), len(b))
    lo, step = 0, 4096
    while lo < n and a[lo : lo + step] == b[lo : lo + step]:
        lo += step
    hi = min(lo + step, n)
    if lo >= n:
        return n
    while hi - lo > 1:  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo if a[lo] != b[lo] else hi


def build(
    con: duckdb.DuckDBPyConnection,
    requests: str,
    *,
    encoding: str,
    block_size: int | None,
    messages_sql: str = "messages",
    texts_sql: str = "texts",
) -> PrefixModel:
    """The prefix model of the requests in table `requests` (request_id, idx = 0..n-1).

    `block_size` None builds message prefixes only (enough for message-granularity breakpoints).
    `messages_sql`/`texts_sql` let a caller replay edited prompts (prefix-order what-ifs).
    """
    n = int(scalar(con, f"SELECT count(*) FROM {requests}"))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _px_msg AS
            SELECT q.idx, m.position, m.role, m.text_hash
            FROM {requests} q JOIN {_relation(messages_sql)} m USING (request_id)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _px_tid AS
           SELECT text_hash, (row_number() OVER (ORDER BY text_hash) - 1)::BIGINT AS tid
           FROM (SELECT DISTINCT text_hash FROM _px_msg)"""
    )
    role_case = " ".join(f"WHEN '{k}' THEN {v}" for k, v in ROLES.items())
    got = con.execute(
        f"""SELECT m.idx::BIGINT AS idx, t.tid, (CASE m.role {role_case} ELSE 7 END)::TINYINT
                   AS role
            FROM _px_msg m JOIN _px_tid t USING (text_hash) ORDER BY m.idx, m.position"""
    ).fetchnumpy()
    idx = np.asarray(got["idx"], dtype=np.int64)
    tid = np.asarray(got["tid"], dtype=np.int64)
    role = np.asarray(got["role"], dtype=np.int8)
    msg_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=n), out=msg_off[1:])
    pos = np.arange(len(idx)) - segment_starts(msg_off)

    # 1. message prefixes: a request's prefix through message i, as one 64-bit key, then dense ids.
    item = mix64(tid.astype(U64) * U64(16) + role.astype(U64))
    key = seg_cumsum(item * pow_r(pos), msg_off)
    _, node, counts = np.unique(key, return_inverse=True, return_counts=True)
    node = node.astype(np.int64)
    shared = counts[node] >= 2
    n_shared = np.bincount(idx, weights=shared, minlength=n).astype(np.int64)

    stats = TokenStats(encoding)
    tok = _Tokenizer(encoding, stats)
    pool = _TextPool.tokenize(con, tok, np.unique(tid[shared]), texts_sql, stats)

    # 2. token lengths and prefix hashes at message ends (shared messages only).
    ln = np.where(shared, pool.length(tid) + 1, 0)  # + the role marker
    end = seg_cumsum(ln, msg_off)
    start = end - ln
    full = pool.full_sum(tid, role) if len(tid) else np.zeros(0, U64)
    r_start = pow_r(start)
    term = np.where(shared, r_start * full, U64(0))
    h_end = seg_cumsum(term, msg_off)
    h_start = h_end - term
    msg_end = np.where(shared, end, -1)
    shared_tokens = np.zeros(n, dtype=np.int64)
    last = msg_off[:-1] + n_shared - 1
    has = n_shared > 0
    shared_tokens[has] = end[last[has]]

    model = PrefixModel(n, block_size, msg_off, node, role, tid, msg_end, n_shared,
                        shared_tokens, stats=stats)  # fmt: skip
    if block_size is None:
        return model

    # 3. blocks inside shared messages.
    b = block_size
    sel = np.flatnonzero(shared)
    o, ell = start[sel], ln[sel]
    cnt = (o + ell) // b - o // b
    rep = np.repeat(np.arange(len(sel)), cnt)
    within = np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    k = (o // b + 1)[rep] + within
    local = k * b - o[rep]
    s_local = pool.prefix_sum(tid[sel][rep], local, role[sel][rep])
    blocks_h = [h_start[sel][rep] + r_start[sel][rep] * s_local]
    blocks_req = [idx[sel][rep]]
    blocks_k = [k - 1]

    # 4. partial matches at the first unshared message.
    parent = np.where(pos > 0, np.concatenate([[-1], node[:-1]]), -1)
    div = np.flatnonzero(~shared & (pos == n_shared[idx]))
    div_o = np.where(pos[div] > 0, end[np.maximum(div - 1, 0)], 0)
    div_h = np.where(pos[div] > 0, h_end[np.maximum(div - 1, 0)], U64(0))
    needed = b - div_o % b
    cuts = _sibling_cuts(con, parent, tid, div, needed, texts_sql, stats)
    if len(cuts):
        p_req, p_k, p_h, p_len = _partial_blocks(con, tok, cuts, idx, tid, div, div_o, div_h,
                                                 needed, b, texts_sql, stats)  # fmt: skip
        blocks_req.append(p_req)
        blocks_k.append(p_k)
        blocks_h.append(p_h)
        np.add.at(shared_tokens, idx[div[cuts["i"]]], p_len)

    req = np.concatenate(blocks_req)
    kk = np.concatenate(blocks_k)
    order = np.lexsort((kk, req))
    model.block_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(req, minlength=n), out=model.block_off[1:])
    model.block_hash = np.concatenate(blocks_h)[order]
    for t in ("_px_msg", "_px_tid"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return model


class _TextPool:
    """Token prefix sums of every shared text: sum(v(tok_j) * R**j, j < i) for i = 0..len."""

    def __init__(self, size: int) -> None:
        self.off = np.full(size, -1, dtype=np.int64)  # tid -> start in `sums`
        self.len = np.zeros(size, dtype=np.int64)
        self.sums = np.zeros(0, dtype=U64)

    @classmethod
    def tokenize(
        cls,
        con: duckdb.DuckDBPyConnection,
        tok: _Tokenizer,
        tids: np.ndarray,
        texts_sql: str,
        stats: TokenStats,
    ) -> _TextPool:
        size = int(scalar(con, "SELECT count(*) FROM _px_tid"))
        pool = cls(size)
        if not len(tids):
            return pool
        _register(con, "_px_want", {"tid": tids})
        cur = con.execute(
            f"""SELECT w.tid, x.text FROM _px_want w JOIN _px_tid t USING (tid)
                JOIN {_relation(texts_sql)} x USING (text_hash)"""
        )
        parts: list[np.ndarray] = []
        at = 0
        for batch in _char_batches(_batches(cur), 1):
            encoded = tok.encode([text or "" for _, text in batch])
            for (t, _), toks in zip(batch, encoded, strict=True):
                pool.off[t], pool.len[t] = at, len(toks)
                at += len(toks) + 1
                stats.tokens_full += len(toks)
                parts.append(toks)
            stats.texts_full += len(batch)
        con.unregister("_px_want")
        lens = np.array([len(p) for p in parts], dtype=np.int64)
        pool.sums = _prefix_sums(parts, lens)
        return pool

    def length(self, tid: np.ndarray) -> np.ndarray:
        return self.len[tid]

    def full_sum(self, tid: np.ndarray, role: np.ndarray) -> np.ndarray:
        """Prefix sum of the whole message: text tokens then the role marker."""
        ok = self.off[tid] >= 0
        at = np.where(ok, self.off[tid] + self.len[tid], 0)
        text = np.where(ok, self.sums[at] if len(self.sums) else U64(0), U64(0))
        return text + marker_values(role) * pow_r(self.len[tid])

    def prefix_sum(self, tid: np.ndarray, local: np.ndarray, role: np.ndarray) -> np.ndarray:
        """Prefix sum of the first `local` tokens of a message (local = len + 1 includes the marker)."""
        ln = self.len[tid]
        inside = np.minimum(local, ln)
        s = self.sums[self.off[tid] + inside] if len(tid) else np.zeros(0, U64)
        return np.where(local > ln, self.full_sum(tid, role), s)


def _prefix_sums(parts: list[np.ndarray], lens: np.ndarray) -> np.ndarray:
    """Per part, [0, cumsum(v * R**j)]: len + 1 entries, parts laid end to end."""
    if not parts:
        return np.zeros(0, U64)
    toks = np.concatenate(parts)
    off = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    j = np.arange(len(toks)) - segment_starts(off)
    vals = token_values(toks) * powers(int(lens.max()) + 1)[j]
    sums = seg_cumsum(vals, off)
    # insert the leading 0 of every part
    out = np.zeros(len(toks) + len(parts), dtype=U64)
    dest = np.arange(len(toks)) + np.repeat(np.arange(len(parts)), lens) + 1
    out[dest] = sums
    return out


def _sibling_cuts(
    con: duckdb.DuckDBPyConnection,
    parent: np.ndarray,
    tid: np.ndarray,
    div: np.ndarray,
    needed: np.ndarray,
    texts_sql: str,
    stats: TokenStats,
) -> dict[str, np.ndarray]:
    """For each first-unshared message (an index into `div`), how many leading characters it
    shares with another text that follows the same prefix; only those that may fill a block."""
    if not len(div):
        return {}
    # Siblings: every distinct (parent, text) under a parent that has a first-unshared child.
    div_parent = parent[div]
    parents, first = np.unique(div_parent, return_index=True)
    sib = np.flatnonzero(np.isin(parent, parents))
    which = np.full(len(parent), -1, dtype=np.int64)
    which[div] = np.arange(len(div))
    order = np.lexsort((-which[sib], tid[sib], parent[sib]))
    sib = sib[order]
    new = np.ones(len(sib), dtype=bool)
    new[1:] = (parent[sib][1:] != parent[sib][:-1]) | (tid[sib][1:] != tid[sib][:-1])
    sib = sib[new]
    # A token spans at least one character and at most four bytes: siblings must agree on
    # needed/4 characters to possibly complete a block.
    need = needed[first][np.searchsorted(parents, parent[sib])]
    columns = {"parent": parent[sib], "tid": tid[sib], "i": which[sib],
               "min_chars": np.maximum(need // 4, 1), "head": need * _HEAD_FACTOR}  # fmt: skip
    _register(con, "_px_sib", columns)
    cur = con.execute(
        f"""WITH s AS (SELECT p.*, x.text FROM _px_sib p JOIN _px_tid t USING (tid)
                       JOIN {_relation(texts_sql)} x USING (text_hash)),
                 g AS (SELECT parent, left(text, min_chars) AS k FROM s
                       GROUP BY ALL HAVING count(*) >= 2 AND max(i) >= 0)
            SELECT s.parent, s.tid, s.i, left(s.text, s.head) AS head,
                   length(s.text) > s.head AS truncated
            FROM s SEMI JOIN g ON g.parent = s.parent AND g.k = left(s.text, s.min_chars)
            ORDER BY s.parent, head"""
    )
    best: dict[int, int] = {}  # div index -> characters shared with the closest sibling
    runs: list[tuple[int, list[tuple[int, int]]]] = []  # heads tied over the whole head
    prev: tuple | None = None
    run: list[tuple[int, int]] = []
    for rows in _batches(cur):
        for row in rows:
            if prev is not None and prev[0] == row[0]:
                common = _lcp(prev[3], row[3])
                for who in (prev, row):
                    if who[2] >= 0:
                        best[who[2]] = max(best.get(who[2], 0), common)
                if row[4] and prev[4] and common == len(row[3]) == len(prev[3]):
                    run = run or [(prev[1], prev[2])]
                    run.append((row[1], row[2]))
                    prev = row
                    continue
            if len(run) > 1:
                runs.append((int(prev[0]), run))  # type: ignore[index]
            run = []
            prev = row
    if len(run) > 1 and prev is not None:
        runs.append((int(prev[0]), run))
    con.unregister("_px_sib")
    stats.sibling_candidates = len(best)
    if runs:
        _whole_text_lcp(con, runs, best, texts_sql)
    keep = sorted((i, c) for i, c in best.items() if c >= max(int(needed[i]) // 4, 1))
    return {
        "i": np.array([i for i, _ in keep], dtype=np.int64),
        "chars": np.array([c for _, c in keep], dtype=np.int64),
    }


def _whole_text_lcp(
    con: duckdb.DuckDBPyConnection,
    runs: list[tuple[int, list[tuple[int, int]]]],
    best: dict[int, int],
    texts_sql: str,
) -> None:
    """Siblings equal over the whole fetched head: compare them whole, streaming in sorted order
    (the closest sibling of a text is a neighbour in sorted order)."""
    members = [(r, t, i) for r, (_, run) in enumerate(runs) for t, i in run]
    _register(con, "_px_run", {"run": np.array([m[0] for m in members], dtype=np.int64),
                               "tid": np.array([m[1] for m in members], dtype=np.int64),
                               "i": np.array([m[2] for m in members], dtype=np.int64)})  # fmt: skip
    cur = con.execute(
        f"""SELECT r.run, r.i, x.text FROM _px_run r JOIN _px_tid t USING (tid)
            JOIN {_relation(texts_sql)} x USING (text_hash) ORDER BY r.run, x.text"""
    )
    prev: tuple | None = None
    for rows in _batches(cur, 200):
        for row in rows:
            if prev is not None and prev[0] == row[0]:
                common = _lcp(prev[2], row[2])
                for who in (prev, row):
                    if who[1] >= 0:
                        best[who[1]] = max(best.get(who[1], 0), common)
            prev = row
    con.unregister("_px_run")


def _partial_blocks(
    con: duckdb.DuckDBPyConnection,
    tok: _Tokenizer,
    cuts: dict[str, np.ndarray],
    idx: np.ndarray,
    tid: np.ndarray,
    div: np.ndarray,
    div_o: np.ndarray,
    div_h: np.ndarray,
    needed: np.ndarray,
    b: int,
    texts_sql: str,
    stats: TokenStats,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokenise the shared leading part of each first-unshared message and hash its blocks."""
    _register(con, "_px_cut", {"i": cuts["i"], "tid": tid[div[cuts["i"]]], "chars": cuts["chars"]})
    cur = con.execute(
        f"""SELECT c.i, c.chars, x.text FROM _px_cut c JOIN _px_tid t USING (tid)
            JOIN {_relation(texts_sql)} x USING (text_hash) ORDER BY c.i"""
    )
    out_req: list[np.ndarray] = []
    out_k: list[np.ndarray] = []
    out_h: list[np.ndarray] = []
    lens_i: list[int] = []
    lens_v: list[int] = []
    for batch in _char_batches(_batches(cur, 500), 2):
        # the token at the cut may differ from the full text's: drop it
        encoded = [t[:-1] for t in tok.encode([text[:c] for _, c, text in batch])]
        rows = [(int(i), t) for (i, _, _), t in zip(batch, encoded, strict=True)
                if len(t) >= needed[i]]  # fmt: skip
        if not rows:
            continue
        ii = np.array([i for i, _ in rows], dtype=np.int64)
        parts = [t for _, t in rows]
        lens = np.array([len(t) for t in parts], dtype=np.int64)
        stats.texts_partial += len(parts)
        stats.tokens_partial += int(lens.sum())
        lens_i.extend(ii.tolist())
        lens_v.extend(lens.tolist())
        sums = _prefix_sums(parts, lens)
        base = np.concatenate([[0], np.cumsum(lens + 1)[:-1]])
        o = div_o[ii]
        cnt = (o + lens) // b - o // b
        rep = np.repeat(np.arange(len(ii)), cnt)
        within = np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        k = (o // b + 1)[rep] + within
        local = k * b - o[rep]
        h = div_h[ii][rep] + pow_r(o)[rep] * sums[base[rep] + local]
        out_req.append(idx[div[ii]][rep])
        out_k.append(k - 1)
        out_h.append(h)
    con.unregister("_px_cut")
    p_len = np.zeros(len(div), dtype=np.int64)
    p_len[np.array(lens_i, dtype=np.int64)] = np.array(lens_v, dtype=np.int64)
    empty = np.zeros(0, np.int64)
    return (
        np.concatenate(out_req) if out_req else empty,
        np.concatenate(out_k) if out_k else empty,
        np.concatenate(out_h) if out_h else np.zeros(0, U64),
        p_len[cuts["i"]],
    )


# ---------------------------------------------------------------------------------------------
# Replays. `stream` and `ts` are per request; requests are numbered in (stream, time) order, so
# sorting occurrences by (stream, key, request) puts every key's occurrences in time order.


def _previous_within(
    stream: np.ndarray,
    key: np.ndarray,
    req: np.ndarray,
    ts: np.ndarray,
    ttl: np.ndarray,
    refresh: bool,
) -> np.ndarray:
    """For occurrences (req, key): was the key alive in the same stream's cache at that time?

    With refresh-on-hit every occurrence (a hit or a write) resets the key's clock, so a hit is an
    earlier occurrence within the TTL. Without refresh only a miss (a write) resets it. `ttl` is
    per request (seconds, inf = unbounded); it is constant within a stream (one model).
    """
    order = np.lexsort((req, key, stream[req]))
    s_req = req[order]
    s_key = key[order]
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (s_key[1:] == s_key[:-1]) & (stream[s_req[1:]] == stream[s_req[:-1]])
    t = ts[s_req]
    life = ttl[s_req]
    if refresh:
        hit = np.zeros(len(order), dtype=bool)
        hit[1:] = same[1:] & (t[1:] - t[:-1] <= life[1:])
    else:
        hit = _write_chain(same, t, life)
    out = np.empty(len(order), dtype=bool)
    out[order] = hit
    return out


def _write_chain(same: np.ndarray, t: np.ndarray, ttl: np.ndarray) -> np.ndarray:
    """Hits when only writes start a TTL: sequential over each key's occurrences (a Python loop,
    over keys seen at least twice only)."""
    hit = np.zeros(len(same), dtype=bool)
    starts = np.flatnonzero(~same)
    ends = np.append(starts[1:], len(same))
    tl, life = t.tolist(), ttl.tolist()
    for s, e in zip(starts[ends - starts > 1].tolist(), ends[ends - starts > 1].tolist(),
                    strict=True):  # fmt: skip
        written = tl[s]
        for i in range(s + 1, e):
            if tl[i] - written <= life[i]:
                hit[i] = True
            else:
                written = tl[i]
    return hit


def replay_blocks(
    model: PrefixModel,
    stream: np.ndarray,
    ts: np.ndarray,
    eligible: np.ndarray,
    ttl: np.ndarray,
    refresh: bool,
) -> np.ndarray:
    """Automatic caching: the number of leading blocks of each request found in its stream's cache.

    Every eligible request (long enough to be cached at all) writes or refreshes all its blocks; a
    block counts only if every block before it hit too (prefix semantics).
    """
    counts = np.diff(model.block_off)
    req = np.repeat(np.arange(model.n), counts)
    keep = eligible[req]
    occ = np.flatnonzero(keep)
    req = req[occ]
    if not len(req):
        return np.zeros(model.n, dtype=np.int64)
    k = occ - model.block_off[req]
    hit = _previous_within(stream, model.block_hash[occ], req, ts, ttl, refresh)
    big = np.iinfo(np.int64).max
    miss_k = np.where(hit, big, k)
    first_miss = np.full(model.n, big, dtype=np.int64)
    np.minimum.at(first_miss, req, miss_k)
    return np.where(eligible, np.minimum(first_miss, counts), 0)


def _count_after(mask: np.ndarray, off: np.ndarray) -> np.ndarray:
    """For each element, how many True elements follow it within its CSR segment."""
    if not len(mask):
        return np.zeros(0, dtype=np.int64)
    incl = seg_cumsum(mask.astype(np.int64), off)
    counts = np.diff(off)
    total = np.repeat(incl[np.maximum(off[1:] - 1, 0)], counts)
    return total - incl


def replay_breakpoints(
    model: PrefixModel,
    stream: np.ndarray,
    ts: np.ndarray,
    min_end: np.ndarray,
    max_breakpoints: int | None,
    ttl: np.ndarray,
    refresh: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Explicit caching with breakpoints at message boundaries: (read tokens, written tokens).

    Breakpoints go where a developer who knows the traffic would put them: at message boundaries
    whose prefix recurs in the stream and is at least `min_end` tokens long — the deepest static one
    (end of tools/system) plus the deepest others, up to `max_breakpoints`. A request reads the
    deepest of its breakpoints still cached, refreshes the others and writes those past the read.
    """
    n, off = model.n, model.msg_off
    m_req = np.repeat(np.arange(n), np.diff(off))
    span = int(model.msg_node.max(initial=0)) + 1
    _, inv, cnt = np.unique(stream[m_req].astype(np.int64) * span + model.msg_node,
                            return_inverse=True, return_counts=True)  # fmt: skip
    cand = (cnt[inv] >= 2) & (model.msg_end >= 0) & (model.msg_end >= min_end[m_req])
    after = _count_after(cand, off)  # 0 = the deepest candidate of its request
    limit = max_breakpoints if max_breakpoints is not None else len(cand) + 1
    bp = cand & (after < limit)
    if max_breakpoints is not None:
        # keep the deepest static boundary (a template's long-lived prefix) among the breakpoints
        static = cand & np.isin(model.msg_role, STATIC_ROLES)
        missing = static & (_count_after(static, off) == 0) & ~bp
        need = np.zeros(n, dtype=bool)
        need[m_req[missing]] = True
        drop = bp & (after == limit - 1) & need[m_req]
        bp = (bp & ~drop) | missing
    occ = np.flatnonzero(bp)
    read = np.zeros(n, dtype=np.int64)
    deepest = np.zeros(n, dtype=np.int64)
    if not len(occ):
        return read, deepest
    req = m_req[occ]
    hit = _previous_within(stream, model.msg_node[occ], req, ts, ttl, refresh)
    np.maximum.at(deepest, req, model.msg_end[occ])
    np.maximum.at(read, req, np.where(hit, model.msg_end[occ], 0))
    return read, deepest - read
