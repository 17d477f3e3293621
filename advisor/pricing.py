"""Prices as data: the price table (rules/prices), model-name resolution, and exact request costs.

One cost formula, two implementations that must agree to the last digit: `request_cost`
(scalar, Python `Decimal`) and `cost_sql` (vectorised, DuckDB `DECIMAL`). Both take their rates
from `rates()`, so the fallback rules (a missing cache price, a tier or context without explicit
prices) live in one place. `import_litellm` turns LiteLLM's community price file into the same data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from advisor.errors import RuleError
from advisor.ruleset import RULES_SCHEMA_VERSION, load_model, rule_files

log = logging.getLogger(__name__)

PRICE_DECIMALS = 12  # per 1M tokens: per-token rates then need 18 decimals, held exactly below
RATE_TYPE = "DECIMAL(38,18)"  # per-token rate columns of the registered price table
COST_TYPE = "DECIMAL(38,18)"  # type of cost_sql(): exact for any token count below 10**20 / rate
TIERS = ("default", "batch", "flex", "priority")
KINDS = ("input", "cached_input", "cache_write_5m", "cache_write_1h", "output")
_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMALS)
_CTX = Context(prec=80, rounding=ROUND_HALF_EVEN)  # no token x price product ever rounds


def _money(value: object) -> Decimal:
    """Parse a quoted decimal price; YAML floats are refused because they are already inexact."""
    if isinstance(value, int | float):  # bool is an int too
        raise ValueError(
            f"prices must be quoted decimal strings, e.g. '{value}', not the YAML number {value!r}"
        )
    if not isinstance(value, str | Decimal):
        raise ValueError(f"expected a quoted decimal string, got {type(value).__name__}")
    try:
        price = Decimal(value.strip()) if isinstance(value, str) else value
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"a price must be a finite, non-negative number, got {value!r}")
    if price != price.quantize(_QUANTUM, context=_CTX):
        raise ValueError(f"{value!r} has more than {PRICE_DECIMALS} decimal places per 1M tokens")
    return price


Money = Annotated[Decimal, BeforeValidator(_money)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LongContext(_Rule):
    """Prices applied to the *whole* request once its input exceeds `threshold_tokens`."""

    threshold_tokens: int
    input: Money
    output: Money
    cached_input: Money | None = None
    cache_write_5m: Money | None = None
    cache_write_1h: Money | None = None


class Prices(_Rule):
    """USD per 1M tokens. None = no such price is published (see `rates` for the fallbacks)."""

    input: Money
    output: Money
    cached_input: Money | None = None
    cache_write_5m: Money | None = None
    cache_write_1h: Money | None = None
    batch_input: Money | None = None
    batch_output: Money | None = None
    batch_cached_input: Money | None = None
    flex_input: Money | None = None
    flex_output: Money | None = None
    flex_cached_input: Money | None = None
    priority_input: Money | None = None
    priority_output: Money | None = None
    priority_cached_input: Money | None = None
    cache_storage_per_hour: Money | None = None
    long_context: LongContext | None = None

    @model_validator(mode="after")
    def check_tier_pairs(self) -> Prices:
        for tier in ("batch", "flex", "priority"):
            if (getattr(self, f"{tier}_input") is None) != (
                getattr(self, f"{tier}_output") is None
            ):
                raise ValueError(f"{tier}_input and {tier}_output must be given together")
        return self


class ModelPrice(_Rule):
    """One priced model. `id` is the stable model key stored in requests.model_key."""

    id: str
    title: str
    provider: str | None = None  # filled from the file's provider when the entry has none
    aliases: tuple[str, ...] = ()
    encoding: Literal["o200k_base", "cl100k_base", "approx"]
    family: str | None = None
    effective_from: dt.date | None = None
    source: str
    retrieved: dt.date
    min_cache_tokens: int | None = None  # overrides the provider's caching.min_tokens
    prices: Prices


class ExtendedTTL(_Rule):
    ttl_seconds: int
    write_price: Literal["input", "cache_write_1h", "cache_storage_per_hour"]
    models: tuple[str, ...] | None = None  # None = every model of the provider
    note: str | None = None


class CachingRules(_Rule):
    """A provider's prompt-caching mechanics, as the caching lever replays them."""

    id: str
    title: str
    source: str
    rationale: str | None = None
    mode: Literal["automatic", "explicit", "implicit_and_explicit"]
    min_tokens: int
    increment: int | None = None  # hits counted in blocks of this many tokens above min_tokens
    ttl_seconds: int
    max_ttl_seconds: int | None = None
    refresh_on_hit: bool
    write_surcharge: bool
    max_breakpoints: int | None = None
    breakpoint_granularity: Literal["message", "token"]
    extended_ttl: ExtendedTTL | None = None


