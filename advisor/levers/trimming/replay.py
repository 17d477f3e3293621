"""The trimming replay: which texts lose tokens, by how much, and the state after trimming.

1. `candidates`: a cheap SQL pre-filter (regular expressions and lengths in DuckDB) picks the
   distinct prompt texts that may hold removable whitespace, pretty-printed JSON, long rules or a
   repeated paragraph; only those reach Python.
2. `trim_texts`: each candidate goes through the lossless transforms once; the tokens each
   transform saved are measured per encoding by re-tokenising what changed (counting.TokenDiff).
   A text whose trimmed form would not be shorter in tokens is left as it was.
3. `duplicate_messages`: a message whose text already came earlier in the same request (at least
   min_duplicate_chars long, not an assistant turn) is dropped whole.
4. `replay_sql`: per request, input tokens minus the tokens trimmed; cached reads and writes
   shrink where the trim falls inside them; the prompt tables of the new state point at the
   trimmed texts, so a lever after this one (caching) replays the trimmed prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from advisor.levers import tables as T
from advisor.levers.trimming.counting import EXACT, TokenDiff
from advisor.levers.trimming.policy import TrimmingPolicy
from advisor.levers.trimming.transforms import KINDS, trim
from advisor.store import hash_hex_sql, scalar
from advisor.tokens import TOKENS_PER_MESSAGE, encoding_available

# Working tables, declared with their purpose in advisor/levers/tables.py.
ENCODINGS, TEXT_SAVINGS, NEW_TEXTS = T.TRIM_ENCODINGS, T.TRIM_TEXT_SAVINGS, T.TRIM_NEW_TEXTS
DUP_MESSAGES, DUP_TOKENS, PER_REQUEST = T.TRIM_DUP_MESSAGES, T.TRIM_DUP_TOKENS, T.TRIM_PER_REQUEST
MESSAGES_OUT, TEXTS_OUT = T.TRIM_MESSAGES, T.TRIM_TEXTS

# Roles of the stable start of a prompt (what a provider's cache holds first).
PREFIX_ROLES = ("tools", "system", "developer")

# RE2 patterns of what the transforms remove, each behind a cheap substring test. Whitespace is
# looked for only in texts without a code fence (the transforms leave code alone, and code is
# most of the trailing spaces and space runs of a log), and a run of spaces inside a line only
# after a sentence's end or in a pipe table (other runs are mostly column alignment, kept).
_WHITESPACE = r"(?m)[ \t]$|\n[ \t]*\n[ \t]*\n|[.!?;:,]  +\S|\|  |  \|"
_JSON_LINE = r"(?m)^[ \t]*[\[{][ \t]*$"
_RULE_LINE = r"(?m)^[ \t]*(-{4,}|={4,}|\*{4,}|_{4,})[ \t]*$"


def candidates_sql(messages: str, texts: str, policy: TrimmingPolicy) -> str:
    """Distinct prompt texts (text_hash, text) that may hold something a transform removes."""
    min_dup = policy.min_duplicate_chars
    # long paragraphs, without the blank space around them (a text's last one may end in "\n")
    paragraphs = (
        "list_transform(list_filter(string_split(t.text, chr(10) || chr(10)),"
        f" lambda p: strlen(p) >= {min_dup}), lambda p: trim(p, chr(9) || chr(10) || ' '))"
    )
    rules = " OR ".join(f"contains(t.text, '{c * 4}')" for c in "-=*_")
    return f"""
        WITH used AS (SELECT DISTINCT text_hash FROM {messages} WHERE text_hash IS NOT NULL)
        SELECT t.text_hash, t.text FROM {texts} t SEMI JOIN used USING (text_hash)
        WHERE (NOT contains(t.text, '```') AND regexp_matches(t.text, '{_WHITESPACE}'))
           OR ((contains(t.text, '{{' || chr(10)) OR contains(t.text, '[' || chr(10)))
               AND regexp_matches(t.text, '{_JSON_LINE}'))
           OR (({rules}) AND regexp_matches(t.text, '{_RULE_LINE}'))
           OR (strlen(t.text) >= {2 * min_dup}
               AND len({paragraphs}) > len(list_distinct({paragraphs})))
        ORDER BY t.text_hash"""


@dataclass
class TextTrims:
    """What the transforms did to the candidate texts of one prompt table: how many texts the
    pre-filter passed and how many a transform changed, and the encodings whose savings are in
    TEXT_SAVINGS."""

    candidates: int = 0
    changed: int = 0
    encodings: set[str] = field(default_factory=set)


def stages(text: str, policy: TrimmingPolicy) -> list[str]:
    """`text`, then `text` after each transform of KINDS in turn (a transform the policy does not
    list changes nothing)."""
    out = [text]
    for kind in KINDS:
        after = trim(out[-1], (kind,), policy.min_duplicate_chars).text
        out.append(after if kind in policy.kinds else out[-1])
    return out


_SAVED_COLS = ", ".join(f"saved_{k} BIGINT" for k in KINDS)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {TEXT_SAVINGS} (
              text_hash VARCHAR, encoding VARCHAR, new_hash VARCHAR, {_SAVED_COLS}, saved BIGINT)"""
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {NEW_TEXTS} (text_hash VARCHAR, text VARCHAR)")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {DUP_TOKENS} (
              text_hash VARCHAR, encoding VARCHAR, tokens BIGINT)"""
    )


def trim_texts(
    con: duckdb.DuckDBPyConnection,
    messages: str,
    texts: str,
    policy: TrimmingPolicy,
    trims: TextTrims,
    diffs: Mapping[str, TokenDiff],
) -> None:
    """Transform every candidate text and count, under each encoding of `diffs` not counted
    yet, the tokens each transform saves, into TEXT_SAVINGS and NEW_TEXTS. Each batch is counted
    as it is read, so only the trimmed texts are held until the scan ends (a statement on this
    connection would end the scan)."""
    todo = sorted(e for e in diffs if e not in trims.encodings)
    if not todo:
        return
    first = not trims.encodings
    parts: dict[str, list[pa.Table]] = {e: [] for e in todo}
    cur = con.execute(candidates_sql(messages, texts, policy))
    while batch := cur.fetchmany(2000):
        changed = [(h, st) for h, text in batch if (st := stages(text, policy))[-1] != text]
        if first:
            trims.candidates += len(batch)
            trims.changed += len(changed)
        pairs = [(st[i], st[i + 1]) for _, st in changed for i in range(len(KINDS))]
        for encoding in todo:
            saved = diffs[encoding].saved(pairs)
            cols: dict[str, list] = {
                "text_hash": [h for h, _ in changed],
                "new_text": [st[-1] for _, st in changed],
            }
            for i, kind in enumerate(KINDS):
                cols[f"saved_{kind}"] = saved[i :: len(KINDS)]
            parts[encoding].append(pa.table(cols, schema=_COUNTED))
    trims.encodings.update(todo)
    for encoding in todo:
        _store_savings(con, pa.concat_tables(parts[encoding] or [_COUNTED.empty_table()]), encoding)


_COUNTED = pa.schema(
    [("text_hash", pa.string()), ("new_text", pa.string())]
    + [(f"saved_{k}", pa.int64()) for k in KINDS]
)


def _store_savings(con: duckdb.DuckDBPyConnection, counted: pa.Table, encoding: str) -> None:
    """Rows of texts that get shorter in tokens (a trim that would cost a token is not made)."""
    con.register("_trim_counted", counted)
    total = " + ".join(f"saved_{k}" for k in KINDS)
    new_hash = hash_hex_sql("hash(new_text)")
    con.execute(
        f"""INSERT INTO {TEXT_SAVINGS}
            SELECT text_hash, ?, {new_hash}, {", ".join(f"saved_{k}" for k in KINDS)}, {total}
            FROM _trim_counted
            ANTI JOIN (SELECT text_hash FROM {TEXT_SAVINGS} WHERE encoding = ?) USING (text_hash)
            WHERE {total} > 0""",
        [encoding, encoding],
    )
    con.execute(
        f"""INSERT INTO {NEW_TEXTS}
            SELECT DISTINCT {new_hash}, new_text FROM _trim_counted
            WHERE {total} > 0 AND {new_hash} NOT IN (SELECT text_hash FROM {NEW_TEXTS})"""
    )
    con.unregister("_trim_counted")


def duplicate_messages(
    con: duckdb.DuckDBPyConnection, messages: str, texts: str, policy: TrimmingPolicy
) -> None:
    """DUP_MESSAGES: every later copy of a long non-assistant message within one request."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {DUP_MESSAGES} AS
            WITH twice AS MATERIALIZED (
              SELECT request_id, text_hash FROM {messages}
              WHERE role IS DISTINCT FROM 'assistant' AND text_hash IS NOT NULL
              GROUP BY ALL HAVING count(*) > 1
            ), long AS (
              SELECT DISTINCT w.text_hash FROM twice w JOIN {texts} t USING (text_hash)
              WHERE strlen(t.text) >= {policy.min_duplicate_chars}
            )
            SELECT request_id, position, text_hash FROM (
              SELECT m.request_id, m.position, m.text_hash,
                     row_number() OVER (PARTITION BY m.request_id, m.text_hash
                                        ORDER BY m.position) AS copy
              FROM {messages} m SEMI JOIN twice w USING (request_id, text_hash)
              WHERE m.role IS DISTINCT FROM 'assistant' AND m.text_hash IN (SELECT * FROM long))
            WHERE copy > 1"""
    )


def count_duplicates(
    con: duckdb.DuckDBPyConnection, texts: str, encoding: str, diff: TokenDiff
) -> None:
    """DUP_TOKENS rows (text_hash, encoding, tokens) of the duplicated message texts."""
    rows = con.execute(
        f"""SELECT t.text_hash, t.text FROM {texts} t
            SEMI JOIN (SELECT DISTINCT text_hash FROM {DUP_MESSAGES}) USING (text_hash)
            ANTI JOIN (SELECT text_hash FROM {DUP_TOKENS} WHERE encoding = ?) USING (text_hash)
            ORDER BY t.text_hash""",
        [encoding],
    ).fetchall()
    if not rows:
        return
    counts = diff.tokens([text for _, text in rows])
    con.register(
        "_trim_dup_counted",
        pa.table({"text_hash": [h for h, _ in rows], "tokens": pa.array(counts, pa.int64())}),
    )
    con.execute(
        f"INSERT INTO {DUP_TOKENS} SELECT text_hash, ?, tokens FROM _trim_dup_counted",
        [encoding],
    )
    con.unregister("_trim_dup_counted")


def register_encodings(
    con: duckdb.DuckDBPyConnection, encodings: Mapping[str, str], exact: Mapping[str, bool]
) -> None:
    """ENCODINGS (model_key, encoding, counts): each model's tiktoken encoding (o200k_base stands in
    for other tokenizers: approximate) and whether its counts are exact, approximate or
    estimated (no encoding file). A request whose model is unpriced uses the NULL row."""
    rows: list[tuple[str | None, str, str]] = [
        (k, _enc(e), _kind(e, exact)) for k, e in sorted(encodings.items())
    ]
    rows.append((None, "o200k_base", _kind("approx", exact)))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {ENCODINGS} (
              model_key VARCHAR, encoding VARCHAR, counts VARCHAR)"""
    )
    con.executemany(f"INSERT INTO {ENCODINGS} VALUES (?, ?, ?)", rows)


