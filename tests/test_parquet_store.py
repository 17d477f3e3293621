"""The partitioned Parquet store (`--store DIR`): incremental, idempotent, crash-safe, and read
in place by `analyze` with the same figures as a store file."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from conftest import SAMPLE_TRAFFIC

from advisor import api, parquet_store, store
from advisor.errors import AdvisorError, InputError


def _lines() -> list[bytes]:
    """The sample's lines as bytes: it holds a line that is not UTF-8, on purpose."""
    with gzip.open(SAMPLE_TRAFFIC, "rb") as handle:
        return handle.readlines()


def _write(path: Path, lines: list[bytes]) -> str:
    path.write_bytes(b"".join(lines))
    return str(path)


def _parts(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.parquet"))


def _attached(directory: Path) -> object:
    con = store.connect(None)
    parquet_store.attach(con, directory)
    return con


def _counts(directory: Path) -> tuple[int, int, int, int]:
    con = store.connect(None)
    parquet_store.attach(con, directory)
    try:
        assert store.check_invariants(con) == []
        return tuple(  # type: ignore[return-value]
            int(store.scalar(con, f"SELECT count(*) FROM {t}"))
            for t in ("requests", "messages", "texts", "quarantine")
        )
    finally:
        con.close()


def test_reingest_adds_nothing_and_counts_duplicates(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    log = _write(tmp_path / "a.jsonl", _lines()[:600])
    first = api.ingest([log], tmp_path / "unused.duckdb", store_dir=lake).totals
    files, counts = _parts(lake), _counts(lake)
    again = api.ingest([log], tmp_path / "unused.duckdb", store_dir=lake).totals
    assert _parts(lake) == files and _counts(lake) == counts
    assert again.ingested == again.quarantined == 0
    assert again.duplicates == first.ingested + first.quarantined
    assert not (tmp_path / "unused.duckdb").exists()
    assert not list(lake.glob(".ingest-*")) and not list(lake.glob(".staging-*"))


def test_partitions_grow_by_the_new_data_only(tmp_path: Path) -> None:
    """Two halves ingested one after the other hold what the whole file holds at once, and a
    file overlapping both adds nothing."""
    lines = _lines()[:1500]
    halves = (
        _write(tmp_path / "h1.jsonl", lines[:700]),
        _write(tmp_path / "h2.jsonl", lines[700:]),
    )
    lake, whole = tmp_path / "lake", tmp_path / "whole"
    api.ingest([halves[0]], Path("x"), store_dir=lake)
    before = set(_parts(lake))
    api.ingest([halves[1]], Path("x"), store_dir=lake)
    assert before <= set(_parts(lake))  # no file rewritten
    api.ingest([_write(tmp_path / "all.jsonl", lines)], Path("x"), store_dir=whole)
    assert _counts(lake)[:3] == _counts(whole)[:3]
    overlap = _write(tmp_path / "mid.jsonl", lines[500:900])
    files = _parts(lake)
    report = api.ingest([overlap], Path("x"), store_dir=lake).totals
    assert report.ingested == 0 and _parts(lake) == files
    days = {p.parent.name for p in (lake / "requests").rglob("*.parquet")}
    assert days and all(d.startswith("day=20") for d in days)


def test_analyze_reads_the_folder_with_the_same_figures(tmp_path: Path) -> None:
    lines = _lines()[:3000]
    log = _write(tmp_path / "a.jsonl", lines)
    plain = api.analyze([log], out_dir=tmp_path / "plain", write_report=False)
    lake = tmp_path / "lake"
    api.ingest([log], Path("x"), store_dir=lake)
    read = api.analyze([], out_dir=tmp_path / "read", write_report=False, store_dir=lake)

    def figures(result: api.AnalyzeResult) -> dict[str, object]:
        doc = json.loads(result.analysis.to_json())
        return {k: v for k, v in doc.items() if k not in ("generated_at", "inputs")}

    assert figures(read) == figures(plain)
    con = store.connect(tmp_path / "read" / api.DB_FILE, read_only=True)
    try:  # prompts are read in place, not copied
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables")
                     .fetchall())  # fmt: skip
    finally:
        con.close()
    assert kinds["messages"] == kinds["texts"] == "VIEW" and kinds["requests"] == "BASE TABLE"


def test_a_crash_while_moving_files_is_completed_by_the_next_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _lines()[:800]
    log = _write(tmp_path / "a.jsonl", lines)
    clean = tmp_path / "clean"
    api.ingest([log], Path("x"), store_dir=clean)
    lake = tmp_path / "lake"
    moved = []
    real_replace = os.replace

    def crash_after_messages(src: str | Path, dst: str | Path) -> None:
        if "/requests/" in str(dst):
            raise KeyboardInterrupt  # the process dies between the messages and the requests
        moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_after_messages)
    with pytest.raises(KeyboardInterrupt):
        api.ingest([log], Path("x"), store_dir=lake)
    monkeypatch.setattr(os, "replace", real_replace)
    assert moved and list(lake.glob(".pending-*"))
    with pytest.raises(AdvisorError, match="interrupted"):
        _attached(lake)
    api.ingest([log], Path("x"), store_dir=lake)
    assert not list(lake.glob(".pending-*"))
    assert _counts(lake) == _counts(clean)


def test_store_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no store"):
        api.analyze([], out_dir=tmp_path / "o", store_dir=tmp_path / "missing")
    with pytest.raises(InputError, match="two stores"):
        api.analyze([str(SAMPLE_TRAFFIC)], out_dir=tmp_path / "o", db=tmp_path / "s.duckdb",
                    store_dir=tmp_path / "lake")  # fmt: skip
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / parquet_store.MANIFEST).write_text('{"layout": 0}', encoding="utf-8")
    with pytest.raises(AdvisorError, match="written with"):
        api.ingest([str(SAMPLE_TRAFFIC)], Path("x"), store_dir=lake)


def test_views_read_the_folder_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run store made from a relative --store path still reads its prompts after a `cd`."""
    log = _write(tmp_path / "a.jsonl", _lines()[:200])
    monkeypatch.chdir(tmp_path)
    api.ingest([log], Path("x"), store_dir=Path("lake"))
    con = store.connect(tmp_path / "run.duckdb")
    parquet_store.attach(con, Path("lake"))
    con.close()
    monkeypatch.chdir(tmp_path.parent)
    con = store.connect(tmp_path / "run.duckdb", read_only=True)
    try:
        assert int(store.scalar(con, "SELECT count(*) FROM messages")) > 0
    finally:
        con.close()
