"""The prefix model: every request's prompt, in the order the provider reads it, as cumulative
hashes of fixed-size token blocks; and the cache replays that walk those hashes.

The serialised prompt is the messages in `messages.position` order (tools, system, messages), each
message's tokens followed by one role-marker token. The hash of the prefix of length p is the
polynomial sum(v(tok_i) * R**i for i < p) mod 2**64, v a 64-bit mix of the token id: it depends on
the token sequence alone, so two requests whose streams agree up to p have the same hash there
however their messages are cut, and "longest cached prefix" is a lookup of block-end hashes.

Work is O(total blocks) on numpy arrays, and tokenisation is kept to what can be shared (DESIGN §8):
1. Prompts are first hashed at message granularity. A message prefix found in two or more requests
   is *shared*; its texts are tokenised, each distinct text once.
2. The first unshared message of a request can still share its start with a sibling (a system
   prompt with the date at its end): it is compared character-wise with the other texts that
   follow the same prefix, and only its longest common part with one of them is tokenised.
   Unique trailing text is never tokenised: the request's length comes from its logged usage.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from advisor.store import scalar
from advisor.tokens import DEFAULT_ENCODING, get_encoding, map_threads

U64 = np.uint64
_R = U64(0x9E3779B97F4A7C15)  # odd base of the polynomial prefix hash
_TOKEN_SALT = 0x5BD1E9955BD1E995
_MARKER_BASE = 1 << 40  # role markers live far above any vocabulary id
ROLES = {"tools": 1, "system": 2, "developer": 3, "user": 4, "assistant": 5, "tool": 6}
STATIC_ROLES = (1, 2, 3)  # tools, system, developer: where a template's stable part lives
_HEAD_FACTOR = 8  # characters fetched per needed token before comparing whole texts
_BATCH_CHARS = 8_000_000  # text tokenised at once: bounds memory, keeps the threads busy
_REPLAY_CHUNK = 1 << 20  # block occurrences sorted at once (streams or shares of keys)
_LCP_ROWS = 4096  # sibling heads compared at once (heads are at most a block * _HEAD_FACTOR)


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
    """R**e mod 2**64, elementwise: from the table of powers when exponents are prompt-sized,
    else by binary exponentiation."""
    if not len(exponent):
        return np.ones(0, dtype=U64)
    top = int(exponent.max())
    if top < 1 << 22:
        return powers(top + 1)[exponent]
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
    """R**0 .. R**(n-1), grown on demand and kept between calls."""
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
    return np.repeat(offsets[:-1], np.diff(offsets))


def seg_cumsum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sums restarting at every CSR segment (uint64 sums wrap, like hashes)."""
    total = np.concatenate([np.zeros(1, values.dtype), np.cumsum(values, dtype=values.dtype)])
    return total[1:] - total[segment_starts(offsets)]