def _enc(encoding: str) -> str:
    return encoding if encoding in EXACT else "o200k_base"


def _kind(encoding: str, exact: Mapping[str, bool]) -> str:
    if not exact.get(_enc(encoding), False):
        return "estimated"
    return "exact" if encoding in EXACT else "approximate"


def per_request_sql(state: str, messages: str) -> str:
    """PER_REQUEST: for every request of `state` that loses tokens, the tokens trimmed (clipped
    to its input), those in the stable prefix (PREFIX_ROLES), and by kind."""
    kinds = ", ".join(
        f"sum(CASE WHEN d.position IS NULL THEN coalesce(t.saved_{k}, 0) ELSE 0 END) AS {k}"
        for k in KINDS
    )
    dup_tokens = f"coalesce(k.tokens + {TOKENS_PER_MESSAGE}, 0)"
    saved = f"CASE WHEN d.position IS NULL THEN coalesce(t.saved, 0) ELSE {dup_tokens} END"
    prefix = f"m.role IN {PREFIX_ROLES}"
    return f"""
        CREATE OR REPLACE TEMP TABLE {PER_REQUEST} AS
        WITH s AS (
          SELECT s.request_id, s.input_tokens, e.encoding, e.counts
          FROM {state} s JOIN {ENCODINGS} e ON e.model_key IS NOT DISTINCT FROM s.model_key
          WHERE s.input_tokens > 0
        ), hit AS (
          SELECT m.request_id, m.position, m.role, m.text_hash FROM {messages} m
          WHERE m.text_hash IN (SELECT text_hash FROM {TEXT_SAVINGS})
          UNION
          SELECT m.request_id, m.position, m.role, m.text_hash FROM {messages} m
          SEMI JOIN {DUP_MESSAGES} d USING (request_id, position)
        ), per AS (
          SELECT s.request_id, any_value(s.input_tokens) AS input_tokens,
                 any_value(s.encoding) AS encoding, any_value(s.counts) AS counts,
                 sum({saved}) AS trimmed, sum({saved}) FILTER (WHERE {prefix}) AS prefix,
                 sum(CASE WHEN d.position IS NULL THEN 0 ELSE {dup_tokens} END)
                   AS duplicate_messages,
                 {kinds}
          FROM s JOIN hit m USING (request_id)
          LEFT JOIN {TEXT_SAVINGS} t ON t.text_hash = m.text_hash AND t.encoding = s.encoding
          LEFT JOIN {DUP_MESSAGES} d ON d.request_id = m.request_id AND d.position = m.position
          LEFT JOIN {DUP_TOKENS} k ON k.text_hash = m.text_hash AND k.encoding = s.encoding
          GROUP BY s.request_id
        )
        SELECT request_id, encoding, counts,
               least(trimmed, input_tokens)::BIGINT AS trimmed_tokens,
               least(coalesce(prefix, 0), input_tokens)::BIGINT AS prefix_tokens,
               duplicate_messages::BIGINT AS duplicate_messages,
               {", ".join(f"{k}::BIGINT AS {k}" for k in KINDS)}
        FROM per WHERE trimmed > 0"""


