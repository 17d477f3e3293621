"""Prices as data: the price table (rules/prices), model-name resolution, and exact request costs.

One cost formula, two implementations that must agree to the last digit: `request_cost`
(scalar, Python `Decimal`) and `cost_sql` (vectorised, DuckDB `DECIMAL`). Both take their rates
from `rates()`, so the fallback rules (a missing cache price, a tier or context without explicit
prices) live in one place. The table knows the files it came from and the digest of its content,
so an analysis can say which prices it used; advisor.price_import turns LiteLLM's price file into
the same data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import duckdb
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from advisor.errors import RuleError
from advisor.ruleset import load_model, rule_files

if TYPE_CHECKING:
    from advisor.price_snapshot import CommunitySnapshot

PRICE_DECIMALS = 12  # per 1M tokens: per-token rates then need 18 decimals, held exactly below
# No text-token price in any provider's list comes near this (the dearest, o1-pro's output, is $600
# per 1M): a price above it is a unit slip (per-1K or per-token figures scaled twice), not a price.
MAX_PRICE = Decimal(10_000)
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
    if price > MAX_PRICE:
        raise ValueError(
            f"{value!r} per 1M tokens is above the plausible ceiling of {MAX_PRICE} per 1M"
            " (prices are USD per 1M tokens, not per token or per 1K)"
        )
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
    # The table key this entry is a variant of (a dated snapshot or another host's copy of a model
    # with its own prices): it shares that model's tier ladder and caching mechanics.
    base: str | None = None
    # Prices the source lists that this entry cannot represent (e.g. a separate reasoning-token
    # price): requests on the model are billed without them, and the analysis says so.
    unmodelled: tuple[str, ...] = ()
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


def q_price(value: Decimal) -> Decimal:
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
            lc.cached_input if lc.cached_input is not None else q_price(cached * scale),
            lc.cache_write_5m if lc.cache_write_5m is not None else q_price(w5 * scale),
            lc.cache_write_1h if lc.cache_write_1h is not None else q_price(w1h * scale),
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
            q_price(base.input * m_in),
            q_price(base.cached_input * m_cached),
            q_price(base.cache_write_5m * m_in),
            q_price(base.cache_write_1h * m_in),
            q_price(base.output * m_out),
        )
    return Rates(
        t_in,
        t_cached if t_cached is not None else q_price(base.cached_input * m_in),
        q_price(base.cache_write_5m * m_in),
        q_price(base.cache_write_1h * m_in),
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


@dataclass(frozen=True)
class PriceSource:
    """One file the table was loaded from: `prices/openai.yaml` (curated), a --prices file, or
    the community snapshot."""

    name: str
    kind: Literal["rules", "file", "community"]
    retrieved: dt.date
    models: int

    @property
    def label(self) -> str:
        """How coverage names the source: "curated", "community snapshot of <date>", the file."""
        if self.kind == "community":
            return f"community snapshot of {self.retrieved.isoformat()}"
        return "curated" if self.kind == "rules" else f"--prices {self.name}"


class PriceTable:
    """All loaded prices: models by key, provider rules by provider name, and a name index.

    `community` is the fallback snapshot: its entries join `models` (and `origin`) when a name
    resolves to them or `ensure` asks for them, never ahead of a curated or --prices entry."""

    def __init__(self) -> None:
        self.models: dict[str, ModelPrice] = {}
        self.providers: dict[str, ProviderPrices] = {}
        self.sources: list[PriceSource] = []
        self.origin: dict[str, str] = {}  # model key -> name of the source its prices came from
        self.community: CommunitySnapshot | None = None
        self._ids: dict[str, str] = {}  # lower-cased id -> key
        self._aliases: dict[str, str] = {}  # lower-cased alias -> key

    def model_digest(self, key: str) -> str:
        """sha256 of what bills one model: its effective rates in every tier and context length
        (normalised: "2.50" and "2.5" are one price), its effective caching rules, provider,
        variant link and unmodelled prices; not its title, source or retrieval date."""
        model = self.models[key]
        lc = model.prices.long_context
        content = {
            "rates": {
                f"{tier}{'_long' if long else ''}": {
                    kind: str(getattr(rates(model, tier, long), kind).normalize()) for kind in KINDS
                }
                for tier in TIERS
                for long in ((False, True) if lc else (False,))
            },
            "long_context_threshold": lc.threshold_tokens if lc else None,
            "cache_storage_per_hour": str(p.normalize())
            if (p := model.prices.cache_storage_per_hour) is not None
            else None,
            "caching": rules.model_dump(mode="json") if (rules := self.caching_for(key)) else None,
            **model.model_dump(mode="json", include={"provider", "base", "unmodelled"}),
        }
        return _sha256(content)

    def digest(self) -> str:
        """sha256 of the canonical content of the effective table: every curated and --prices
        model's priced content (as `model_digest`), every provider's caching and batch rules, and
        the community snapshot's file (its entries in use depend on the log, the file does not)."""
        community = self.community.name if self.community else None
        return _sha256(
            {
                "models": {
                    key: self.model_digest(key)
                    for key in sorted(self.models)
                    if community is None or self.origin.get(key) != community
                },
                "providers": {
                    name: p.model_dump(mode="json", include={"caching", "batch"})
                    for name, p in sorted(self.providers.items())
                },
                **({"community": self.community.digest} if self.community else {}),
            }
        )

    def ensure(self, key: str) -> bool:
        """Whether `key` is priced, loading it from the community snapshot if only that has it."""
        if key not in self.models and self.community and key in self.community.entries:
            self._materialize(key)
        return key in self.models

    def load_community(self) -> None:
        """Load every community entry (for `advisor prices list --all`)."""
        for key in self.community.entries if self.community else ():
            self.ensure(key)

    def _materialize(self, key: str) -> None:
        if key in self.models or self.community is None:
            return  # a curated entry of the same id wins
        self.models[key] = _unstacked(self, self.community.model(key))
        self.origin[key] = self.community.name

    def add_names(self, key: str, names: Iterable[str]) -> None:
        """More names for an existing model (an imported entry with the same prices)."""
        model = self.models[key]
        new = tuple(n for n in names if n.lower() not in self._ids and n not in model.aliases)
        self.models[key] = model.model_copy(update={"aliases": model.aliases + new})
        for name in new:
            self._aliases[name.lower()] = key

    def add(self, model: ModelPrice) -> None:
        """Add a model; an entry with an existing id replaces it but keeps the old aliases (a price
        override should not make dated snapshot names unpriced) and metadata the new one lacks."""
        old = self.models.get(model.id)
        if old is not None:
            model = model.model_copy(
                update={
                    "aliases": tuple(dict.fromkeys(model.aliases + old.aliases)),
                    "family": model.family or old.family,
                    "base": model.base or old.base,
                    "encoding": old.encoding if model.encoding == "approx" else model.encoding,
                    "min_cache_tokens": model.min_cache_tokens or old.min_cache_tokens,
                }
            )
        self.models[model.id] = model
        self.origin.pop(model.id, None)  # load_prices records the file; no longer the snapshot's
        self._ids[model.id.lower()] = model.id
        for alias in model.aliases:
            self._aliases[alias.lower()] = model.id

    def caching_for(self, key: str) -> CachingRules | None:
        """The caching rules for one model (its own minimum applied); None if it cannot cache.

        A variant (`base`) of a model whose provider states no rules (Azure's gpt-4o, Bedrock's
        Claude) takes the base model's provider rules and minimum, extended TTL included."""
        model = self.models[key]
        base = self.models.get(model.base or "")
        provider = self.providers.get(model.provider or "")
        if (provider is None or provider.caching is None) and base is not None:
            provider = self.providers.get(base.provider or "")
        if model.prices.cached_input is None or provider is None or provider.caching is None:
            return None
        rules = provider.caching
        minimum = model.min_cache_tokens or (base.min_cache_tokens if base else None)
        if minimum is not None:
            rules = rules.model_copy(update={"min_tokens": minimum})
        ext = rules.extended_ttl
        if base is not None and ext is not None and ext.models and base.id in ext.models:
            ext = ext.model_copy(update={"models": (*ext.models, key)})
            rules = rules.model_copy(update={"extended_ttl": ext})
        return rules

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
        """The curated and --prices names first, by every rule; then the community snapshot's: the
        logged host's or the family owner's entry (`CommunitySnapshot.preferred`), else by the
        same rules. A name the curated table prices never reaches the snapshot."""
        name = model.strip().lower()
        if not name or name.startswith("ft:") or ":ft-" in name or ".ft-" in name:
            return None
        hit = _find(name, provider, self._ids, self._aliases, lambda k: self.models[k].provider)
        if hit is None and (community := self.community) is not None:
            hit = community.preferred(name, provider) or _find(
                name, provider, community.ids, community.aliases, community.provider
            )
            if hit is not None:
                self._materialize(hit.key)
        return hit