def _boundaries(o: np.ndarray, ell: np.ndarray, b: int) -> tuple[np.ndarray, ...]:
    """Block ends k*b inside spans (o, o + ell]: the span of each, k, and its offset in the span."""
    cnt = (o + ell) // b - o // b
    rep = np.repeat(np.arange(len(o)), cnt)
    k = (o // b + 1)[rep] + np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return rep, k, k * b - o[rep]


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

    Messages are CSR over requests (`msg_off`), blocks likewise (`block_off`); `msg_end` is the
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

    def take(self, order: np.ndarray) -> PrefixModel:
        """The same requests in another order: request j of the result is request order[j].

        A build depends on the set of requests, not on their order (prefix and text ids are
        dense ranks of hashes), so this equals building again in the new order."""
        msg_off, m = _take_segments(self.msg_off, order)
        blocks = len(self.block_off) == self.n + 1  # block_size None: no blocks
        block_off, b = (
            _take_segments(self.block_off, order) if blocks else (self.block_off, slice(None))
        )
        return PrefixModel(
            self.n,
            self.block_size,
            msg_off,
            self.msg_node[m],
            self.msg_role[m],
            self.msg_tid[m],
            self.msg_end[m],
            self.n_shared[order],
            self.shared_tokens[order],
            block_off,
            self.block_hash[b],
            self.stats,
        )


def _take_segments(off: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR offsets of segments `order` of `off`, in that order, and their elements' indices."""
    lengths = np.diff(off)[order]
    new_off = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_off[1:])
    index = np.arange(new_off[-1]) - segment_starts(new_off) + np.repeat(off[:-1][order], lengths)
    return new_off, index


class Tokenizer:
    """tiktoken (the model's encoding, else o200k_base) or 4-byte pseudo-tokens, with two caches
    so that a second build over the same store (another cache group, a what-if) re-tokenises only
    what it has not seen: whole texts by hash (their text need not even be fetched again), and
    any text tokenised before, by its content (the shared starts of sibling prompts)."""

    def __init__(self, encoding: str, cache_tokens: int = 50_000_000) -> None:
        exact = encoding in ("o200k_base", "cl100k_base")
        self.encoding = encoding if exact else DEFAULT_ENCODING
        self.enc = get_encoding(self.encoding)
        self.cache: dict[str, np.ndarray] = {}  # text hash -> tokens
        self.seen: dict[str, np.ndarray] = {}  # text -> tokens
        self.room = cache_tokens  # tokens the caches may still take (4 bytes each)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of each text; each distinct text is tokenised once."""
        found = {t: self.seen[t] for t in texts if t in self.seen}
        todo = [t for t in dict.fromkeys(texts) if t not in found]
        for text, tokens in zip(todo, self._encode(todo), strict=True):
            found[text] = tokens
            if len(tokens) <= self.room:
                self.seen[text] = tokens
                self.room -= len(tokens)
        return [found[t] for t in texts]

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        if not texts:
            return []
        if self.enc is None:  # no tokenizer: 4-byte pseudo-tokens keep the prefix structure
            out = []
            for text in texts:
                raw = text.encode("utf-8")
                raw += b"\0" * (-len(raw) % 4)
                out.append(np.frombuffer(raw, dtype="<i4").copy())
            return out
        enc = self.enc
        return map_threads(lambda t: np.array(enc.encode_ordinary(t), dtype=np.int32), texts)

    def remember(self, key: str, text: str) -> None:
        """Keep a whole text's tokens under its hash too, where `encode` kept them."""
        if text in self.seen:
            self.cache[key] = self.seen[text]


def relation(sql: str) -> str:
    """A table name as is, a query in parentheses."""
    return f"({sql})" if " " in sql.strip() else sql


def _register(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, np.ndarray]) -> None:
    con.register(name, pa.table({k: pa.array(v) for k, v in columns.items()}))


def _batches(cur: duckdb.DuckDBPyConnection, size: int = 2000) -> Iterator[list[tuple]]:
    while rows := cur.fetchmany(size):
        yield rows


def _char_batches(rows: Iterator[list[tuple]], text_col: int) -> Iterator[list[tuple]]:
    """Regroup fetched rows into batches of about _BATCH_CHARS characters of text."""
    pending: list[tuple] = []
    chars = 0
    for chunk in rows:
        for row in chunk:
            pending.append(row)
            chars += len(row[text_col] or "")
            if chars >= _BATCH_CHARS:
                yield pending
                pending, chars = [], 0
    if pending:
        yield pending


