"""The DuckDB store: connection settings, the canonical schema, and small shared queries.

Tables:
- requests:   one row per LLM call (the canonical request table of DESIGN.md section 3)
- texts:      every distinct text once, keyed by content hash (see TEXT_HASH_SQL)
- text_tokens: token count of a text under one encoding, counted once
- messages:   the ordered prompt of each request as (request_id, position, role, text_hash)
- quarantine: every input row that could not be read, with file, line, field and reason
- meta:       key/value facts about the store (e.g. how token counts were obtained)
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from advisor.errors import AdvisorError

CANONICAL_COLUMNS: dict[str, str] = {
    "request_id": "VARCHAR",  # unique: ingest anti-joins on it (cheaper than an index)
    "ts": "TIMESTAMP",  # UTC
    "latency_ms": "DOUBLE",
    "ttft_ms": "DOUBLE",
    "provider": "VARCHAR",
    "model": "VARCHAR",
    "response_model": "VARCHAR",  # the model the response names (Azure: the real model)
    "model_key": "VARCHAR",  # price-table entry; NULL = unpriced
    "model_resolution": "VARCHAR",  # exact | alias | prefix | deployment | NULL
    "user_id": "VARCHAR",
    "account_id": "VARCHAR",
    "feature": "VARCHAR",
    "session_id": "VARCHAR",
    "input_tokens": "BIGINT",  # all prompt tokens, cached reads and writes included
    "cache_read_tokens": "BIGINT",  # subset of input_tokens
    "cache_write_tokens": "BIGINT",  # subset of input_tokens (5 min + 1 h writes)
    "cache_write_1h_tokens": "BIGINT",  # subset of cache_write_tokens written with a 1 h TTL
    "output_tokens": "BIGINT",  # reasoning included
    "reasoning_tokens": "BIGINT",  # subset of output_tokens
    "token_source": "VARCHAR",  # logged | tokenized | estimated | unbilled (failed, no usage)
    "max_tokens": "INTEGER",
    "stream": "BOOLEAN",
    "n": "INTEGER",
    "temperature": "DOUBLE",
    "tools_count": "INTEGER",
    "response_format": "VARCHAR",
    "message_count": "INTEGER",
    "service_tier": "VARCHAR",  # default | batch | flex | priority
    "status": "VARCHAR",  # ok | error
    "finish_reason": "VARCHAR",
    "logged_cost": "DECIMAL(18,9)",
    "feedback": "DOUBLE",  # outcome signal where the log has one (e.g. thumbs up 1 / down -1)
    "prompt_hash": "VARCHAR",
    "system_hash": "VARCHAR",
    "response_hash": "VARCHAR",
    "source_format": "VARCHAR",
    "source_file": "VARCHAR",
    "source_line": "BIGINT",
}

SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS requests (
    {", ".join(f"{name} {kind}" for name, kind in CANONICAL_COLUMNS.items())}
);
CREATE TABLE IF NOT EXISTS texts (
    text_hash VARCHAR,      -- unique by construction (ingest anti-joins)
    -- zstd: at 1M requests, half the ingest time of the default string compression and a
    -- store less than half the size (benchmarks/README.md)
    text VARCHAR USING COMPRESSION zstd
);
CREATE TABLE IF NOT EXISTS text_tokens (
    text_hash VARCHAR,
    encoding VARCHAR,       -- o200k_base | cl100k_base | estimate
    tokens BIGINT,
    PRIMARY KEY (text_hash, encoding)
);
CREATE TABLE IF NOT EXISTS messages (
    request_id VARCHAR,
    position INTEGER,       -- 0 = tools block (if any), then system, then messages in order
    role VARCHAR,
    text_hash VARCHAR
);
CREATE TABLE IF NOT EXISTS quarantine (
    source_file VARCHAR,
    source_line BIGINT,
    field VARCHAR,
    reason VARCHAR,
    excerpt VARCHAR,
    content_hash VARCHAR    -- md5 of the bad line or row: with the line, what makes it a repeat
);
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS content_hash VARCHAR;  -- stores of before it
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
"""


