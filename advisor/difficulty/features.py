"""Per-request difficulty features, computed in DuckDB over the whole store at once.

Two kinds of features (FEATURES names them all; the condition language of rules/difficulty.yaml
refers to them by name):

- request-time features: what a router can see before the call (sizes, message count, tools,
  response format, task cues, template id, text tokens). Their definitions live in
  `advisor.routing`; this module evaluates the same patterns with DuckDB's RE2, per *distinct*
  text (a system prompt shared by a million requests is read once).
- outcome features: what only the log knows (token counts, output length, errors, feedback,
  whether the same prompt was sent again soon after, and whether a template is already served
  well by a cheaper tier). They label training data; the router never needs them.

The result is the `dif_features` table (one row per request).
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from advisor import routing as R
from advisor.conditions import FeatureType, sql_literal

# name -> (type, request-time?, meaning)
FEATURES: dict[str, tuple[FeatureType, bool, str]] = {
    "model_key": ("string", True, "price-table key of the logged model"),
    "provider": ("string", True, "provider as logged"),
    "feature": ("string", True, "the application feature/route tag"),
    "template_id": ("string", True, "hash of the normalised system prompt (None without one)"),
    "system_chars": ("number", True, "characters in the system prompt"),
    "user_chars": ("number", True, "characters in the last user message"),
    "has_system": ("bool", True, "the request has a system prompt"),
    "message_count": ("number", True, "conversation messages (system and tools excluded)"),
    "tools_count": ("number", True, "tools offered to the model"),
    "has_tools": ("bool", True, "at least one tool offered"),
    "json_output": ("bool", True, "response_format asks for JSON"),
    "max_tokens": ("number", True, "the request's output cap"),
    "quantities": ("number", True, "numbers in the last user message (a word problem's data)"),
    "constraints": ("number", True, "constraint phrases and list items in the last user message"),
    "non_ascii": ("bool", True, "the last user message is largely non-ASCII (another script)"),
    **{f"cue_{c}": ("bool", True, f"task cue: {c}") for c in R.CUES},
    "input_tokens": ("number", False, "prompt tokens"),
    "output_tokens": ("number", False, "output tokens, reasoning included"),
    "reasoning_tokens": ("number", False, "hidden reasoning tokens"),
    "visible_output_tokens": ("number", False, "output tokens minus reasoning"),
    "is_error": ("bool", False, "the call failed"),
    "finish_length": ("bool", False, "the output was cut by max_tokens"),
    "feedback": ("number", False, "the log's outcome signal (e.g. 1 / -1)"),
    "resent_after_s": (
        "number",
        False,
        "seconds until the same prompt (every message identical) is sent again in the same "
        "conversation, or by the same user without one; None if it never is or the call failed",
    ),
    "prompt_sends": (
        "number",
        False,
        "requests in the log with this exact prompt, whoever sent them",
    ),
    "tier_rank": ("number", False, "position of the model in its tier ladder (0 = top)"),
    "template_requests": ("number", False, "requests sharing the template"),
    "template_output_p90": (
        "number",
        False,
        "90th percentile of visible output tokens over the template's successful requests",
    ),
    "template_small_model_ok": (
        "bool",
        False,
        "the template is also served by a cheaper tier of the same ladder, as well as by the top",
    ),
}
REQUEST_TIME = frozenset(name for name, (_, rt, _) in FEATURES.items() if rt)
FEATURE_TYPES: dict[str, FeatureType] = {name: kind for name, (kind, _, _) in FEATURES.items()}

# Evidence needed before a cheaper tier counts as serving a template well.
MIN_TIER_EVIDENCE = 20
MAX_EXTRA_BAD_SHARE = 0.02


def _lit(text: str) -> str:
    return sql_literal(text)


def template_sql(expr: str) -> str:
    """routing.template_id in SQL."""
    text = f"left({expr}, {R.TEMPLATE_SOURCE_CHARS})"
    for pattern, replacement in R.TEMPLATE_STEPS:
        text = f"regexp_replace({text}, {_lit(pattern)}, {_lit(replacement)}, 'g')"
    return f"'t' || left(md5(trim(left({text}, {R.TEMPLATE_CHARS}), ' ')), 12)"


def bins_sql(name: str, expr: str) -> list[str]:
    """routing.bins_of in SQL: one expression per possible feature, NULL when it is off."""
    parts = [f"CASE WHEN {expr} IS NULL THEN 'bin:{name}:none' END"]
    return parts + [f"CASE WHEN {expr} >= {e} THEN 'bin:{name}>={e}' END" for e in R.BINS[name]]


def _counts_sql(expr: str) -> str:
    """routing.counts_of in SQL: quantities, constraints, non_ascii of the text `expr`."""
    head = f"left({expr}, {R.HEAD_CHARS})"
    # a pure-ASCII text (as many bytes as characters) has no other character: no regex needed
    other = (
        f"CASE WHEN strlen({head}) = length({head}) THEN 0 "
        f"ELSE length(regexp_replace({head}, {_lit(R.NON_ASCII_PATTERN)}, '', 'g')) END"
    )
    return (
        f"len(regexp_extract_all({head}, {_lit(R.QUANTITY_PATTERN)})) AS quantities, "
        f"len(regexp_extract_all({head}, {_lit(R.CONSTRAINT_PATTERN)})) AS constraints, "
        f"({other} > 0 AND {other} * {R.NON_ASCII_SHARE} >= length({head})) AS non_ascii"
    )


def _text_stats(
    con: duckdb.DuckDBPyConnection, table: str, hashes_sql: str, template: bool
) -> None:
    """Length, task cues and either the template id (a system prompt) or the counts (a user
    message) of each distinct text: routing.cues_of in SQL, one scan of the combined cue
    pattern, then each cue searched within the matched strings."""
    tmpl = (
        f", {template_sql('t.text')} AS template_id" if template else f", {_counts_sql('t.text')}"
    )
    scan = f"regexp_extract_all(left(t.text, {R.HEAD_CHARS}), {_lit(R.CUE_SCAN)})"
    hits = ", ".join(
        f"bool_or(regexp_matches(m, {_lit(pattern)})) AS cue_{name}"
        for name, pattern in R.CUES.items()
    )
    cues = ", ".join(f"coalesce(h.cue_{name}, FALSE) AS cue_{name}" for name in R.CUES)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {table} AS
            WITH base AS (
                SELECT t.text_hash, length(t.text) AS chars{tmpl}, {scan} AS found
                FROM texts t WHERE t.text_hash IN ({hashes_sql})
            ), hits AS (
                SELECT text_hash, {hits}
                FROM (SELECT text_hash, unnest(found) AS m FROM base) GROUP BY text_hash
            )
            SELECT b.* EXCLUDE (found), {cues} FROM base b LEFT JOIN hits h USING (text_hash)"""
    )