def _lcp(a: str, b: str) -> int:
    """Length of the longest common prefix: slice comparisons (in C), then a binary search."""
    n = min(len(a), len(b))
    lo, step = 0, 4096
    while lo < n and a[lo : lo + step] == b[lo : lo + step]:
        lo += step
    if lo >= n:
        return n
    hi = min(lo + step, n)
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
    tokenizer: Tokenizer | None = None,
) -> PrefixModel:
    """The prefix model of the requests in table `requests` (request_id, idx = 0..n-1).

    `block_size` None builds message prefixes only (enough for message-granularity breakpoints).
    `messages_sql`/`texts_sql` replay edited prompts (prefix-order what-ifs); passing the same
    `tokenizer` again reuses its cache.
    """
    n = int(scalar(con, f"SELECT count(*) FROM {requests}"))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _px_msg AS
            SELECT q.idx, m.position, m.role, m.text_hash
            FROM {requests} q JOIN {relation(messages_sql)} m USING (request_id)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _px_tid AS
           SELECT text_hash, (row_number() OVER (ORDER BY text_hash) - 1)::BIGINT AS tid
           FROM (SELECT DISTINCT text_hash FROM _px_msg)"""
    )
    roles = " ".join(f"WHEN '{k}' THEN {v}" for k, v in ROLES.items())
    got = con.execute(
        f"""SELECT m.idx::BIGINT AS idx, t.tid, (CASE m.role {roles} ELSE 7 END)::TINYINT AS role
            FROM _px_msg m JOIN _px_tid t USING (text_hash) ORDER BY m.idx, m.position"""
    ).fetchnumpy()
    idx = np.asarray(got["idx"], dtype=np.int64)
    tid = np.asarray(got["tid"], dtype=np.int64)
    role = np.asarray(got["role"], dtype=np.int8)
    msg_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=n), out=msg_off[1:])
    pos = np.arange(len(idx)) - segment_starts(msg_off)

    # 1. Message prefixes: each request's prefix through message i as one 64-bit key.
    item = mix64(tid.astype(U64) * U64(16) + role.astype(U64))
    _, node, counts = np.unique(
        seg_cumsum(item * pow_r(pos), msg_off), return_inverse=True, return_counts=True
    )
    node = node.astype(np.int64)
    shared = counts[node] >= 2  # prefix-closed: a shared prefix's own prefixes are shared
    n_shared = np.bincount(idx, weights=shared, minlength=n).astype(np.int64)
    tok = tokenizer if tokenizer is not None else Tokenizer(encoding)
    stats = TokenStats(tok.encoding, estimated=tok.enc is None)
    pool = _TextPool.tokenize(con, tok, np.unique(tid[shared]), texts_sql, stats)

    # 2. Token lengths and prefix hashes at message ends (shared messages only).
    ln = np.where(shared, pool.len[tid] + 1, 0)  # + the role marker
    end = seg_cumsum(ln, msg_off)
    start = end - ln
    r_start = pow_r(start)
    term = np.where(shared, r_start * pool.full_sum(tid, role), U64(0))
    h_end = seg_cumsum(term, msg_off)
    h_start = h_end - term
    shared_tokens = np.zeros(n, dtype=np.int64)
    has = n_shared > 0
    shared_tokens[has] = end[(msg_off[:-1] + n_shared - 1)[has]]
    model = PrefixModel(
        n,
        block_size,
        msg_off,
        node,
        role,
        tid,
        np.where(shared, end, -1),
        n_shared,
        shared_tokens,
        stats=stats,
    )
    if block_size is None:
        _drop(con)
        return model

    # 3. Blocks ending inside shared messages.
    sel = np.flatnonzero(shared)
    rep, k, local = _boundaries(start[sel], ln[sel], block_size)
    at = sel[rep]
    blocks = [
        (idx[at], k - 1, h_start[at] + r_start[at] * pool.prefix_sum(tid[at], local, role[at]))
    ]

    # 4. Partial matches: the first unshared message against its siblings.
    parent = np.where(pos > 0, np.concatenate([[-1], node[:-1]]), -1)
    div = np.flatnonzero(~shared & (pos == n_shared[idx]))
    prev = np.maximum(div - 1, 0)
    div_o = np.where(pos[div] > 0, end[prev], 0)
    div_h = np.where(pos[div] > 0, h_end[prev], U64(0))
    needed = block_size - div_o % block_size  # tokens that complete the current block
    which, chars = _sibling_cuts(con, parent, tid, div, needed, texts_sql, stats)
    if len(which):
        p_req, p_k, p_h, p_len = _partial_blocks(
            con, tok, which, chars, tid[div], div_o, div_h, needed, block_size, texts_sql, stats
        )
        blocks.append((idx[div][p_req], p_k, p_h))
        shared_tokens[idx[div][which]] += p_len

    req = np.concatenate([b[0] for b in blocks])
    order = np.lexsort((np.concatenate([b[1] for b in blocks]), req))
    np.cumsum(np.bincount(req, minlength=n), out=(off := np.zeros(n + 1, dtype=np.int64))[1:])
    model.block_off = off
    model.block_hash = np.concatenate([b[2] for b in blocks])[order]
    _drop(con)
    return model


def _drop(con: duckdb.DuckDBPyConnection) -> None:
    for t in ("_px_msg", "_px_tid"):
        con.execute(f"DROP TABLE IF EXISTS {t}")


class _TextPool:
    """Token prefix sums of the shared texts: sum(v(tok_j) * R**j for j < i), i = 0..len."""

    def __init__(self, size: int) -> None:
        self.off = np.full(size, -1, dtype=np.int64)  # tid -> start in `sums`
        self.len = np.zeros(size, dtype=np.int64)
        self.sums = np.zeros(1, dtype=U64)

    @classmethod
    def tokenize(
        cls,
        con: duckdb.DuckDBPyConnection,
        tok: Tokenizer,
        tids: np.ndarray,
        texts_sql: str,
        stats: TokenStats,
    ) -> _TextPool:
        pool = cls(int(scalar(con, "SELECT count(*) FROM _px_tid")))
        if not len(tids):
            return pool
        _register(con, "_px_want", {"tid": tids})
        want = con.execute(
            "SELECT w.tid, t.text_hash FROM _px_want w JOIN _px_tid t USING (tid)"
        ).fetchall()
        known = {t: tok.cache[h] for t, h in want if h in tok.cache}
        _register(
            con,
            "_px_want",
            {"tid": np.array([t for t, _ in want if t not in known], dtype=np.int64)},
        )
        cur = con.execute(
            f"""SELECT w.tid, t.text_hash, x.text FROM _px_want w JOIN _px_tid t USING (tid)
                JOIN {relation(texts_sql)} x USING (text_hash)"""
        )
        parts: list[np.ndarray] = []
        at = 0

        def add(t: int, toks: np.ndarray) -> None:
            nonlocal at
            pool.off[t], pool.len[t] = at, len(toks)
            at += len(toks) + 1  # + the leading 0 of its prefix sums
            parts.append(toks)

        for t, toks in sorted(known.items()):
            add(t, toks)
        for batch in _char_batches(_batches(cur), 2):
            texts = [r[2] or "" for r in batch]
            for (t, h, _), text, toks in zip(batch, texts, tok.encode(texts), strict=True):
                add(t, toks)
                tok.remember(h, text)
                stats.tokens_full += len(toks)
            stats.texts_full += len(batch)
        con.unregister("_px_want")
        pool.sums = _prefix_sums(parts)
        return pool

    def full_sum(self, tid: np.ndarray, role: np.ndarray) -> np.ndarray:
        """Prefix sum of a whole message: its text tokens, then its role marker."""
        ok = self.off[tid] >= 0
        text = np.where(ok, self.sums[np.where(ok, self.off[tid] + self.len[tid], 0)], U64(0))
        return text + marker_values(role) * pow_r(self.len[tid])

    def prefix_sum(self, tid: np.ndarray, local: np.ndarray, role: np.ndarray) -> np.ndarray:
        """Prefix sum of a message's first `local` tokens (local = len + 1 takes in the marker)."""
        ln = self.len[tid]
        inside = self.sums[self.off[tid] + np.minimum(local, ln)]
        return np.where(local > ln, self.full_sum(tid, role), inside)