def state_sql(state: str, out: str) -> str:
    """`out` (STATE_COLUMNS): `state` with each request's trimmed tokens taken off its input.
    Trims in the stable prefix come out of cached reads first (the cheapest tokens: the saving is
    not overstated); the rest out of the uncached part, then writes, then reads."""
    return f"""
        CREATE OR REPLACE TEMP TABLE {out} AS
        WITH x AS (
          SELECT s.*, coalesce(r.trimmed_tokens, 0) AS cut, coalesce(r.prefix_tokens, 0) AS pre,
                 coalesce(s.cache_read_tokens, 0) AS rd, coalesce(s.cache_write_tokens, 0) AS wr
          FROM {state} s LEFT JOIN {PER_REQUEST} r USING (request_id)
        ), y AS (
          SELECT *, least(rd, pre) AS rd_cut1,
                 greatest(input_tokens - rd - wr, 0) AS uncached FROM x
        ), z AS (
          SELECT *, least(uncached, cut - rd_cut1) AS unc_cut FROM y
        ), w AS (
          SELECT *, least(wr, cut - rd_cut1 - unc_cut) AS wr_cut FROM z
        )
        SELECT request_id, model_key,
               CASE WHEN cut = 0 THEN input_tokens ELSE input_tokens - cut END AS input_tokens,
               CASE WHEN cut = 0 THEN cache_read_tokens
                    ELSE rd - rd_cut1 - least(rd - rd_cut1, cut - rd_cut1 - unc_cut - wr_cut)
               END AS cache_read_tokens,
               CASE WHEN cut = 0 THEN cache_write_tokens ELSE wr - wr_cut END AS cache_write_tokens,
               CASE WHEN cut = 0 THEN cache_write_1h_tokens
                    ELSE least(cache_write_1h_tokens, wr - wr_cut) END AS cache_write_1h_tokens,
               output_tokens, service_tier
        FROM w"""