def tier_table(con: duckdb.DuckDBPyConnection, tiers: Mapping[str, tuple[str, int]]) -> None:
    """Register `_dif_tiers(model_key, ladder, tier_rank)` from a model -> (ladder, rank) map."""
    keys = sorted(tiers)
    con.execute("SELECT 1").fetchall()  # settle any half-read result: register() refuses otherwise
    con.register(
        "_dif_tiers_arrow",
        pa.table(
            {
                "model_key": pa.array(keys, pa.string()),
                "ladder": pa.array([tiers[k][0] for k in keys], pa.string()),
                "tier_rank": pa.array([tiers[k][1] for k in keys], pa.int32()),
            }
        ),
    )
    con.execute("CREATE OR REPLACE TEMP TABLE _dif_tiers AS SELECT * FROM _dif_tiers_arrow")
    con.unregister("_dif_tiers_arrow")


def build_features(
    con: duckdb.DuckDBPyConnection, tiers: Mapping[str, tuple[str, int]] | None = None
) -> int:
    """Write `dif_features` (one row per request); return the number of requests."""
    tier_table(con, tiers or {})
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _dif_user AS
           SELECT request_id, arg_max(text_hash, position) AS user_hash
           FROM messages WHERE role = 'user' GROUP BY request_id"""
    )
    _text_stats(con, "_dif_sys", "SELECT DISTINCT system_hash FROM requests", template=True)
    _text_stats(con, "_dif_usr", "SELECT DISTINCT user_hash FROM _dif_user", template=False)
    cues = ",\n".join(
        f"coalesce(s.cue_{c}, FALSE) OR coalesce(u.cue_{c}, FALSE) AS cue_{c}" for c in R.CUES
    )
    scoped = "r.prompt_hash IS NOT NULL AND coalesce(r.session_id, r.user_id) IS NOT NULL"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dif_base AS
        SELECT r.request_id, r.model_key, r.provider, r.feature, r.system_hash, du.user_hash,
               s.template_id,
               coalesce(s.chars, 0) AS system_chars,
               coalesce(u.chars, 0) AS user_chars,
               r.system_hash IS NOT NULL AS has_system,
               coalesce(r.message_count, 0) AS message_count,
               r.tools_count,
               coalesce(r.tools_count, 0) > 0 AS has_tools,
               coalesce(r.response_format IN ('json_object', 'json_schema'), FALSE) AS json_output,
               r.max_tokens,
               coalesce(u.quantities, 0) AS quantities,
               coalesce(u.constraints, 0) AS constraints,
               coalesce(u.non_ascii, FALSE) AS non_ascii,
               {cues},
               r.input_tokens, r.output_tokens, r.reasoning_tokens,
               r.output_tokens - coalesce(r.reasoning_tokens, 0) AS visible_output_tokens,
               r.status = 'error' AS is_error,
               coalesce(r.finish_reason IN ('length', 'max_tokens'), FALSE) AS finish_length,
               r.feedback,
               -- a regeneration: the same prompt again from the same conversation (or user)
               CASE WHEN r.prompt_hash IS NOT NULL
                    THEN count(*) OVER (PARTITION BY r.prompt_hash) END AS prompt_sends,
               CASE WHEN {scoped} AND r.status IS DISTINCT FROM 'error'
                    THEN date_diff('millisecond', r.ts, lead(r.ts) OVER (resends ORDER BY r.ts,
                                                                         r.request_id)) / 1000.0
               END AS resent_after_s,
               t.ladder, t.tier_rank,
               -- a bad outcome: failed, cut off, or thumbs-down
               (r.status = 'error' OR coalesce(r.finish_reason IN ('length', 'max_tokens'), FALSE)
                OR coalesce(r.feedback < 0, FALSE)) AS bad_outcome
        FROM requests r
        LEFT JOIN _dif_user du USING (request_id)
        LEFT JOIN _dif_sys s ON s.text_hash = r.system_hash
        LEFT JOIN _dif_usr u ON u.text_hash = du.user_hash
        LEFT JOIN _dif_tiers t ON t.model_key = r.model_key
        WINDOW resends AS (PARTITION BY coalesce(r.session_id, r.user_id), r.prompt_hash)"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE dif_features AS
        WITH tiers AS (
            SELECT template_id, ladder,
                   count(*) FILTER (WHERE tier_rank = 0) AS n_top,
                   count(*) FILTER (WHERE tier_rank > 0) AS n_low,
                   avg(bad_outcome::INTEGER) FILTER (WHERE tier_rank = 0) AS bad_top,
                   avg(bad_outcome::INTEGER) FILTER (WHERE tier_rank > 0) AS bad_low
            FROM _dif_base WHERE template_id IS NOT NULL AND ladder IS NOT NULL
            GROUP BY ALL
        ), served AS (
            SELECT template_id,
                   bool_or(n_top >= {MIN_TIER_EVIDENCE} AND n_low >= {MIN_TIER_EVIDENCE}
                   AND bad_low <= bad_top + {MAX_EXTRA_BAD_SHARE}) AS ok
            FROM tiers GROUP BY template_id
        ), sizes AS (
            SELECT template_id, count(*) AS n,
                   quantile_cont(visible_output_tokens, 0.9) FILTER (WHERE NOT is_error) AS p90
            FROM _dif_base WHERE template_id IS NOT NULL GROUP BY template_id
        )
        SELECT b.*, coalesce(sizes.n, 0) AS template_requests, sizes.p90 AS template_output_p90,
               coalesce(served.ok, FALSE) AS template_small_model_ok
        FROM _dif_base b
        LEFT JOIN sizes USING (template_id)
        LEFT JOIN served USING (template_id)"""
    )
    for table in ("_dif_base", "_dif_user", "_dif_usr"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return int(con.execute("SELECT count(*) FROM dif_features").fetchall()[0][0])


def active_names_sql(rows: str) -> str:
    """SQL giving (rn, name) for every non-token binary feature of the rows in table `rows`
    (columns rn, request_id): routing.active_features without the text tokens."""
    parts = [f"CASE WHEN f.cue_{c} THEN 'cue:{c}' END" for c in R.CUES]
    parts += [part for name in R.BINS for part in bins_sql(name, "f." + name)]
    parts += [f"CASE WHEN f.{flag} THEN 'flag:{flag}' END" for flag in R.FLAGS]
    parts.append("'tmpl:' || f.template_id")
    return f"""
        SELECT rn, name FROM (
            SELECT b.rn, unnest(list_value({", ".join(parts)})) AS name
            FROM {rows} b JOIN dif_features f USING (request_id)
        ) WHERE name IS NOT NULL"""


def _tokens_sql(texts: str) -> str:
    """(hid, tok) for every word token of the texts of table `texts` (h, hid), lower-case."""
    head = f"left(t.text, {R.TOKEN_CHARS})"
    # lower() after the replace: the string is pure ASCII by then, and lower-casing it once is
    # cheaper than lower-casing each token
    words = f"string_split(lower(regexp_replace({head}, '[^A-Za-z0-9]+', ' ', 'g')), ' ')"
    return f"SELECT d.hid, unnest({words}) AS tok FROM {texts} d JOIN texts t ON t.text_hash = d.h"


def text_tokens_sql(texts: str, keys: str | None = None) -> str:
    """routing.tokens_of in SQL, once per distinct text of table `texts` (h, hid), however many
    requests share it. Without `keys`: (hid, tok) for every token (`tok` without its 'tok:'
    prefix). With it (a table of tok, col: see token_keys_sql): (hid, col) for the tokens in it.
    Either way a token repeated in a text is repeated here: the sparse matrix merges them.

    Splitting on runs of other characters yields exactly the maximal [A-Za-z0-9] runs that
    routing's findall yields, faster than extracting them; tokens are pure ASCII, so DuckDB's
    lower() on them is exactly Python's.
    """
    tokens = _tokens_sql(texts)
    if keys is None:
        return f"""SELECT hid, tok FROM ({tokens})
                   WHERE length(tok) BETWEEN 2 AND {R.MAX_TOKEN_CHARS}"""
    # the keys only hold 2..MAX_TOKEN_CHARS-character tokens: the join filters lengths
    return f"SELECT x.hid, k.col FROM ({tokens}) x JOIN {keys} k ON k.tok = x.tok"


def token_keys_sql(texts: str, vocab_tokens: str) -> str:
    """(tok, col) for the words of `vocab_tokens` (tok, col; a hashed word's tok is 'h:' and its
    hash) that the texts of table `texts` use, each under its plain lower-case token.

    A hashed word is looked up by hashing each distinct token of the texts once, not each
    occurrence. The caller stores the result in a table before text_tokens_sql joins it: in one
    statement with that join the token stream is read twice, and DuckDB keeps it whole as a
    common subplan (7 GiB at 1M requests).
    """
    key = f"'h:' || left(md5({sql_literal(R.WORD_HASH_SALT)} || d.tok), {R.WORD_HASH_CHARS})"
    return f"""SELECT tok, col FROM {vocab_tokens} WHERE tok NOT LIKE 'h:%'
               UNION ALL
               SELECT d.tok, v.col FROM (
                   SELECT DISTINCT tok FROM ({_tokens_sql(texts)})
                   WHERE length(tok) BETWEEN 2 AND {R.MAX_TOKEN_CHARS}) d
               JOIN {vocab_tokens} v ON v.tok = {key}"""
