"""The models of analysis.json: the versioned product every report and export renders from.

Money is Decimal, serialised as a decimal string; shares are floats in 0..1. Lists are sorted by
the producer so that the same input gives a byte-identical document (only `generated_at` varies).
Every string is redacted (`Analysis.redacted`) when an analysis is built or loaded, so no renderer
can show a secret or an e-mail from the logs.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from advisor.errors import AdvisorError
from advisor.guardrails.models import Anomaly, Guardrails
from advisor.levers.base import Recommendation
from advisor.levers.batching import BatchingResult
from advisor.levers.caching.models import CachingResult
from advisor.levers.output_caps.models import OutputCapsResult
from advisor.levers.streaming import StreamingAdvice
from advisor.levers.tiering.models import TieringResult
from advisor.levers.trimming.models import TrimmingResult
from advisor.money import MaybeMoney, Money
from advisor.money import Model as _Model

SCHEMA_VERSION = "2.3"

__all__ = ["Money", "Recommendation"]  # re-exported: renderers read them from here


class FileInput(_Model):
    path: str
    format: str
    rows: int
    ingested: int
    duplicates: int
    quarantined: int


class Period(_Model):
    start: str | None
    end: str | None
    days: float


class UnpricedModel(_Model):
    model: str
    provider: str | None
    requests: int
    input_tokens: int
    output_tokens: int


class QuarantineReason(_Model):
    file: str
    field: str | None
    reason: str
    rows: int
    first_line: int


class TokenSources(_Model):
    logged: int = 0
    tokenized: int = 0
    estimated: int = 0
    unbilled: int = 0


class Coverage(_Model):
    requests: int
    priced_requests: int
    unpriced_requests: int
    quarantined_rows: int
    duplicate_rows: int
    error_requests: int
    unpriced_models: list[UnpricedModel]
    token_source: TokenSources
    token_calibration: float | None = Field(
        None, description="logged / estimated prompt tokens, applied to estimated counts"
    )
    tokenizer: str = Field(description="tiktoken, or estimate when no encoding could be loaded")
    model_resolution: dict[str, int]
    quarantine_reasons: list[QuarantineReason]
    notes: list[str]


class CostRow(_Model):
    key: str | None
    requests: int
    input_tokens: int
    cache_read_tokens: int
    output_tokens: int
    cost: MaybeMoney = Field(description="over priced requests; None: none of them is priced")
    share: float
    unpriced_requests: int = 0
    model_key: str | None = None
    via: list[str] = Field(
        default_factory=list,
        description="by_model: the names this model was logged under when they differ from the "
        "key (aliases, dated snapshots, mapped deployments), sorted",
    )


class ReconciliationRow(_Model):
    model_key: str | None
    requests: int
    logged: Money
    computed: Money
    gap: Money
    gap_share: float | None


class Reconciliation(_Model):
    """Logged cost vs our pricing, over rows whose token counts were logged (like for like)."""

    rows_with_logged_cost: int
    logged_total: Money
    computed_total: Money
    gap: Money
    gap_share: float | None
    by_model: list[ReconciliationRow]


class Baseline(_Model):
    cost: MaybeMoney = Field(description="over priced requests; None: no request is priced")
    by_model: list[CostRow]
    by_feature: list[CostRow]
    by_user: list[CostRow]
    by_day: list[CostRow]
    by_day_model: list[CostRow] = Field(
        default_factory=list, description="spend per (day, model_key): key is the day"
    )
    reconciliation: Reconciliation


# One model per lever, told apart by `id`: the schema describes every lever's details.
LeverResult = Annotated[
    TieringResult | TrimmingResult | OutputCapsResult | CachingResult | BatchingResult,
    Field(discriminator="id"),
]
LEVER_RESULT: TypeAdapter[LeverResult] = TypeAdapter(LeverResult)


class Combined(_Model):
    """All levers in order: the cost after them over priced requests, and what stays unknown."""

    cost: MaybeMoney = Field(description="None: no request could be priced")
    saving: Money
    saving_share: float
    unpriced_requests: int = Field(description="requests whose cost after the levers is unknown")


class ActionRow(_Model):
    """One change to make: where, the exact setting, what it saves, how risky, how much work."""

    id: str = Field(description="stable: <lever>:<scope>, e.g. tiering:support-chat")
    lever: str
    scope: str = Field(description="the feature, template or job the change applies to")
    change: str = Field(description="the exact setting or edit, e.g. max_tokens: 600")
    saving: Money = Field(description="over the logged period, in the levers' chained order")
    saving_per_month: Money = Field(description="saving normalised to 30 days")
    requests: int = Field(description="requests whose cost the change lowers")
    risk: str = Field(description="low | medium | high")
    risk_reason: str
    effort: str = Field(description="config | prompt edit | code")
    rule: str | None = Field(None, description="the rules/ id the change comes from")


class ActionPlan(_Model):
    """The changes to make, de-duplicated; rows + other add up to the combined saving exactly."""

    rows: list[ActionRow] = Field(default_factory=list, description="largest saving first")
    other: Money = Field(
        default=Decimal(0), description="the savings below the minimum worth showing, summed"
    )
    other_changes: int = 0
    total: Money = Field(default=Decimal(0), description="rows + other: the combined saving")
    total_per_month: Money = Decimal(0)
    period_days: float = 0.0
    minimum: Money = Field(default=Decimal(0), description="a row's smallest saving shown (rules)")
    interactions: list[str] = Field(
        default_factory=list, description="how the rows' savings depend on each other"
    )


class UnitCostRow(_Model):
    """A feature's cost per request before and after the levers (over priced requests)."""

    feature: str | None
    requests: int
    cost_before: MaybeMoney
    cost_after: MaybeMoney
    saving: Money
    per_request_before: MaybeMoney
    per_request_after: MaybeMoney
    unpriced_requests: int = 0