class BatchRules(_Rule):
    id: str
    title: str
    source: str
    rationale: str | None = None
    supported: bool
    discount: Money | None = None  # share of the standard price paid, e.g. 0.5
    stacks_with_cache: bool


class ProviderPrices(_Rule):
    """One `kind: prices` file: a provider's caching and batch rules plus its models."""

    schema_version: Literal[1]
    kind: Literal["prices"]
    provider: str | None = None  # None: a mixed file (e.g. an import); each model names its own
    currency: Literal["USD"]
    source: str
    retrieved: dt.date
    caching: CachingRules | None = None
    batch: BatchRules | None = None
    models: tuple[ModelPrice, ...]


@dataclass(frozen=True)
class Resolution:
    key: str
    how: Literal["exact", "alias", "prefix", "deployment"]


@dataclass(frozen=True)
class Rates:
    """Effective USD per 1M tokens of each token kind, for one model, tier and context length."""

    input: Decimal
    cached_input: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    output: Decimal


def _ratio(num: Decimal, den: Decimal) -> Decimal:
    return Decimal(1) if den == 0 else _CTX.divide(num, den)


def _q(value: Decimal) -> Decimal:
    """Derived rates (tier ratio x another rate) are rounded to the precision of list prices."""
    return value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN, context=_CTX)


def rates(price: ModelPrice, service_tier: str | None = "default", long: bool = False) -> Rates:
    """Per-1M rates for a tier and context length.

    Fallbacks, in order: no cached price -> reads at the input price; no 5-minute write price ->
    writes at the input price (providers without a surcharge); no 1-hour write price -> the 5-minute
    one. Long context: the long-context rate where listed, else the standard rate scaled by the
    long/standard input ratio. Tiers: `flex` uses flex prices if listed, else batch prices (OpenAI
    and Google price flex at batch rates); a tier the model has no prices for is billed at standard
    rates. Where a tier lists no price for a kind (cache writes, cached input, long context), the
    standard rate is scaled by the tier's ratio for that kind (the input ratio for writes).
    """
    p = price.prices
    cached = p.cached_input if p.cached_input is not None else p.input
    w5 = p.cache_write_5m if p.cache_write_5m is not None else p.input
    w1h = p.cache_write_1h if p.cache_write_1h is not None else w5
    base = Rates(p.input, cached, w5, w1h, p.output)
    lc = p.long_context
    long = long and lc is not None
    if long and lc is not None:
        scale = _ratio(lc.input, p.input)
        base = Rates(
            lc.input,
            lc.cached_input if lc.cached_input is not None else _q(cached * scale),
            lc.cache_write_5m if lc.cache_write_5m is not None else _q(w5 * scale),
            lc.cache_write_1h if lc.cache_write_1h is not None else _q(w1h * scale),
            lc.output,
        )
    tier = service_tier if service_tier in TIERS else "default"
    if tier == "flex" and p.flex_input is None:
        tier = "batch"
    t_in, t_out = getattr(p, f"{tier}_input", None), getattr(p, f"{tier}_output", None)
    if t_in is None or t_out is None:  # the default tier, or one the model has no prices for
        return base
    t_cached = getattr(p, f"{tier}_cached_input")
    m_in, m_out = _ratio(t_in, p.input), _ratio(t_out, p.output)
    m_cached = m_in
    if t_cached is not None and p.cached_input is not None:
        m_cached = _ratio(t_cached, p.cached_input)
    if long:
        return Rates(
            _q(base.input * m_in),
            _q(base.cached_input * m_cached),
            _q(base.cache_write_5m * m_in),
            _q(base.cache_write_1h * m_in),
            _q(base.output * m_out),
        )
    return Rates(
        t_in,
        t_cached if t_cached is not None else _q(base.cached_input * m_in),
        _q(base.cache_write_5m * m_in),
        _q(base.cache_write_1h * m_in),
        t_out,
    )


