"""What the trimming lever reports after its standalone replay: totals, the rows per feature and
template, the lossy candidates and tool-definition opportunities (listed, never counted), redacted
before/after examples and the recommendations of rules/trimming.yaml."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import duckdb

from advisor.conditions import evaluate
from advisor.levers import tables as T
from advisor.levers.base import Recommendation, State
from advisor.levers.trimming import replay as R
from advisor.levers.trimming.models import (
    Example,
    KindTokens,
    LossyCandidate,
    Row,
    TokenSource,
    TokenSources,
    ToolOpportunity,
    Totals,
    TrimmingDetails,
    TrimmingRisk,
)
from advisor.levers.trimming.policy import TrimmingPolicy
from advisor.levers.trimming.transforms import KINDS
from advisor.pricing import cost_sql
from advisor.redact import redact
from advisor.tokens import BYTES_PER_TOKEN

ALL_KINDS = (*KINDS, "duplicate_messages")
_RANK = {"exact": 0, "approximate": 1, "estimated": 2}
# Example markers of few-shot blocks: "Example 1:", "### Example", "<example>", "Input:".
_EXAMPLE = r"(?im)^[ \t#*>]*(example|sample|input)\b[^\n]{0,30}$|<example>"


def decisions_sql(base: State) -> str:
    """TRIM_DECISIONS: tokens trimmed per request; NULL where the prompt's text was not logged."""
    return f"""
        CREATE OR REPLACE TEMP TABLE {T.TRIM_DECISIONS} AS
        SELECT b.request_id,
               CASE WHEN h.request_id IS NULL THEN NULL
                    ELSE coalesce(t.trimmed_tokens, 0) END::BIGINT AS trimmed_tokens
        FROM {base.table} b LEFT JOIN {T.TRIM_PER_REQUEST} t USING (request_id)
        LEFT JOIN (SELECT DISTINCT request_id FROM {base.messages}) h USING (request_id)"""


def _kinds(row: Mapping[str, Any]) -> KindTokens:
    return KindTokens(**{k: int(row[k] or 0) for k in ALL_KINDS})


def _rows(con: duckdb.DuckDBPyConnection, base: State, alone: State) -> list[dict[str, Any]]:
    """Per (feature, template) with trimmed tokens: requests, tokens and the priced saving (NULL:
    nothing priced). Only trimmed requests are priced: the others cost the same in both states."""
    kinds = ", ".join(f"sum({k}) AS {k}" for k in ALL_KINDS)
    saving = f"{cost_sql('b', 'pb')} - {cost_sql('a', 'pa')}"
    cur = con.execute(
        f"""WITH hit AS (
              SELECT q.feature, q.system_hash AS template_id, t.*, {saving} AS saving
              FROM {T.TRIM_PER_REQUEST} t JOIN requests q USING (request_id)
              JOIN {base.table} b USING (request_id) JOIN {alone.table} a USING (request_id)
              LEFT JOIN prices pb ON pb.model_key = b.model_key
              LEFT JOIN prices pa ON pa.model_key = a.model_key
            ), g AS (
              SELECT feature, template_id, count(*) AS affected, sum(trimmed_tokens) AS trimmed,
                     sum(saving) AS saving, {kinds}
              FROM hit GROUP BY ALL
            ), n AS (
              SELECT q.feature, q.system_hash AS template_id, count(*) AS requests,
                     coalesce(sum(b.input_tokens), 0) AS input
              FROM {base.table} b JOIN requests q USING (request_id)
              SEMI JOIN g ON g.feature IS NOT DISTINCT FROM q.feature
                         AND g.template_id IS NOT DISTINCT FROM q.system_hash
              GROUP BY ALL
            )
            SELECT g.*, n.requests, n.input FROM g
            JOIN n ON g.feature IS NOT DISTINCT FROM n.feature
                  AND g.template_id IS NOT DISTINCT FROM n.template_id
            ORDER BY trimmed DESC, feature NULLS LAST, template_id NULLS LAST"""
    )
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _row(r: Mapping[str, Any]) -> Row:
    by_kind = _kinds(r)
    kinds = sorted(
        (k for k in ALL_KINDS if getattr(by_kind, k)), key=lambda k: -getattr(by_kind, k)
    )
    return Row(
        feature=r["feature"],
        template_id=r["template_id"],
        requests=int(r["requests"]),
        affected_requests=int(r["affected"]),
        input_tokens=int(r["input"]),
        trimmed_tokens=int(r["trimmed"]),
        trimmed_share=float(r["trimmed"]) / float(r["input"]) if r["input"] else 0.0,
        saving=None if r["saving"] is None else Decimal(r["saving"]),
        by_kind=by_kind,
        kinds=kinds,
    )