def prompt_sql(state: str, messages: str, texts: str) -> list[str]:
    """The trimmed prompt: MESSAGES_OUT (each message of `messages` pointing at its trimmed
    text under its request's encoding, later copies of a duplicated message dropped) and
    TEXTS_OUT (the texts plus the trimmed ones). Both outlive this lever's working tables: a
    lever after it reads them (a table and a view over `texts` and NEW_TEXTS only)."""
    return [
        f"""CREATE OR REPLACE TEMP TABLE {MESSAGES_OUT} AS
            SELECT m.* REPLACE (coalesce(t.new_hash, m.text_hash) AS text_hash)
            FROM {messages} m
            LEFT JOIN (SELECT s.request_id, e.encoding FROM {state} s
                       JOIN {ENCODINGS} e ON e.model_key IS NOT DISTINCT FROM s.model_key) q
              USING (request_id)
            LEFT JOIN {TEXT_SAVINGS} t ON t.text_hash = m.text_hash AND t.encoding = q.encoding
            ANTI JOIN {DUP_MESSAGES} d ON d.request_id = m.request_id AND d.position = m.position
            """,
        f"""CREATE OR REPLACE TEMP VIEW {TEXTS_OUT} AS
            SELECT text_hash, text FROM {texts}
            UNION ALL
            SELECT n.text_hash, n.text FROM {NEW_TEXTS} n ANTI JOIN {texts} t USING (text_hash)""",
    ]