# Content hash of texts: DuckDB's 64-bit hash as 16 hex digits: ~10x faster than md5 over
# gigabytes of prompts, and collisions stay negligible (~1e-6 at 10M distinct texts). It is
# tied to the DuckDB build, so a store records it and refuses ingest from another build.
TEXT_HASH_SQL = "printf('%016x', hash({}))"  # hash_hex_sql of hash()


def text_hash_sql(expr: str) -> str:
    """SQL for the hash of a text expression; NULL for a NULL text (DuckDB hashes NULL too)."""
    return f"CASE WHEN ({expr}) IS NOT NULL THEN {TEXT_HASH_SQL.format(expr)} END"


def hash_hex_sql(hash_expr: str) -> str:
    """A text hash from an already computed hash() value (see TEXT_HASH_SQL)."""
    return f"printf('%016x', {hash_expr})"


# DuckDB's memory: a fixed budget, whatever the machine, past which it spills to disk (beside the
# store, in `<store>.tmp`). Left at DuckDB's default (80% of RAM) its buffers grew with the log:
# at 1M requests the tiering lever alone peaked at 5.84 GiB RSS (63.9 s), and 1.57 GiB (32.9 s)
# under a 1.5 GB budget; `advisor analyze` end to end peaked at 3.34 GiB with 1.5 GB and 2.93 GiB
# with 1 GB, the caching lever's Python side on top (benchmarks/README.md).
DEFAULT_MEMORY = "1GB"
MEMORY_ENV = "ADVISOR_MEMORY"
_MEMORY = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.I)


def memory_limit(value: str | None = None) -> str:
    """The memory budget: `value` (--memory), else $ADVISOR_MEMORY, else DEFAULT_MEMORY."""
    chosen = (value or os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY).strip()
    if not _MEMORY.fullmatch(chosen):
        from advisor.errors import AdvisorError

        raise AdvisorError(f"not a memory size: {chosen!r}", hint="for example 1.5GB, 4GB or 800MB")
    return chosen