def _sum_rows(rows: list[dict[str, Any]], feature: str | None = None) -> Row | None:
    """`rows` summed into one (of `feature`, no template), None when there are none."""
    if not rows:
        return None
    total: dict[str, Any] = {"feature": feature, "template_id": None}
    for key in ("requests", "affected", "input", "trimmed", *ALL_KINDS):
        total[key] = sum(int(r[key] or 0) for r in rows)
    savings = [Decimal(r["saving"]) for r in rows if r["saving"] is not None]
    total["saving"] = sum(savings, Decimal(0)) if savings else None
    return _row(total)


def _lossy(
    con: duckdb.DuckDBPyConnection, base: State, policy: TrimmingPolicy
) -> list[LossyCandidate]:
    p = policy.lossy
    out: list[LossyCandidate] = []
    history = con.execute(
        f"""WITH u AS (
              SELECT request_id, position,
                     row_number() OVER (PARTITION BY request_id ORDER BY position DESC) AS back
              FROM {base.messages}
              SEMI JOIN (SELECT request_id FROM requests
                         WHERE message_count IS NULL OR message_count > ?) USING (request_id)
              WHERE role = 'user'
            ), cut AS (SELECT request_id, position AS keep_from FROM u WHERE back = ?)
            SELECT q.feature, count(DISTINCT m.request_id), sum(strlen(x.text))
            FROM {base.messages} m JOIN cut USING (request_id)
            JOIN {base.texts} x USING (text_hash) JOIN requests q USING (request_id)
            WHERE m.position < cut.keep_from AND m.role IN ('user', 'assistant')
            GROUP BY 1 ORDER BY 3 DESC, 1 NULLS LAST""",
        [2 * p.recent_turns, p.recent_turns + 1],
    ).fetchall()
    why = f"conversation history before the last {p.recent_turns} user turns"
    out += [_candidate("history", f, n, b, why) for f, n, b in history]
    few_shot = con.execute(
        f"""WITH s AS (
              SELECT text_hash, text FROM {base.texts}
              SEMI JOIN (SELECT DISTINCT text_hash FROM {base.messages}
                         WHERE role IN ('system', 'developer')) USING (text_hash)
            ), f AS (
              SELECT text_hash,
                     -- from the first example to the end (RE2 has no match position)
                     length(text) - strpos(text, regexp_extract(text, '{_EXAMPLE}')) + 1 AS chars
              FROM s WHERE len(regexp_extract_all(text, '{_EXAMPLE}')) >= ?
            )
            SELECT q.feature, count(DISTINCT m.request_id), sum(f.chars)
            FROM {base.messages} m JOIN f USING (text_hash) JOIN requests q USING (request_id)
            GROUP BY 1 ORDER BY 3 DESC, 1 NULLS LAST""",
        [p.few_shot_min_examples],
    ).fetchall()
    why = f"system prompts with {p.few_shot_min_examples} or more worked examples"
    out += [_candidate("few_shot", f, n, b, why) for f, n, b in few_shot]
    context = con.execute(
        f"""SELECT q.feature, count(*), sum(b.input_tokens)
            FROM {base.table} b JOIN requests q USING (request_id)
            WHERE b.input_tokens >= ? AND b.output_tokens > 0
              AND b.input_tokens > ? * b.output_tokens
            GROUP BY 1 ORDER BY 3 DESC, 1 NULLS LAST""",
        [p.min_input_tokens, p.context_answer_ratio],
    ).fetchall()
    why = f"input over {p.context_answer_ratio:g}x the output (at least {p.min_input_tokens})"
    out += [
        LossyCandidate(
            kind="context", feature=f, requests=n, tokens=int(t), tokens_counted="logged", why=why
        )
        for f, n, t in context
    ]
    return out