def _find(
    name: str,
    provider: str | None,
    ids: Mapping[str, str],
    aliases: Mapping[str, str],
    provider_of: Callable[[str], str | None],
) -> Resolution | None:
    """Resolution rules over one layer of names (see `PriceTable.resolve`)."""
    key = ids.get(f"{(provider or '').lower()}/{name}")
    # only that provider's own entry: `openai/gpt-4o` may be a reseller's id
    if provider and key is not None and same_provider(provider_of(key), provider):
        return Resolution(key, "exact")
    hit = _direct(name, ids, aliases)
    if hit is not None:
        return hit
    stripped = strip_prefixes(name)
    if stripped != name:
        hit = _direct(stripped, ids, aliases)
        return Resolution(hit.key, "prefix") if hit else None
    return None


def _direct(name: str, ids: Mapping[str, str], aliases: Mapping[str, str]) -> Resolution | None:
    if name in ids:
        return Resolution(ids[name], "exact")
    if name in aliases:
        return Resolution(aliases[name], "alias")
    undated = _DATED.sub("", name)
    if undated != name:
        key = ids.get(undated) or aliases.get(undated)
        return Resolution(key, "alias") if key else None
    return None


def same_provider(entry: str | None, logged: str) -> bool:
    """Whether an entry's provider is the logged one (or a product of it: vertex_ai-*)."""
    entry, logged = (entry or "").lower(), logged.lower()
    return entry == logged or entry.startswith(f"{logged}-")  # vertex_ai-language-models


