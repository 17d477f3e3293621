"""Loading staged rows into the store: quarantine, request ids, de-duplication, texts, messages.

Every format module produces the same staged columns (see envelope.staging_sql); this module is
the one place that decides what is kept, what is quarantined and what was already there.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from advisor.store import CANONICAL_COLUMNS, scalar


@dataclass
class LoadCounts:
    rows: int = 0
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0

    def add(self, other: LoadCounts) -> None:
        self.rows += other.rows
        self.ingested += other.ingested
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(scalar(con, sql) or 0)


def quarantine_rows(
    con: duckdb.DuckDBPyConnection, source_file: str, rows: list[tuple[int, str | None, str, str]]
) -> int:
    """Quarantine rows found bad before staging (e.g. not UTF-8): (line, field, reason, excerpt)."""
    if rows:
        con.executemany(
            "INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?, ?)",
            [(source_file, line, field, reason, excerpt) for line, field, reason, excerpt in rows],
        )
    return len(rows)


def load_staged(
    con: duckdb.DuckDBPyConnection, staged: str, source_file: str, source_format: str
) -> LoadCounts:
    """Move one staged chunk into the store; return what happened to its rows."""
    counts = LoadCounts(rows=_count(con, f"SELECT count(*) FROM {staged}"))
    file_param = [source_file]
    con.execute(
        f"""INSERT OR IGNORE INTO quarantine
            SELECT ?, source_line, error_field, error_reason, excerpt
            FROM {staged} WHERE error_reason IS NOT NULL""",
        file_param,
    )
    counts.quarantined = _count(
        con, f"SELECT count(*) FROM {staged} WHERE error_reason IS NOT NULL"
    )

    # Ids: the log's own, else a hash of the record; a repeat of either is a duplicate, counted.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _good AS
            SELECT *, coalesce(logged_id, 'h:' || raw_hash) AS request_id,
                   md5(system_text) AS _sys_h, md5(tools_text) AS _tools_h,
                   md5(response_text) AS _resp_h
            FROM {staged} WHERE error_reason IS NULL
            QUALIFY row_number() OVER (PARTITION BY coalesce(logged_id, 'h:' || raw_hash)
                                       ORDER BY source_line) = 1"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _new AS
           SELECT g.* FROM _good g ANTI JOIN requests r USING (request_id)"""
    )
    counts.ingested = _count(con, "SELECT count(*) FROM _new")
    counts.duplicates = counts.rows - counts.quarantined - counts.ingested

    # The ordered prompt: tools, then a top-level system prompt, then the messages.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _msgs AS
           WITH parts AS (
             SELECT request_id, -2 AS pos, 'tools' AS role, tools_text AS text FROM _new
               WHERE tools_text IS NOT NULL
             UNION ALL
             SELECT request_id, -1, 'system', system_text FROM _new WHERE system_text IS NOT NULL
             UNION ALL
             SELECT request_id, u.i - 1, u.m.role, u.m.text
             FROM _new, unnest(msgs) WITH ORDINALITY AS u(m, i)
           )
           SELECT request_id,
                  (row_number() OVER (PARTITION BY request_id ORDER BY pos) - 1)::INTEGER
                    AS position,
                  coalesce(role, 'user') AS role, text, md5(text) AS text_hash
           FROM parts"""
    )
    con.execute(
        """INSERT OR IGNORE INTO texts (text_hash, text)
           SELECT text_hash, any_value(text) FROM (
             SELECT text_hash, text FROM _msgs
             UNION ALL SELECT _resp_h, response_text FROM _new WHERE response_text IS NOT NULL
           ) GROUP BY text_hash"""
    )
    con.execute(
        "INSERT OR IGNORE INTO messages SELECT request_id, position, role, text_hash FROM _msgs"
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _prompt AS
           SELECT request_id,
                  md5(string_agg(text_hash, ',' ORDER BY position)) AS prompt_hash,
                  count(*) FILTER (WHERE role NOT IN ('tools', 'system', 'developer'))
                    AS message_count,
                  arg_min(text_hash, position) FILTER (WHERE role IN ('system', 'developer'))
                    AS first_system
           FROM _msgs GROUP BY request_id"""
    )
    derived = {
        "prompt_hash": "p.prompt_hash",
        "system_hash": "coalesce(n._sys_h, p.first_system)",
        "response_hash": "n._resp_h",
        "message_count": "p.message_count::INTEGER",
        "token_source": "CASE WHEN n.has_usage THEN 'logged' END",
        "model_key": "NULL",
        "model_resolution": "NULL",
        "source_format": "?",
        "source_file": "?",
    }
    select = ", ".join(derived.get(col, f"n.{col}") + f" AS {col}" for col in CANONICAL_COLUMNS)
    con.execute(
        f"""INSERT OR IGNORE INTO requests
            SELECT {select} FROM _new n LEFT JOIN _prompt p USING (request_id)""",
        [source_format, source_file],
    )
    for table in ("_good", "_new", "_msgs", "_prompt"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return counts
