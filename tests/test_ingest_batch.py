"""Many small files: read as one batch, with each row's file and line, and counts per file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import openai_line

from advisor import store
from advisor.ingest import ingest


def _line(row: Any) -> bytes:
    return row if isinstance(row, bytes) else json.dumps(row).encode()


def _small_files(folder: Path) -> list[Path]:
    """Twenty-five small files with what a batch must keep apart: ids repeated across files, lines
    without ids, bad and blank lines (some repeated across files), a byte-order mark, CRLF line
    ends, bytes that are not UTF-8, an empty file."""
    folder.mkdir()
    anonymous = openai_line("x", completion=3)
    del anonymous["id"], anonymous["response"]["id"]
    files = []
    for i in range(25):
        rows: list[Any] = [openai_line(f"f{i}-{k}", prompt=100 + k) for k in range(i % 3 + 1)]
        if i % 5 == 0:
            rows.append(openai_line("shared"))  # the first file's copy is the one stored
        if i % 7 == 0:
            rows += [b"", b"not json", anonymous]
        if i % 11 == 0:
            rows.append(b'{"id": "bad-\xff"}')
        rows.append(b"{truncated" + str(i % 4).encode())
        end = b"\r\n" if i % 6 == 0 else b"\n"
        data = end.join(_line(r) for r in rows) + end
        if i == 9:
            data = b"\xef\xbb\xbf" + data
        path = folder / f"log-{i:02d}.jsonl"
        path.write_bytes(b"" if i == 13 else data)
        files.append(path)
    return files


def _snapshot(con) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
        for table in ("requests", "messages", "texts", "quarantine")
    }


class _Counting:
    """A connection that counts the statements run through it."""

    def __init__(self, con) -> None:
        self.con = con
        self.statements = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self.statements += 1
        return self.con.execute(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def test_a_folder_of_small_files_loads_in_one_batch_as_file_by_file(tmp_path: Path) -> None:
    files = _small_files(tmp_path / "logs")
    one_by_one = store.connect()
    expected = [ingest(one_by_one, [str(path)]).files[0] for path in files]

    con = store.connect()
    counting = _Counting(con)
    report = ingest(counting, [str(tmp_path / "logs")])  # type: ignore[arg-type]
    assert counting.statements < 60  # one batch, not some forty statements a file
    assert [(f.path, f.format, f.counts) for f in report.files] == [
        (f.path, f.format, f.counts) for f in expected
    ]
    assert _snapshot(con) == _snapshot(one_by_one)
    stored = con.execute(
        "SELECT source_file, source_line FROM requests WHERE request_id IN ('shared', 'f9-0')"
        " ORDER BY request_id DESC"
    ).fetchall()
    assert stored == [(str(files[0]), 2), (str(files[9]), 1)]  # BOM: still line 1

    again = ingest(con, [str(tmp_path / "logs")]).totals
    assert (again.ingested, again.quarantined) == (0, 0)
    assert again.duplicates == again.rows == report.totals.rows
    assert _snapshot(con) == _snapshot(one_by_one)