class PriceSource(_Model):
    name: str = Field(
        description="a curated rules file (prices/openai.yaml) or a --prices file name"
    )
    kind: str = Field(
        description="rules (the curated table), file (--prices) or community (the bundled"
        " snapshot of LiteLLM's table, the fallback)"
    )
    retrieved: str
    models: int
    requests: int = Field(0, description="logged requests priced by this source's entries")


class PriceTableIdentity(_Model):
    """Which prices an analysis used: `advisor diff` names a price change as a cause."""

    sources: list[PriceSource]
    digest: str = Field(description="sha256 of the canonical content of the effective price table")
    models: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of each model's prices, for the model keys the requests resolved to",
    )


class Interval(_Model):
    """A sampled figure's 95 % interval (sampling error only)."""

    low: Money
    high: Money


class RowInterval(Interval):
    id: str = Field(description="the action_plan row id")


class LeverInterval(_Model):
    id: str
    standalone: Interval
    marginal: Interval


class Sample(_Model):
    """Present only when the levers were replayed on a sample (advisor.sampling): the baseline
    is exact; lever, combined, recommendation and action-plan savings are scaled estimates."""

    fraction: float = Field(
        description="share of each stratum's units drawn (two at the least), by a stable hash"
    )
    automatic: bool = Field(description="chosen because the log holds more than auto_above")
    auto_above: int = Field(description="request count above which analyze samples by itself")
    unit: str = Field(description="what one sampling unit holds")
    strata: int = Field(description="features: units are drawn within each, savings scaled by each")
    units: int
    units_sampled: int
    requests: int
    requests_sampled: int
    baseline_cost_sampled: Money = Field(description="baseline cost of the sampled requests")
    scale: float = Field(
        description="exact / sampled baseline cost over all strata (12 places): the scale of "
        "figures not split by stratum (ranges, recommendations)"
    )
    method: str
    levers: list[LeverInterval] = Field(default_factory=list)
    combined: Interval
    action_plan: list[RowInterval] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Analysis(_Model):
    schema_version: str = SCHEMA_VERSION
    generated_at: str
    advisor_version: str
    currency: str = "USD"
    inputs: list[FileInput]
    period: Period
    coverage: Coverage
    baseline: Baseline
    levers: list[LeverResult] = Field(default_factory=list)
    levers_run: list[str] = Field(default_factory=list, description="lever ids, in order")
    levers_skipped: list[str] = Field(
        default_factory=list, description="lever ids switched off or not built yet"
    )
    combined: Combined
    guardrails: Guardrails = Field(default_factory=Guardrails)
    anomalies: list[Anomaly] = Field(
        default_factory=list, description="ranked by excess spend, the largest first"
    )
    recommendations: list[Recommendation] = Field(default_factory=list)
    action_plan: ActionPlan = Field(default_factory=ActionPlan)
    unit_economics: list[UnitCostRow] = Field(
        default_factory=list, description="per feature, the costliest first"
    )
    streaming: StreamingAdvice = Field(
        default_factory=StreamingAdvice,
        description="streaming and speed-premium advice (figures, no priced saving)",
    )
    prices: PriceTableIdentity | None = None  # None: written before prices were recorded
    sample: Sample | None = Field(
        default=None,
        description="absent: every request was replayed; else how the levers were sampled",
    )

    def redacted(self) -> Analysis:
        """A copy with every string masked (advisor.redact): user ids, features, file and model
        names, excerpts, notes. What leaves the store passes here."""
        from advisor.redact import scrub

        data = self.model_dump()
        prices = data.pop("prices")  # advisor's own digests and price files, no log text
        return Analysis.model_validate({**scrub(data), "prices": prices})

    def to_json(self) -> str:
        # Sorted keys: no dict built from a query's row order can make two runs differ.
        # an exact run writes no `sample` key: its document stays what it was before sampling
        data = self.model_dump(mode="json", exclude={"sample"} if self.sample is None else None)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def json_schema() -> dict[str, Any]:
    return Analysis.model_json_schema(mode="serialization")


def load_analysis(path: Path) -> Analysis:
    """Read an analysis.json, refusing other schema versions and currencies we cannot mix."""
    hint = "give the analysis.json that `advisor analyze` wrote"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AdvisorError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise AdvisorError(f"{path}: not JSON (line {exc.lineno}): {exc.msg}", hint) from exc
    except UnicodeDecodeError as exc:
        raise AdvisorError(f"{path}: not UTF-8 text (byte {exc.start})", hint) from None
    except RecursionError:  # the decoder recurses once per level
        raise AdvisorError(f"{path}: not an analysis: nested too deeply", hint) from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise AdvisorError(
            f"{path}: schema_version {version!r}; this advisor reads {SCHEMA_VERSION}",
            hint="re-run `advisor analyze` with this version",
        )
    try:
        analysis = Analysis.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise AdvisorError(f"{path}: not an analysis: {where}: {first['msg']}", hint) from None
    return analysis.redacted()  # an older or hand-made file, too
