"""JSON-lines logs into the store: DuckDB's parallel reader for the bulk, line by line for the rest.

The fast path reads the whole file with one `read_json` query into a staging table whose row
order is the file's, so a row's ordinal among non-blank lines, mapped through a newline index
(files.LineIndex), is its line number. Lines the reader cannot read, lines that fail a check and
blank lines are then read again from their raw bytes by `envelope.lines_sql`, which names the
reason and keeps an excerpt. Where the fast path cannot be sure of its numbering it falls back
to the line-exact path (numbered blocks of raw lines through json_transform) for the file.
Small files go through that path too, many at once (ingest_jsonl_files): their raw lines are
exact and few, and one query for them all beats one plan per file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from advisor.ingest import envelope
from advisor.ingest.files import LineIndex, lines_table, read_line_blocks
from advisor.ingest.load import (
    LoadCounts,
    load_staged,
    load_staged_files,
    prompt_parts_sql,
    quarantine_the_rest,
)
from advisor.store import drop_temp_tables, scalar, transaction

Progress = Callable[[str, int], None]  # (file, lines done so far in that file)

# The pilot: lines sampled across the file name the long texts that repeat (system prompts,
# tool definitions). They are stored once up front and left out of the staged rows, which
# would otherwise carry the same prompt through every row: gigabytes on a big log.
_PILOT_LINES = 2000
_PILOT_TEXTS = 128
_PILOT_MIN_BYTES = 1024
_AGAIN_LINES = 20_000  # bad or blank lines re-read per chunk
_ORDERED_PLAN = "Batch Create Table As"  # DuckDB's insert that keeps the scan's order


def ingest_jsonl(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    model: str | None,
    progress: Progress | None,
) -> LoadCounts:
    """One JSON-lines file into the store; every line ends up stored, duplicate or quarantined.
    The file's writes are one transaction: a crash leaves the store as it was before the file."""
    if path.stat().st_size == 0:
        return LoadCounts()
    convention = fmt if fmt in ("openai", "anthropic") else "auto"
    index = LineIndex(path)
    if progress is not None:
        progress(str(path), index.lines)  # known up front; the spinner runs while DuckDB reads
    known = _pilot_texts(con, index, convention, model)
    # DuckDB's reader fails on a gzip stream that ends early; the line-exact path reads up to it
    staged = not index.truncated and _stage_parallel(con, index, convention, model, known)
    with transaction(con):
        if known:
            con.execute("INSERT INTO texts SELECT * FROM _hot ANTI JOIN texts USING (text_hash)")
        if staged:
            counts = load_staged(con, "_staged", str(path), fmt)
        else:
            counts = _ingest_lines(con, path, fmt, convention, model, progress)
        if index.truncated:
            counts.add(quarantine_the_rest(con, str(path), index.lines))
        _drop_unused_texts(con, known)
    drop_temp_tables(con, "_staged", "_hot")
    return counts


