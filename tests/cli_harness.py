"""The advisor CLI with one stage replaced, for tests that interrupt a run at a known point.

    python cli_harness.py POINT ADVISOR-ARGS...      POINT: ingest | levers | write

When the run reaches POINT it touches the file named by $ADVISOR_HARNESS_READY, then waits for
the test's SIGINT: inside DuckDB queries (ingest: as the second log file starts) or in Python
(levers: where the simulation starts; write: where the report is rendered).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

WAIT_SECONDS = 120


def _ready() -> None:
    Path(os.environ["ADVISOR_HARNESS_READY"]).touch()


def wait_in_python(*_args: Any, **_kwargs: Any) -> Any:
    _ready()
    time.sleep(WAIT_SECONDS)
    raise SystemExit("cli_harness: no interrupt came")


def wait_in_duckdb() -> None:
    import duckdb

    con = duckdb.connect()
    _ready()
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:  # short queries back to back: the signal lands in one
        con.execute("SELECT sum(hash(i)) FROM range(20000000) t(i)").fetchall()
    raise SystemExit("cli_harness: no interrupt came")


def _patch(point: str) -> None:
    import advisor.api
    import advisor.ingest

    if point == "ingest":
        read_file = advisor.ingest.ingest_jsonl
        files: list[Any] = []

        def second_file_waits(*args: Any, **kwargs: Any) -> Any:
            files.append(args)
            if len(files) == 2:
                wait_in_duckdb()
            return read_file(*args, **kwargs)

        advisor.ingest.ingest_jsonl = second_file_waits  # type: ignore[assignment]
        # one file at a time, as a big log is read (small files are otherwise read in batches)
        advisor.ingest._batches = lambda paths, _fmt: ([p] for p in paths)  # type: ignore[assignment]
    elif point == "levers":
        advisor.api.simulate = wait_in_python  # type: ignore[assignment]
    elif point == "write":
        advisor.api.render_report = wait_in_python  # type: ignore[assignment]
    else:
        raise SystemExit(f"cli_harness: unknown point {point!r}")


if __name__ == "__main__":
    _patch(sys.argv[1])
    from advisor.cli import main

    sys.argv = ["advisor", *sys.argv[2:]]
    main()
