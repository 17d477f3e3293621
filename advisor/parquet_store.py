"""A store as day-partitioned Parquet files, for large and growing logs (`--store DIR`).

Layout (one folder per canonical table, each ingest adding files and never rewriting one):

    DIR/requests/day=YYYY-MM-DD/part-<batch>-<i>.parquet   the request table, by day of `ts`
    DIR/messages/day=YYYY-MM-DD/part-<batch>-<i>.parquet   each request's prompt, by its day
    DIR/texts/part-<batch>-<i>.parquet                     every distinct text once
    DIR/quarantine/part-<batch>-<i>.parquet                rows that could not be read
    DIR/store.json                                         layout version and text-hash build

An ingest reads the logs with the ordinary ingest (every check, quarantine and de-duplication)
into a scratch DuckDB file, drops what the folder already holds (request ids, text hashes,
quarantined lines), and writes the rest as new files: the folder grows by the new data only and
re-ingesting a file adds nothing. Files are written into a staging folder and moved into place
texts first, requests last, so a reader never sees a request without its prompt. A crash while
moving leaves a `.pending-<batch>` marker; the next ingest then also drops messages already
present, and completes the batch exactly.

`advisor analyze --store DIR` reads the folder in place: messages and texts (nearly all of its
bytes) are views over the Parquet files; the request table is copied into the run's own store,
because pricing writes to it (model keys, token counts), and so is the small quarantine table,
which every store connection may alter. Any engine that reads Parquet with hive partitions
(DuckDB on object storage, Spark, Trino) runs the same SQL over the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import duckdb

from advisor import store
from advisor.errors import AdvisorError
from advisor.ingest import IngestReport
from advisor.ingest import ingest as ingest_logs
from advisor.ingest.jsonl import Progress

LAYOUT_VERSION = 1
MANIFEST = "store.json"
# table -> partitioned by day (the day of the request's ts; "undated" without one)
TABLES = {"texts": False, "messages": True, "requests": True, "quarantine": False}
_UNDATED = "undated"
_COPIED = ("requests", "quarantine")


def _pattern(table: str) -> str:
    return f"{table}/day=*/*.parquet" if TABLES[table] else f"{table}/*.parquet"


def files_glob(directory: Path, table: str) -> str:
    """The glob of a table's files (what another engine would read)."""
    return str(directory / _pattern(table))


def _has_files(directory: Path, table: str) -> bool:
    return any(directory.glob(_pattern(table)))


def read_sql(directory: Path, table: str) -> str:
    """SQL reading a table in place (the partition column left out, so the columns are the
    canonical table's)."""
    glob = files_glob(directory, table).replace("'", "''")
    if TABLES[table]:
        return f"SELECT * EXCLUDE (day) FROM read_parquet('{glob}', hive_partitioning = true)"
    return f"SELECT * FROM read_parquet('{glob}')"


def _check_manifest(directory: Path, *, create: bool) -> None:
    """Refuse a folder written by another layout or DuckDB build (text hashes differ)."""
    here = {"layout": LAYOUT_VERSION, "text_hash": store.HASH_BUILD}
    path = directory / MANIFEST
    if not path.exists():
        if not create:
            raise AdvisorError(
                f"{directory}: not an advisor store (no {MANIFEST})",
                hint="create one with `advisor ingest LOGS --store DIR`",
            )
        path.write_text(json.dumps(here, indent=2) + "\n", encoding="utf-8")
        return
    found = json.loads(path.read_text(encoding="utf-8"))
    if found != here:
        raise AdvisorError(
            f"{directory}: written with {found}, this advisor writes {here}",
            hint="re-ingest the logs into a new folder (text hashes differ between builds)",
        )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AdvisorError(
                f"{directory}: another advisor process is writing to this store",
                hint="wait for it to finish",
            ) from None
        yield


def add(
    directory: Path,
    logs: Sequence[str],
    *,
    fmt: str = "auto",
    mapping: Mapping[str, str] | None = None,
    model: str | None = None,
    progress: Progress | None = None,
    memory: str | None = None,
) -> IngestReport:
    """Add logs to a partitioned store (created if needed); re-ingesting a file adds nothing.
    The report counts as duplicates the rows the folder already held."""
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):  # the manifest too: two first ingests must not both write it
        _check_manifest(directory, create=True)
        for leftover in directory.glob(".staging-*"):  # of a crashed ingest: moved or redone
            shutil.rmtree(leftover)
        batch = uuid.uuid4().hex[:12]
        scratch = directory / f".ingest-{batch}.duckdb"
        con = store.connect(scratch, memory=memory)
        try:
            report = ingest_logs(con, logs, fmt=fmt, mapping=mapping, model=model,
                                 progress=progress)  # fmt: skip
            _drop_present(con, directory, report)
            _write(con, directory, batch)
        finally:
            con.close()
            for leftover in (scratch, Path(f"{scratch}.wal"), Path(f"{scratch}.tmp")):
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink(missing_ok=True)
    return report