@dataclass
class Trimmer:
    """What both replays of one simulation share: the transformed texts per prompt table, the
    token counters per encoding, and the models' encodings."""

    policy: TrimmingPolicy
    encodings: Mapping[str, str]  # model_key -> encoding (o200k_base | cl100k_base | approx)
    trims: dict[tuple[str, str], TextTrims] = field(default_factory=dict)
    diffs: dict[str, TokenDiff] = field(default_factory=dict)
    duplicates_of: tuple[str, str] | None = None  # the prompt table DUP_MESSAGES is about

    def diff(self, encoding: str) -> TokenDiff:
        if encoding not in self.diffs:
            self.diffs[encoding] = TokenDiff(encoding)
        return self.diffs[encoding]

    def replay(
        self, con: duckdb.DuckDBPyConnection, state: str, messages: str, texts: str, out: str
    ) -> int:
        """Write `out` from `state` with its prompts (`messages`, `texts`) trimmed; the trimmed
        prompt is left in MESSAGES_OUT / TEXTS_OUT. Returns the requests it changed."""
        key = (messages, texts)
        if not self.trims:
            create_tables(con)
        trims = self.trims.setdefault(key, TextTrims())
        if key != self.duplicates_of:
            duplicate_messages(con, messages, texts, self.policy)
            self.duplicates_of = key
        exact = {e: encoding_available(e) for e in EXACT}
        register_encodings(con, self.encodings, exact)
        needed = [
            e
            for (e,) in con.execute(
                f"""SELECT DISTINCT e.encoding FROM {state} s
                    JOIN {ENCODINGS} e ON e.model_key IS NOT DISTINCT FROM s.model_key ORDER BY 1"""
            ).fetchall()
        ]
        trim_texts(con, messages, texts, self.policy, trims, {e: self.diff(e) for e in needed})
        for encoding in needed:
            count_duplicates(con, texts, encoding, self.diff(encoding))
        con.execute(per_request_sql(state, messages))
        con.execute(state_sql(state, out))
        for sql in prompt_sql(state, messages, texts):
            con.execute(sql)
        return int(scalar(con, f"SELECT count(*) FROM {PER_REQUEST}") or 0)
