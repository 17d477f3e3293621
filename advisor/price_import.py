"""`advisor prices import`: LiteLLM's community price file -> advisor price entries, and an account
of what could not be carried over.

Every LiteLLM field that prices text tokens is read by its structure, not a fixed list:
`{kind}[_above_1hr|_above_12hr][_above_{N}k_tokens][_batches|_flex|_priority]`. A field lands in
a `Prices` slot, or is checked against what advisor will bill in its place (`rates()`'s derived
rates); where the two differ, or advisor has no place for it at all (a second long-context
threshold, a separate reasoning-token price, 12-hour cache writes), the model records the field
in `unmodelled` and the import report counts it, so that a user is told instead of billed wrongly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml

from advisor.errors import RuleError
from advisor.pricing import ModelPrice, Prices, q_price, rates
from advisor.ruleset import RULES_SCHEMA_VERSION

log = logging.getLogger(__name__)

# LiteLLM's token-price kinds -> advisor's (per-token floats there, per-1M decimal strings here).
_KINDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write_5m",
}
_TIERS = {"batches": "batch", "flex": "flex", "priority": "priority"}
_FIELD = re.compile(
    r"^(?P<kind>input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost)(?P<ttl>_above_1hr|_above_12hr)?"
    r"(?:_above_(?P<long>\d+)k_tokens)?(?:_(?P<tier>batches|flex|priority))?$"
)
_IMPORT_MODES = frozenset({"chat", "completion", "responses"})
# What a logged request may need, and the import report's name for a model lacking it.
MISSING = {
    "cached_input": "a cache-read price",
    "cache_write_5m": "a cache-write price",
    "cache_write_1h": "a 1-hour cache-write price",
    "batch_input": "batch prices",
    "flex_input": "flex prices",
    "priority_input": "priority prices",
}


@dataclass
class ImportReport:
    """What `import_litellm` kept, skipped, and could not represent."""

    models: list[ModelPrice]
    entries: int = 0  # top-level entries of the source file, sample_spec included
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> LiteLLM entries
    missing: Counter[str] = field(default_factory=Counter)  # MISSING key -> imported models
    unmodelled: Counter[str] = field(default_factory=Counter)  # LiteLLM field -> models
    ignored: Counter[str] = field(default_factory=Counter)  # non-text / other-tier field -> models

    def summary(self) -> list[str]:
        """Lines for the terminal: what was imported and, loudly, what is missing."""
        n = len(self.models)
        lines = [f"imported {n:,} models"]
        if self.skipped:
            lines.append("skipped: " + _counts(self.skipped))
        if self.missing:
            lines.append(
                "models without "
                + _counts(Counter({MISSING[k]: v for k, v in self.missing.items()}))
                + " (billed by the fallbacks: cache reads and writes at the input price, a tier"
                " at standard prices; `advisor analyze` notes the requests that need them)"
            )
        if self.unmodelled:
            flagged = sum(1 for m in self.models if m.unmodelled)
            top = Counter(dict(self.unmodelled.most_common(6)))
            lines.append(
                f"{flagged:,} models list prices advisor cannot bill as listed (each model says"
                f" which: `advisor prices show MODEL`; `advisor analyze` notes the requests they"
                f" touch): {_counts(top)}{' ...' if len(self.unmodelled) > 6 else ''}"
            )
        if self.ignored:
            lines.append(
                f"not imported (audio, image, per-call and other-tier prices): "
                f"{sum(self.ignored.values()):,} values in {len(self.ignored)} fields"
            )
        return lines


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counter.most_common())


def per_million(value: object) -> str | None:
    """Per-token float -> per-1M decimal string: repr() is the shortest exact spelling of the float;
    rounding to the list-price precision then drops the float noise of 2.0000000000000002e-07."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:  # json.loads reads NaN and Infinity
        return None
    return format(q_price(Decimal(repr(value)).scaleb(6)).normalize(), "f")


def _infer_encoding(name: str) -> Literal["o200k_base", "cl100k_base", "approx"]:
    base = name.rsplit("/", 1)[-1]
    if base.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    if base.startswith(("gpt-3.5", "gpt-4")):
        return "cl100k_base"
    return "approx"


