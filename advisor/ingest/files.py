"""Finding log files (paths, folders, globs) and reading them as numbered lines, gzip or plain."""

from __future__ import annotations

import glob
import gzip
import hashlib
import mmap
import os
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from advisor.errors import InputError, UnreadableFile

LOG_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".gz")


def expand_paths(patterns: Sequence[str]) -> list[Path]:
    """Files named by paths, folders (their log files) and globs; sorted, each once. A folder
    that cannot be listed is listed too: reading it says why (see `check_readable`)."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        path = Path(pattern)
        # a name holding glob characters is a glob only when nothing has that literal name
        if any(ch in pattern for ch in "*?[") and not os.path.lexists(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"no file matches {pattern!r}")
            for match in matches:
                if match.is_file():
                    found[match.resolve()] = None
        elif path.is_dir():
            for child in _folder_files(path):
                found[child.resolve()] = None
        elif path.is_file():
            found[path.resolve()] = None
        else:
            raise InputError(f"{pattern}: no such file or folder")
    if not found:
        raise InputError("no log files found in " + ", ".join(patterns))
    return list(found)


def _folder_files(folder: Path) -> list[Path]:
    """The log files under a folder, and the folders under it that cannot be listed."""
    found: list[Path] = []

    def unlistable(error: OSError) -> None:
        found.append(Path(error.filename or folder))

    for root, _, names in os.walk(folder, onerror=unlistable):
        found += [Path(root, n) for n in names if n.endswith(LOG_SUFFIXES)]
    return sorted(p for p in found if p.is_file() or p.is_dir())


def check_readable(path: Path) -> None:
    """Raise UnreadableFile saying why a file cannot be opened or a folder cannot be listed."""
    try:
        if path.is_dir():
            os.scandir(path).close()
        else:
            with path.open("rb") as fh:
                fh.read(1)
    except OSError as error:
        what = "cannot list folder" if path.is_dir() else "cannot be read"
        raise UnreadableFile(str(path), f"{what}: {error.strerror or error}") from None


def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


class TolerantGzip(gzip.GzipFile):
    """A gzip stream that ends where its data stops being readable (a truncated download, a log
    rotated mid-write, a corrupt block) instead of raising; `truncated` says it did. Reads go
    through read1, one decompressed piece at a time, so nothing before the damage is lost."""

    truncated = False

    def read(self, size: int | None = -1) -> bytes:
        out = bytearray()
        while not self.truncated and (size is None or size < 0 or len(out) < size):
            want = 1 << 20 if size is None or size < 0 else size - len(out)
            try:
                data = self.read1(want)
            except (EOFError, gzip.BadGzipFile, zlib.error):
                self.truncated = True
                break
            if not data:
                break
            out += data
        return bytes(out)


def open_binary(path: Path) -> BinaryIO:
    if is_gzip(path):
        return TolerantGzip(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _decoded(lines: Sequence[bytes]) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Lines as text; a line that is not valid UTF-8 gets NULL, an escaped excerpt and the md5
    of its bytes (its identity in the quarantine, see load.load_staged)."""
    texts: list[str | None] = []
    excerpts: list[str | None] = []
    hashes: list[str | None] = []
    for line in lines:
        try:
            texts.append(line.decode("utf-8"))
            excerpts.append(None)
            hashes.append(None)
        except UnicodeDecodeError:
            texts.append(None)
            excerpts.append(repr(line[:150])[2:-1])
            hashes.append(hashlib.md5(line.strip(_BLANK + b"\n")).hexdigest())
    return (
        pa.array(texts, pa.large_string()),
        pa.array(excerpts, pa.large_string()),
        pa.array(hashes, pa.string()),
    )


def lines_table(numbers: Sequence[int], lines: Sequence[bytes]) -> pa.Table:
    """Chosen lines as (line, raw, junk, junk_hash), the input of envelope.lines_sql."""
    raw, junk, junk_hash = _decoded(lines)
    return pa.table(
        {"line": pa.array(numbers, pa.int64()), "raw": raw, "junk": junk, "junk_hash": junk_hash}
    )