def _drop_present(con: duckdb.DuckDBPyConnection, directory: Path, report: IngestReport) -> None:
    """Delete from the scratch store what the folder holds already, counting those rows in the
    report as duplicates, as a re-ingest into a store file does."""
    if _has_files(directory, "requests"):
        _drop(
            con,
            report,
            "requests",
            "ingested",
            f"""request_id IN
              (SELECT request_id FROM ({read_sql(directory, "requests")}))""",
        )
    if _has_files(directory, "quarantine"):
        _drop(
            con,
            report,
            "quarantine",
            "quarantined",
            f"""EXISTS (
              SELECT 1 FROM ({read_sql(directory, "quarantine")}) p
              WHERE p.source_file = quarantine.source_file
                AND p.source_line = quarantine.source_line
                AND p.content_hash IS NOT DISTINCT FROM quarantine.content_hash)""",
        )
    con.execute("DELETE FROM messages WHERE request_id NOT IN (SELECT request_id FROM requests)")
    if any(directory.glob(".pending-*")) and _has_files(directory, "messages"):
        # a batch interrupted while its files were moved: its messages may be in place already
        con.execute(
            f"""DELETE FROM messages WHERE (request_id, position) IN
                (SELECT (request_id, position) FROM ({read_sql(directory, "messages")})
                 WHERE request_id IN (SELECT request_id FROM requests))"""
        )
    if _has_files(directory, "texts"):
        con.execute(
            f"""DELETE FROM texts WHERE text_hash IN
                (SELECT text_hash FROM ({read_sql(directory, "texts")}))"""
        )


def _drop(
    con: duckdb.DuckDBPyConnection, report: IngestReport, table: str, counted: str, where: str
) -> None:
    """Delete a table's rows matching `where`, moving them from `counted` to duplicates."""
    by_file = dict(
        con.execute(
            f"SELECT source_file, count(*) FROM {table} WHERE {where} GROUP BY ALL"
        ).fetchall()
    )
    for file_report in report.files:
        n = int(by_file.get(file_report.path, 0))
        setattr(file_report.counts, counted, getattr(file_report.counts, counted) - n)
        file_report.counts.duplicates += n
    con.execute(f"DELETE FROM {table} WHERE {where}")


def _write(con: duckdb.DuckDBPyConnection, directory: Path, batch: str) -> None:
    """Write the scratch store's rows as new files of the folder (see the module docstring)."""
    staging = directory / f".staging-{batch}"
    day = f"coalesce(strftime(ts, '%Y-%m-%d'), '{_UNDATED}')"
    queries = {
        "texts": "SELECT * FROM texts",
        "messages": f"""SELECT m.*, {day} AS day FROM messages m
                        JOIN (SELECT request_id, ts FROM requests) USING (request_id)""",
        "requests": f"SELECT *, {day} AS day FROM requests",
        "quarantine": "SELECT * FROM quarantine",
    }
    written = []
    for table, sql in queries.items():
        if not store.scalar(con, f"SELECT count(*) FROM ({sql})"):
            continue
        (staging / table).mkdir(parents=True)
        if TABLES[table]:
            target = staging / table
            options = f", PARTITION_BY (day), FILENAME_PATTERN 'part-{batch}-{{i}}'"
        else:
            target, options = staging / table / f"part-{batch}-0.parquet", ""
        quoted = str(target).replace("'", "''")
        con.execute(f"COPY ({sql}) TO '{quoted}' (FORMAT parquet, COMPRESSION zstd{options})")
        written.append(table)
    if not written:
        return
    pending = directory / f".pending-{batch}"
    pending.touch()
    for table in TABLES:  # texts first, requests last: a visible request has its prompt
        if table in written:
            for part in sorted((staging / table).rglob("*.parquet")):
                target = directory / part.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(part, target)
    shutil.rmtree(staging)
    for marker in directory.glob(".pending-*"):  # this batch completes any earlier one
        marker.unlink()


def attach(
    con: duckdb.DuckDBPyConnection, directory: Path, copied: Sequence[str] = _COPIED
) -> None:
    """Load a fresh analysis store from a partitioned store: requests and quarantine copied,
    messages and texts as views over the files, read in place (see the module docstring)."""
    directory = directory.resolve()  # the views outlive this working directory
    _check_manifest(directory, create=False)
    if any(directory.glob(".pending-*")):
        raise AdvisorError(
            f"{directory}: an ingest was interrupted while writing its files",
            hint="re-run the same `advisor ingest ... --store` to complete it",
        )
    for table in TABLES:
        if not _has_files(directory, table):
            continue  # the empty table store.connect made stands in
        if table in copied:
            con.execute(f"INSERT INTO {table} BY NAME {read_sql(directory, table)}")
        else:
            con.execute(f"DROP TABLE {table}")
            con.execute(f"CREATE VIEW {table} AS {read_sql(directory, table)}")