def is_long_context(price: ModelPrice, input_tokens: int) -> bool:
    lc = price.prices.long_context
    return lc is not None and input_tokens > lc.threshold_tokens


def request_cost(
    price: ModelPrice,
    *,
    input_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    output_tokens: int,
    service_tier: str | None = "default",
) -> Decimal:
    """Exact USD cost of one request (unrounded).

    Canonical counts (DESIGN section 3): input_tokens includes cache reads and writes;
    cache_write_1h_tokens is the part of cache_write_tokens written with a 1-hour TTL; output_tokens
    includes reasoning. The uncached remainder is billed at the input rate.
    """
    counts = (input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens)
    if min(*counts, output_tokens) < 0:
        raise ValueError("token counts cannot be negative")
    if cache_read_tokens + cache_write_tokens > input_tokens:
        raise ValueError("cache reads and writes are part of input_tokens and cannot exceed it")
    if cache_write_1h_tokens > cache_write_tokens:
        raise ValueError("cache_write_1h_tokens is a subset of cache_write_tokens")
    r = rates(price, service_tier, is_long_context(price, input_tokens))
    uncached = input_tokens - cache_read_tokens - cache_write_tokens
    with localcontext(_CTX):
        total = (
            uncached * r.input
            + cache_read_tokens * r.cached_input
            + (cache_write_tokens - cache_write_1h_tokens) * r.cache_write_5m
            + cache_write_1h_tokens * r.cache_write_1h
            + output_tokens * r.output
        )
        return total.scaleb(-6)


class PriceTable:
    """All loaded prices: models by key, provider rules by provider name, and a name index."""

    def __init__(self) -> None:
        self.models: dict[str, ModelPrice] = {}
        self.providers: dict[str, ProviderPrices] = {}
        self._ids: dict[str, str] = {}  # lower-cased id -> key
        self._aliases: dict[str, str] = {}  # lower-cased alias -> key

    def add(self, model: ModelPrice) -> None:
        """Add a model; an entry with an existing id replaces it but keeps the old aliases (a price
        override should not make dated snapshot names unpriced) and metadata the new one lacks."""
        old = self.models.get(model.id)
        if old is not None:
            model = model.model_copy(
                update={
                    "aliases": tuple(dict.fromkeys(model.aliases + old.aliases)),
                    "family": model.family or old.family,
                    "encoding": old.encoding if model.encoding == "approx" else model.encoding,
                    "min_cache_tokens": model.min_cache_tokens or old.min_cache_tokens,
                }
            )
        self.models[model.id] = model
        self._ids[model.id.lower()] = model.id
        for alias in model.aliases:
            self._aliases[alias.lower()] = model.id

    def caching_for(self, key: str) -> CachingRules | None:
        """The caching rules for one model (its own minimum applied); None if it cannot cache."""
        model = self.models[key]
        provider = self.providers.get(model.provider or "")
        if model.prices.cached_input is None or provider is None or provider.caching is None:
            return None
        if model.min_cache_tokens is None:
            return provider.caching
        return provider.caching.model_copy(update={"min_tokens": model.min_cache_tokens})

    def resolve(
        self,
        model: str,
        provider: str | None = None,
        deployments: Mapping[str, str] | None = None,
    ) -> Resolution | None:
        """The price-table key for a logged model name, or None: never a guess at another model.

        Order: a deployment name from `deployments` (Azure deployments are free-form names);
        `provider/model` as an exact id (imported tables hold such ids); exact id; alias; a dated
        suffix (-2024-08-06, -20250929, @20250929, -latest) stripped; provider prefixes (openai/,
        azure/, bedrock/, models/, ...) and Bedrock ids (us.anthropic.<id>-v1:0) stripped.
        Fine-tuned models are never resolved: their prices differ from the base model's. Bedrock
        and Vertex regional endpoints may carry a premium over list price; an exact entry for that
        id (e.g. from an imported LiteLLM file) takes precedence over the stripped name.
        """
        if deployments and model in deployments:
            hit = self._lookup(deployments[model], provider)
            return Resolution(hit.key, "deployment") if hit else None
        return self._lookup(model, provider)

    def resolve_many(
        self,
        models: Iterable[tuple[str, str | None]],
        deployments: Mapping[str, str] | None = None,
    ) -> dict[tuple[str, str | None], Resolution | None]:
        """Resolve distinct (model, provider) pairs once, as ingest does for a whole log."""
        return {pair: self.resolve(pair[0], pair[1], deployments) for pair in dict.fromkeys(models)}

    def _lookup(self, model: str, provider: str | None) -> Resolution | None:
        name = model.strip().lower()
        if not name or name.startswith("ft:") or ":ft-" in name or ".ft-" in name:
            return None
        if provider and f"{provider.lower()}/{name}" in self._ids:
            return Resolution(self._ids[f"{provider.lower()}/{name}"], "exact")
        hit = self._direct(name)
        if hit is not None:
            return hit
        stripped = _strip_prefixes(name)
        if stripped != name:
            hit = self._direct(stripped)
            return Resolution(hit.key, "prefix") if hit else None
        return None

    def _direct(self, name: str) -> Resolution | None:
        if name in self._ids:
            return Resolution(self._ids[name], "exact")
        if name in self._aliases:
            return Resolution(self._aliases[name], "alias")
        undated = _DATED.sub("", name)
        if undated != name:
            key = self._ids.get(undated) or self._aliases.get(undated)
            return Resolution(key, "alias") if key else None
        return None