def ingest_jsonl_files(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    fmt: str,
    model: str | None,
    progress: Progress | None,
) -> list[LoadCounts]:
    """Small JSON-lines files as one batch, in one transaction: one staging query and one load
    for them all, instead of a query plan and anti-joins against the whole store per file (which
    made a folder of a thousand one-line files take minutes). Rows keep their file and line;
    each row's key is its ordinal in the batch, which orders duplicates as files one by one."""
    convention = fmt if fmt in ("openai", "anthropic") else "auto"
    tables = []
    counts: dict[str, LoadCounts] = {}
    key = 0
    for path in paths:
        lines = 0
        for block in read_line_blocks(path):
            rows = block.num_rows
            file_line = block.column("line")
            block = block.set_column(0, "line", pa.array(np.arange(key, key + rows)))
            block = block.append_column("file_line", file_line)
            tables.append(block.append_column("file", pa.array([str(path)] * rows)))
            key, lines = key + rows, lines + rows
        if progress is not None:
            progress(str(path), lines)
    if tables:
        con.register("_raw_lines", pa.concat_tables(tables))
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _staged AS
                SELECT s.* REPLACE (r.file_line AS source_line), r.file AS source_file,
                       s.source_line AS row_key
                FROM ({envelope.lines_sql("_raw_lines", convention, model)}) s
                JOIN _raw_lines r ON r.line = s.source_line"""
        )
        con.unregister("_raw_lines")
        with transaction(con):
            counts = load_staged_files(con, "_staged", fmt)
        drop_temp_tables(con, "_staged")
    return [counts.get(str(path), LoadCounts()) for path in paths]


def _stage_parallel(
    con: duckdb.DuckDBPyConnection,
    index: LineIndex,
    convention: str,
    model: str | None,
    known: list[int],
) -> bool:
    """The fast path, into `_staged`; False where it cannot be sure of its line numbers."""
    if index.longest_line > envelope.MAX_LINE_BYTES:
        return False
    create = "CREATE OR REPLACE TEMP TABLE _staged AS " + envelope.file_sql(
        str(index.path), convention, model, envelope.object_size(index.longest_line)
    )
    params = {"known": known}
    # Rows are numbered by their order in the table, so only a plan that keeps the scan's order
    # (DuckDB's batch insert) will do. DuckDB's in_clause optimizer turns a long constant list
    # into a join, which loses that order: it is off for this query.
    con.execute("SET disabled_optimizers = 'in_clause'")
    try:
        plan = str(con.execute("EXPLAIN " + create, params).fetchall())
        if _ORDERED_PLAN not in plan:
            return False
        con.execute(create, params)
    except duckdb.InvalidInputException as error:
        if "maximum_object_size" not in str(error):
            raise
        return False  # a line longer than the reader expected
    finally:
        con.execute("RESET disabled_optimizers")
    if scalar(con, "SELECT count(*) FROM _staged") != index.filled_lines:
        con.execute("DROP TABLE _staged")  # DuckDB split the file other than at its newlines
        return False
    _number_rows(con, index)
    bad = [r[0] for r in con.execute(
        "SELECT source_line FROM _staged WHERE error_reason IS NOT NULL ORDER BY 1"
    ).fetchall()]  # fmt: skip
    con.execute("DELETE FROM _staged WHERE error_reason IS NOT NULL")
    again = np.union1d(np.asarray(bad, dtype=np.int64), index.blank_lines).tolist()
    sql = envelope.lines_sql("_raw_lines", convention, model)
    for start in range(0, len(again), _AGAIN_LINES):  # in chunks: a file may be all bad lines
        numbers = again[start : start + _AGAIN_LINES]
        con.register("_raw_lines", lines_table(numbers, index.read_lines(numbers)))
        con.execute("INSERT INTO _staged " + sql)
        con.unregister("_raw_lines")
    return True


def _number_rows(con: duckdb.DuckDBPyConnection, index: LineIndex) -> None:
    """Staged rows get their line numbers: rowid is the ordinal among non-blank lines."""
    if index.filled_lines == index.lines:
        con.execute("UPDATE _staged SET source_line = rowid + 1")
        return
    ordinals = np.arange(1, index.filled_lines + 1, dtype=np.int64)
    con.register("_line_map", pa.table({"ordinal": ordinals, "line": index.line_numbers(ordinals)}))
    con.execute(
        """UPDATE _staged SET source_line = m.line FROM _line_map m
           WHERE _staged.rowid + 1 = m.ordinal"""
    )
    con.unregister("_line_map")


def _pilot_lines(index: LineIndex) -> list[int]:
    """Line numbers spread evenly over the file (a gzip file: its first lines, read once)."""
    filled = np.flatnonzero(~index.blank) + 1
    count = min(len(filled), _PILOT_LINES)
    if index.compressed:
        return filled[:count].tolist()
    return np.unique(filled[np.linspace(0, len(filled) - 1, count).astype(np.int64)]).tolist()


def _pilot_texts(
    con: duckdb.DuckDBPyConnection, index: LineIndex, convention: str, model: str | None
) -> list[int]:
    """The long texts that repeat in a sample of the file, into `_hot` (stored with the file's
    rows); return their hash() values."""
    numbers = _pilot_lines(index)
    if not numbers:
        return []
    con.register("_pilot_lines", lines_table(numbers, index.read_lines(numbers)))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _pilot AS "
        + envelope.lines_sql("_pilot_lines", convention, model)
    )
    con.unregister("_pilot_lines")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _hot AS
            SELECT text_hash, any_value(text) AS text
            FROM ({prompt_parts_sql("_pilot")})
            WHERE length(text) >= {_PILOT_MIN_BYTES}
            GROUP BY text_hash HAVING count(*) > 1
            ORDER BY sum(length(text)) DESC, text_hash LIMIT {_PILOT_TEXTS}"""
    )
    known = [int(r[0], 16) for r in con.execute("SELECT text_hash FROM _hot").fetchall()]
    con.execute("DROP TABLE _pilot")
    return known


def _drop_unused_texts(con: duckdb.DuckDBPyConnection, known: list[int]) -> None:
    """Seeded texts that no stored row uses (their rows were all quarantined or duplicates)."""
    if not known:
        return
    con.execute(
        """DELETE FROM texts WHERE list_contains($hashes, text_hash)
           AND text_hash NOT IN (SELECT text_hash FROM messages)
           AND text_hash NOT IN (SELECT response_hash FROM requests
                                 WHERE response_hash IS NOT NULL)""",
        {"hashes": [f"{h:016x}" for h in known]},
    )


def _ingest_lines(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    convention: str,
    model: str | None,
    progress: Progress | None,
) -> LoadCounts:
    """The line-exact path: numbered blocks of raw lines, each parsed by json_transform."""
    counts = LoadCounts()
    sql = envelope.lines_sql("_raw_lines", convention, model)
    source = str(path)
    for block in read_line_blocks(path):
        con.register("_raw_lines", block)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _staged AS {sql}")
        con.unregister("_raw_lines")
        counts.add(load_staged(con, "_staged", source, fmt))
        if progress is not None:
            progress(source, counts.rows)
    return counts
