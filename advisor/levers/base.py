"""The lever contract: what every lever reads, writes and reports (DESIGN.md section 1).

A lever reads a *state* (one row per request: the model and token counts it is billed on, plus
the prompt it was sent with) and writes a new state under its policy. `simulate` prices states,
so a lever never prices anything itself; it runs each lever twice, on the baseline (standalone)
and on the previous lever's output (chained), in the fixed order of `advisor.levers.registry`.

A lever is built fresh for each simulation: `prepare` loads its rules and builds what both
replays reuse (kept on the instance), `replay` is state -> state, and `describe` reports the
standalone replay (typed Details and Risk models, recommendations, per-request decisions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, Protocol, TypeVar

import duckdb
from pydantic import BaseModel, Field

from advisor.money import Model, Money
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


@dataclass(frozen=True)
class State:
    """A counterfactual: one row per request (STATE_COLUMNS) plus the prompt it was sent with."""

    table: str  # STATE_COLUMNS
    messages: str = "messages"  # request_id, position, role, text_hash ... (the store's columns)
    texts: str = "texts"  # text_hash, text, ... (the store's columns)


@dataclass(frozen=True)
class SimOptions:
    """User choices that change what the levers assume (CLI flags of `analyze`)."""

    cache_ttl_seconds: int | None = None  # overrides every provider's TTL for what-if runs
    offline_features: tuple[str, ...] = ()  # features the user marks as not interactive
    deployments: Mapping[str, str] = field(default_factory=dict)
    levers: tuple[str, ...] | None = None  # None: every lever; else the ids to run (order kept)
    # the share of the log the levers replay (advisor.sampling): a rule's minimum request count
    # over the whole period compares with the sample's count scaled by it
    sample_fraction: float = 1.0


@dataclass
class LeverContext:
    """What a lever may read: the store (requests, messages, texts...), prices, rules, options."""

    con: duckdb.DuckDBPyConnection
    prices: PriceTable
    rules_dir: Path
    options: SimOptions


@dataclass(frozen=True)
class Replayed:
    """A replay's output state and how many requests it changed."""

    state: State
    affected_requests: int


class Recommendation(Model):
    """One change to make, with the saving it brings (ranked by saving in analysis.json)."""

    title: str
    lever: str
    saving: Money
    action: str
    excerpt_before: str | None = None  # redacted prompt excerpt, for a prompt change
    excerpt_after: str | None = None


class SavingRange(Model):
    """The standalone saving under the low and high end of an assumption that moves it (a
    threshold, a TTL, a percentile, an eligibility rule, token counts); `assumption` says which."""

    low: Money
    high: Money
    assumption: str


# covariant: a Findings[TieringDetails, ...] is a Findings[BaseModel, BaseModel]
D = TypeVar("D", bound=BaseModel, covariant=True)
R = TypeVar("R", bound=BaseModel, covariant=True)


@dataclass(frozen=True)
class Findings(Generic[D, R]):
    """What a lever reports about its standalone replay."""

    details: D  # the lever's pydantic Details model
    risk: R  # the lever's pydantic Risk model
    recommendations: list[Recommendation] = field(default_factory=list)
    per_request: str | None = None  # table (request_id, <decision columns>) for `export decisions`
    range: SavingRange | None = None  # None: no assumption the lever knows of moves the figure


class Lever(Protocol[D, R]):
    id: ClassVar[str]  # "tiering" | "trimming" | "output_caps" | "caching" | "batching"
    title: ClassVar[str]

    def prepare(self, ctx: LeverContext) -> None:
        """Once per simulation, before any replay: load/validate the rules, build what both
        replays reuse (kept on the instance: a fresh instance per simulation)."""
        ...

    def replay(self, ctx: LeverContext, state: State, out: str) -> Replayed:
        """Pure state -> state: write table `out` (STATE_COLUMNS) from `state` under the policy.
        Called on the baseline (standalone) and on the previous lever's output (chained)."""
        ...

    def describe(self, ctx: LeverContext, base: State, alone: Replayed) -> Findings[D, R]:
        """Right after the standalone replay: details, risk, recommendations and per-request
        decision columns, from the baseline and the standalone state."""
        ...


class LeverNote(Model):
    """Why a lever could not run or found nothing, and what to log or change to get an answer."""

    id: str = Field(description="the rules/lever_notes.yaml id")
    reason: str
    fix: str | None = None


class LeverResultBase(Model):
    """One lever's figures in analysis.json; each lever adds `id`, `details` and `risk`."""

    title: str
    standalone_saving: Money  # over priced requests
    marginal_saving: Money
    affected_requests: int
    unpriced_requests: int  # requests this lever could not price (their saving unknown)
    range: SavingRange | None = None  # the standalone saving's range under its key assumption
    why_not: LeverNote | None = None  # set when the lever could not run or saved nothing
