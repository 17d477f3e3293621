"""Generic CSV / Parquet logs: map columns to canonical fields (`--map FIELD=COLUMN`).

Common column names are recognised without a map (e.g. Azure's TIMESTAMP / ContextTokens /
GeneratedTokens, LiteLLM's prompt_tokens / completion_tokens); `--map` overrides them and
`--model` supplies the model where the file has none. Values are read as text and typed in SQL,
so each bad cell is quarantined with its row and column named.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import duckdb

from advisor.errors import InputError, UnreadableFile
from advisor.ingest import fields
from advisor.ingest.files import TolerantGzip, is_gzip
from advisor.ingest.load import LoadCounts, load_staged, quarantine_the_rest
from advisor.ingest.times import implausible_sql, timestamp_sql
from advisor.store import scalar, text_hash_sql, transaction

# canonical field -> column names recognised without a --map (compared case-insensitively)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "request_id": ("request_id", "id", "call_id"),
    "ts": ("ts", "timestamp", "time", "start_time", "starttime", "created_at", "startTime"),
    "model": ("model", "model_name", "deployment"),
    "provider": ("provider", "custom_llm_provider"),
    "user_id": ("user_id", "user", "end_user"),
    "account_id": ("account_id", "account", "team_id", "team"),
    "feature": ("feature", "endpoint", "route", "tag"),
    "session_id": ("session_id", "session"),
    "input_tokens": ("input_tokens", "prompt_tokens", "contexttokens", "context_tokens"),
    "output_tokens": ("output_tokens", "completion_tokens", "generatedtokens", "generated_tokens"),
    "cache_read_tokens": ("cache_read_tokens", "cached_tokens", "cache_read_input_tokens"),
    "cache_write_tokens": ("cache_write_tokens", "cache_creation_input_tokens"),
    "reasoning_tokens": ("reasoning_tokens",),
    "latency_ms": ("latency_ms", "latency"),
    "ttft_ms": ("ttft_ms",),
    "max_tokens": ("max_tokens",),
    "stream": ("stream",),
    "service_tier": ("service_tier",),
    "status": ("status",),
    "finish_reason": ("finish_reason",),
    "logged_cost": ("logged_cost", "cost", "spend", "response_cost"),
    "prompt": ("prompt", "input", "prompt_text"),
    "response": ("response", "output", "completion", "response_text"),
}
MAPPABLE = tuple(SYNONYMS)
# canonical field -> its type rule (ingest.fields); every other field is text
_TYPED_FIELDS = {
    **dict.fromkeys(
        ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
         "reasoning_tokens"), "count"),
    "max_tokens": "int32",
    "latency_ms": "duration",
    "ttft_ms": "duration",
    "logged_cost": "money",
}  # fmt: skip
_EMPTY = {"count": "BIGINT", "int32": "BIGINT", "duration": "DOUBLE", "money": "DECIMAL(18,9)"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# DuckDB's CSV reader sets aside the rows it cannot read (wrong number of columns, bytes that
# are not UTF-8) in these tables instead of failing the file; they are quarantined.
_REJECTS = "_csv_rejects"
_SCANS = "_csv_scans"


def source_sql(path: Path, kind: str) -> str:
    if kind == "parquet":
        return f"read_parquet({_lit(str(path))})"
    return (
        f"read_csv({_lit(str(path))}, all_varchar = true, header = true, store_rejects = true, "
        f"rejects_table = '{_REJECTS}', rejects_scan = '{_SCANS}')"
    )


def ingest_table(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    kind: str,
    mapping: Mapping[str, str],
    model: str | None,
) -> LoadCounts:
    """One CSV or Parquet file into the store; every row ends up stored, duplicate or
    quarantined, rows the CSV reader could not split into the header's columns included.
    A gzip stream that ends early is read up to the damage, like a JSON-lines one."""

    def stage(read_from: Path | None = None) -> None:  # the rows, typed and checked: _staged
        for table in (_REJECTS, _SCANS):
            con.execute(f"DROP TABLE IF EXISTS {table}")
        sql = staging_sql(con, path, kind, mapping, model, read_from)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _staged AS {sql}")
        if kind == "csv":
            stage_rejects(con)

    try:
        stage()
        truncated = False
    except duckdb.Error as error:
        if isinstance(error, _NOT_THE_FILE):
            raise
        if not is_gzip(path):
            raise _unreadable(path, kind, error) from None
        with tempfile.TemporaryDirectory() as folder:  # what the damaged stream still holds
            copy = Path(folder) / path.name.removesuffix(".gz")
            with TolerantGzip(path, "rb") as stream, copy.open("wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
                truncated = stream.truncated
            if not truncated:  # the stream is whole: the file is not readable as `kind`
                raise _unreadable(path, kind, error) from None
            _drop_cut_line(copy)  # a CSV line cut short may still parse, with a wrong value
            try:
                stage(read_from=copy)
            except duckdb.Error as again:
                if isinstance(again, _NOT_THE_FILE):
                    raise
                raise _unreadable(path, kind, again, copy) from None
    # the last line read, the header at least (load_staged drops the rows it does not store)
    last = scalar(con, "SELECT max(source_line) FROM _staged") if truncated else None
    with transaction(con):  # the file's writes: all of them or, after a crash, none
        counts = load_staged(con, "_staged", str(path), kind)
        if truncated:
            counts.add(quarantine_the_rest(con, str(path), int(last or 1)))
    con.execute("DROP TABLE IF EXISTS _staged")
    return counts


def _drop_cut_line(path: Path) -> None:
    """Cut a file after its last newline: a last line without one was cut short."""
    with path.open("r+b") as fh:
        pos = fh.seek(0, 2)
        while pos > 0:
            start = max(0, pos - (1 << 16))
            fh.seek(start)
            at = fh.read(pos - start).rfind(b"\n")
            if at >= 0:
                fh.truncate(start + at + 1)
                return
            pos = start
        fh.truncate(0)


# What DuckDB raises that is not about the file's bytes: our own SQL (binder, catalog, parser),
# an interrupt, no memory left, or a database that can no longer be used. Everything else a
# reader raises (I/O, invalid input, a bare Error from a damaged footer or page, a value that
# does not convert, an encoding it does not support) means the file is not readable as `kind`.
_NOT_THE_FILE = (
    duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException,
    duckdb.SyntaxException, duckdb.InterruptException, duckdb.OutOfMemoryException,
    duckdb.FatalException, duckdb.InternalException, duckdb.TransactionException,
    duckdb.ConnectionException,
)  # fmt: skip


def _unreadable(
    path: Path, kind: str, error: Exception, copy: Path | None = None
) -> UnreadableFile:
    """The error for a file DuckDB cannot read (`copy`: what was read in its place)."""
    reason = str(error).split("\n", 1)[0].split(" Error: ", 1)[-1]
    if copy is not None:
        reason = reason.replace(str(copy), str(path))
    return UnreadableFile(str(path), f"cannot be read as {kind}: {reason}")


def stage_rejects(con: duckdb.DuckDBPyConnection) -> None:
    """Rejected rows become staged error rows, and the rows read after them get their true
    line numbers (the reader's count skips them). Lines are records: the header is line 1."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _rejected AS
            SELECT line, arg_min(column_name, column_idx) AS field,
                   CASE WHEN bool_or(error_type = 'INVALID ENCODING') THEN 'not UTF-8 text'
                        ELSE lower(arg_min(error_type, column_idx)) || ': '
                             || lower(arg_min(error_message, column_idx)) END AS reason,
                   left(any_value(csv_line), 200) AS excerpt,
                   md5(any_value(csv_line)) AS content_hash
            FROM {_REJECTS} GROUP BY line"""
    )
    lines = [int(r[0]) for r in con.execute("SELECT line FROM _rejected ORDER BY 1").fetchall()]
    if lines:
        # row k (1-based) is on line k + 1 + #{j : lines[j] - j <= k} (j 1-based)
        shifts = [line - j for j, line in enumerate(lines, start=1)]
        con.execute(
            """UPDATE _staged SET source_line = source_line
                 + len(list_filter($shifts::BIGINT[], lambda s: s <= source_line - 1))""",
            {"shifts": shifts},
        )
        con.execute(
            """INSERT INTO _staged (source_line, excerpt, error_field, error_reason, content_hash)
               SELECT line, excerpt, field, reason, content_hash FROM _rejected"""
        )
    con.execute("DROP TABLE _rejected")


def resolve_mapping(columns: list[str], mapping: Mapping[str, str], path: Path) -> dict[str, str]:
    """canonical field -> file column, from --map first, then recognised names."""
    unknown = sorted(set(mapping) - set(MAPPABLE))
    if unknown:
        raise InputError(
            f"--map {unknown[0]}=...: unknown field", hint="fields: " + ", ".join(MAPPABLE)
        )
    missing = sorted(col for col in mapping.values() if col not in columns)
    if missing:
        raise InputError(
            f"{path}: --map names column {missing[0]!r}, which the file does not have",
            hint="columns: " + ", ".join(columns),
        )
    lower = {c.lower(): c for c in columns}
    resolved = dict(mapping)
    for field, names in SYNONYMS.items():
        if field not in resolved:
            for name in names:
                if name.lower() in lower:
                    resolved[field] = lower[name.lower()]
                    break
    return resolved


def staging_sql(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    kind: str,
    mapping: Mapping[str, str],
    model: str | None,
    read_from: Path | None = None,
) -> str:
    """The staging query of `path` (named in messages), read from `read_from` if given."""
    src = source_sql(read_from or path, kind)
    columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
    cols = resolve_mapping(columns, mapping, path)

    def col(field: str) -> str:
        return _q(cols[field]) if field in cols else "NULL::VARCHAR"  # src made it VARCHAR

    if "ts" not in cols:
        raise InputError(f"{path}: no timestamp column", hint="name it with --map ts=COLUMN")
    if "model" not in cols and model is None:
        raise InputError(f"{path}: no model column", hint="give the model with --model NAME")
    if "input_tokens" not in cols and "prompt" not in cols:
        raise InputError(
            f"{path}: no token counts and no prompt text",
            hint="name them with --map input_tokens=COLUMN --map output_tokens=COLUMN",
        )
    model_expr = col("model") if "model" in cols else "NULL"
    if model is not None:
        model_expr = f"coalesce(nullif({model_expr}, ''), {_lit(model)})"
    checks = []
    typed = []
    values = []
    for field, rule in _TYPED_FIELDS.items():
        if field not in cols:
            typed.append(f"NULL::VARCHAR AS raw_{field}, NULL::DOUBLE AS num_{field}")
            values.append(f"NULL::{_EMPTY[rule]} AS {field}")
            continue
        number, value, arms = fields.typed_sql(rule, f"raw_{field}", field, _lit(cols[field]))
        typed.append(f"nullif({col(field)}, '') AS raw_{field}, {number}")
        values.append(value)
        checks += arms
    ts_raw = col("ts")
    ts_col = _lit(cols["ts"])
    return f"""
WITH src AS (
  SELECT COLUMNS(*)::VARCHAR, row_number() OVER () AS _row FROM {src}
), typed AS (
  SELECT _row, {ts_raw} AS raw_ts,
         {timestamp_sql(ts_raw)} AS ts,
         {model_expr} AS model,
         {", ".join(typed)},
         {col("request_id")} AS logged_id, {col("provider")} AS provider,
         {col("user_id")} AS user_id, {col("account_id")} AS account_id,
         {col("feature")} AS feature, {col("session_id")} AS session_id,
         {col("service_tier")} AS raw_tier, {col("status")} AS raw_status,
         {col("finish_reason")} AS finish_reason, {col("stream")} AS raw_stream,
         {col("prompt")} AS prompt_text, {col("response")} AS response_text,
         -- every cell of the row, NULLs kept apart from text: the id of a row without one,
         -- and of a bad row in the quarantine
         md5(to_json(list_value(*COLUMNS(* EXCLUDE (_row))))) AS raw_hash,
         left(concat_ws(',', *COLUMNS(* EXCLUDE (_row))), 200) AS excerpt
  FROM src
), valued AS (
  SELECT *, {", ".join(values)}
  FROM typed
), checked AS (
  SELECT *,
    CASE
      WHEN nullif(raw_ts, '') IS NULL THEN {ts_col} || '|missing required field'
      WHEN ts IS NULL THEN {ts_col} || '|cannot read ' || left(raw_ts, 40) || ' as a time'
      {implausible_sql("raw_ts", ts_col)}
      WHEN nullif(model, '') IS NULL THEN 'model|missing required field'
      {" ".join(checks)}
      WHEN input_tokens IS NULL AND prompt_text IS NULL
        THEN 'input_tokens|no token count and no prompt text'
      WHEN output_tokens IS NULL AND response_text IS NULL
        THEN 'output_tokens|no token count and no response text'
    END AS error
  FROM valued
)
SELECT _row + 1 AS source_line, excerpt,
       CASE WHEN error IS NOT NULL THEN raw_hash END AS content_hash,
       nullif(split_part(error, '|', 1), '') AS error_field,
       CASE WHEN error IS NOT NULL THEN substr(error, strpos(error, '|') + 1) END AS error_reason,
       logged_id, ts, latency_ms, ttft_ms, lower(provider) AS provider, model,
       NULL::VARCHAR AS response_model,
       user_id, account_id, feature, session_id,
       input_tokens, coalesce(cache_read_tokens, 0) AS cache_read_tokens,
       coalesce(cache_write_tokens, 0) AS cache_write_tokens, 0::BIGINT AS cache_write_1h_tokens,
       output_tokens, reasoning_tokens,
       TRY_CAST(max_tokens AS INTEGER) AS max_tokens, TRY_CAST(raw_stream AS BOOLEAN) AS stream,
       NULL::INTEGER AS n, NULL::DOUBLE AS temperature, NULL::INTEGER AS tools_count,
       NULL::VARCHAR AS response_format,
       lower(coalesce(nullif(raw_tier, ''), 'default')) AS service_tier,
       CASE WHEN lower(raw_status) IN ('error', 'failed', 'failure') THEN 'error' ELSE 'ok' END
         AS status,
       finish_reason, logged_cost, NULL::DOUBLE AS feedback,
       CASE WHEN prompt_text IS NOT NULL THEN [{{'role': 'user',
            'hash': {text_hash_sql("prompt_text")}, 'text': prompt_text}}] END AS msgs,
       NULL::VARCHAR AS system_hash, NULL::VARCHAR AS system_text,
       NULL::VARCHAR AS tools_hash, NULL::VARCHAR AS tools_text,
       {text_hash_sql("response_text")} AS response_hash, response_text,
       input_tokens IS NOT NULL AS has_usage, raw_hash
FROM checked
"""