def _prefix_sums(parts: list[np.ndarray]) -> np.ndarray:
    """Per token array, [0, cumsum(v * R**j)...] (len + 1 entries), the arrays laid end to end."""
    if not parts:
        return np.zeros(1, U64)
    lens = np.array([len(p) for p in parts], dtype=np.int64)
    toks = np.concatenate(parts)
    off = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    j = np.arange(len(toks)) - segment_starts(off)
    sums = seg_cumsum(token_values(toks) * powers(int(lens.max()) + 1)[j], off)
    out = np.zeros(len(toks) + len(parts), dtype=U64)
    out[np.arange(len(toks)) + np.repeat(np.arange(len(parts)), lens) + 1] = sums
    return out


def _sibling_cuts(
    con: duckdb.DuckDBPyConnection,
    parent: np.ndarray,
    tid: np.ndarray,
    div: np.ndarray,
    needed: np.ndarray,
    texts_sql: str,
    stats: TokenStats,
) -> tuple[np.ndarray, np.ndarray]:
    """For first-unshared messages (indices into `div`): how many leading characters each shares
    with another text following the same prefix. Only those that may complete a block are kept."""
    empty = np.zeros(0, dtype=np.int64)
    if not len(div):
        return empty, empty
    # Siblings: every distinct (parent, text) under a parent that has a first-unshared child.
    parents, first = np.unique(parent[div], return_index=True)
    sib = np.flatnonzero(np.isin(parent, parents))
    which = np.full(len(parent), -1, dtype=np.int64)
    which[div] = np.arange(len(div))
    sib = sib[np.lexsort((-which[sib], tid[sib], parent[sib]))]
    new = np.ones(len(sib), dtype=bool)
    new[1:] = (parent[sib][1:] != parent[sib][:-1]) | (tid[sib][1:] != tid[sib][:-1])
    sib = sib[new]
    # A token spans at least one character and at most four bytes: siblings must agree on
    # needed/4 characters to possibly complete a block; heads of needed*8 characters are compared.
    need = needed[first][np.searchsorted(parents, parent[sib])]
    _register(
        con,
        "_px_sib",
        {
            "parent": parent[sib],
            "tid": tid[sib],
            "i": which[sib],
            "min_chars": np.maximum(need // 4, 1),
            "head": need * _HEAD_FACTOR,
        },
    )
    siblings = con.sql(
        f"""WITH s AS (SELECT p.*, x.text FROM _px_sib p JOIN _px_tid t USING (tid)
                       JOIN {relation(texts_sql)} x USING (text_hash)),
                 g AS (SELECT parent, left(text, min_chars) AS k FROM s
                       GROUP BY ALL HAVING count(*) >= 2 AND max(i) >= 0)
            SELECT s.parent, s.tid, s.i, left(s.text, s.head) AS head,
                   length(s.text) > s.head AS truncated
            FROM s SEMI JOIN g ON g.parent = s.parent AND g.k = left(s.text, s.min_chars)
            ORDER BY s.parent, head"""
    )
    # Per fetched row, in sorted order: its parent, (tid, i), and how many leading characters it
    # shares with the row before it (the closest sibling is a sorted neighbour).
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("parent", "tid", "i", "trunc", "len")}
    commons: list[np.ndarray] = []
    last: str | None = None
    for batch in siblings.to_arrow_reader(_LCP_ROWS):
        if not batch.num_rows:
            continue
        heads = batch.column("head").to_pylist()
        commons.append(_neighbour_lcp(last, heads))
        last = heads[-1]
        for name, column in (
            ("parent", "parent"),
            ("tid", "tid"),
            ("i", "i"),
            ("trunc", "truncated"),
        ):
            cols[name].append(batch.column(column).to_numpy(zero_copy_only=False))
        cols["len"].append(np.fromiter(map(len, heads), np.int64, len(heads)))
    con.unregister("_px_sib")
    best = np.full(len(div), -1, dtype=np.int64)  # div index -> characters shared, -1: no sibling
    if commons:
        par, t, i, trunc, ln = (
            np.concatenate(cols[k]) for k in ("parent", "tid", "i", "trunc", "len")
        )
        common = np.concatenate(commons)
        same = np.zeros(len(par), dtype=bool)
        same[1:] = par[1:] == par[:-1]
        pair = np.flatnonzero(same)  # row j and row j - 1 are siblings
        who = np.concatenate([i[pair - 1], i[pair]])
        value = np.concatenate([common[pair], common[pair]])
        np.maximum.at(best, who[who >= 0], value[who >= 0])
        # siblings equal over their whole (truncated) heads: their whole texts are compared
        tie = np.zeros(len(par), dtype=bool)
        tie[pair] = (
            trunc[pair] & trunc[pair - 1] & (common[pair] == ln[pair]) & (ln[pair] == ln[pair - 1])
        )
        if tie.any():
            starts = tie & ~np.concatenate([[False], tie[:-1]])
            run = np.cumsum(starts) - 1
            rows = np.sort(np.concatenate([np.flatnonzero(tie), np.flatnonzero(starts) - 1]))
            run_of = np.where(tie[rows], run[rows], run[np.minimum(rows + 1, len(run) - 1)])
            _whole_text_lcp(con, run_of, t[rows], i[rows], best, texts_sql)
    stats.sibling_candidates = int((best >= 0).sum())
    keep = np.flatnonzero(best >= np.maximum(needed // 4, 1))
    return keep.astype(np.int64), best[keep]


def _neighbour_lcp(before: str | None, texts: list[str]) -> np.ndarray:
    """Characters each text shares at its start with the text before it (the first with
    `before`, 0 without one): the texts as rows of code points, compared column-wise in numpy."""
    rows = np.array([before or "", *texts], dtype=np.str_)
    codes = rows.view(np.uint32).reshape(len(rows), -1)
    if not codes.shape[1]:  # every text empty
        return np.zeros(len(texts), dtype=np.int64)
    differ = codes[1:] != codes[:-1]
    first = differ.argmax(axis=1)
    common = np.where(differ[np.arange(len(texts)), first], first, codes.shape[1])
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    # numpy pads with NUL: a common prefix ends with the shorter text
    shorter = np.minimum(lengths, np.concatenate([[len(before or "")], lengths[:-1]]))
    return np.minimum(common, shorter).astype(np.int64)


def _whole_text_lcp(
    con: duckdb.DuckDBPyConnection,
    run: np.ndarray,
    tid: np.ndarray,
    which: np.ndarray,
    best: np.ndarray,
    texts_sql: str,
) -> None:
    """Siblings equal over their whole heads (`run` numbers each group): compare the whole
    texts, streamed in sorted order, raising `best` of each first-unshared message (`which`)."""
    _register(con, "_px_run", {"run": run, "tid": tid, "i": which})
    cur = con.execute(
        f"""SELECT r.run, r.i, x.text FROM _px_run r JOIN _px_tid t USING (tid)
            JOIN {relation(texts_sql)} x USING (text_hash) ORDER BY r.run, x.text"""
    )
    prev: tuple | None = None
    for rows in _batches(cur, 200):
        for row in rows:
            if prev is not None and prev[0] == row[0]:
                common = _lcp(prev[2], row[2])
                for who in (prev, row):
                    if who[1] >= 0:
                        best[who[1]] = max(best[who[1]], common)
            prev = row
    con.unregister("_px_run")


def _partial_blocks(
    con: duckdb.DuckDBPyConnection,
    tok: Tokenizer,
    which: np.ndarray,
    chars: np.ndarray,
    div_tid: np.ndarray,
    div_o: np.ndarray,
    div_h: np.ndarray,
    needed: np.ndarray,
    b: int,
    texts_sql: str,
    stats: TokenStats,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokenise the shared start of each first-unshared message in `which` and hash its blocks:
    (div index, block index, hash) per block, and the tokens added per entry of `which`."""
    _register(con, "_px_cut", {"i": which, "tid": div_tid[which], "chars": chars})
    cur = con.execute(
        f"""SELECT c.i, left(x.text, c.chars) AS cut FROM _px_cut c JOIN _px_tid t USING (tid)
            JOIN {relation(texts_sql)} x USING (text_hash) ORDER BY c.i"""
    )  # only the shared start leaves the store
    out: list[tuple[np.ndarray, ...]] = []
    added = dict.fromkeys(which.tolist(), 0)
    for batch in _char_batches(_batches(cur, 500), 1):
        # the last token of a cut text may differ from the whole text's there: drop it
        encoded = [t[:-1] for t in tok.encode([cut for _, cut in batch])]
        rows = [
            (int(i), t) for (i, _), t in zip(batch, encoded, strict=True) if len(t) >= needed[i]
        ]
        if not rows:
            continue
        ii = np.array([i for i, _ in rows], dtype=np.int64)
        parts = [t for _, t in rows]
        for i, t in rows:
            added[i] = len(t)
        stats.texts_partial += len(parts)
        stats.tokens_partial += sum(len(t) for t in parts)
        sums = _prefix_sums(parts)
        base = np.concatenate([[0], np.cumsum([len(t) + 1 for t in parts])[:-1]])
        rep, k, local = _boundaries(div_o[ii], np.array([len(t) for t in parts]), b)
        h = div_h[ii][rep] + pow_r(div_o[ii])[rep] * sums[base[rep] + local]
        out.append((ii[rep], k - 1, h))
    con.unregister("_px_cut")
    empty = np.zeros(0, np.int64)
    cols = [np.concatenate([o[j] for o in out]) if out else empty for j in range(3)]
    return cols[0], cols[1], cols[2].astype(U64), np.array([added[i] for i in which.tolist()])


# ---------------------------------------------------------------------------------------------
# Replays. `stream` and `ts` are per request, and requests are numbered in (stream, time) order,
# so sorting occurrences by (stream, key, request) puts each key's occurrences in time order.


def _previous_within(
    stream: np.ndarray,
    key: np.ndarray,
    req: np.ndarray,
    ts: np.ndarray,
    ttl: np.ndarray,
    refresh: bool,
) -> np.ndarray:
    """For occurrences (req, key), `req` ascending: was the key alive in the same stream's cache
    at that time?

    With refresh-on-hit every occurrence (a hit or a write) restarts the key's TTL, so a hit is an
    earlier occurrence within the TTL. Without refresh only a miss (a write) restarts it. `ttl`
    is per request (seconds, inf = unbounded) and constant within a stream (one model). Streams
    and keys are independent: occurrences are sorted a chunk of whole streams at a time, a
    stream larger than a chunk a share of its keys at a time (bounded memory).
    """
    out = np.empty(len(req), dtype=bool)
    bounds = np.searchsorted(req, _runs(stream))
    for i, j in _chunks(bounds):
        a, b = int(bounds[i]), int(bounds[j])
        shares = max(1, (b - a) // _REPLAY_CHUNK)
        for share in range(shares):
            at = np.arange(a, b) if shares == 1 else a + np.flatnonzero(key[a:b] % shares == share)
            keys, reqs = key[at], req[at]
            s_stream = stream[reqs]
            # stable: a key's occurrences stay in request (time) order
            order = np.lexsort((keys, s_stream))
            s_req, s_key, s_stream = reqs[order], keys[order], s_stream[order]
            same = np.zeros(len(order), dtype=bool)
            same[1:] = (s_key[1:] == s_key[:-1]) & (s_stream[1:] == s_stream[:-1])
            t, life = ts[s_req], ttl[s_req]
            if refresh:
                hit = np.zeros(len(order), dtype=bool)
                hit[1:] = same[1:] & (t[1:] - t[:-1] <= life[1:])
            else:
                hit = _write_chain(same, t, life)
            out[at[order]] = hit
    return out


def _runs(stream: np.ndarray) -> np.ndarray:
    """Where each run of equal values of a sorted per-request array starts, and the end."""
    return np.concatenate([[0], np.flatnonzero(stream[1:] != stream[:-1]) + 1, [len(stream)]])


def _chunks(bounds: np.ndarray) -> list[tuple[int, int]]:
    """The runs between ascending `bounds` gathered into pieces of about _REPLAY_CHUNK elements,
    a run never split: (i, j) per piece, indices into `bounds`."""
    size = _REPLAY_CHUNK
    ends = bounds.tolist()
    cuts = [0]
    for k in range(1, len(ends) - 1):  # close the piece before run k where it would overflow
        if ends[k + 1] - ends[cuts[-1]] > size and ends[k] > ends[cuts[-1]]:
            cuts.append(k)
    cuts.append(len(ends) - 1)
    return list(itertools.pairwise(cuts))


def _write_chain(same: np.ndarray, t: np.ndarray, ttl: np.ndarray) -> np.ndarray:
    """Hits when only writes start a TTL: sequential over each key's occurrences (a Python loop
    over integer lists, and only over keys seen more than once)."""
    hit = np.zeros(len(same), dtype=bool)
    starts = np.flatnonzero(~same)
    ends = np.append(starts[1:], len(same))
    many = ends - starts > 1
    tl, life = t.tolist(), ttl.tolist()
    for s, e in zip(starts[many].tolist(), ends[many].tolist(), strict=True):
        written = tl[s]
        for i in range(s + 1, e):
            if tl[i] - written <= life[i]:
                hit[i] = True
            else:
                written = tl[i]
    return hit


def _per_request(
    req: np.ndarray, values: np.ndarray, ufunc: np.ufunc, n: int, fill: int
) -> np.ndarray:
    """Reduce values over runs of equal, ascending `req` into an array indexed by request."""
    out = np.full(n, fill, dtype=np.int64)
    if len(req):
        starts = np.flatnonzero(np.concatenate([[True], req[1:] != req[:-1]]))
        out[req[starts]] = ufunc.reduceat(values, starts)
    return out


def replay_blocks(
    model: PrefixModel,
    stream: np.ndarray,
    ts: np.ndarray,
    eligible: np.ndarray,
    ttl: np.ndarray,
    refresh: bool,
) -> np.ndarray:
    """Automatic caching: how many leading blocks of each request its stream's cache holds.

    Every eligible request (long enough to be cached at all) writes or refreshes all its blocks; a
    block counts only if every block before it hit too (prefix semantics).
    """
    counts = np.diff(model.block_off)
    big = np.iinfo(np.int64).max
    first_miss = np.full(model.n, big, dtype=np.int64)
    runs = _runs(stream)
    for i, j in _chunks(model.block_off[runs]):  # whole streams at a time: bounded memory
        a, b = int(runs[i]), int(runs[j])
        lo = model.block_off[a]
        occ = lo + np.flatnonzero(np.repeat(eligible[a:b], counts[a:b]))
        req = np.repeat(np.arange(a, b), counts[a:b])[occ - lo]
        hit = _previous_within(stream, model.block_hash[occ], req, ts, ttl, refresh)
        first_miss[a:b] = _per_request(
            req - a, np.where(hit, big, occ - model.block_off[req]), np.minimum, b - a, big
        )
    return np.where(eligible, np.minimum(first_miss, counts), 0)


def _count_after(mask: np.ndarray, off: np.ndarray) -> np.ndarray:
    """For each element, how many True elements follow it within its CSR segment."""
    incl = seg_cumsum(mask.astype(np.int64), off)
    if not len(incl):
        return incl
    return np.repeat(incl[np.maximum(off[1:] - 1, 0)], np.diff(off)) - incl


def replay_breakpoints(
    model: PrefixModel,
    stream: np.ndarray,
    ts: np.ndarray,
    min_end: np.ndarray,
    max_breakpoints: int | None,
    ttl: np.ndarray,
    refresh: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Explicit caching with breakpoints at message boundaries: (tokens read, tokens written).

    Breakpoints go where a developer who knows the traffic would put them: at message boundaries
    whose prefix recurs in the stream and is at least `min_end` tokens long — the deepest static one
    (end of tools/system) and the deepest others, `max_breakpoints` in all. A request reads its
    deepest breakpoint still cached, refreshes the shallower ones and writes those past the read.
    """
    n, off = model.n, model.msg_off
    m_req = np.repeat(np.arange(n), np.diff(off))
    span = int(model.msg_node.max(initial=0)) + 1
    _, inv, cnt = np.unique(
        stream[m_req].astype(np.int64) * span + model.msg_node,
        return_inverse=True,
        return_counts=True,
    )
    cand = (cnt[inv] >= 2) & (model.msg_end >= 0) & (model.msg_end >= min_end[m_req])
    after = _count_after(cand, off)  # 0 = the deepest candidate of its request
    limit = max_breakpoints if max_breakpoints is not None else len(cand) + 1
    bp = cand & (after < limit)
    if max_breakpoints is not None:  # make room for the deepest static boundary
        static = cand & np.isin(model.msg_role, STATIC_ROLES)
        missing = static & (_count_after(static, off) == 0) & ~bp
        need = np.zeros(n, dtype=bool)
        need[m_req[missing]] = True
        bp = (bp & ~(bp & (after == limit - 1) & need[m_req])) | missing
    occ = np.flatnonzero(bp)
    req = m_req[occ]
    hit = _previous_within(stream, model.msg_node[occ], req, ts, ttl, refresh)
    ends = model.msg_end[occ]
    deepest = _per_request(req, ends, np.maximum, n, 0)
    read = _per_request(req, np.where(hit, ends, 0), np.maximum, n, 0)
    return read, deepest - read
