"""Finding log files (paths, folders, globs) and reading them as numbered lines, gzip or plain."""

from __future__ import annotations

import glob
import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

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


def read_line_chunks(path: Path, chunk_lines: int = 50_000) -> Iterator[list[tuple[int, bytes]]]:
    """Numbered raw lines (1-based, newline stripped) in bounded chunks."""
    chunk: list[tuple[int, bytes]] = []
    with open_binary(path) as fh:
        for number, line in enumerate(fh, start=1):
            chunk.append((number, line.rstrip(b"\r\n")))
            if len(chunk) >= chunk_lines:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def head_bytes(path: Path, size: int = 65_536) -> bytes:
    with open_binary(path) as fh:
        return fh.read(size)
