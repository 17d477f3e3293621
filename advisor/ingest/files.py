"""Finding log files (paths, folders, globs) and reading them as numbered lines, gzip or plain."""

from __future__ import annotations

import glob
import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from advisor.errors import InputError

LOG_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".gz")


def expand_paths(patterns: Sequence[str]) -> list[Path]:
    """Files named by paths, folders (their log files) and globs; sorted, each once."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        path = Path(pattern)
        if any(ch in pattern for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"no file matches {pattern!r}")
            for match in matches:
                if match.is_file():
                    found[match.resolve()] = None
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.name.endswith(LOG_SUFFIXES):
                    found[child.resolve()] = None
        elif path.is_file():
            found[path.resolve()] = None
        else:
            raise InputError(f"{pattern}: no such file or folder")
    if not found:
        raise InputError("no log files found in " + ", ".join(patterns))
    return list(found)


def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if is_gzip(path) else path.open("rb")  # type: ignore[return-value]


def _lines_table(block: bytes, first_line: int) -> pa.Table:
    """Lines of `block` (ending in a newline) as (line, raw, junk), without a Python object per
    line in the usual case.

    Arrow string arrays are contiguous, so each element after the first starts with the newline
    that ended the previous line: JSON ignores it, and the SQL trims it where it matters.
    A block that is not valid UTF-8 is decoded line by line: bad lines get raw NULL and an
    escaped excerpt in `junk`.
    """
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    count = len(ends)
    raw = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(block))
    junk: pa.Array = pa.nulls(count, pa.large_string())
    try:
        raw.validate(full=True)
    except pa.ArrowInvalid:
        texts: list[str | None] = []
        excerpts: list[str | None] = []
        for line in block[:-1].split(b"\n"):
            try:
                texts.append(line.decode("utf-8"))
                excerpts.append(None)
            except UnicodeDecodeError:
                texts.append(None)
                excerpts.append(repr(line[:150])[2:-1])
        raw = pa.array(texts, pa.large_string())
        junk = pa.array(excerpts, pa.large_string())
    numbers = pa.array(np.arange(first_line, first_line + count, dtype=np.int64))
    return pa.table({"line": numbers, "raw": raw, "junk": junk})


def read_line_blocks(path: Path, block_bytes: int = 1 << 26) -> Iterator[pa.Table]:
    """Numbered raw lines (1-based) in blocks of about `block_bytes`: bounded memory."""
    next_line = 1
    carry = b""
    with open_binary(path) as fh:
        while data := fh.read(block_bytes):
            buffer = carry + data if carry else data
            cut = buffer.rfind(b"\n") + 1
            if cut == 0:
                carry = buffer
                continue
            carry = buffer[cut:]
            table = _lines_table(buffer[:cut], next_line)
            next_line += table.num_rows
            yield table
    if carry:
        yield _lines_table(carry + b"\n", next_line)


def head_bytes(path: Path, size: int = 65_536) -> bytes:
    with open_binary(path) as fh:
        return fh.read(size)
