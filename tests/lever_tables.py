"""Tiny request tables in DuckDB for lever unit tests: a row builder and a store with prices."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from advisor.pricing import load_prices, register_prices
from advisor.ruleset import default_rules_dir

RULES = default_rules_dir()
PRICES = load_prices(RULES)
T0 = dt.datetime(2026, 10, 1, 2, 0, 0)

COLUMNS = {
    "request_id": "VARCHAR",
    "ts": "TIMESTAMP",
    "feature": "VARCHAR",
    "user_id": "VARCHAR",
    "account_id": "VARCHAR",
    "stream": "BOOLEAN",
    "latency_ms": "DOUBLE",
    "ttft_ms": "DOUBLE",
    "model": "VARCHAR",
    "model_key": "VARCHAR",
    "input_tokens": "BIGINT",
    "cache_read_tokens": "BIGINT",
    "cache_write_tokens": "BIGINT",
    "cache_write_1h_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "service_tier": "VARCHAR",
    "source_format": "VARCHAR",
}
STATE = (
    "request_id, model_key, input_tokens, cache_read_tokens, cache_write_tokens,"
    " cache_write_1h_tokens, output_tokens, service_tier"
)


def row(rid: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": rid,
        "ts": T0,
        "feature": "f",
        "user_id": None,
        "account_id": "acme",
        "stream": False,
        "latency_ms": 2000.0,
        "ttft_ms": None,
        "model": "gpt-4o",
        "model_key": "gpt-4o",
        "input_tokens": 1000,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "output_tokens": 200,
        "service_tier": "default",
        "source_format": "jsonl",
    }
    return base | kw


def store(
    rows: list[dict[str, Any]], con: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    """A store holding `rows` as `requests` and `state_base`; `con` reuses a connection (and
    its registered prices) across hypothesis examples."""
    fresh = con is None
    con = duckdb.connect() if con is None else con
    cols = ", ".join(f"{k} {v}" for k, v in COLUMNS.items())
    con.execute(f"CREATE OR REPLACE TABLE requests ({cols})")
    if rows:
        marks = ", ".join("?" for _ in COLUMNS)
        con.executemany(
            f"INSERT INTO requests VALUES ({marks})", [[r[k] for k in COLUMNS] for r in rows]
        )
    con.execute(f"CREATE OR REPLACE TABLE state_base AS SELECT {STATE} FROM requests")
    if fresh:
        register_prices(con, PRICES)
    return con
