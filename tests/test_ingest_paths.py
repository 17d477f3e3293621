"""The two JSON-lines paths agree: DuckDB's parallel reader (the default) and the line-exact one.

Line numbers count blank lines; bad lines are re-read and quarantined with their reason; long
texts that repeat are stored once; and whatever the fast path cannot be sure of falls back.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import anthropic_line, openai_line, store_snapshot

from advisor import store
from advisor.ingest import envelope, files, ingest, jsonl
from advisor.ingest.files import LineIndex

LONG_PROMPT = "You are the billing assistant. " + "Follow policy rule number seven. " * 60


def _tricky_lines() -> list[bytes]:
    """Every kind of row the reader meets, blank lines among them."""
    rows: list[Any] = []
    for i in range(6):
        rows.append(openai_line(f"o{i}", messages=[
            {"role": "system", "content": LONG_PROMPT},
            {"role": "user", "content": f"Invoice {i} is wrong \u00e9\u4e2d"},
        ]))  # fmt: skip
    tool_turns = anthropic_line("a1")
    tool_turns["request"]["messages"] += [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": "\u00e9", "n": [1.50]}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBOR"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1",
             "content": [{"type": "text", "text": "4"}, {"type": "text", "text": "2"}]}]},
    ]  # fmt: skip
    rows.append(tool_turns)
    rows.append(openai_line("tools", messages=[
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:x"}}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "42"},
    ], tools=[{"type": "function", "function": {"name": "f"}}]))  # fmt: skip
    rows.append({
        "timestamp": "2026-10-01T12:00:00Z",
        "request": {"model": "gemini-2.5-flash",
                    "contents": [{"role": "user", "parts": [{"text": "Hi"}]},
                                 {"role": "model", "parts": [
                                   {"functionCall": {"name": "f", "args": {"a": 1}}}]},
                                 {"role": "user", "parts": [
                                   {"functionResponse": {"name": "f", "response": {}}}]}],
                    "systemInstruction": {"parts": [{"text": "Be brief."}]}},
        "response": {"candidates": [{"content": {"parts": [{"text": "Hello"}]},
                                     "finishReason": "STOP"}],
                     "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 2}},
    })  # fmt: skip
    no_id = openai_line("x", prompt=12)
    del no_id["id"], no_id["response"]["id"]
    rows.append(no_id)
    rows.append(openai_line("o1"))  # a duplicate id
    lines = [row if isinstance(row, bytes) else json.dumps(row).encode() for row in rows]
    lines[2:2] = [b""]
    lines[5:5] = [b"  \t\r"]
    lines += [
        b'{"id": "cut", "timestamp": "2026-10-01T12:00:00Z", "request": {"mod',
        b"[1, 2, 3]",
        json.dumps(openai_line("neg", prompt=-5)).encode(),
        json.dumps(openai_line("when", ts="yesterday")).encode(),
        b'{"id": "bin", "x": "\xff\xfe"}',
        b"\x00\x01junk",
        b"\x0b",
        json.dumps(openai_line("crlf")).encode() + b"\r",
        b"\x0b" + json.dumps(openai_line("vt")).encode() + b"\x0c",  # C white space around
        json.dumps(
            openai_line("last", messages=[{"role": "user", "content": LONG_PROMPT}])
        ).encode(),
    ]
    return lines


def _write(path: Path, lines: list[bytes], *, final_newline: bool = True) -> Path:
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _line_exact(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = store.connect()
    jsonl._ingest_lines(con, path, "jsonl", "auto", None, None)
    return store_snapshot(con)


def _fast(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[Any, ...]]]:
    def refuse(*args: Any) -> None:
        raise AssertionError("fell back to the line-exact path")

    with monkeypatch.context() as patch:
        patch.setattr(jsonl, "_ingest_lines", refuse)
        con = store.connect()
        ingest(con, [str(path)])
        return store_snapshot(con)


@pytest.mark.parametrize("name", ["log.jsonl", "log.jsonl.gz"])
def test_fast_path_matches_line_exact_path(tmp_path: Path, monkeypatch, name: str) -> None:
    path = _write(tmp_path / name, _tricky_lines(), final_newline=False)
    fast = _fast(path, monkeypatch)
    assert fast == _line_exact(path)
    reasons = {line: reason for _, line, _, reason, *_ in fast["quarantine"]}
    assert reasons[3] == "empty line" and reasons[6] == "empty line"
    assert "invalid JSON" in reasons[14] and "array" in reasons[15]
    assert "-5" in reasons[16] and "yesterday" in reasons[17]
    assert reasons[18] == "not UTF-8 text" and reasons[19] == "binary data (NUL byte)"
    assert reasons[20] == "empty line"
    assert len(fast["quarantine"]) == 9
    texts = {row[1] for row in fast["texts"]}  # tool blocks read by the fast path too
    image = f"[image, image/png, 5 chars, md5 {hashlib.md5(b'iVBOR').hexdigest()[:8]}]"
    call = '{"name":"f","arguments":{"q":"\u00e9","n":[1.5]}}'
    assert {call + image, "42", '{"name":"f","arguments":{"a":1}}', "{}"} <= texts


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("name", ["log.jsonl", "log.jsonl.gz"])
@pytest.mark.parametrize(
    ("head", "stored", "quarantined"),
    [
        ([BOM + json.dumps(openai_line("first")).encode()], 2, 0),  # BOM on a good line 1
        ([BOM + json.dumps(openai_line("neg", prompt=-5)).encode()], 1, 1),  # on a bad line 1
        ([BOM], 1, 1),  # a BOM alone on line 1: a blank line
    ],
)
def test_a_byte_order_mark_opening_the_file_is_not_part_of_line_1(
    tmp_path: Path, monkeypatch, name: str, head: list[bytes], stored: int, quarantined: int
) -> None:
    path = _write(tmp_path / name, [*head, json.dumps(openai_line("second")).encode()])
    fast = _fast(path, monkeypatch)
    assert fast == _line_exact(path)
    assert (len(fast["requests"]), len(fast["quarantine"])) == (stored, quarantined)
    if quarantined:
        assert fast["quarantine"][0][1] == 1  # named on line 1, reason read after the mark
        assert "JSON" not in fast["quarantine"][0][3]
    only = _write(tmp_path / ("only-" + name), [BOM], final_newline=False)
    assert _fast(only, monkeypatch) == _line_exact(only)


@pytest.mark.parametrize("keep", ["half", "all but the trailer", "header only"])
def test_a_gzip_stream_that_ends_early_is_read_up_to_the_damage(tmp_path: Path, keep) -> None:
    lines = [json.dumps(openai_line(f"r{i}")).encode() for i in range(300)]
    whole = gzip.compress(b"\n".join(lines) + b"\n")
    cut = {"half": len(whole) // 2, "all but the trailer": len(whole) - 4, "header only": 12}
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(whole[: cut[keep]])
    con = store.connect()
    totals = ingest(con, [str(path)]).totals
    read = LineIndex(path).lines
    assert totals.rows == read + 1 and totals.ingested + totals.quarantined == totals.rows
    last = con.execute("SELECT source_line, reason FROM quarantine ORDER BY 1 DESC").fetchone()
    assert last is not None and last[0] == read + 1 and "gzip stream ends early" in last[1]
    if keep == "all but the trailer":
        assert totals.ingested == 300  # every line was whole
    assert ingest(con, [str(path)]).totals.ingested == 0  # again: nothing new, nothing doubled
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (totals.quarantined,)


def test_a_gzip_csv_that_ends_early_is_read_up_to_the_damage(tmp_path: Path) -> None:
    rows = b"".join(b"2026-10-01T00:00:%02dZ,gpt-4o,%d,%d\n" % (i % 60, i, i) for i in range(3000))
    whole = gzip.compress(b"ts,model,input_tokens,output_tokens\n" + rows)
    path = tmp_path / "t.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    con = store.connect()
    totals = ingest(con, [str(path)]).totals
    assert 0 < totals.ingested < 3000 and totals.quarantined == 1
    last = con.execute("SELECT max(source_line) FROM requests").fetchone()
    assert con.execute("SELECT source_line, reason FROM quarantine").fetchone() == (
        last[0] + 1,
        f"gzip stream ends early (truncated or corrupt file): nothing after line {last[0]}",
    )
    # the line the damage cut short is not read: it could parse, with a value cut short
    assert con.execute(
        "SELECT count(*) FROM requests WHERE input_tokens <> output_tokens"
    ).fetchone() == (0,)
    assert ingest(con, [str(path)]).totals.ingested == 0


def test_an_unreadable_table_file_is_quarantined_and_the_others_are_read(tmp_path: Path) -> None:
    parquet = tmp_path / "t.parquet"
    parquet.write_bytes(b"PAR1 not really")
    good = _write(tmp_path / "good.jsonl", [json.dumps(openai_line("a")).encode()])
    con = store.connect()
    totals = ingest(con, [str(parquet), str(good)]).totals
    assert (totals.rows, totals.ingested, totals.quarantined) == (2, 1, 1)
    file, line, reason = con.execute(
        "SELECT source_file, source_line, reason FROM quarantine"
    ).fetchone()
    assert (Path(file).name, line) == ("t.parquet", 1)
    assert reason.startswith("cannot be read as parquet: ")
    ingest(con, [str(parquet)])  # again: nothing added
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (1,)
    whole = _write(tmp_path / "log.jsonl.gz", [json.dumps(openai_line("a")).encode()])
    con = store.connect()
    ingest(con, [str(whole)], fmt="parquet")  # a whole gzip, the wrong format
    (reason,) = con.execute("SELECT reason FROM quarantine").fetchone()
    assert reason.startswith("cannot be read as parquet")
    assert "log.jsonl'" not in reason  # never a temporary copy's name
    assert con.execute("SELECT count(*) FROM requests").fetchone() == (0,)


def test_line_numbers_count_blank_lines(tmp_path: Path, monkeypatch) -> None:
    lines = _tricky_lines()
    path = _write(tmp_path / "log.jsonl", lines)
    fast = _fast(path, monkeypatch)
    for row in fast["requests"]:
        request_id, line = row[0], row[-1]
        if not request_id.startswith("h:"):
            assert f'"{request_id}"'.encode() in lines[line - 1]


def test_repeated_long_texts_are_stored_once(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.jsonl", _tricky_lines())
    con = store.connect()
    ingest(con, [str(path)])
    assert con.execute("SELECT count(*) FROM texts WHERE text = ?", [LONG_PROMPT]).fetchone() == (
        1,
    )
    unused = con.execute(
        """SELECT count(*) FROM texts
           WHERE text_hash NOT IN (SELECT text_hash FROM messages)
           AND text_hash NOT IN (SELECT response_hash FROM requests
                                 WHERE response_hash IS NOT NULL)"""
    ).fetchone()
    assert unused == (0,)
    missing = con.execute(
        "SELECT count(*) FROM messages WHERE text_hash NOT IN (SELECT text_hash FROM texts)"
    ).fetchone()
    assert missing == (0,)


def test_seeded_text_of_quarantined_rows_only_is_dropped(tmp_path: Path, monkeypatch) -> None:
    bad = openai_line("bad", ts="never", messages=[{"role": "user", "content": LONG_PROMPT}])
    path = _write(tmp_path / "log.jsonl", [json.dumps(bad).encode()] * 3 + [
        json.dumps(openai_line("ok")).encode()])  # fmt: skip
    fast = _fast(path, monkeypatch)
    assert all(text != LONG_PROMPT for _, text in fast["texts"])
    assert len(fast["quarantine"]) == 3


def test_too_long_line_falls_back(tmp_path: Path, monkeypatch) -> None:
    # DuckDB's reader refuses a line over twice its object size limit (its buffer)
    monkeypatch.setattr(envelope, "MAX_LINE_BYTES", 1 << 24)
    huge = openai_line("huge", messages=[{"role": "user", "content": "z" * (34 << 20)}])
    path = _write(tmp_path / "log.jsonl", [*_tricky_lines(), json.dumps(huge).encode()])
    calls = []
    line_exact = jsonl._ingest_lines

    def spy(*args: Any) -> Any:
        calls.append(args)
        return line_exact(*args)

    monkeypatch.setattr(jsonl, "_ingest_lines", spy)
    con = store.connect()
    ingest(con, [str(path)])
    assert calls, "the fast path should have given up on the 34 MB line"
    assert con.execute("SELECT count(*) FROM requests WHERE request_id = 'huge'").fetchone() == (1,)
    assert store_snapshot(con) == _line_exact(path)


def test_the_reader_buffer_fits_the_longest_line(tmp_path: Path, monkeypatch) -> None:
    # the object size (and so the reader's buffers) follows the file, not the 64 MB ceiling
    assert envelope.object_size(0) == envelope.object_size(9_000) == envelope.MIN_OBJECT_BYTES
    assert envelope.object_size(3 << 20) == 4 << 20
    # lines longer than the floor, among short ones, still take the fast path
    monkeypatch.setattr(envelope, "MIN_OBJECT_BYTES", 1 << 12)
    long = openai_line("long", messages=[{"role": "user", "content": "word " * 5000}])
    lines = _tricky_lines()
    path = _write(tmp_path / "log.jsonl", [*lines[:4], json.dumps(long).encode(), *lines[4:]])
    assert LineIndex(path).longest_line > 4 * envelope.MIN_OBJECT_BYTES
    assert _fast(path, monkeypatch) == _line_exact(path)


def test_reingest_through_fast_path_adds_nothing(tmp_path: Path, monkeypatch) -> None:
    path = _write(tmp_path / "log.jsonl", _tricky_lines())
    con = store.connect()
    ingest(con, [str(path)])
    before = store_snapshot(con)
    report = ingest(con, [str(path)])
    assert report.totals.ingested == 0
    assert store_snapshot(con) == before


@pytest.mark.parametrize("compressed", [False, True])
def test_line_index_across_block_boundaries(tmp_path: Path, monkeypatch, compressed) -> None:
    monkeypatch.setattr(files, "_INDEX_BLOCK", 4096)
    rng = np.random.default_rng(3)
    lines = []
    for _ in range(400):
        pad = b" \x0b" if rng.random() < 0.1 else b""
        lines.append(pad + b"x" * int(rng.integers(0, 3000)))
    path = _write(tmp_path / ("l.jsonl.gz" if compressed else "l.jsonl"), lines)
    index = LineIndex(path)
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip(b" \x0b")]
    assert index.lines == len(lines)
    assert index.blank_lines.tolist() == blank
    assert index.read_lines(range(1, len(lines) + 1)) == lines
    filled = [i + 1 for i in range(len(lines)) if i + 1 not in blank]
    assert index.line_numbers(np.arange(1, len(filled) + 1)).tolist() == filled


def test_line_index_edges(tmp_path: Path) -> None:
    assert LineIndex(_write(tmp_path / "empty.jsonl", [], final_newline=False)).lines == 0
    index = LineIndex(
        _write(tmp_path / "a.jsonl", [b"{}", b"", b"\x0c", b"{}"], final_newline=False)
    )
    assert (index.lines, index.blank_lines.tolist(), index.filled_lines) == (4, [2, 3], 2)
    assert index.read_lines([4]) == [b"{}"]


def test_bad_lines_are_reread_in_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(jsonl, "_AGAIN_LINES", 3)
    path = _write(tmp_path / "log.jsonl", _tricky_lines())
    assert _fast(path, monkeypatch) == _line_exact(path)


def test_a_plan_that_may_reorder_rows_falls_back(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(jsonl, "_ORDERED_PLAN", "a plan DuckDB never prints")
    path = _write(tmp_path / "log.jsonl", _tricky_lines())
    con = store.connect()
    ingest(con, [str(path)])
    assert store_snapshot(con) == _line_exact(path)
