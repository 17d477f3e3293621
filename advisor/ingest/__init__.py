"""Ingest: detect each file's format, parse it, and load the store.

Formats: `jsonl` (advisor's envelope, OpenAI, Anthropic or Gemini bodies detected per line;
read by DuckDB's parallel JSON reader, see ingest.jsonl), `openai` and `anthropic` (the same,
forcing that provider's token convention), `csv` and `parquet` (generic tables with `--map`),
and the source formats of READERS: the exports of LiteLLM, Langfuse and Helicone
(ingest.exports), OpenTelemetry GenAI spans and OpenAI Batch files, told apart by their keys
(ingest.detect).
Bad rows are quarantined with file, line, field and reason; re-ingesting a file adds nothing
(request ids are stable). Each file's writes are one transaction, so a crash leaves no part of
it stored; runs of small JSON-lines files are read and written as one batch.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import duckdb

from advisor.errors import InputError, UnreadableFile
from advisor.ingest import detect, exports, openai_batch, otel, tabular
from advisor.ingest.files import check_readable, expand_paths, head_bytes, is_gzip
from advisor.ingest.jsonl import Progress, ingest_jsonl, ingest_jsonl_files
from advisor.ingest.load import LoadCounts, quarantine_line

# source formats with their own reader: format -> reader
READERS = {
    otel.FORMAT: otel.ingest_file,
    openai_batch.FORMAT: openai_batch.ingest_file,
}
FORMATS = ("auto", "jsonl", "openai", "anthropic", "csv", "parquet", *exports.FORMATS, *READERS)
_JSONL = ("jsonl", "openai", "anthropic")  # the formats of ingest.jsonl


@dataclass
class FileReport:
    path: str
    format: str
    counts: LoadCounts


@dataclass
class IngestReport:
    files: list[FileReport] = field(default_factory=list)

    @property
    def totals(self) -> LoadCounts:
        total = LoadCounts()
        for report in self.files:
            total.add(report.counts)
        return total


def detect_format(path: Path) -> str:
    """The format of one file, from its name and first bytes (a tool's export: the keys of its
    first record)."""
    kind = _detect_kind(path)  # a JSON file's format is told by ingest.detect already
    return (exports.detect(path, kind) or kind) if kind == "csv" else kind


def _detect_kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    head = head_bytes(path)
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return detect.sniff(str(path), head)
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.lstrip()
    if not text:
        return "jsonl"
    if text[:1] in (b"{", b"["):
        return detect.sniff(str(path), head)
    first = text.split(b"\n", 1)[0]
    if b"," in first and not first.startswith(b"{"):
        return "csv"
    return "jsonl"


def _ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    mapping: Mapping[str, str],
    model: str | None,
    progress: Progress | None,
) -> tuple[str, LoadCounts]:
    """One file's format and counts; a file that cannot be read at all is one quarantine row."""
    try:
        check_readable(path)
        fmt = detect_format(path) if fmt == "auto" else fmt
        if fmt in exports.FORMATS:
            return fmt, exports.ingest_export(con, path, fmt)
        if fmt in READERS:
            return fmt, READERS[fmt](con, path, model, progress)
        if fmt not in ("csv", "parquet"):
            return fmt, ingest_jsonl(con, path, fmt, model, progress)
        if path.stat().st_size == 0:
            return fmt, LoadCounts()
        return fmt, tabular.ingest_table(con, path, fmt, mapping, model)
    except UnreadableFile as error:  # among good files: the others still count
        fmt = "unknown" if fmt == "auto" else fmt  # matching no format is one of the reasons
        return fmt, quarantine_line(con, str(path), 1, error.reason)


# Plain JSON-lines files up to this size are read in batches of up to _BATCH_BYTES (see
# jsonl.ingest_jsonl_files); bigger ones, one by one through DuckDB's parallel reader.
_SMALL_FILE = 1 << 20
_BATCH_BYTES = 64 << 20


def _small_jsonl(path: Path, fmt: str) -> int | None:
    """The size of a small plain JSON-lines file that can join a batch; None for any other file
    (read on its own, where one that cannot be read is quarantined)."""
    try:
        check_readable(path)
        file_fmt = detect_format(path) if fmt == "auto" else fmt
        size = path.stat().st_size
        small = path.is_file() and file_fmt in _JSONL and size <= _SMALL_FILE
        return size if small and not is_gzip(path) else None
    except (UnreadableFile, OSError):
        return None


def _batches(paths: Sequence[Path], fmt: str) -> Iterator[list[Path]]:
    """Files in order: runs of small plain JSON-lines files together, any other file alone."""
    run: list[Path] = []
    run_bytes = 0
    for path in paths:
        size = _small_jsonl(path, fmt)
        if run and (size is None or run_bytes + size > _BATCH_BYTES):
            yield run
            run, run_bytes = [], 0
        if size is None:
            yield [path]
        else:
            run.append(path)
            run_bytes += size
    if run:
        yield run


def ingest(
    con: duckdb.DuckDBPyConnection,
    patterns: Sequence[str],
    *,
    fmt: str = "auto",
    mapping: Mapping[str, str] | None = None,
    model: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest log files into an open store; safe to repeat (nothing is counted twice)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", hint="formats: " + ", ".join(FORMATS))
    report = IngestReport()
    con = _with_kill_switch(con)
    # One checkpoint at the end instead of one per 16 MB of write-ahead log.
    con.execute("SET checkpoint_threshold = '1GB'")
    try:
        batch_fmt = "jsonl" if fmt == "auto" else fmt  # detect_format's, for a small file
        for paths in _batches(expand_paths(patterns), fmt):
            if len(paths) > 1:
                counts = ingest_jsonl_files(con, paths, batch_fmt, model, progress)
                report.files += [
                    FileReport(str(p), batch_fmt, c) for p, c in zip(paths, counts, strict=True)
                ]
            else:
                file_fmt, one = _ingest_file(con, paths[0], fmt, mapping or {}, model, progress)
                report.files.append(FileReport(str(paths[0]), file_fmt, one))
        con.execute("CHECKPOINT")
    finally:
        con.execute("RESET checkpoint_threshold")
    return report


# Test hook: crash the process (SIGKILL, as the OOM killer or a power cut would) after the n-th
# statement of an ingest that writes to the store, to check that every boundary between writes
# leaves a store that a re-ingest completes exactly (tests/test_ingest_crash.py).
KILL_AFTER_ENV = "ADVISOR_TEST_KILL_AFTER"
# Writes to the store: working tables are temporary and named with a leading underscore.
_STORE_WRITE = re.compile(
    r"\s*(?:(?:INSERT(?: OR \w+)? INTO|DELETE FROM|UPDATE)\s+(?!_)|COMMIT|CHECKPOINT)", re.I
)


class _KillSwitch:
    """A connection that kills its own process after `after` writes (see KILL_AFTER_ENV)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, after: int) -> None:
        self._con = con
        self._left = after

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        result = self._con.execute(sql, *args, **kwargs)
        if _STORE_WRITE.match(sql):
            self._left -= 1
            if self._left <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _with_kill_switch(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    after = os.environ.get(KILL_AFTER_ENV)
    if not after:
        return con
    return cast(duckdb.DuckDBPyConnection, _KillSwitch(con, int(after)))