_DATED = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|[-@]latest)$")
_PREFIXES = frozenset(
    {"openai", "anthropic", "azure", "azure_ai", "gemini", "google", "vertex_ai"}
    | {"vertex_ai_beta", "bedrock", "bedrock_converse", "converse", "invoke", "models"}
)
_BEDROCK = re.compile(
    r"^(?:[a-z]{2,7}(?:-[a-z]+)?\.)?anthropic\.(claude-[a-z0-9.@\-]+?)(?:-v\d+(?::\d+)?)?$"
)


def _strip_prefixes(name: str) -> str:
    if name.startswith("arn:") and "/" in name:  # Bedrock foundation-model / inference-profile ARN
        name = name.rsplit("/", 1)[1]
    if name.startswith(("projects/", "publishers/")) and "/models/" in name:  # Vertex resource
        name = name.rsplit("/models/", 1)[1]
    while "/" in name and name.split("/", 1)[0] in _PREFIXES:
        name = name.split("/", 1)[1]
    match = _BEDROCK.match(name)
    return match.group(1) if match else name


def load_prices(rules_dir: Path, extra_files: Sequence[Path] = ()) -> PriceTable:
    """Load every `kind: prices` file under `rules_dir`, then `extra_files` (e.g. `--prices FILE`).

    Files are read in order (rules files sorted by path, then the extra files as given); a later
    entry with the same model id overrides the earlier one (keeping its aliases), and a later file's
    provider caching/batch rules replace the earlier ones when it states them.
    """
    table = PriceTable()
    for path in [*rule_files(rules_dir, "prices"), *map(Path, extra_files)]:
        data = load_model(path, ProviderPrices)
        seen: dict[str, str] = {}
        for model in data.models:
            for name in {n.lower() for n in (model.id, *model.aliases)}:
                if (other := seen.setdefault(name, model.id)) != model.id:
                    raise RuleError(f"{path}: model {model.id}: name {name!r} also names {other}")
            if model.provider is None and data.provider is None:
                raise RuleError(f"{path}: model {model.id}: no provider (the file names none)")
            table.add(
                model if model.provider else model.model_copy(update={"provider": data.provider})
            )
        if (provider := data.provider) is not None:
            known = table.providers.get(provider)
            if known is not None:  # keep the rules a later file does not restate
                data = data.model_copy(
                    update={
                        "caching": data.caching or known.caching,
                        "batch": data.batch or known.batch,
                    }
                )
            table.providers[provider] = data
    return table


