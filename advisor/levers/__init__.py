"""The levers: each one a policy replayed over the logged requests, one interface for all.

A lever reads a *state* table (one row per request: the model and token counts it is billed on)
and writes a new state table under its policy. `simulate` prices states, so a lever never prices
anything itself, and chains levers in the fixed order of DESIGN.md section 1: tiering -> trimming
and output caps -> caching -> batching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb

from advisor.pricing import PriceTable

# The columns of every state table; cost_sql prices exactly these.
STATE_COLUMNS = (
    "request_id",
    "model_key",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "service_tier",
)


@dataclass
class SimOptions:
    """User choices that change what the levers assume (CLI flags of `analyze`)."""

    cache_ttl_seconds: int | None = None  # overrides every provider's TTL for what-if runs
    offline_features: tuple[str, ...] = ()  # features the user marks as not interactive
    deployments: dict[str, str] = field(default_factory=dict)


@dataclass
class LeverContext:
    """What a lever may read: the store (requests, messages, texts...), prices, rules, options."""

    con: duckdb.DuckDBPyConnection
    prices: PriceTable
    rules_dir: Path
    options: SimOptions
    # What a lever keeps from its standalone run for its chained run in the same simulation
    # (the store does not change in between), e.g. the caching lever's prefix models.
    scratch: dict[str, Any] = field(default_factory=dict)


@dataclass
class LeverOutcome:
    """A lever's effect on one input state: the new state's table name and what it touched.

    `per_request` optionally names a table (request_id, ...) of per-request columns that
    `export decisions` shows (e.g. cache_read_tokens_sim) — only from the standalone run.
    """

    state: str
    affected_requests: int
    risk: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    per_request: str | None = None


class Lever(Protocol):
    id: str
    title: str

    def apply(self, ctx: LeverContext, state: str, out: str, *, standalone: bool) -> LeverOutcome:
        """Write table `out` (STATE_COLUMNS) from table `state` under this lever's policy."""
        ...
