"""Tool exports (LiteLLM, Langfuse, Helicone) into staged rows: reading and the shared SQL.

An export file (JSON array, JSON lines or CSV) is first read into one table of records, each a
JSON object with its line (a CSV row's line, a JSON array's record number) and a line-level
fault if it has one. A tool's `Spec` then names, as SQL over the record `r`, where each
canonical field comes from; `staging_sql` types and checks them the way every format does
(ingest.fields, ingest.times) and produces the staged columns that load.load_staged stores.
CSV cells are text, so numbers are read from their text in JSON exports too, and a JSON object
stored as text in a cell (metadata, usage maps, request bodies) is parsed where it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from advisor import plausibility
from advisor.ingest import fields, tabular
from advisor.ingest.envelope import message_text_sql, text_of
from advisor.ingest.files import head_bytes, read_line_blocks
from advisor.ingest.times import implausible_sql, timestamp_sql
from advisor.store import text_hash_sql

ROWS = "_export_rows"  # (line, rec, excerpt, content_hash, bad): one row per record


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def at(*keys: str, base: str = "r") -> str:
    """The JSON value at a path of keys in `base`; a string holding a JSON object or array (a
    CSV cell, a body logged as text) is parsed, so that the path can go on into it."""
    expr = base
    for key in keys:
        value = f"json_extract({expr}, {lit('$.' + _quoted(key))})"
        expr = (
            f"(CASE WHEN json_type({value}) = 'VARCHAR' AND regexp_matches({value}->>'$', "
            f"'^\\s*[\\[{{]') THEN try(json({value}->>'$')) ELSE {value} END)"
        )
    return expr


def text(*keys: str, base: str = "r") -> str:
    """The value at a path as text (a JSON string unquoted, anything else its JSON text); NULL
    for an absent key, a JSON null and an empty CSV cell."""
    return f"nullif({at(*keys, base=base)}->>'$', '')"


def first(*exprs: str) -> str:
    return f"coalesce({', '.join(exprs)})"


def millis_between(start_raw: str, end_raw: str) -> str:
    """Milliseconds from one logged time to another, as text (typed later); NULL if either is
    missing or unreadable, or the end comes first."""
    start, end = timestamp_sql(start_raw), timestamp_sql(end_raw)
    return (
        f"CASE WHEN {end} >= {start} "
        f"THEN CAST((epoch_us({end}) - epoch_us({start})) / 1000.0 AS VARCHAR) END"
    )


def _quoted(key: str) -> str:
    return '"' + key.replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Spec:
    """Where one tool's export keeps each canonical field: SQL over the record `r` (JSON).

    `raw` holds the text of the typed fields (ts, prompt, completion, cache_read, cache_write,
    reasoning, latency_ms, ttft_ms, logged_cost, max_tokens, temperature), `labels` how the
    quarantine names each (the tool's own field name). `cache_on_top`: the tool's prompt count
    leaves cache reads and writes out (the canonical input_tokens holds them);
    `reasoning_on_top`: its completion count leaves reasoning out. `messages` is a JSON array
    of {role, content}; `system` and `response` are texts."""

    name: str
    raw: dict[str, str]
    labels: dict[str, str]
    text: dict[str, str]
    messages: str = "NULL::JSON"
    system: str | None = None
    response: str | None = None
    status: str = "'ok'"
    keep: str = "true"
    cache_on_top: bool = False
    reasoning_on_top: bool = False
    errors: list[str] = field(default_factory=list)  # CASE arms over `r`: the tool's checks


_RULES = {
    "prompt": "count", "completion": "count", "cache_read": "count", "cache_write": "count",
    "reasoning": "count", "latency_ms": "duration", "ttft_ms": "duration",
    "logged_cost": "money", "max_tokens": "int32", "temperature": "number",
}  # fmt: skip
_TEXT = (
    "logged_id", "model", "response_model", "provider", "user_id", "account_id", "feature",
    "session_id", "finish_reason", "stream", "service_tier",
)  # fmt: skip
_MESSAGES = '[{"role": "VARCHAR", "content": "VARCHAR", "tool_calls": "VARCHAR"}]'


def staging_sql(spec: Spec, table: str = ROWS) -> str:
    """The staged columns (see load.load_staged) of every record of `table` that `spec.keep`
    selects: typed, normalised and checked, bad ones with their reason."""
    raw = {name: spec.raw.get(name, "NULL") for name in ("ts", *_RULES)}
    numbers, values, arms = [], [], []
    for name, rule in _RULES.items():
        number, value, checks = fields.typed_sql(
            rule, f"raw_{name}", name, lit(spec.labels.get(name, name))
        )
        numbers.append(number)
        values.append(value)
        arms += checks
    texts = ",\n         ".join(
        f"CAST({spec.text.get(name, 'NULL')} AS VARCHAR) AS {name}" for name in _TEXT
    )
    raws = ",\n         ".join(f"CAST({expr} AS VARCHAR) AS raw_{n}" for n, expr in raw.items())
    on_top = "coalesce(cache_read, 0) + coalesce(cache_write, 0)" if spec.cache_on_top else "0"
    thoughts = "coalesce(reasoning, 0)" if spec.reasoning_on_top else "0"
    parts_check = ""
    if not spec.cache_on_top:
        parts_check = f"""
      WHEN coalesce(cache_read, 0) + coalesce(cache_write, 0) > prompt
        THEN {lit(spec.labels.get("cache_read", "cache_read"))}
             || '|cache reads and writes exceed the prompt tokens that include them'"""
    if not spec.reasoning_on_top:
        parts_check += f"""
      WHEN reasoning > completion
        THEN {lit(spec.labels.get("reasoning", "reasoning"))}|| '|exceeds the completion tokens'"""
    total = plausibility.when_sql(
        "tokens", "input_total", lit(spec.labels.get("prompt", "prompt")),
        "CAST(input_total AS VARCHAR) || ' (input, cache reads and cache writes)'",
    )  # fmt: skip
    tool_error = f"CASE {' '.join(spec.errors)} END" if spec.errors else "NULL::VARCHAR"
    ts_label = lit(spec.labels.get("ts", "timestamp"))
    message = f"coalesce({message_text_sql('m.content', 'm.tool_calls')}, '')"
    return f"""
WITH src AS (
  SELECT line, excerpt, content_hash AS line_hash, bad, rec AS r FROM {table}
  WHERE bad IS NOT NULL OR ({spec.keep})
), picked AS (
  SELECT line, excerpt, line_hash, bad,
         {raws},
         {texts},
         {timestamp_sql("raw_ts")} AS ts,
         {spec.status} AS status,
         {spec.messages} AS messages_json,
         {_text_or_null(spec.system)} AS system_t,
         {_text_or_null(spec.response)} AS response_text,
         {tool_error} AS tool_error,
         md5(CAST(r AS VARCHAR)) AS raw_hash
  FROM src
), numbered AS (
  SELECT *, {", ".join(numbers)} FROM picked
), valued AS (
  SELECT *, {", ".join(values)} FROM numbered
), totalled AS (
  SELECT *, prompt + {on_top} AS input_total, completion + {thoughts} AS output_total,
         list_transform(try(json_transform(messages_json, {lit(_MESSAGES)})),
                        lambda m: {{'role': coalesce(m.role, 'user'), 'text': {message}}}) AS msgs_t
  FROM valued
), checked AS (
  SELECT *,
    CASE
      WHEN bad IS NOT NULL THEN '|' || bad
      WHEN raw_ts IS NULL THEN {ts_label} || '|missing required field'
      WHEN ts IS NULL THEN {ts_label} || '|cannot read ' || left(raw_ts, 40) || ' as a time'
      {implausible_sql("raw_ts", ts_label)}
      WHEN model IS NULL OR model = '' THEN {lit(spec.labels.get("model", "model"))}
        || '|missing required field'
      WHEN tool_error IS NOT NULL THEN tool_error
      {" ".join(arms)}
      {total}{parts_check}
      WHEN prompt IS NULL AND coalesce(len(msgs_t), 0) = 0
        THEN {lit(spec.labels.get("prompt", "prompt"))}
             || '|no token counts and no prompt text to count them from'
    END AS error
  FROM totalled
)
SELECT line AS source_line, left(excerpt, 200) AS excerpt,
       CASE WHEN error IS NOT NULL THEN line_hash END AS content_hash,
       nullif(split_part(error, '|', 1), '') AS error_field,
       CASE WHEN error IS NOT NULL THEN substr(error, strpos(error, '|') + 1) END AS error_reason,
       logged_id, ts, latency_ms, ttft_ms, lower(provider) AS provider, model, response_model,
       user_id, account_id, feature, session_id,
       input_total AS input_tokens,
       CASE WHEN prompt IS NOT NULL THEN coalesce(cache_read, 0) END AS cache_read_tokens,
       CASE WHEN prompt IS NOT NULL THEN coalesce(cache_write, 0) END AS cache_write_tokens,
       CASE WHEN prompt IS NOT NULL THEN 0 END::BIGINT AS cache_write_1h_tokens,
       output_total AS output_tokens, reasoning AS reasoning_tokens,
       TRY_CAST(max_tokens AS INTEGER) AS max_tokens, TRY_CAST(stream AS BOOLEAN) AS stream,
       NULL::INTEGER AS n, temperature, NULL::INTEGER AS tools_count,
       NULL::VARCHAR AS response_format,
       lower(coalesce(service_tier, 'default')) AS service_tier, status, finish_reason,
       logged_cost, NULL::DOUBLE AS feedback,
       CASE WHEN len(msgs_t) > 0 THEN list_transform(msgs_t, lambda m: {{
         'role': m.role, 'hash': {text_hash_sql("m.text")}, 'text': m.text}}) END AS msgs,
       {text_hash_sql("system_t")} AS system_hash, system_t AS system_text,
       NULL::VARCHAR AS tools_hash, NULL::VARCHAR AS tools_text,
       {text_hash_sql("response_text")} AS response_hash, response_text,
       prompt IS NOT NULL AS has_usage, raw_hash
FROM checked
"""


def _text_or_null(expr: str | None) -> str:
    # a constant NULL has no list type for text_of's lambda to bind to
    return "NULL::VARCHAR" if expr is None else text_of(f"CAST({expr} AS VARCHAR)")


def read_records(con: duckdb.DuckDBPyConnection, path: Path, kind: str) -> None:
    """The file's records into ROWS. `kind` is csv or json (an array, or JSON lines)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {ROWS} (line BIGINT, rec JSON, excerpt VARCHAR,
            content_hash VARCHAR, bad VARCHAR)"""
    )
    if kind == "csv":
        # every cell as text; rows the reader rejects join the staged rows later (stage_rejects)
        con.execute(
            f"""INSERT INTO {ROWS}
                SELECT row_number() OVER () + 1, to_json(t), left(CAST(to_json(t) AS VARCHAR),
                       200), md5(CAST(to_json(t) AS VARCHAR)), NULL
                FROM {tabular.source_sql(path, "csv")} t"""
        )
    elif _is_array(path):
        # a JSON array: its records are numbered, as its lines say little when pretty-printed
        con.execute(
            f"""INSERT INTO {ROWS}
                SELECT row_number() OVER (), json,
                       left(CAST(json AS VARCHAR), 200), md5(CAST(json AS VARCHAR)),
                       CASE WHEN json_type(json) <> 'OBJECT'
                            THEN 'expected a JSON object, got ' || lower(json_type(json)) END
                FROM read_json_objects({lit(str(path))}, format = 'array')"""
        )
    else:
        for block in read_line_blocks(path):
            con.register("_export_lines", block)
            con.execute(
                f"""INSERT INTO {ROWS}
                    SELECT line, CASE WHEN ok THEN json(body) END,
                           coalesce(junk, left(body, 200)), coalesce(junk_hash, md5(body)),
                           CASE WHEN raw IS NULL THEN 'not UTF-8 text'
                                WHEN NOT json_valid(body)
                                  THEN 'invalid JSON (truncated or malformed line)'
                                WHEN NOT ok THEN 'expected a JSON object, got '
                                  || lower(json_type(body)) END
                    FROM (SELECT *, trim(raw) AS body,
                                 json_valid(trim(raw)) AND json_type(trim(raw)) = 'OBJECT' AS ok
                          FROM _export_lines)
                    WHERE raw IS NULL OR body <> ''"""
            )
            con.unregister("_export_lines")


def _is_array(path: Path) -> bool:
    return head_bytes(path, 4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
