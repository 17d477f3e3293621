"""Loading records that a source module has turned into advisor's envelope.

Formats whose files are not one request per line (OTLP span exports, OpenAI Batch files joined by
`custom_id`) are parsed in Python into `Record`s: one envelope object per request (the shape of
docs/logging-format.md), with the line of the source file it came from. They are then staged by
the envelope's own SQL (envelope.lines_sql), so that types, plausibility limits and provider
token conventions are checked in one place, and loaded like a batch of JSON-lines files (each
row keyed by its ordinal, as several requests can share a line). Quarantine reasons name the
source's own fields, and quote the source's text rather than the envelope built from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from advisor.errors import UnreadableFile
from advisor.ingest import envelope
from advisor.ingest.files import lines_table, open_binary
from advisor.ingest.load import LoadCounts, load_staged_files
from advisor.store import drop_temp_tables, transaction

_EXCERPT = 200
# A file's lines: (line number, text, parsed JSON value; None where the text is not JSON)
JsonLines = list[tuple[int, str, Any]]
INVALID_JSON = "invalid JSON (truncated or malformed line)"


@dataclass
class Record:
    """One request of a source file: `request` in the envelope (None where the source text is
    all there is), `text` the source's own text of it (quoted in the quarantine; its md5 is the
    identity of a bad record), `error` a (field, reason) that quarantines it whatever the
    envelope checks say, `reasoning_tokens` a count the envelope's usage objects cannot carry."""

    line: int
    text: str
    request: dict[str, Any] | None = None
    error: tuple[str, str] | None = None
    reasoning_tokens: int | None = None


def read_text(path: Path) -> str:
    """A whole file (gzip or plain) as text; a file that is not UTF-8 cannot be read."""
    with open_binary(path) as fh:
        data = fh.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableFile(str(path), f"not UTF-8 text (byte {error.start})") from None


def json_lines(text: str) -> JsonLines:
    """The non-blank lines of a text, each parsed as JSON."""
    out: JsonLines = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                out.append((number, line, json.loads(line)))
            except json.JSONDecodeError:
                out.append((number, line, None))
    return out


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_records(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    records: Sequence[Record],
    fmt: str,
    model: str | None,
    field_names: Mapping[str, str],
    progress: Callable[[str, int], None] | None = None,
) -> LoadCounts:
    """Stage and load one file's records in one transaction. `field_names` renames the
    envelope's fields in quarantine reasons to the source's (`response.usage.prompt_tokens` ->
    `gen_ai.usage.input_tokens`)."""
    if progress is not None:
        progress(str(path), len(records))
    if not records:
        return LoadCounts()
    keys = list(range(1, len(records) + 1))
    raws = [json.dumps(r.request if r.request is not None else {}).encode() for r in records]
    con.register("_raw_lines", lines_table(keys, raws))
    con.register(
        "_records",
        pa.table(
            {
                "key": pa.array(keys, pa.int64()),
                "file_line": pa.array([r.line for r in records], pa.int64()),
                "excerpt": [r.text[:_EXCERPT] for r in records],
                "content_hash": [hashlib.md5(r.text.encode()).hexdigest() for r in records],
                "forced_field": [r.error[0] if r.error else None for r in records],
                "forced_reason": [r.error[1] if r.error else None for r in records],
                "reasoning": pa.array([r.reasoning_tokens for r in records], pa.int64()),
            }
        ),
    )
    renamed = " ".join(
        f"WHEN {_sql_str(ours)} THEN {_sql_str(theirs)}" for ours, theirs in field_names.items()
    )
    field = f"CASE s.error_field {renamed} ELSE s.error_field END" if renamed else "s.error_field"
    bad = "(r.forced_reason IS NOT NULL OR s.error_reason IS NOT NULL)"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _staged AS
            SELECT s.* REPLACE (
                     r.file_line AS source_line,
                     CASE WHEN {bad} THEN r.excerpt END AS excerpt,
                     CASE WHEN {bad} THEN r.content_hash END AS content_hash,
                     CASE WHEN r.forced_reason IS NOT NULL THEN r.forced_field ELSE {field} END
                       AS error_field,
                     coalesce(r.forced_reason, s.error_reason) AS error_reason,
                     coalesce(r.reasoning, s.reasoning_tokens) AS reasoning_tokens),
                   $file AS source_file, s.source_line AS row_key
            FROM ({envelope.lines_sql("_raw_lines", "auto", model)}) s
            JOIN _records r ON r.key = s.source_line""",
        {"file": str(path)},
    )
    con.unregister("_raw_lines")
    con.unregister("_records")
    with transaction(con):
        counts = load_staged_files(con, "_staged", fmt)
    drop_temp_tables(con, "_staged")
    return counts.get(str(path), LoadCounts())
