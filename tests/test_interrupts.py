"""Ctrl-C, a second writer and the exit codes of `main()`: 130 with one line saying what was
kept, a clear error for a store another process holds, 70 for an internal error (--debug too)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from helpers import folder_snapshot, requests_in, small_log

from advisor import api, cli
from advisor.errors import AdvisorError

HARNESS = Path(__file__).with_name("cli_harness.py")
READY_WITHIN = 300  # seconds to reach the stage: generous, for a slow and loaded machine


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell may have ignored it


def interrupted_at(point: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `advisor ARGS` through the harness, send SIGINT once it reaches `point`."""
    ready = tmp_path / f"ready-{point}"
    env = {**os.environ, "ADVISOR_HARNESS_READY": str(ready)}
    proc = subprocess.Popen(
        [sys.executable, str(HARNESS), point, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + READY_WITHIN
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                stdout, stderr = proc.communicate()
                pytest.fail(f"never reached {point} (rc {proc.returncode}): {stderr[-2000:]}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("previous")
    api.analyze([str(small_log(base / "p.jsonl", "p", n=5))], out_dir=base / "advisor-out")
    return base / "advisor-out"


@pytest.fixture
def logs(tmp_path: Path) -> list[str]:
    return [str(small_log(tmp_path / f"{n}.jsonl", n, n=10)) for n in ("a", "b")]


@pytest.mark.parametrize("point", ["ingest", "levers", "write"])
def test_an_interrupted_analyze_keeps_the_previous_run_whole(
    previous: Path, tmp_path: Path, logs: list[str], point: str
) -> None:
    """Inside a DuckDB query while reading, in Python during the levers, and while writing the
    outputs: exit 130, one line saying what was kept, and the previous set untouched."""
    out = Path(shutil.copytree(previous, tmp_path / "advisor-out"))
    before = folder_snapshot(out)
    result = interrupted_at(point, "analyze", *logs, "-o", str(out), tmp_path=tmp_path)
    assert result.returncode == 130, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: nothing written"), lines
    assert str(out) in lines[0] and "previous run" in lines[0]
    assert result.stdout == ""
    assert folder_snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in previous.iterdir())


def test_an_interrupted_ingest_says_the_store_holds_the_files_read(
    tmp_path: Path, logs: list[str]
) -> None:
    db = tmp_path / "store.duckdb"
    result = interrupted_at("ingest", "ingest", *logs, "--db", str(db), tmp_path=tmp_path)
    assert result.returncode == 130, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted:") and str(db) in lines[0]
    assert "ingested" in lines[0]
    assert requests_in(db) == 10  # the first file, whole


def test_an_interrupted_analyze_of_a_store_keeps_its_logs_and_the_previous_outputs(
    previous: Path, tmp_path: Path, logs: list[str]
) -> None:
    out = Path(shutil.copytree(previous, tmp_path / "advisor-out"))
    db = tmp_path / "store.duckdb"
    before = folder_snapshot(out)
    result = interrupted_at(
        "levers", "analyze", *logs, "--db", str(db), "-o", str(out), tmp_path=tmp_path
    )
    assert result.returncode == 130, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(db) in lines[0] and str(out) in lines[0], lines
    assert folder_snapshot(out) == before
    assert requests_in(db) == 20


def main_exit(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run cli.main() in this process; its exit code."""
    monkeypatch.setattr(sys, "argv", ["advisor", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    code = exit_.value.code
    return code if isinstance(code, int) else (0 if code is None else 1)


@pytest.mark.parametrize(
    "raised",
    [KeyboardInterrupt(), RuntimeError("Query interrupted"), duckdb.InterruptException()],
    ids=["python", "duckdb-query", "duckdb-interrupt"],
)
def test_ctrl_c_anywhere_exits_130_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], raised: BaseException
) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(api, "load_analysis", interrupted)
    assert main_exit(monkeypatch, "report", "analysis.json") == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), lines


def test_debug_shows_the_trace_and_still_exits_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(api, "analyze", broken)
    log = str(small_log(tmp_path / "a.jsonl", "a", n=1))
    assert main_exit(monkeypatch, "analyze", log, "--debug") == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: a bug" in err
    assert main_exit(monkeypatch, "analyze", log) == 70
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" in err


def test_an_os_error_on_a_path_is_an_error_naming_it_not_an_internal_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any command: a file it cannot write or read is the user's to fix (exit 1), not a bug."""

    def unwritable(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", "/some/where/report.md")

    monkeypatch.setattr(api, "load_analysis", unwritable)
    assert main_exit(monkeypatch, "report", "analysis.json") == 1
    err = capsys.readouterr().err
    assert "/some/where/report.md: Permission denied" in err and "internal" not in err


@pytest.fixture
def held_store(tmp_path: Path):
    """A store another process holds open for writing (as a running `advisor ingest` does)."""
    db = tmp_path / "advisor-out" / "advisor.duckdb"
    api.ingest([str(small_log(tmp_path / "h.jsonl", "h", n=2))], db)
    ready = tmp_path / "holding"
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import duckdb, pathlib, sys, time; con = duckdb.connect(sys.argv[1]); "
            "pathlib.Path(sys.argv[2]).touch(); time.sleep(120)",
            str(db), str(ready),
        ]
    )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_WITHIN
        while not ready.exists() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the holder never opened the store"
        yield db
    finally:
        holder.kill()
        holder.wait()


def test_a_second_writer_is_told_another_process_holds_the_store(
    held_store: Path, tmp_path: Path
) -> None:
    log = str(small_log(tmp_path / "a.jsonl", "a", n=2))
    calls = {
        "ingest": lambda: api.ingest([log], held_store),
        "analyze --db": lambda: api.analyze([log], out_dir=tmp_path / "o", db=held_store),
        "analyze -o": lambda: api.analyze([log], out_dir=held_store.parent),
    }
    for name, call in calls.items():
        with pytest.raises(AdvisorError) as error:
            call()
        assert str(held_store) in error.value.message, name
        assert "another" in error.value.message and "process" in error.value.message, name


def test_a_second_analyze_into_the_same_folder_is_refused_while_one_runs(tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "advisor-out"
    out.mkdir()
    log = str(small_log(tmp_path / "a.jsonl", "a", n=2))
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running `analyze` holds it
        with pytest.raises(AdvisorError) as error:
            api.analyze([log], out_dir=out)
        assert str(out) in error.value.message and "another" in error.value.message
        assert list(out.iterdir()) == []
    finally:
        os.close(fd)