def register_prices(
    con: duckdb.DuckDBPyConnection, table: PriceTable, name: str = "prices"
) -> None:
    """Create (or replace) a DuckDB table with one row per model key and per-token rate columns.

    Columns: model_key, provider, long_context_threshold, and `{kind}_{tier}` / `{kind}_{tier}_long`
    for every kind in KINDS and tier in TIERS, as RATE_TYPE per token (per-1M / 10**6). List prices
    have at most 12 decimals per 1M tokens (checked on load), so per-token rates have at most 18
    and DECIMAL(38,18) holds them exactly; DECIMAL(18,12) would not hold imported prices such as
    0.141953125 per 1M.
    """
    import pyarrow as pa

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    models = sorted(table.models.values(), key=lambda m: m.id)
    columns: dict[str, pa.Array] = {
        "model_key": pa.array([m.id for m in models], pa.string()),
        "provider": pa.array([m.provider for m in models], pa.string()),
        "long_context_threshold": pa.array(
            [lc.threshold_tokens if (lc := m.prices.long_context) else None for m in models],
            pa.int64(),
        ),
    }
    for suffix in ("", "_long"):
        for tier in TIERS:
            table_rates = [rates(m, tier, long=bool(suffix)) for m in models]
            for kind in KINDS:
                per_token = [getattr(r, kind).scaleb(-6) for r in table_rates]
                columns[f"{kind}_{tier}{suffix}"] = pa.array(per_token, pa.decimal128(38, 18))
    con.register("_advisor_prices_arrow", pa.table(columns))
    try:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _advisor_prices_arrow")
    finally:
        con.unregister("_advisor_prices_arrow")


def cost_sql(r: str = "r", p: str = "p") -> str:
    """A DuckDB expression for the exact cost of request row `r` joined to price row `p`.

    Same formula as `request_cost`. NULL cache columns count as 0; a NULL input or output count,
    or no price row (LEFT JOIN miss), gives NULL, never 0. Rows are assumed consistent (cache
    reads + writes <= input, 1-hour writes <= writes), as ingest guarantees. Result type COST_TYPE.
    """

    def rate(kind: str) -> str:
        def by_tier(suffix: str) -> str:
            arms = " ".join(f"WHEN '{t}' THEN {p}.{kind}_{t}{suffix}" for t in TIERS[1:])
            return f"CASE {r}.service_tier {arms} ELSE {p}.{kind}_default{suffix} END"

        long = f"CAST({r}.input_tokens AS BIGINT) > {p}.long_context_threshold"
        return f"(CASE WHEN {long} THEN {by_tier('_long')} ELSE {by_tier('')} END)"

    def tokens(column: str) -> str:
        return f"COALESCE(CAST({r}.{column} AS BIGINT), 0)"

    read = tokens("cache_read_tokens")
    write = tokens("cache_write_tokens")
    write_1h = tokens("cache_write_1h_tokens")
    return (
        f"CAST(((CAST({r}.input_tokens AS BIGINT) - {read} - {write}) * {rate('input')}"
        f" + {read} * {rate('cached_input')}"
        f" + ({write} - {write_1h}) * {rate('cache_write_5m')}"
        f" + {write_1h} * {rate('cache_write_1h')}"
        f" + CAST({r}.output_tokens AS BIGINT) * {rate('output')}) AS {COST_TYPE})"
    )


# LiteLLM field -> our Prices field (per-token floats there, per-1M decimal strings here).
_LONG_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write_5m",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
}
_LITELLM_FIELDS = _LONG_FIELDS | {
    f"{src}_{suffix}": f"{tier}_{dst}"
    for tier, suffix in (("batch", "batches"), ("flex", "flex"), ("priority", "priority"))
    for src, dst in list(_LONG_FIELDS.items())[:3]
}
_LONG_INPUT = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")
_IMPORT_MODES = frozenset({"chat", "completion", "responses"})


