"""What a test of a source format reads back: stored requests by id, and their baseline costs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import duckdb


def rows_by_id(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    cur = con.execute("SELECT * FROM requests")
    names = [d[0] for d in cur.description]
    return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def baseline_costs(result: Any) -> dict[str, Decimal | None]:
    """request_id -> baseline cost in the store an `api.analyze` result wrote."""
    con = duckdb.connect(str(result.files["db"]), read_only=True)
    try:
        return dict(con.execute("SELECT request_id, baseline_cost FROM costs").fetchall())
    finally:
        con.close()