def _candidate(
    kind: Any, feature: str | None, requests: int, size: Any, why: str
) -> LossyCandidate:
    tokens = round(int(size or 0) / BYTES_PER_TOKEN)
    return LossyCandidate(
        kind=kind,
        feature=feature,
        requests=int(requests),
        tokens=tokens,
        tokens_counted="estimated",
        why=why,
    )


def _unused_tools(
    con: duckdb.DuckDBPyConnection, base: State, trimmer: R.Trimmer
) -> tuple[list[ToolOpportunity], dict[str | None, Decimal]]:
    """Features that send tool definitions but never called a tool (no `tool_calls` finish, no
    tool message), with the tokens of those definitions and what dropping them would save."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {T.TRIM_UNUSED_TOOLS} AS
            WITH called AS (
              SELECT DISTINCT q.feature FROM requests q WHERE q.finish_reason = 'tool_calls'
              UNION
              SELECT DISTINCT q.feature FROM {base.messages} m JOIN requests q USING (request_id)
              WHERE m.role IN ('tool', 'function')
            )
            SELECT b.request_id, q.feature, m.text_hash, e.encoding, e.counts, 0::BIGINT AS tokens
            FROM {base.messages} m JOIN {base.table} b USING (request_id)
            JOIN requests q USING (request_id)
            JOIN {T.TRIM_ENCODINGS} e ON e.model_key IS NOT DISTINCT FROM b.model_key
            WHERE m.role = 'tools' AND q.feature IS NOT NULL
              AND q.feature NOT IN (SELECT feature FROM called WHERE feature IS NOT NULL)"""
    )
    for (encoding,) in con.execute(
        f"SELECT DISTINCT encoding FROM {T.TRIM_UNUSED_TOOLS} ORDER BY 1"
    ).fetchall():
        rows = con.execute(
            f"""SELECT DISTINCT x.text_hash, x.text FROM {base.texts} x
                SEMI JOIN {T.TRIM_UNUSED_TOOLS} u ON u.text_hash = x.text_hash AND u.encoding = ?
                ORDER BY 1""",
            [encoding],
        ).fetchall()
        counts = trimmer.diff(encoding).tokens([text for _, text in rows])
        con.executemany(
            f"UPDATE {T.TRIM_UNUSED_TOOLS} SET tokens = ? WHERE text_hash = ? AND encoding = ?",
            [(n, h, encoding) for (h, _), n in zip(rows, counts, strict=True)],
        )
    cut = "b.input_tokens - least(b.input_tokens, n.tools)"
    read = f"least(coalesce(b.cache_read_tokens, 0), {cut})"
    write = f"least(coalesce(b.cache_write_tokens, 0), {cut} - {read})"
    rows = con.execute(
        f"""WITH n AS (
              SELECT request_id, any_value(feature) AS feature, sum(tokens) AS tools,
                     list(DISTINCT counts) AS sources
              FROM {T.TRIM_UNUSED_TOOLS} GROUP BY 1
            ), c AS (
              SELECT n.feature, n.tools, n.sources, {cost_sql("b", "p")} AS before,
                     {cost_sql("x", "p")} AS after
              FROM n JOIN {base.table} b USING (request_id)
              CROSS JOIN LATERAL (
                SELECT {cut} AS input_tokens, {read} AS cache_read_tokens,
                       {write} AS cache_write_tokens,
                       least(coalesce(b.cache_write_1h_tokens, 0), {write})
                         AS cache_write_1h_tokens,
                       b.output_tokens, b.service_tier) x
              LEFT JOIN prices p ON p.model_key = b.model_key
            )
            SELECT feature, count(*), sum(tools), flatten(list(sources)), sum(before - after)
            FROM c GROUP BY 1 ORDER BY 3 DESC, 1"""
    ).fetchall()
    ops, savings = [], {}
    for feature, n, tokens, sources, saving in rows:
        ops.append(
            ToolOpportunity(
                feature=feature,
                requests=int(n),
                tokens_per_request=int(tokens) // int(n),
                tokens=int(tokens),
                token_source=max(sources, key=_RANK.__getitem__),
            )
        )
        if saving is not None:
            savings[feature] = Decimal(saving)
    return ops, savings


_BEFORE_BREAK = re.compile(r" +(?=\n)")


