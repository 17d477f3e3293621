"""Exports of gateways and observability tools (LiteLLM, Langfuse, Helicone): which tool wrote a
file, told from the keys of its first record or its CSV header, and reading it into the store.

Each tool's module says where its fields are (an export_sql.Spec) and which keys name its
format; the rows go through the same typing, quarantine and de-duplication as every format, and
keep their tool's name as `source_format`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import duckdb

from advisor.errors import UnreadableFile
from advisor.ingest import export_sql, helicone, langfuse, litellm, tabular
from advisor.ingest.files import head_bytes
from advisor.ingest.load import LoadCounts, load_staged
from advisor.store import drop_temp_tables, transaction

SPECS = {**litellm.SPECS, **langfuse.SPECS, **helicone.SPECS}
SIGNATURES = {**litellm.SIGNATURES, **langfuse.SIGNATURES, **helicone.SIGNATURES}
FORMATS = tuple(SPECS)

_HEAD = 1 << 20  # bytes read to find the first record's keys


def first_keys(path: Path, kind: str) -> set[str]:
    """The keys of a file's first record (a CSV file: its header); empty if none can be read."""
    try:
        head = head_bytes(path, _HEAD).removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    except OSError:
        return set()
    if kind == "csv":
        header = next(csv.reader(io.StringIO(head.split("\n", 1)[0])), [])
        return {name.strip() for name in header}
    body = head.lstrip()
    start = 1 if body.startswith("[") else 0
    decoder = json.JSONDecoder()
    try:
        record, _ = decoder.raw_decode(body[start:].lstrip())
    except json.JSONDecodeError:
        # a first record longer than the head: the keys that open it will do
        return set(re.findall(r'"([A-Za-z_][\w.]*)"\s*:', body[:_HEAD]))
    return set(record) if isinstance(record, dict) else set()


def detect(path: Path, kind: str) -> str | None:
    """The tool format of a file of `kind` (csv or jsonl), or None for none of them."""
    keys = first_keys(path, kind)
    for name, alternatives in SIGNATURES.items():
        if any(signature <= keys for signature in alternatives):
            return name
    return None


def ingest_export(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> LoadCounts:
    """One export file into the store, in one transaction; every record ends up stored,
    duplicate, quarantined, or (a Langfuse span) left out as no model call."""
    if path.stat().st_size == 0:
        return LoadCounts()
    name = path.name.lower().removesuffix(".gz")
    kind = "csv" if name.endswith((".csv", ".tsv")) else "json"
    for table in ("_csv_rejects", "_csv_scans"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    try:
        export_sql.read_records(con, path, kind)
        con.execute("CREATE OR REPLACE TEMP TABLE _staged AS " + export_sql.staging_sql(SPECS[fmt]))
    except (duckdb.InvalidInputException, duckdb.IOException) as error:
        reason = str(error).split("\n", 1)[0].split(" Error: ", 1)[-1]
        raise UnreadableFile(str(path), f"cannot be read as {fmt}: {reason}") from None
    if kind == "csv":
        tabular.stage_rejects(con)
    with transaction(con):
        counts = load_staged(con, "_staged", str(path), fmt)
    drop_temp_tables(con, "_staged", export_sql.ROWS)
    return counts
