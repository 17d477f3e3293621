"""Loading staged rows into the store: quarantine, request ids, de-duplication, texts, messages.

Every format module produces the same staged columns (see envelope.lines_sql); this module is
the one place that decides what is kept, what is quarantined and what was already there.
"""

from __future__ import annotations

import hashlib
import os
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


def _count(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object] | None = None
) -> int:
    return int(scalar(con, sql, params) or 0)


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


def prompt_parts_sql(staged: str, key: str = "source_line") -> str:
    """The ordered prompt of each staged row as (row_key, request_id, position, role, text,
    text_hash), `row_key` being the staged column `key`, unique per row. A NULL text with a hash
    is one the store already holds (see envelope.file_sql)."""
    # Unnest in the select list: a lateral unnest (FROM s, unnest(...)) is ~30x slower here.
    return f"""
        SELECT row_key, request_id, (i - 1)::INTEGER AS position, p.role AS role,
               p.text AS text, p.hash AS text_hash
        FROM (SELECT row_key, request_id, unnest(parts) AS p,
                     generate_subscripts(parts, 1) AS i
              FROM (SELECT {key} AS row_key, {REQUEST_ID} AS request_id, {_PARTS} AS parts
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


def _file_identity(source: str) -> str:
    """The content identity of a file with a fault of its own (see quarantine_line): its size
    and first MiB. The same damaged file under another name is the same fault."""
    digest = hashlib.md5()
    try:
        with open(source, "rb") as fh:
            digest.update(f"{os.fstat(fh.fileno()).st_size}:".encode())
            digest.update(fh.read(1 << 20))
    except OSError:  # unreadable: the name is all there is to go by
        digest.update(source.encode())
    return digest.hexdigest()


def quarantine_line(
    con: duckdb.DuckDBPyConnection, source: str, line: int, reason: str
) -> LoadCounts:
    """One quarantine row for a problem that is not a row's: a damaged stream, a file that
    cannot be read at all. Once per fault, however often (and under whatever names) the file
    is ingested."""
    identity = _file_identity(source)
    added = _count(
        con,
        """INSERT INTO quarantine SELECT $file, $line, NULL, $reason, NULL, $hash
           WHERE NOT EXISTS (SELECT 1 FROM quarantine WHERE content_hash = $hash
                             AND source_line = $line)""",
        {"file": source, "line": line, "reason": reason, "hash": identity},
    )
    return LoadCounts(rows=1, quarantined=added, duplicates=1 - added)


def load_staged(
    con: duckdb.DuckDBPyConnection, staged: str, source_file: str, source_format: str
) -> LoadCounts:
    """Move one staged chunk of one file into the store; return what happened to its rows."""
    by_file = _load(con, staged, "$file::VARCHAR", "source_line", source_file, source_format)
    return by_file.get(source_file, LoadCounts())


def load_staged_files(
    con: duckdb.DuckDBPyConnection, staged: str, source_format: str
) -> dict[str, LoadCounts]:
    """Move a staged batch of files into the store: its rows carry their `source_file`, and a
    `row_key` unique across the batch (lines are not). Return what happened, by file."""
    return _load(con, staged, "source_file", "row_key", None, source_format)


def _load(
    con: duckdb.DuckDBPyConnection,
    staged: str,
    file: str,
    key: str,
    source_file: str | None,
    source_format: str,
) -> dict[str, LoadCounts]:
    """Quarantined and duplicate rows are deleted from the chunk, which then holds exactly the
    rows stored; the texts are read from it once, into the texts table. `file` is the SQL of a
    row's file (`$file` when `source_file` is given), `key` the staged column unique per row.

    A bad row is identified by its content (`content_hash`) and its line: the same file again,
    whatever its name, adds nothing to the quarantine (its bad lines are duplicates), while
    bad lines alike at different places (blank lines, the `},` of a pretty-printed file) are
    each quarantined."""
    params = {} if source_file is None else {"file": source_file}
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _bad AS
            SELECT {file} AS source_file, source_line, error_field, error_reason, excerpt,
                   content_hash,
                   row_number() OVER (PARTITION BY content_hash, source_line ORDER BY {key}) > 1
                   OR EXISTS (SELECT 1 FROM quarantine q WHERE q.content_hash = s.content_hash
                              AND q.source_line = s.source_line) AS seen
            FROM {staged} s WHERE error_reason IS NOT NULL""",
        params,
    )
    con.execute(
        """INSERT INTO quarantine
           SELECT source_file, source_line, error_field, error_reason, excerpt, content_hash
           FROM _bad WHERE NOT seen ORDER BY source_file, source_line"""
    )
    # A repeat of a request id, in the chunk or in the store, is a duplicate: counted, then
    # dropped from the chunk with the quarantined rows. What stays is stored as it is: inserts
    # with no join, which keep the chunk's order without a sort.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _repeats AS
            SELECT {key} AS row_key, {file} AS source_file FROM {staged}
            WHERE error_reason IS NULL
            QUALIFY row_number() OVER (PARTITION BY {REQUEST_ID} ORDER BY {key}) > 1
                 OR {REQUEST_ID} IN (SELECT request_id FROM requests)""",
        params,
    )
    counts = {
        str(f): LoadCounts(rows=int(n), quarantined=int(q), duplicates=int(d) + int(seen))
        for f, n, q, seen, d in con.execute(
            f"""SELECT f, sum(n), sum(q), sum(seen), sum(d) FROM (
                  SELECT {file} AS f, count(*) AS n, 0 AS q, 0 AS seen, 0 AS d
                  FROM {staged} GROUP BY 1
                  UNION ALL SELECT source_file, 0, count(*) FILTER (NOT seen),
                                   count(*) FILTER (seen), 0 FROM _bad GROUP BY 1
                  UNION ALL SELECT source_file, 0, 0, 0, count(*) FROM _repeats GROUP BY 1)
                GROUP BY f""",
            params,
        ).fetchall()
    }
    for c in counts.values():
        c.ingested = c.rows - c.quarantined - c.duplicates
    con.execute(
        f"""DELETE FROM {staged} WHERE error_reason IS NOT NULL
            OR {key} IN (SELECT row_key FROM _repeats)"""
    )

    # The kept rows' texts, each once. The first occurrence of each new hash is found without
    # the texts, then only those are read: an aggregate holding every text would double the
    # memory of a big ingest. An occurrence is one integer, row * 2^28 + slot (0 the response,
    # 1 + position a prompt part): a plain integer key aggregates and joins faster than a struct.
    slots = f"""
        SELECT row_key * {_SLOTS} + position + 1 AS slot, text_hash, text
        FROM ({prompt_parts_sql(staged, key)}) WHERE text IS NOT NULL
        UNION ALL
        SELECT {key} * {_SLOTS}, response_hash, response_text FROM {staged}
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
            FROM ({prompt_parts_sql(staged, key)})"""
    )
    derived = {
        "request_id": REQUEST_ID,
        **_PROMPT_COLUMNS,
        "token_source": "CASE WHEN n.has_usage THEN 'logged' END",
        "model_key": "NULL",
        "model_resolution": "NULL",
        "source_format": "$format",
        "source_file": file if source_file is not None else "n.source_file",
    }
    select = ", ".join(derived.get(col, f"n.{col}") + f" AS {col}" for col in CANONICAL_COLUMNS)
    con.execute(
        f"""INSERT INTO requests
            SELECT {select}
            FROM {staged} n""",
        {"format": source_format, **params},
    )
    for table in ("_repeats", "_first", "_bad"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return counts