def _visible(text: str) -> str:
    """Whitespace made visible in an excerpt: a line break as ⏎, a run of spaces as ·."""
    out = _BEFORE_BREAK.sub(lambda m: "·" * len(m.group()), text).replace("\n", "⏎")
    while "  " in out:
        out = out.replace("  ", "··")
    return out


def excerpts(before: str, after: str, limit: int) -> tuple[str, str]:
    """Redacted excerpts of `before` and `after` around their first difference."""
    pairs = enumerate(zip(before, after, strict=False))
    same = next((i for i, (a, b) in pairs if a != b), None)
    lo = max(0, (min(len(before), len(after)) if same is None else same) - limit // 4)
    return (
        _visible(redact(before, lo, min(len(before), lo + limit))),
        _visible(redact(after, lo, min(len(after), lo + limit))),
    )


def _totals(
    con: duckdb.DuckDBPyConnection, base: State, trims: R.TextTrims | None
) -> tuple[Totals, TokenSources]:
    kinds = ", ".join(f"coalesce(sum({k}), 0) AS {k}" for k in ALL_KINDS)
    cur = con.execute(
        f"""SELECT (SELECT count(*) FROM {base.table}) AS requests,
                   (SELECT coalesce(sum(input_tokens), 0) FROM {base.table}) AS input,
                   count(*) AS affected, coalesce(sum(trimmed_tokens), 0) AS trimmed,
                   count(*) FILTER (WHERE counts = 'exact') AS exact,
                   count(*) FILTER (WHERE counts = 'approximate') AS approximate,
                   count(*) FILTER (WHERE counts = 'estimated') AS estimated, {kinds}
            FROM {T.TRIM_PER_REQUEST}"""
    )
    names = [d[0] for d in cur.description or ()]
    row = dict(zip(names, cur.fetchall()[0], strict=True))
    sources = TokenSources(
        exact=int(row["exact"]),
        approximate=int(row["approximate"]),
        estimated=int(row["estimated"]),
    )
    worst: TokenSource = "exact"
    if sources.approximate:
        worst = "approximate"
    if sources.estimated:
        worst = "estimated"
    totals = Totals(
        requests=int(row["requests"]),
        affected_requests=int(row["affected"]),
        input_tokens=int(row["input"]),
        trimmed_tokens=int(row["trimmed"]),
        trimmed_share=float(row["trimmed"]) / float(row["input"]) if row["input"] else 0.0,
        by_kind=_kinds(row),
        token_source=worst,
        requests_by_source=sources,
        candidate_texts=trims.candidates if trims else 0,
        trimmed_texts=trims.changed if trims else 0,
    )
    return totals, sources


def _example(
    con: duckdb.DuckDBPyConnection,
    base: State,
    policy: TrimmingPolicy,
    feature: str | None,
    kind: str,
) -> Example | None:
    """The text of `feature` where `kind` saved the most, before and after that transform."""
    if kind == "duplicate_messages":
        found = con.execute(
            f"""SELECT x.text FROM {T.TRIM_DUP_MESSAGES} d JOIN requests q USING (request_id)
                JOIN {base.texts} x USING (text_hash)
                WHERE q.feature IS NOT DISTINCT FROM ? ORDER BY d.request_id, d.position LIMIT 1""",
            [feature],
        ).fetchall()
        if not found:
            return None
        before, _ = excerpts(found[0][0], "", policy.excerpt_chars)
        return Example(feature=feature, kind=kind, before=before, after="(second copy removed)")
    if kind not in KINDS:
        return None
    found = con.execute(
        f"""SELECT x.text FROM {T.TRIM_TEXT_SAVINGS} t JOIN {base.texts} x USING (text_hash)
            WHERE t.saved_{kind} > 0 AND t.text_hash IN (
              SELECT m.text_hash FROM {base.messages} m JOIN requests q USING (request_id)
              WHERE q.feature IS NOT DISTINCT FROM ?)
            ORDER BY t.saved_{kind} DESC, t.text_hash LIMIT 1""",
        [feature],
    ).fetchall()
    if not found:
        return None
    texts = R.stages(found[0][0], policy)
    step = KINDS.index(kind)
    before, after = excerpts(texts[step], texts[step + 1], policy.excerpt_chars)
    return Example(feature=feature, kind=kind, before=before, after=after)


def _recommend(
    policy: TrimmingPolicy, feature: str | None, row: Mapping[str, Any]
) -> tuple[str, str] | None:
    """(title, action) of the first recommendation rule the row (ROW_FEATURES) matches."""
    for rule in policy.recommendations:
        if evaluate(rule.condition, row):
            return rule.title, rule.action.replace("{feature}", feature or "(no feature)")
    return None


def describe(
    con: duckdb.DuckDBPyConnection,
    policy: TrimmingPolicy,
    trimmer: R.Trimmer,
    base: State,
    alone: State,
) -> tuple[TrimmingDetails, TrimmingRisk, list[Recommendation]]:
    """Details, risk and recommendations of the standalone replay (`alone`) of `base`."""
    trims = trimmer.trims.get((base.messages, base.texts))
    con.execute(decisions_sql(base))
    totals, sources = _totals(con, base, trims)
    raw = _rows(con, base, alone)
    rows = [_row(r) for r in raw[: policy.max_rows]]
    tools, tool_savings = _unused_tools(con, base, trimmer)
    # one recommendation per feature and kind, its share of the feature's saving by tokens
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for r in raw:
        groups.setdefault(r["feature"], []).append(r)
    by_feature = {f: _sum_rows(g, f) for f, g in groups.items()}
    recommendations: list[Recommendation] = []
    examples: list[Example] = []
    for feature, row in by_feature.items():
        if row is None:
            continue
        for kind in row.kinds:
            tokens = getattr(row.by_kind, kind)
            features = {
                "kind": kind,
                "tokens": tokens / max(row.affected_requests, 1),
                "share": tokens / row.input_tokens if row.input_tokens else 0.0,
                "requests": row.affected_requests,
            }
            found = _recommend(policy, feature, features)
            if found is None or row.saving is None:
                continue
            example = _example(con, base, policy, feature, kind)
            if example is not None:
                examples.append(example)
            recommendations.append(
                Recommendation(
                    title=f"{found[0]} ({feature or 'no feature'})",
                    lever="trimming",
                    saving=row.saving * tokens / row.trimmed_tokens,
                    action=found[1],
                    excerpt_before=example.before if example else None,
                    excerpt_after=example.after if example else None,
                )
            )
    for op in tools:
        found = _recommend(
            policy,
            op.feature,
            {
                "kind": "unused_tools",
                "tokens": op.tokens_per_request,
                "share": 0.0,
                "requests": op.requests,
            },
        )
        if found is not None and op.feature in tool_savings:
            recommendations.append(
                Recommendation(
                    title=f"{found[0]} ({op.feature})",
                    lever="trimming",
                    saving=Decimal(0),  # not in the lever's saving: the figure is in the action
                    action=found[1] + f" ({op.tokens_per_request} tokens per call, "
                    f"${tool_savings[op.feature]:.2f} over the period; not counted in the "
                    "lever's saving)",
                )
            )
    recommendations.sort(key=lambda r: (-r.saving, r.title))
    details = TrimmingDetails(
        policy=policy.id,
        totals=totals,
        rows=rows,
        other=_sum_rows(raw[policy.max_rows :]),
        lossy=_lossy(con, base, policy),
        unused_tools=tools,
        examples=examples,
        assumptions=ASSUMPTIONS,
    )
    risk = TrimmingRisk(
        quality="none",
        why="only edits that keep every word, value and instruction are counted",
        estimated_requests=sources.estimated,
        approximate_requests=sources.approximate,
        not_counted=[
            "tool definitions of features that never call a tool (unused_tools)",
            "few-shot examples, old conversation history, context far larger than the answer"
            " (lossy)",
        ],
    )
    return details, risk, recommendations


ASSUMPTIONS = [
    "Saved tokens are measured by re-tokenising the trimmed text with the model's tiktoken"
    " encoding (o200k_base approximates other providers' tokenizers; without encoding files"
    " they are estimated from length).",
    "Trims in the stable start of a prompt (tools, system) come out of cached reads first,"
    " the rest out of uncached input: the saving is never overstated.",
    "Texts the SQL pre-filter does not pass are not trimmed: fenced code and column-aligned"
    " text are left alone, so the saving can only be understated.",
]