def _sha256(content: object) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


_DATED = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|[-@]latest)$")
_PREFIXES = frozenset(
    {"openai", "anthropic", "azure", "azure_ai", "gemini", "google", "vertex_ai"}
    | {"vertex_ai_beta", "bedrock", "bedrock_converse", "converse", "invoke", "models"}
)
_BEDROCK = re.compile(
    r"^(?:[a-z]{2,7}(?:-[a-z]+)?\.)?anthropic\.(claude-[a-z0-9.@\-]+?)(?:-v\d+(?::\d+)?)?$"
)


def strip_name(name: str) -> str:
    """A lower-cased name without its host prefix and date suffix (azure/o3-mini-2025-01-31)."""
    return _DATED.sub("", strip_prefixes(name))


def strip_prefixes(name: str) -> str:
    """A lower-cased name without its host prefixes (azure/, bedrock/, us.anthropic.<id>-v1:0)."""
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
    provider caching/batch rules replace the earlier ones when it states them. An extra file's
    entry that another name of an already-loaded model (a dated snapshot, `azure/gpt-4o`) would
    resolve to keeps that model's place: with the same prices it becomes one more alias of it,
    with other prices its own key marked as a variant (`base`) that shares its tier ladder and
    caching rules. An imported table therefore refreshes prices without unhooking the ladders.

    The community snapshot under `rules_dir` (advisor.price_snapshot), if any, is attached after
    the rules files and before the extra files: the fallback for names neither resolves.
    """
    from advisor.price_snapshot import load_snapshot

    table = PriceTable()
    rules = list(rule_files(rules_dir, "prices"))
    for path in [*rules, *map(Path, extra_files), None]:
        if (
            path not in rules
            and table.community is None
            and (community := load_snapshot(rules_dir))
        ):
            table.community = community
            table.sources.append(
                PriceSource(
                    community.name, "community", community.retrieved, len(community.entries)
                )
            )
        if path is None:
            break
        data = load_model(path, ProviderPrices)
        source = str(path.relative_to(rules_dir)) if path in rules else path.name
        seen: dict[str, str] = {}
        variants: list[tuple[ModelPrice, str]] = []
        # an extra file's entries are matched with what earlier files loaded, never each other
        before = set() if path in rules else set(table.models)
        for model in data.models:
            for name in {n.lower() for n in (model.id, *model.aliases)}:
                if (other := seen.setdefault(name, model.id)) != model.id:
                    raise RuleError(f"{path}: model {model.id}: name {name!r} also names {other}")
            if model.provider is None and data.provider is None:
                raise RuleError(f"{path}: model {model.id}: no provider (the file names none)")
            if model.provider is None:
                model = model.model_copy(update={"provider": data.provider})
            old = table.models.get(table._ids.get(model.id.lower(), ""))
            if old and model.provider not in table.providers and old.provider in table.providers:
                # the same model from another host's list (Vertex's gemini-2.5-flash): it keeps
                # the provider whose caching and batch rules the table states
                model = model.model_copy(update={"provider": old.provider})
            hit = table.resolve(model.id, model.provider) if before else None
            if hit is not None and hit.how != "exact" and hit.key in before:
                variants.append((model, hit.key))
            else:
                table.add(model)
        for model, key in variants:  # after the file's own overrides of those keys
            base = table.models[key]
            if model.prices == base.prices and not model.unmodelled:
                table.add_names(key, (model.id, *model.aliases))
                continue
            encoding = base.encoding if model.encoding == "approx" else model.encoding
            family = model.family or base.family
            table.add(
                model.model_copy(
                    update={"base": base.base or key, "family": family, "encoding": encoding}
                )
            )
        for model in data.models:
            if model.id in table.models and model.id not in table.origin:
                table.origin[model.id] = source
        table.sources.append(
            PriceSource(
                source, "rules" if path in rules else "file", data.retrieved, len(data.models)
            )
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
    for key, model in list(table.models.items()):
        table.models[key] = _unstacked(table, model)
    return table


def _unstacked(table: PriceTable, model: ModelPrice) -> ModelPrice:
    """Where a provider's batch discount does not stack with cached-input prices (`batch:
    stacks_with_cache: false`), a model listing batch (or flex, priced like batch) prices but no
    cached price for that tier bills cached reads there at its standard cached price, rather
    than `rates` scaling them by the tier's input ratio. A variant follows its base's provider."""
    base = table.models.get(model.base or "")
    provider = table.providers.get(model.provider or "")
    if (provider is None or provider.batch is None) and base is not None:
        provider = table.providers.get(base.provider or "")
    p = model.prices
    if provider is None or provider.batch is None or provider.batch.stacks_with_cache:
        return model
    update = {
        f"{tier}_cached_input": p.cached_input
        for tier in ("batch", "flex")
        if getattr(p, f"{tier}_input") is not None and getattr(p, f"{tier}_cached_input") is None
    }
    if p.cached_input is None or not update:
        return model
    return model.model_copy(update={"prices": p.model_copy(update=update)})


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