def connect(
    path: Path | str | None = None, *, read_only: bool = False, memory: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) a store, with DuckDB's memory held to `memory_limit(memory)`.
    Never touches the network: extension autoload is off."""
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "memory_limit": memory_limit(memory),
    }
    database = ":memory:" if path is None else str(path)
    if path is not None and not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(database, read_only=read_only, config=config)
    except duckdb.IOException as exc:
        if "Could not set lock" not in str(exc):
            raise
        from advisor.errors import AdvisorError

        raise AdvisorError(
            f"{path}: another advisor process holds this store",
            hint="wait for it to finish, or use another store (--db) or output folder (-o)",
        ) from exc
    if not read_only:
        con.execute(SCHEMA_SQL)
        _check_hash_version(con, path)
    return con


# The build the text hashes come from: a store (or a --store folder) records it.
HASH_BUILD = f"duckdb {duckdb.__version__}"


def _check_hash_version(con: duckdb.DuckDBPyConnection, path: Path | str | None) -> None:
    here = HASH_BUILD
    stored = get_meta(con, "text_hash")
    if stored is None:
        set_meta(con, "text_hash", here)
    elif stored != here:
        raise AdvisorError(
            f"{path}: store written with {stored}, this advisor runs {here}",
            hint="re-ingest the logs into a new store (text hashes differ between builds)",
        )


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One unit of writes: stored whole, or (on an error, an interrupt or a crash) not at all.

    Any failed statement aborts a DuckDB transaction, so what may fail on purpose (reading a
    file that turns out unreadable) runs before it, into temporary tables."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # the error that got here is the one to report
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# What a sound store holds, as (what is wrong, SQL counting the rows that break it). Each is a
# scan, an aggregate or an anti-join: 0.9 s in all at 200k requests (560k messages) on a busy
# two-core machine.
_INVARIANTS = (
    ("request ids that appear more than once in requests",
     "SELECT count(*) - count(DISTINCT request_id) FROM requests"),
    ("messages whose request is not in requests",
     "SELECT count(*) FROM messages ANTI JOIN requests USING (request_id)"),
    ("messages stored twice at the same (request_id, position)",
     "SELECT count(*) - count(DISTINCT (request_id, position)) FROM messages"),
    ("requests with a prompt but no messages",
     """SELECT count(*) FROM (SELECT request_id FROM requests WHERE prompt_hash IS NOT NULL)
        ANTI JOIN messages USING (request_id)"""),
    ("text hashes that appear more than once in texts",
     "SELECT count(*) - count(DISTINCT text_hash) FROM texts"),
    ("messages or responses whose text is not in texts",
     """SELECT count(*) FROM (SELECT text_hash FROM messages WHERE text_hash IS NOT NULL
                             UNION ALL SELECT response_hash FROM requests
                             WHERE response_hash IS NOT NULL) ANTI JOIN texts USING (text_hash)"""),
)  # fmt: skip


def check_invariants(con: duckdb.DuckDBPyConnection) -> list[str]:
    """What is wrong with a store's tables (empty when sound): every message belongs to exactly
    one request, once per position, and every text a row names is stored exactly once."""
    problems = []
    for what, sql in _INVARIANTS:
        count = int(scalar(con, sql) or 0)
        if count:
            problems.append(f"{count:,} {what}")
    return problems


def require_sound(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse a store whose invariants are broken (e.g. a crash of an older advisor's ingest):
    its figures would be wrong without a word."""
    problems = check_invariants(con)
    if problems:
        path = scalar(con, "SELECT path FROM duckdb_databases() WHERE database_name = "
                      "current_database()") or "the store"  # fmt: skip
        raise AdvisorError(
            f"{path} is inconsistent: " + "; ".join(problems),
            hint="re-ingest the logs into a new store (`advisor ingest LOGS... --db NEW.duckdb`) "
            "and analyse that one (`--db NEW.duckdb`)",
        )


def drop_temp_tables(con: duckdb.DuckDBPyConnection, *prefixes: str) -> None:
    """Drop the temporary tables whose names start with one of `prefixes`: a step's working
    tables, which at a million requests hold hundreds of MB the steps after it could use."""
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary ORDER BY table_name"
    ).fetchall()
    for (name,) in rows:
        if name.startswith(prefixes):
            con.execute(f'DROP TABLE IF EXISTS "{name}"')


def quarantine_reasons(
    con: duckdb.DuckDBPyConnection,
) -> list[tuple[str, str | None, str, int, int]]:
    """Quarantined rows as (file, field, reason, rows, first line), most rows first. A reason
    loses the value it quotes ("expected an integer, got x"), so that one kind of fault in many
    rows is one entry."""
    rows = con.execute(
        """SELECT source_file, field,
                  CASE WHEN reason LIKE 'expected%got%' THEN split_part(reason, ', got', 1)
                       WHEN reason LIKE 'cannot read % as a time'
                         THEN 'cannot read the value as a time'
                       WHEN reason LIKE 'not UTF-8 text%' THEN 'not UTF-8 text'
                       ELSE reason END AS r,
                  count(*), min(source_line)
           FROM quarantine GROUP BY source_file, field, r
           ORDER BY count(*) DESC, source_file, min(source_line)"""
    ).fetchall()
    return [(str(f), fd, str(r), int(n), int(line)) for f, fd, r, n, line in rows]


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


def get_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    value = scalar(con, "SELECT value FROM meta WHERE key = ?", [key])
    return None if value is None else str(value)


def first_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> tuple[Any, ...] | None:
    """The first row of a query, fetched to the end so the connection is free for the next call."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def scalar(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> Any:
    """The single value of a one-value query (None when it returns no row)."""
    row = first_row(con, sql, params)
    return None if row is None else row[0]