def _per_million(value: object) -> str | None:
    """Per-token float -> per-1M decimal string: repr() is the shortest exact spelling of the float;
    rounding to PRICE_DECIMALS then drops the float noise of values like 2.0000000000000002e-07."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return format(_q(Decimal(repr(value)).scaleb(6)).normalize(), "f")


def _infer_encoding(name: str) -> Literal["o200k_base", "cl100k_base", "approx"]:
    base = name.rsplit("/", 1)[-1]
    if base.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    if base.startswith(("gpt-3.5", "gpt-4")):
        return "cl100k_base"
    return "approx"


def import_litellm(path: Path, retrieved: dt.date | None = None) -> list[ModelPrice]:
    """Read LiteLLM's model_prices_and_context_window.json into price entries.

    Keeps chat/completion/responses entries with input and output prices. A provider-prefixed name
    (gemini/gemini-2.5-flash) gets the clean id when no other entry holds it, with the prefixed name
    as an alias; otherwise the prefixed name stays the id. Entries that fail validation are skipped
    and logged. `retrieved` defaults to today; pass it for deterministic output.
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise RuleError(f"cannot read LiteLLM price file {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise RuleError(f"{path}: expected a JSON object of model entries")
    entries = {
        name: e
        for name, e in raw.items()
        if name != "sample_spec"
        and isinstance(e, dict)
        and e.get("mode") in _IMPORT_MODES
        and _per_million(e.get("input_cost_per_token")) is not None
        and _per_million(e.get("output_cost_per_token")) is not None
    }
    taken = {name.lower() for name in entries}
    when = retrieved or dt.date.today()
    models: list[ModelPrice] = []
    emitted: set[str] = set()
    for name, entry in entries.items():
        provider = str(entry.get("litellm_provider") or "") or None
        if provider is None or name.lower() in emitted:
            log.info("skipping LiteLLM entry %s: no provider, or a duplicate name", name)
            continue
        model_id, aliases = name, tuple[str, ...]()
        head, _, rest = name.partition("/")
        prefixed = rest and (provider == head or provider.startswith(f"{head}-"))
        if prefixed and rest.lower() not in taken:
            model_id, aliases = rest, (name,)
            taken.add(rest.lower())
        try:
            models.append(
                ModelPrice(
                    id=model_id,
                    title=model_id,
                    provider=provider,
                    aliases=aliases,
                    encoding=_infer_encoding(model_id.lower()),
                    source=f"litellm {Path(path).name}",
                    retrieved=when,
                    prices=Prices.model_validate(_litellm_prices(entry)),
                )
            )
            emitted.update({model_id.lower(), name.lower()})
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            log.info("skipping LiteLLM entry %s: %s", name, exc)
    return models


def _litellm_prices(entry: Mapping[str, Any]) -> dict[str, Any]:
    prices: dict[str, Any] = {}
    for src, dst in _LITELLM_FIELDS.items():
        value = _per_million(entry.get(src))
        if value is not None:
            prices[dst] = value
    for tier in ("batch", "flex", "priority"):  # a tier needs both its input and output price
        if (f"{tier}_input" in prices) != (f"{tier}_output" in prices):
            for kind in ("input", "output", "cached_input"):
                prices.pop(f"{tier}_{kind}", None)
    thresholds = sorted(int(m.group(1)) for k in entry if (m := _LONG_INPUT.match(k)))
    if thresholds:  # one long-context tier is modelled: the lowest threshold
        sfx = f"above_{thresholds[0]}k_tokens"
        long = {dst: _per_million(entry.get(f"{src}_{sfx}")) for src, dst in _LONG_FIELDS.items()}
        if long["input"] is not None and long["output"] is not None:
            long = {k: v for k, v in long.items() if v is not None}
            prices["long_context"] = {"threshold_tokens": thresholds[0] * 1000, **long}
    return prices


def write_prices_yaml(
    models: Sequence[ModelPrice], path: Path, provider: str | None = None
) -> None:
    """Write a valid `kind: prices` file. Prices and dates are written as strings (pydantic's JSON
    mode); names of any shape are safe because safe_dump quotes whatever would parse as another
    type."""
    sources = sorted({m.source for m in models})
    document = {
        "schema_version": RULES_SCHEMA_VERSION,
        "kind": "prices",
        **({"provider": provider} if provider else {}),
        "currency": "USD",
        "source": sources[0] if len(sources) == 1 else "advisor prices import",
        "retrieved": max((m.retrieved for m in models), default=dt.date.today()).isoformat(),
        "models": [
            m.model_dump(mode="json", exclude_none=True, exclude_defaults=True) for m in models
        ],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    Path(path).write_text(text, encoding="utf-8")