def _block_table(block: bytes, first_line: int) -> pa.Table:
    """Lines of `block` (ending in a newline) as in lines_table, without a Python object per
    line in the usual case.

    Arrow string arrays are contiguous, so each element after the first starts with the newline
    that ended the previous line: JSON ignores it, and the SQL trims it where it matters.
    A block that is not valid UTF-8 is decoded line by line.
    """
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    count = len(ends)
    raw = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(block))
    numbers = np.arange(first_line, first_line + count, dtype=np.int64)
    try:
        raw.validate(full=True)
    except pa.ArrowInvalid:
        return lines_table(numbers.tolist(), block[:-1].split(b"\n"))
    junk = pa.nulls(count, pa.large_string())
    junk_hash = pa.nulls(count, pa.string())
    return pa.table({"line": pa.array(numbers), "raw": raw, "junk": junk, "junk_hash": junk_hash})


def read_line_blocks(path: Path, block_bytes: int = 1 << 26) -> Iterator[pa.Table]:
    """Numbered raw lines (1-based) in blocks of about `block_bytes`: bounded memory. A UTF-8
    byte-order mark opening the file is not part of line 1 (as for DuckDB's reader)."""
    next_line = 1
    carry = b""
    with open_binary(path) as fh:
        if fh.read(len(_BOM)) != _BOM:
            fh.seek(0)
        while data := fh.read(block_bytes):
            buffer = carry + data if carry else data
            cut = buffer.rfind(b"\n") + 1
            if cut == 0:
                carry = buffer
                continue
            carry = buffer[cut:]
            table = _block_table(buffer[:cut], next_line)
            next_line += table.num_rows
            yield table
    if carry:
        yield _block_table(carry + b"\n", next_line)


def head_bytes(path: Path, size: int = 65_536) -> bytes:
    with open_binary(path) as fh:
        return fh.read(size)


_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, as Windows tools write at a file's start
# What DuckDB's JSON reader skips as a blank line: nothing but these bytes (C isspace).
_BLANK = b" \t\r\x0b\x0c"
_BLANK_CODES = np.frombuffer(_BLANK, dtype=np.uint8)
_INDEX_BLOCK = 1 << 22  # small enough for the comparison to stay in cache


