"""Loading staged rows into the store: quarantine, request ids, de-duplication, texts, messages.

Every format module produces the same staged columns (see envelope.lines_sql); this module is
the one place that decides what is kept, what is quarantined and what was already there.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from advisor.store import CANONICAL_COLUMNS, scalar, text_hash_sql


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


# Prompt parts a request can have in the texts' occurrence numbers (see load_staged): DuckDB
# strings end at 4 GB, which holds fewer than 2^28 messages of 29 bytes or more; lines up to 2^35.
_SLOTS = 1 << 28


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(scalar(con, sql) or 0)


# A staged row's prompt as one list: tools, then a top-level system prompt, then messages.
_PARTS = """list_concat(
    CASE WHEN tools_hash IS NOT NULL
         THEN [{'role': 'tools', 'hash': tools_hash, 'text': tools_text}] ELSE [] END,
    CASE WHEN system_hash IS NOT NULL
         THEN [{'role': 'system', 'hash': system_hash, 'text': system_text}] ELSE [] END,
    list_transform(coalesce(msgs, []),
                   lambda m: {'role': coalesce(m.role, 'user'), 'hash': m.hash, 'text': m.text}))"""


# A staged row's request id: the log's own, else a hash of the record.
REQUEST_ID = "coalesce(logged_id, 'h:' || raw_hash)"


def prompt_parts_sql(staged: str) -> str:
    """The ordered prompt of each staged row as (source_line, request_id, position, role, text,
    text_hash). A NULL text with a hash is one the store already holds (see envelope.file_sql)."""
    # Unnest in the select list: a lateral unnest (FROM s, unnest(...)) is ~30x slower here.
    return f"""
        SELECT source_line, request_id, (i - 1)::INTEGER AS position, p.role AS role,
               p.text AS text, p.hash AS text_hash
        FROM (SELECT source_line, request_id, unnest(parts) AS p,
                     generate_subscripts(parts, 1) AS i
              FROM (SELECT source_line, {REQUEST_ID} AS request_id, {_PARTS} AS parts
                    FROM {staged} WHERE error_reason IS NULL))"""


# Columns of a request derived from its prompt, per row from the staged columns (the same as
# over the prompt parts of prompt_parts_sql, without building them): NULL without any part.
_HAS_PARTS = "(n.tools_hash IS NOT NULL OR n.system_hash IS NOT NULL OR len(n.msgs) > 0)"
_PROMPT_COLUMNS = {
    "prompt_hash": text_hash_sql(
        f"CASE WHEN {_HAS_PARTS} THEN concat_ws(',', n.tools_hash, n.system_hash, "
        "nullif(array_to_string(list_transform(n.msgs, lambda m: m.hash), ','), '')) END"
    ),
    "system_hash": "coalesce(n.system_hash, "
    "list_filter(n.msgs, lambda m: m.role IN ('system', 'developer'))[1].hash)",
    "message_count": f"CASE WHEN {_HAS_PARTS} THEN len(list_filter(coalesce(n.msgs, []), "
    "lambda m: coalesce(m.role, 'user') NOT IN ('tools', 'system', 'developer'))) END::INTEGER",
}


def quarantine_the_rest(con: duckdb.DuckDBPyConnection, source: str, last: int) -> LoadCounts:
    """One quarantine row for what a damaged gzip stream hides, on the line after `last`, the
    last one read (the run goes on, and the summary counts it; a re-ingest adds nothing)."""
    reason = f"gzip stream ends early (truncated or corrupt file): nothing after line {last}"
    return quarantine_line(con, source, last + 1, reason)


def quarantine_line(
    con: duckdb.DuckDBPyConnection, source: str, line: int, reason: str
) -> LoadCounts:
    """One quarantine row for a problem that is not a row's: a damaged stream, a file that
    cannot be read at all. Once per file and line, however often the file is ingested."""
    con.execute(
        """INSERT INTO quarantine SELECT $file, $line, NULL, $reason, NULL
           WHERE NOT EXISTS (SELECT 1 FROM quarantine WHERE source_file = $file
                             AND source_line = $line)""",
        {"file": source, "line": line, "reason": reason},
    )
    return LoadCounts(rows=1, quarantined=1)


def load_staged(
    con: duckdb.DuckDBPyConnection, staged: str, source_file: str, source_format: str
) -> LoadCounts:
    """Move one staged chunk into the store; return what happened to its rows.

    Quarantined and duplicate rows are deleted from the chunk, which then holds exactly the
    rows stored; the texts are read from it once, into the texts table.
    """
    counts = LoadCounts(rows=_count(con, f"SELECT count(*) FROM {staged}"))
    counts.quarantined = _count(
        con, f"SELECT count(*) FROM {staged} WHERE error_reason IS NOT NULL"
    )
    con.execute(
        f"""INSERT INTO quarantine
            SELECT $file, s.source_line, s.error_field, s.error_reason, s.excerpt
            FROM {staged} s
            WHERE s.error_reason IS NOT NULL AND s.source_line NOT IN
              (SELECT source_line FROM quarantine WHERE source_file = $file)""",
        {"file": source_file},
    )
    # A repeat of a request id, in the chunk or in the store, is a duplicate: counted, then
    # dropped from the chunk with the quarantined rows. What stays is stored as it is: inserts
    # with no join, which keep the chunk's order without a sort.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _repeats AS
            SELECT source_line FROM {staged} WHERE error_reason IS NULL
            QUALIFY row_number() OVER (PARTITION BY {REQUEST_ID} ORDER BY source_line) > 1
                 OR {REQUEST_ID} IN (SELECT request_id FROM requests)"""
    )
    counts.duplicates = _count(con, "SELECT count(*) FROM _repeats")
    counts.ingested = counts.rows - counts.quarantined - counts.duplicates
    con.execute(
        f"""DELETE FROM {staged} WHERE error_reason IS NOT NULL
            OR source_line IN (SELECT source_line FROM _repeats)"""
    )

    # The kept rows' texts, each once. The first occurrence of each new hash is found without
    # the texts, then only those are read: an aggregate holding every text would double the
    # memory of a big ingest. An occurrence is one integer, line * 2^28 + slot (0 the response,
    # 1 + position a prompt part): a plain integer key aggregates and joins faster than a struct.
    slots = f"""
        SELECT source_line * {_SLOTS} + position + 1 AS slot, text_hash, text
        FROM ({prompt_parts_sql(staged)}) WHERE text IS NOT NULL
        UNION ALL
        SELECT source_line * {_SLOTS}, response_hash, response_text FROM {staged}
        WHERE response_text IS NOT NULL"""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _first AS
            SELECT min(slot) AS slot FROM ({slots}) s ANTI JOIN texts USING (text_hash)
            GROUP BY text_hash"""
    )
    con.execute(
        f"""INSERT INTO texts
            SELECT u.text_hash, u.text FROM ({slots}) u SEMI JOIN _first USING (slot)"""
    )
    con.execute(
        f"""INSERT INTO messages SELECT request_id, position, role, text_hash
            FROM ({prompt_parts_sql(staged)})"""
    )
    derived = {
        "request_id": REQUEST_ID,
        **_PROMPT_COLUMNS,
        "token_source": "CASE WHEN n.has_usage THEN 'logged' END",
        "model_key": "NULL",
        "model_resolution": "NULL",
        "source_format": "$format",
        "source_file": "$file",
    }
    select = ", ".join(derived.get(col, f"n.{col}") + f" AS {col}" for col in CANONICAL_COLUMNS)
    con.execute(
        f"""INSERT INTO requests
            SELECT {select}
            FROM {staged} n""",
        {"format": source_format, "file": source_file},
    )
    for table in ("_repeats", "_first"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return counts
