"""A run's output folder: held against a second writer, a staging folder where the new set is
built, swapped in whole only when complete; the store mark that says `analyze` made a store
(the only kind it replaces); and Ctrl-C, held while the set is swapped, recognised wherever it
lands (Python or a DuckDB query)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from advisor import store
from advisor.errors import AdvisorError, InputError

STAGING_PREFIX = ".advisor-run-"  # + pid: a run's outputs until they are complete
# A store `analyze` created carries this meta entry: only such a store is ever replaced.
CREATED_BY = "created_by"
ANALYZE_MARK = "advisor analyze"


def mark_as_own(con: duckdb.DuckDBPyConnection) -> None:
    """Mark a store as one `analyze` created, so that a later run may replace it."""
    store.set_meta(con, CREATED_BY, ANALYZE_MARK)


def unmark(con: duckdb.DuckDBPyConnection) -> None:
    """Logs added to a store another way (`advisor ingest`, `analyze --db`): it no longer
    holds only what one `analyze` run put there, so no later run may replace it."""
    con.execute("DELETE FROM meta WHERE key = ?", [CREATED_BY])


def check_own_store(path: Path) -> None:
    """Refuse to replace a store that `analyze` did not create (say, one `advisor ingest`
    built): only a store carrying its mark is part of the outputs a run replaces."""
    if not os.path.lexists(path):
        return
    mark = None
    try:
        con = store.connect(path, read_only=True)
    except duckdb.Error:
        pass  # not a store this DuckDB reads: not one `analyze` made either
    else:
        try:
            mark = store.get_meta(con, CREATED_BY)
        except duckdb.Error:
            pass
        finally:
            con.close()
    if mark != ANALYZE_MARK:
        raise InputError(
            f"{path} is not a store one `advisor analyze` made alone (`advisor ingest` or "
            "`--db` built or added to it): not replacing it",
            hint=f"to add the logs to it and analyse it all: --db {path}; to analyse the logs "
            "alone: another -o (or remove that store yourself if you no longer need it)",
        )


@contextmanager
def held(out: Path) -> Iterator[None]:
    """Create `out` if needed and hold it for this run: a second `analyze` into the same
    folder is refused while this one runs (where the system has flock)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror}") from exc
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        yield
        return
    try:
        fd = os.open(out, os.O_RDONLY)
    except OSError as exc:
        raise InputError(f"cannot open the output folder {out}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AdvisorError(
                f"{out}: another advisor process is writing in this folder",
                hint="wait for it to finish, or use another -o",
            ) from exc
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A new folder inside `out` for this run's outputs, removed when the run ends whatever
    happens (a crashed run's folder goes when the next run starts)."""
    staging = _staging_folder(out)
    try:
        yield staging
    finally:
        with interrupts_held():
            shutil.rmtree(staging, ignore_errors=True)


def _staging_folder(out: Path) -> Path:
    for old in out.glob(STAGING_PREFIX + "*"):
        pid = old.name.removeprefix(STAGING_PREFIX)
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(old, ignore_errors=True)
    staging = out / f"{STAGING_PREFIX}{os.getpid()}"
    try:
        staging.mkdir()
    except OSError as exc:
        raise InputError(
            f"cannot write in the output folder {out}: {exc.strerror}",
            hint="choose another -o, or make the folder writable",
        ) from exc
    return staging


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # it exists, under another user
    return True


def swap_in(staging: Path, out: Path, names: Sequence[str]) -> None:
    """Replace the previous outputs in `out` by the staged ones as one set: every previous one
    moves aside (a rename each), then every new one in; a failure puts everything back."""
    aside = staging / ".previous"
    aside.mkdir()
    moved: list[tuple[Path, Path]] = []
    try:
        for source, target in [
            *((out / name, aside / name) for name in names),
            *((staging / name, out / name) for name in names),
        ]:
            if os.path.lexists(source):
                os.replace(source, target)
                moved.append((source, target))
    except OSError as exc:
        for source, target in reversed(moved):
            os.replace(target, source)
        raise AdvisorError(
            f"cannot replace the outputs in {out}: {exc.strerror}",
            hint="the previous outputs are unchanged",
        ) from exc


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C waits until the block is done (a set of renames, a clean-up), then acts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        signal.raise_signal(signal.SIGINT)


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C, in Python or inside a DuckDB query (which reports it as its own exception)."""
    return isinstance(exc, KeyboardInterrupt | duckdb.InterruptException) or (
        isinstance(exc, RuntimeError) and str(exc) == "Query interrupted"
    )