def _scan_block(block: np.ndarray, base: int, at_line_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """Newline offsets in one block (as file offsets), and the first byte of each line that
    starts inside it: after each newline but a final one, and at its start if `at_line_start`."""
    newlines = np.flatnonzero(block == 10)
    inside = newlines[newlines + 1 < len(block)]
    firsts = block[inside + 1]
    if at_line_start and len(block):
        firsts = np.concatenate((block[:1], firsts))
    return newlines + base, firsts


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return fh.read(size)


class LineIndex:
    """Where every line of a file starts and ends, and which lines are blank.

    DuckDB's JSON reader numbers rows, not lines: it skips blank lines. This index turns its
    ordinals back into line numbers and fetches the raw bytes of the few lines that need a
    second look. Plain files are memory-mapped and searched on two threads (numpy releases the
    GIL); gzip files are decompressed as a stream, again for each later read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.compressed = is_gzip(path)
        self.truncated = False  # a gzip stream that ends early: lines past that are unreadable
        scan = self._gzip_newlines if self.compressed else self._mapped_newlines
        newlines, firsts, size = scan()
        starts = np.concatenate(([0], newlines + 1)).astype(np.int64)
        ends = np.concatenate((newlines, [size])).astype(np.int64)
        if head_bytes(path, len(_BOM)) == _BOM:  # not part of line 1
            starts[0] = min(len(_BOM), ends[0])
            firsts = firsts.copy()
            if len(firsts):
                firsts[0] = _BLANK_CODES[0]  # have line 1 checked for blankness below
        if size == 0 or starts[-1] == size:  # nothing after the last newline: not a line
            starts, ends = starts[:-1], ends[:-1]
        self.starts, self.ends = starts, ends
        blank = ends == starts
        # only a line that starts with a blank byte can be blank without being empty
        maybe = np.flatnonzero(~blank & np.isin(firsts, _BLANK_CODES))
        if len(maybe):
            texts = self.read_spans(starts[maybe], ends[maybe])
            blank[maybe] = [not t.translate(None, _BLANK) for t in texts]
        self.blank = blank

    @property
    def lines(self) -> int:
        return len(self.starts)

    @property
    def longest_line(self) -> int:
        """Bytes in the longest line (0 for an empty file)."""
        return int((self.ends - self.starts).max()) if self.lines else 0

    @property
    def blank_lines(self) -> np.ndarray:
        """1-based numbers of the blank lines."""
        return np.flatnonzero(self.blank) + 1

    @property
    def filled_lines(self) -> int:
        return int(self.lines - self.blank.sum())

    def line_numbers(self, ordinals: np.ndarray) -> np.ndarray:
        """1-based line numbers of the given 1-based ordinals among non-blank lines."""
        return np.flatnonzero(~self.blank)[np.asarray(ordinals, dtype=np.int64) - 1] + 1

    def read_lines(self, numbers: Sequence[int]) -> list[bytes]:
        index = np.asarray(numbers, dtype=np.int64) - 1
        return self.read_spans(self.starts[index], self.ends[index])

    def read_spans(self, starts: np.ndarray, ends: np.ndarray) -> list[bytes]:
        pairs = list(zip(starts.tolist(), ends.tolist(), strict=True))
        if not self.compressed:
            # read, not mapped: spans spread over a large file (the pilot sample) made the pages
            # faulted in around each one count in the RSS, 2.3 GB of a 7 GB file at 1M requests
            with self.path.open("rb") as fh:
                return [_read_at(fh, s, e - s) for s, e in pairs]
        found: dict[int, bytes] = {}
        buffer, offset = b"", 0  # buffer holds the stream from `offset` on
        with open_binary(self.path) as stream:
            for i in sorted(range(len(pairs)), key=lambda k: pairs[k][0]):
                start, end = pairs[i]
                drop = max(0, min(start - offset, len(buffer)))
                buffer, offset = buffer[drop:], offset + drop
                while offset + len(buffer) < end and (data := stream.read(_INDEX_BLOCK)):
                    if offset + len(buffer) < start:  # skip whole blocks before the span
                        offset, buffer = offset + len(buffer), b""
                    buffer += data
                found[i] = buffer[start - offset : end - offset]
        return [found[i] for i in range(len(pairs))]

    def _mapped_newlines(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Newline offsets, the first byte of every line, and the file's size."""
        size = self.path.stat().st_size
        with self.path.open("rb") as fh:

            def scan(base: int) -> tuple[np.ndarray, np.ndarray, bool]:
                # one window mapped at a time: the whole file mapped would count in the RSS
                length = min(_INDEX_BLOCK, size - base)
                with mmap.mmap(fh.fileno(), length, access=mmap.ACCESS_READ, offset=base) as mm:
                    block = np.frombuffer(mm, dtype=np.uint8)
                    newlines, firsts = _scan_block(block, base, True)
                    ends_line = bool(block[-1] == 10)
                    del block
                return newlines, firsts, ends_line

            with ThreadPoolExecutor(max_workers=2) as pool:
                found = list(pool.map(scan, range(0, size, _INDEX_BLOCK)))
        # a block's first byte starts a line only where the block before ended one
        firsts = [f if k == 0 or found[k - 1][2] else f[1:] for k, (_, f, _) in enumerate(found)]
        return (
            np.concatenate([n for n, _, _ in found] or [np.zeros(0, dtype=np.int64)]),
            np.concatenate(firsts or [np.zeros(0, dtype=np.uint8)]),
            size,
        )

    def _gzip_newlines(self) -> tuple[np.ndarray, np.ndarray, int]:
        found: list[tuple[np.ndarray, np.ndarray]] = []
        offset, at_line_start = 0, True
        with TolerantGzip(self.path, "rb") as fh:
            while data := fh.read(_INDEX_BLOCK):
                block = np.frombuffer(data, dtype=np.uint8)
                found.append(_scan_block(block, offset, at_line_start))
                at_line_start = data.endswith(b"\n")
                offset += len(block)
            self.truncated = fh.truncated
        return (
            np.concatenate([n for n, _ in found] or [np.zeros(0, dtype=np.int64)]),
            np.concatenate([f for _, f in found] or [np.zeros(0, dtype=np.uint8)]),
            offset,
        )