def import_litellm(path: Path, retrieved: dt.date | None = None) -> ImportReport:
    """Read LiteLLM's model_prices_and_context_window.json into price entries.

    Keeps chat/completion/responses entries with input and output prices. A provider-prefixed name
    (gemini/gemini-2.5-flash) gets the clean id when no other entry holds it and the rest names no
    further provider (gmi/openai/gpt-4o is a reseller's entry, never `openai/gpt-4o`), with the
    prefixed name as an alias. `retrieved` defaults to today; pass it for deterministic output.
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise RuleError(f"cannot read LiteLLM price file {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise RuleError(f"{path}: expected a JSON object of model entries")
    report = ImportReport([], entries=len(raw))
    entries: dict[str, Mapping[str, Any]] = {}
    for name, e in raw.items():
        if name in ("sample_spec", "fallback_generalizations"):
            continue
        if not isinstance(e, dict) or e.get("mode") not in _IMPORT_MODES:
            report.skipped["not a chat/completion model"] += 1
        elif per_million(e.get("input_cost_per_token")) is None or (
            per_million(e.get("output_cost_per_token")) is None
        ):
            report.skipped["no input or output price"] += 1
        elif not e.get("litellm_provider"):
            report.skipped["no provider"] += 1
        else:
            entries[name] = e
    taken = {name.lower() for name in entries}
    when = retrieved or dt.date.today()
    emitted: set[str] = set()
    for name, entry in entries.items():
        provider = str(entry["litellm_provider"])
        if name.lower() in emitted:
            report.skipped["a duplicate name"] += 1
            continue
        model_id, aliases = name, tuple[str, ...]()
        head, _, rest = name.partition("/")
        prefixed = (
            rest and "/" not in rest and (provider == head or provider.startswith(f"{head}-"))
        )
        if prefixed and rest.lower() not in taken:
            model_id, aliases = rest, (name,)
            taken.add(rest.lower())
        try:
            prices = Prices.model_validate(_prices(entry))
            model = ModelPrice(
                id=model_id,
                title=model_id,
                provider=provider,
                aliases=aliases,
                encoding=_infer_encoding(model_id.lower()),
                source=f"litellm {Path(path).name}",
                retrieved=when,
                prices=prices,
            )
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            log.info("skipping LiteLLM entry %s: %s", name, exc)
            report.skipped["a price out of range"] += 1
            continue
        minimum = entry.get("prompt_cache_min_tokens")
        if isinstance(minimum, int) and not isinstance(minimum, bool) and minimum > 0:
            model = model.model_copy(update={"min_cache_tokens": minimum})
        unmodelled = _unmodelled(model, entry, report)
        if unmodelled:
            model = model.model_copy(update={"unmodelled": unmodelled})
        report.models.append(model)
        report.missing.update(k for k in MISSING if getattr(model.prices, k) is None)
        emitted.update({model_id.lower(), name.lower()})
    return report


def _field(entry: Mapping[str, Any], kind: str, sfx: str = "", tier: str = "") -> str | None:
    return per_million(entry.get(kind + sfx + (f"_{tier}" if tier else "")))


def _prices(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The `Prices` slots LiteLLM's entry fills (per 1M tokens, as decimal strings)."""
    prices: dict[str, Any] = {}
    for src, dst in _KINDS.items():
        if (value := _field(entry, src)) is not None:
            prices[dst] = value
        for suffix, tier in _TIERS.items():
            if dst != "cache_write_5m" and (value := _field(entry, src, "", suffix)) is not None:
                prices[f"{tier}_{dst}"] = value
    if "cached_input" not in prices and (hit := _field(entry, "input_cost_per_token_cache_hit")):
        prices["cached_input"] = hit  # DeepSeek's name for the cache-read price
    if (w1h := _field(entry, "cache_creation_input_token_cost_above_1hr")) is not None:
        prices["cache_write_1h"] = w1h
    for tier in _TIERS.values():  # a tier needs both its input and output price
        if (f"{tier}_input" in prices) != (f"{tier}_output" in prices):
            for kind in ("input", "output", "cached_input"):
                prices.pop(f"{tier}_{kind}", None)
    threshold = _long_threshold(entry)
    if threshold is not None:  # one long-context tier is modelled: the lowest threshold
        sfx = f"_above_{threshold}k_tokens"
        long = {dst: _field(entry, src, sfx) for src, dst in _KINDS.items()}
        long["cache_write_1h"] = _field(entry, "cache_creation_input_token_cost_above_1hr", sfx)
        if long["input"] is not None and long["output"] is not None:
            long = {k: v for k, v in long.items() if v is not None}
            prices["long_context"] = {"threshold_tokens": threshold * 1000, **long}
    return prices


def _long_threshold(entry: Mapping[str, Any]) -> int | None:
    found = [
        int(m["long"])
        for k in entry
        if (m := _FIELD.match(k)) and m["long"] and m["kind"] == "input_cost_per_token"
    ]
    return min(found) if found else None


def _unmodelled(
    model: ModelPrice, entry: Mapping[str, Any], report: ImportReport
) -> tuple[str, ...]:
    """LiteLLM fields whose price differs from what advisor will bill for the same tokens."""
    threshold = _long_threshold(entry) if model.prices.long_context else None
    found: list[str] = []
    for name, value in entry.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        theirs = per_million(value)
        match = _FIELD.match(name)
        if match is None:
            if name == "output_cost_per_reasoning_token":
                if theirs is not None and Decimal(theirs) != model.prices.output:
                    found.append(name)
            elif name == "explicit_cache_read_input_token_cost":
                if theirs is not None and Decimal(theirs) != rates(model).cached_input:
                    found.append(name)
            elif ("cost" in name or "price" in name) and name != "input_cost_per_token_cache_hit":
                report.ignored[name] += 1
            continue
        if theirs is None:
            continue
        long = match["long"]
        if match["ttl"] == "_above_12hr" or (long and int(long) != threshold):
            found.append(name)  # no slot: 24-hour retention writes, a second context threshold
            continue
        kind = _KINDS[match["kind"]]
        if match["ttl"] == "_above_1hr":
            kind = "cache_write_1h"
        tier = _TIERS.get(match["tier"] or "", "default")
        ours = getattr(rates(model, tier, long=bool(long)), kind)
        if Decimal(theirs) != ours:
            found.append(name)
    for name in found:
        report.unmodelled[name] += 1
    return tuple(sorted(found))


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
    # libyaml's emitter where PyYAML has it: 4x faster, and byte-identical on LiteLLM's table
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(document, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100)
    Path(path).write_text(text, encoding="utf-8")
