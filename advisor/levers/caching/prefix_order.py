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
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import duckdb

from advisor.levers import tables as T
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
    counted_with: str = DEFAULT_ENCODING  # the tiktoken encoding, or the length estimate
    canonical_text: str = ""  # head + tail: the text with the span moved out
    canonical_hash: str = ""
    before: str = ""
    after: str = ""
    examples: list[str] = field(default_factory=list)  # redacted
    features: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # raw spans, only counted, never reported


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


_SENTENCE_END = re.compile(r"\n\s*|[.!?](?=\s)\s*")
# the end of the span's sentence: a line break, or .!?) before a space, a heading or a capital
# (prompt parts are often joined without a space)
_SPAN_END = re.compile(r"\n\s*|[.!?)]+(?=[\s#*A-Z])\s*")
_SNAP_CHARS = 160  # how far the span may grow to take in its whole sentence or line


def _snap(text: str, head: int, tail: int) -> tuple[int, int]:
    """Widen the span to whole sentences/lines, so that the advice moves "Today is Monday,
    2026-10-19." rather than "Monday, 2026-10-19"; both ends stay common to the group."""
    start = max((m.end() for m in _SENTENCE_END.finditer(text, 0, head)), default=0)
    if head - start > _SNAP_CHARS:
        start = head
    rest = len(text) - tail
    if rest == 0 or text[rest - 1] in ".!?)\n \t":  # the stable tail already starts a sentence
        return start, tail
    m = _SPAN_END.search(text, rest, min(rest + _SNAP_CHARS, len(text)))
    return start, (len(text) - m.end() if m else tail)


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


def _describe(
    number: int, group: list[tuple[str, str, str, int]], policy: PrefixOrderPolicy
) -> VariableSpan | None:
    texts = [text for _, _, text, _ in group]
    lo, hi = min(texts), max(texts)
    head = _lcp(lo, hi)  # the common prefix of a set is that of its two extremes in sorted order
    rev = [t[::-1] for t in texts]
    tail = _lcp(min(rev), max(rev))
    shortest = min(len(t) for t in texts)
    tail = min(tail, shortest - head)
    if min(len(t) - head - tail for t in texts) <= 0:  # the canonical form itself is in the group
        head, tail = _snap(lo, head, tail)[0], tail
    else:
        head, tail = _snap(lo, head, tail)
    spans = [len(t) - head - tail for t in texts]
    variable = [i for i, n in enumerate(spans) if n > 0]  # texts already in canonical form: none
    if tail < policy.min_stable_chars or len(variable) < 2:
        return None
    span = int(statistics.median(spans[i] for i in variable))
    if span > policy.max_span_share * statistics.median(len(texts[i]) for i in variable):
        return None
    canonical = lo[:head] + lo[len(lo) - tail :]
    sample = texts[variable[0]]
    var = sample[head : len(sample) - tail]
    # excerpts of slices are masked as the whole text is: a cut keeps no half of a secret
    after = excerpt(canonical, 120) + " … " + excerpt(sample, 60, start=head, end=head + len(var))
    return VariableSpan(
        id=number,
        role=group[0][0],
        text_hashes=[group[i][1] for i in variable],
        requests=sum(group[i][3] for i in variable),
        head_chars=head,
        tail_chars=tail,
        span_chars_median=span,
        canonical_text=canonical,
        canonical_hash=hashlib.md5(canonical.encode("utf-8")).hexdigest(),
        before=excerpt(sample, 160, end=head + len(var) + 80),
        after=after,
        examples=[
            excerpt(texts[i], 60, start=head, end=len(texts[i]) - tail) for i in variable[:3]
        ],
        samples=[texts[i][head : len(texts[i]) - tail] for i in variable[:5]],
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


def _count_tokens(con: duckdb.DuckDBPyConnection, found: list[VariableSpan], encoding: str) -> None:
    """Token sizes of head, tail and the median of a few spans, for the report."""
    texts: list[str] = []
    for span in found:
        text = span.canonical_text
        texts += [text[: span.head_chars], text[span.head_chars :], *span.samples]
    counts = count_texts(texts, encoding) if texts else []
    counted_with = encoding
    if counts is None:
        counts = [estimate_tokens(t) for t in texts]
        counted_with = "length estimate (no tiktoken encoding files)"
    at = 0
    for span in found:
        span.counted_with = counted_with
        span.head_tokens, span.tail_tokens = counts[at], counts[at + 1]
        span.span_tokens_median = int(
            statistics.median(counts[at + 2 : at + 2 + len(span.samples)])
        )
        at += 2 + len(span.samples)


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


def substitute(con: duckdb.DuckDBPyConnection, spans: list[VariableSpan]) -> tuple[str, str]:
    """Tables mapping every text of a finding to its canonical form (the span moved out), and the
    (messages, texts) SQL of the prompts so edited, for a what-if replay."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T.CACHE_SUBST} "
        "(text_hash VARCHAR, new_hash VARCHAR, span INT)"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T.CACHE_SUBST_TEXTS} (text_hash VARCHAR, text VARCHAR)"
    )
    rows = [(h, s.canonical_hash, s.id) for s in spans for h in s.text_hashes]
    if rows:
        con.executemany(f"INSERT INTO {T.CACHE_SUBST} VALUES (?, ?, ?)", rows)
        con.executemany(  # canonical texts some requests already use are in `texts`
            f"INSERT INTO {T.CACHE_SUBST_TEXTS} SELECT ?, ? "
            "WHERE ? NOT IN (SELECT text_hash FROM texts)",
            [(s.canonical_hash, s.canonical_text, s.canonical_hash) for s in spans],
        )
    return (
        "SELECT m.request_id, m.position, m.role, coalesce(s.new_hash, m.text_hash) AS text_hash "
        f"FROM messages m LEFT JOIN {T.CACHE_SUBST} s USING (text_hash)",
        "SELECT text_hash, text FROM texts "
        f"UNION ALL SELECT text_hash, text FROM {T.CACHE_SUBST_TEXTS}",
    )


def span_row(span: VariableSpan, savings: dict[tuple[int, str], dict[str, Any]]) -> dict[str, Any]:
    """One finding as details.prefix_order shows it; `savings` per (finding, model) from the
    caching lever's what-if replay (negative where moving the span loses cached tokens)."""
    mine = [v for (i, _), v in savings.items() if i == span.id]
    saving = sum((v["saving"] for v in mine), Decimal(0))
    return {
        "id": span.id,
        "role": span.role,
        "features": span.features[:5],
        "distinct_texts": len(span.text_hashes),
        "requests": span.requests,
        "stable_head_tokens": span.head_tokens,
        "variable_span_tokens": span.span_tokens_median,
        "cacheable_tokens_lost": span.tail_tokens,
        "counted_with": span.counted_with,
        "extra_cached_tokens": sum(v["extra"] for v in mine),
        "saving": saving,
        "pays": saving > 0,
        "before": span.before,
        "after": span.after,
        "examples": span.examples,
    }
