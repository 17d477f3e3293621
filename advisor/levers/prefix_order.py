"""Prefix-order advice: prompts that break their own cache by putting variable text early.

A template that injects a date, a user name or a request id *before* its stable instructions makes
every rendering a different prefix, so no provider can cache the stable part. We find such
templates as groups of distinct texts that end the same way (the same last characters) but start
differently, take the group's common head and common tail, and call what lies between them the
variable span. The caching lever then replays the traffic with every text of the group replaced by
head + tail (the span moved to the end of the prompt) to price the fix; this module only finds the
groups and describes them (with redacted excerpts).
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb

from advisor.redact import excerpt
from advisor.tokens import DEFAULT_ENCODING, count_texts, estimate_tokens


@dataclass(frozen=True)
class PrefixOrderPolicy:
    """Knobs of the search (rules/caching.yaml `prefix_order`)."""

    tail_key_chars: int = 200  # texts are grouped by this many trailing characters
    min_stable_chars: int = 400  # the stable text after the span must be at least this long
    max_span_share: float = 0.3  # the span is at most this share of the text (near-identical)
    max_texts_per_group: int = 50_000
    max_findings: int = 20


@dataclass
class VariableSpan:
    """One template whose variable text sits before stable text."""

    id: int
    role: str
    text_hashes: list[str]
    requests: int
    head_chars: int  # common leading text (cacheable today)
    tail_chars: int  # common trailing text (not cacheable today: the span comes before it)
    span_chars_median: int
    head_tokens: int = 0
    tail_tokens: int = 0
    span_tokens_median: int = 0
    canonical_text: str = ""  # head + tail: the text with the span moved out
    canonical_hash: str = ""
    before: str = ""
    after: str = ""
    examples: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)


def _lcp(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    step = 256
    while i < n and a[i : i + step] == b[i : i + step]:
        i += step
    end = min(i + step, n)
    while i < end and a[i] == b[i]:
        i += 1
    return i


def _groups(cur: duckdb.DuckDBPyConnection) -> Iterator[list[tuple[str, str, str, int]]]:
    """Rows (group, role, text_hash, uses, text) ordered by group -> one list per group."""
    group: list[tuple[str, str, str, int]] = []
    key = None
    while rows := cur.fetchmany(500):
        for g, role, text_hash, uses, text in rows:
            if g != key and group:
                yield group
                group = []
            key = g
            group.append((role, text_hash, text, int(uses)))
    if group:
        yield group


def _describe(number: int, group: list[tuple[str, str, str, int]], policy: PrefixOrderPolicy) -> (
    VariableSpan | None
):  # fmt: skip
    texts = [text for _, _, text, _ in group]
    lo, hi = min(texts), max(texts)
    head = _lcp(lo, hi)  # the common prefix of a set is that of its two extremes in sorted order
    rev = [t[::-1] for t in texts]
    tail = _lcp(min(rev), max(rev))
    shortest = min(len(t) for t in texts)
    tail = min(tail, shortest - head)
    spans = [len(t) - head - tail for t in texts]
    span = int(statistics.median(spans))
    if tail < policy.min_stable_chars or span <= 0:
        return None
    if span > policy.max_span_share * statistics.median(len(t) for t in texts):
        return None
    canonical = lo[:head] + lo[len(lo) - tail :]
    sample = texts[0]
    var = sample[head : len(sample) - tail]
    after = excerpt(canonical, 120) + " … " + excerpt(var, 60)
    return VariableSpan(
        id=number,
        role=group[0][0],
        text_hashes=[h for _, h, _, _ in group],
        requests=sum(n for *_, n in group),
        head_chars=head,
        tail_chars=tail,
        span_chars_median=span,
        canonical_text=canonical,
        canonical_hash=hashlib.md5(canonical.encode("utf-8")).hexdigest(),
        before=excerpt(sample[: head + len(var) + 80], 160),
        after=after,
        examples=[excerpt(t[head : len(t) - tail], 60) for t in texts[:3]],
    )


def find_variable_spans(
    con: duckdb.DuckDBPyConnection,
    requests: str,
    policy: PrefixOrderPolicy,
    encoding: str = DEFAULT_ENCODING,
) -> list[VariableSpan]:
    """Templates of the requests in table `requests` (request_id) whose variable part comes first.

    Only distinct texts are read; a group is a set of texts with the same role and the same last
    `tail_key_chars` characters, at least two of them distinct.
    """
    k = int(policy.tail_key_chars)
    cur = con.execute(
        f"""WITH used AS (
              SELECT m.role, m.text_hash, count(*) AS uses
              FROM messages m SEMI JOIN {requests} q USING (request_id) GROUP BY ALL
            ), keyed AS (
              SELECT u.role, u.text_hash, u.uses, md5(right(t.text, {k})) AS g
              FROM used u JOIN texts t USING (text_hash)
              WHERE length(t.text) >= {int(policy.min_stable_chars)}
            ), grouped AS (
              SELECT role, g FROM keyed GROUP BY ALL
              HAVING count(*) BETWEEN 2 AND {int(policy.max_texts_per_group)}
            )
            SELECT k.role || ':' || k.g AS grp, k.role, k.text_hash, k.uses, t.text
            FROM keyed k SEMI JOIN grouped USING (role, g) JOIN texts t USING (text_hash)
            ORDER BY grp, k.text_hash"""
    )
    found = [
        span
        for number, group in enumerate(_groups(cur))
        if (span := _describe(number, group, policy)) is not None
    ]
    found.sort(key=lambda s: (-s.requests * s.tail_chars, s.canonical_hash))
    found = found[: policy.max_findings]
    for i, span in enumerate(found):
        span.id = i
    _count_tokens(con, found, encoding)
    _features(con, found, requests)
    return found


def _count_tokens(
    con: duckdb.DuckDBPyConnection, found: list[VariableSpan], encoding: str
) -> None:
    """Token sizes of head, tail and a median span, for the report (a few short texts)."""
    texts: list[str] = []
    for span in found:
        text = span.canonical_text
        texts += [text[: span.head_chars], text[span.head_chars :]]
    counts = count_texts(texts, encoding) if texts else []
    if counts is None:
        counts = [estimate_tokens(t) for t in texts]
    for i, span in enumerate(found):
        span.head_tokens, span.tail_tokens = counts[2 * i], counts[2 * i + 1]
        chars = max(len(span.canonical_text), 1)
        span.span_tokens_median = round(
            span.span_chars_median * (span.head_tokens + span.tail_tokens) / chars
        )


def _features(con: duckdb.DuckDBPyConnection, found: list[VariableSpan], requests: str) -> None:
    if not found:
        return
    rows = [(span.id, h) for span in found for h in span.text_hashes]
    con.execute("CREATE OR REPLACE TEMP TABLE _po_texts (id INTEGER, text_hash VARCHAR)")
    con.executemany("INSERT INTO _po_texts VALUES (?, ?)", rows)
    got = con.execute(
        f"""SELECT p.id, coalesce(r.feature, '(none)') AS feature, count(DISTINCT r.request_id)
            FROM _po_texts p JOIN messages m USING (text_hash)
            SEMI JOIN {requests} q ON q.request_id = m.request_id
            JOIN requests r ON r.request_id = m.request_id
            GROUP BY ALL ORDER BY 1, 3 DESC, 2"""
    ).fetchall()
    by_id = {span.id: span for span in found}
    for span_id, feature, _ in got:
        by_id[span_id].features.append(feature)
    con.execute("DROP TABLE IF EXISTS _po_texts")
