"""Crash safety: an ingest killed at any statement leaves a store that a re-ingest completes
exactly, and `analyze` refuses a store whose invariants are broken.

The default run kills the ingest at every durable boundary (each write outside a transaction,
each COMMIT and CHECKPOINT) and at the first and last write inside each transaction; under
HYPOTHESIS_PROFILE=thorough (tests/helpers.py) at every write the hook counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import THOROUGH, anthropic_line, openai_line, write_jsonl

from advisor import api, store
from advisor.errors import AdvisorError
from advisor.ingest import _STORE_WRITE, KILL_AFTER_ENV, ingest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

# Ingest in a child process that the test hook kills after its n-th statement.
_CHILD = """import sys
from advisor import store
from advisor.ingest import ingest
con = store.connect(sys.argv[1])
ingest(con, sys.argv[2:])
con.close()
"""


def _logs(folder: Path) -> list[str]:
    """Lines of every kind a load writes, through each way files are read: requests with and
    without ids, shared long system prompts (stored up front, see ingest.jsonl), duplicates, bad
    and blank lines; a CSV file with a bad row; small files read as one batch."""
    long_system = "Follow the policy below. " + "policy clause. " * 120
    rows: list[object] = []
    for i in range(1500):
        if i % 3 == 0:
            line = anthropic_line(f"a{i}", input_tokens=100 + i)
        else:
            messages = [
                {"role": "system", "content": long_system if i % 2 else "Be brief."},
                {"role": "user", "content": f"question {i % 700}"},
            ]
            line = openai_line(f"r{i}", messages=messages, prompt=500 + i, response_text=f"a{i}")
        if i % 10 == 5:
            del line["id"]
            del line["response"]["id"]
        rows.append(line)
    rows[100] = rows[99]  # a duplicate
    rows[200] = '{"id": "cut", "timestamp": "2026-10'  # a truncated write
    rows[300] = ""
    rows[400] = openai_line("neg", prompt=-3)
    first = write_jsonl(folder / "a.jsonl", rows)
    second = folder / "b.csv"
    csv_rows = [f"2026-10-02 10:00:{i % 60:02d},gpt-4o-mini,{i},{i % 7},p{i}" for i in range(200)]
    csv_rows.append("2026-10-02 11:00:00,gpt-4o-mini,lots,1,bad")
    second.write_text("ts,model,input_tokens,output_tokens,prompt\n" + "\n".join(csv_rows) + "\n")
    # small files, read as one batch: a repeat of a request of the first file, a new bad line
    small = [
        write_jsonl(folder / f"c{k}.jsonl", [openai_line(f"c{k}"), openai_line("r1"), "{oops"])
        for k in range(3)
    ]
    return [str(first), str(second), *map(str, small)]


def _snapshot(db: Path) -> dict[str, list[tuple[object, ...]]]:
    con = store.connect(db, read_only=True)
    try:
        return {
            table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in ("requests", "messages", "texts", "quarantine", "meta")
        }
    finally:
        con.close()


class _Recorder:
    """A connection that keeps every statement run on it (the kill hook wraps it the same way)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.statements: list[str] = []

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        self.statements.append(sql)
        return self._con.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _kill_points(statements: list[str]) -> tuple[list[int], int]:
    """The writes (numbered as the kill hook counts them) to crash after, and how many there are:
    every write outside a transaction, every COMMIT and CHECKPOINT, and the first and last write
    inside each transaction (a crash anywhere inside one leaves the store as it was before it)."""
    points: list[int] = []
    inside: list[int] | None = None
    n = 0
    for sql in statements:
        word = sql.split()[0].upper()
        if word == "BEGIN":
            inside = []
        elif _STORE_WRITE.match(sql):
            n += 1
            if inside is None or word in ("COMMIT", "CHECKPOINT"):
                points += [*inside[:1], *inside[-1:], n] if inside else [n]
                inside = None if word == "COMMIT" else inside
            else:
                inside.append(n)
    return sorted(set(points)), n


def _child_ingest(db: Path, logs: list[str], kill_after: int) -> int:
    env = {**os.environ, KILL_AFTER_ENV: str(kill_after)}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db), *logs], env=env, capture_output=True, text=True
    )
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode


def test_an_ingest_killed_at_any_statement_is_completed_exactly_by_a_reingest(
    tmp_path: Path,
) -> None:
    logs = _logs(tmp_path)
    clean = tmp_path / "clean.duckdb"
    con = store.connect(clean)
    recorder = _Recorder(con)
    ingest(recorder, logs)  # type: ignore[arg-type]
    con.close()
    expected = _snapshot(clean)
    assert len(expected["messages"]) > len(expected["requests"]) > 1500
    points, writes = _kill_points(recorder.statements)
    assert writes > 10 and 1 in points and writes in points
    if THOROUGH:
        points = list(range(1, writes + 1))

    for n in [*points, writes + 1]:
        db = tmp_path / f"killed-{n}.duckdb"
        if _child_ingest(db, logs, n) == 0:
            assert n == writes + 1, f"the ingest completed before write {n} of {writes}"
            break  # one past the last write: the ingest completes, as the count said
        assert n <= writes, f"the ingest made more than the {writes} writes counted"
        con = store.connect(db)
        assert store.check_invariants(con) == [], f"killed after statement {n}"
        ingest(con, logs)
        con.close()
        assert _snapshot(db) == expected, f"killed after statement {n}"
        for stale in tmp_path.glob(f"killed-{n}.duckdb*"):
            stale.unlink()


def test_analyze_refuses_a_store_with_duplicate_messages(tmp_path: Path) -> None:
    logs = write_jsonl(tmp_path / "a.jsonl", [openai_line("x"), openai_line("y")])
    db = tmp_path / "store.duckdb"
    api.ingest([str(logs)], db)
    con = store.connect(db)
    assert store.check_invariants(con) == []
    con.execute("INSERT INTO messages SELECT * FROM messages WHERE request_id = 'x'")
    problems = store.check_invariants(con)
    con.close()
    assert problems and "position" in problems[0]
    with pytest.raises(AdvisorError) as caught:
        api.analyze([str(logs)], out_dir=tmp_path / "out", db=db)
    assert "advisor ingest" in str(caught.value.hint) and "--db" in str(caught.value.hint)
    assert not (tmp_path / "out" / api.ANALYSIS_FILE).exists()


@pytest.mark.parametrize(
    ("corruption", "problem"),
    [
        ("INSERT INTO requests SELECT * FROM requests WHERE request_id = 'x'", "request ids"),
        ("DELETE FROM requests WHERE request_id = 'x'", "messages whose request"),
        ("INSERT INTO messages SELECT * FROM messages WHERE request_id = 'x'", "position"),
        ("DELETE FROM messages WHERE request_id = 'x'", "a prompt but no messages"),
        ("INSERT INTO texts SELECT * FROM texts LIMIT 1", "more than once in texts"),
        ("DELETE FROM texts WHERE text_hash IN (SELECT response_hash FROM requests)", "not in"),
    ],
)
def test_each_broken_invariant_is_named(con, tmp_path: Path, corruption: str, problem: str) -> None:
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", [openai_line("x"), openai_line("y")]))])
    assert store.check_invariants(con) == []
    con.execute(corruption)
    problems = store.check_invariants(con)
    assert len(problems) == 1 and problem in problems[0], problems
