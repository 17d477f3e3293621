"""Property: a mutated line is always ingested, quarantined or a counted duplicate, and the
parallel reader stores exactly what the line-exact path does."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from helpers import anthropic_line, examples, openai_line, store_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import store
from advisor.ingest import ingest, jsonl

# Strings that look like JSON: content, tools and the like are read as text, then parsed.
JSONISH = ["[", "[1,", "{", "[bad", '[{"text": 1}]', '[{"a": 1}, 2]', "[]", "{}"]
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=20), st.lists(st.integers(), max_size=3), st.dictionaries(
        st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(JSONISH),
)  # fmt: skip
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, (*prefix, i))
    return out


def _at(obj: Any, path: tuple) -> Any:
    for step in path:
        obj = obj[step]
    return obj


@st.composite
def mutated_line(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from([openai_line(tools=TOOLS), anthropic_line()]))
    base = json.loads(json.dumps(base))
    base["id"] = draw(st.text(min_size=1, max_size=8))
    kind = draw(st.sampled_from(["set", "delete", "jsonish", "truncate", "bytes", "none"]))
    if kind == "jsonish":  # a field advisor reads as text, then parses, turns JSON-like
        texts = [p for p in _paths(base) if p[-1] in ("content", "system", "tools", "text")]
        path = draw(st.sampled_from(texts))
        _at(base, path[:-1])[path[-1]] = draw(st.sampled_from(JSONISH))
    if kind in ("set", "delete"):
        path = draw(st.sampled_from(_paths(base)))
        parent = _at(base, path[:-1])
        if kind == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(ODD_VALUES)
    data = json.dumps(base).encode()
    if kind == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif kind == "bytes":
        at = draw(st.integers(0, len(data)))
        junk = draw(st.binary(min_size=1, max_size=8)).replace(b"\n", b"").replace(b"\r", b"")
        data = data[:at] + junk + data[at:]
    return data


@settings(
    max_examples=examples(15, 60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=st.lists(mutated_line(), min_size=1, max_size=12))
def test_every_line_is_accounted_for(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / "mutated.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    con = store.connect()
    try:
        report = ingest(con, [str(path)])
        totals = report.totals
        assert totals.rows == len(lines)
        assert totals.ingested + totals.quarantined + totals.duplicates == len(lines)
        stored = con.execute("SELECT count(*) FROM requests").fetchone()
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()
        assert stored == (totals.ingested,)
        assert quarantined == (totals.quarantined,)
        # Every stored row is internally consistent.
        bad = con.execute(
            """SELECT count(*) FROM requests WHERE input_tokens < 0 OR output_tokens < 0
               OR cache_read_tokens + cache_write_tokens > input_tokens OR ts IS NULL
               OR model IS NULL"""
        ).fetchone()
        assert bad == (0,)
        # DuckDB's parallel reader and the line-exact path store exactly the same.
        exact = store.connect()
        jsonl._ingest_lines(exact, path, "jsonl", "auto", None, None)
        assert store_snapshot(con) == store_snapshot(exact)
        exact.close()
    finally:
        con.close()


CSV_COLUMNS = {
    "timestamp": st.sampled_from(["2026-10-01T12:00:00Z", "1790856000", "1790856000000"]),
    "model": st.sampled_from(["gpt-4o", "claude-sonnet-4-5", "not-a-model"]),
    "input_tokens": st.integers(0, 10_000).map(str),
    "output_tokens": st.integers(0, 2_000).map(str),
    "cached_tokens": st.integers(0, 100).map(str),
    "latency_ms": st.floats(0, 1e5, allow_nan=False).map(str),
    "max_tokens": st.integers(1, 4096).map(str),
    "stream": st.sampled_from(["true", "false"]),
    "cost": st.decimals(0, 10, places=6).map(str),
    "status": st.sampled_from(["ok", "error", "success"]),
    "prompt": st.text(max_size=30),
    "response": st.text(max_size=30),
}
ODD_CELLS = st.one_of(
    st.just(""), st.text(max_size=20), st.sampled_from(JSONISH),
    st.sampled_from(["NaN", "-1", "1e400", "-1e13", "99999999999999999999", "inf", '"', "a,b"]),
    st.integers(-(2**70), 2**70).map(str), st.floats().map(str),
)  # fmt: skip


@st.composite
def csv_rows(draw: st.DrawFn) -> tuple[list[list[str]], set[int]]:
    """Rows of cells, and the indexes of the rows given one cell too many or too few."""
    rows, broken = [], set()
    for i in range(draw(st.integers(1, 8))):
        row = {name: draw(cell) for name, cell in CSV_COLUMNS.items()}
        for name in draw(st.lists(st.sampled_from(list(CSV_COLUMNS)), max_size=3)):
            row[name] = draw(ODD_CELLS)
        cells = list(row.values())
        if i > 0 and draw(st.integers(0, 5)) == 0:  # the first row shows the reader the shape
            cells = [*cells, "extra"] if draw(st.booleans()) else cells[:-2]
            broken.add(i)
        rows.append(cells)
    return rows, broken


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=csv_rows())
def test_every_csv_row_is_accounted_for(
    tmp_path: Path, data: tuple[list[list[str]], set[int]]
) -> None:
    rows, broken = data
    path = tmp_path / "mutated.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(CSV_COLUMNS))
        writer.writerows(rows)
    con = store.connect()
    try:
        totals = ingest(con, [str(path)]).totals
        assert totals.rows == len(rows)
        assert totals.ingested + totals.quarantined + totals.duplicates == len(rows)
        assert con.execute("SELECT count(*) FROM requests").fetchone() == (totals.ingested,)
        bad = con.execute(
            """SELECT count(*) FROM requests WHERE input_tokens < 0 OR output_tokens < 0
               OR ts IS NULL OR model IS NULL"""
        ).fetchone()
        assert bad == (0,)
        # Each row is on its own line (the header is line 1), told once.
        stored = [r[0] for r in con.execute("SELECT source_line FROM requests").fetchall()]
        held = [r[0] for r in con.execute("SELECT source_line FROM quarantine").fetchall()]
        assert len(set(stored + held)) == len(stored) + len(held)
        assert set(stored + held) <= set(range(2, len(rows) + 2))
        assert {i + 2 for i in broken} <= set(held)
    finally:
        con.close()
