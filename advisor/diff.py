"""Comparing two analyses: what changed in spend, coverage and each lever's saving.

Periods and traffic volumes differ between runs, so the figure a regression gate uses is the
cost per request, not the total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from advisor.analysis import Analysis
from advisor.errors import AdvisorError
from advisor.money import to_json


@dataclass
class Change:
    """One figure in both runs; None where a run does not know it (an unpriced total, a lever
    that did not run), so no difference is computed against a made-up zero."""

    name: str
    old: Decimal | None
    new: Decimal | None
    money: bool = True  # else a count

    @property
    def delta(self) -> Decimal | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def share(self) -> float | None:
        delta = self.delta
        return float(delta / self.old) if delta is not None and self.old else None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "old": _json(self.old),
            "new": _json(self.new),
            "delta": _json(self.delta),
            "share": self.share,
        }


def _json(amount: Decimal | None) -> str | None:
    return None if amount is None else to_json(amount)


@dataclass
class PriceChange:
    """The two runs priced with different tables: a cause of any cost difference."""

    old_digest: str | None
    new_digest: str | None
    old_sources: list[str]
    new_sources: list[str]
    models: list[str]  # model keys both runs priced, whose prices differ

    def as_dict(self) -> dict[str, object]:
        return {
            "old_digest": self.old_digest,
            "new_digest": self.new_digest,
            "old_sources": self.old_sources,
            "new_sources": self.new_sources,
            "models": self.models,
        }

    def note(self) -> str:
        if self.old_digest is None or self.new_digest is None:
            return (
                "one analysis does not record its price table (written by an older advisor):"
                " a price change cannot be ruled out as a cause of the difference"
            )
        added = [s for s in self.new_sources if s not in self.old_sources]
        removed = [s for s in self.old_sources if s not in self.new_sources]
        files = [*(f"+{s}" for s in added), *(f"-{s}" for s in removed)]
        which = (
            f"prices differ for {', '.join(self.models)}"
            if self.models
            else "no model both runs priced has other prices"
        )
        listed = f" ({' '.join(files)})" if files else ""
        return (
            f"the price table changed{listed}: {which};"
            " a cost difference may come from prices, not only traffic"
        )


@dataclass
class AnalysisDiff:
    currency: str
    changes: list[Change] = field(default_factory=list)
    prices: PriceChange | None = None  # None: both runs used the same price table

    def get(self, name: str) -> Change:
        return next(c for c in self.changes if c.name == name)

    @property
    def notes(self) -> list[str]:
        return [self.prices.note()] if self.prices else []

    def as_dict(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            "changes": [c.as_dict() for c in self.changes],
            "prices_changed": self.prices is not None,
            "prices": self.prices.as_dict() if self.prices else None,
            "notes": self.notes,
        }


def _price_change(old: Analysis, new: Analysis) -> PriceChange | None:
    a, b = old.prices, new.prices
    if a is not None and b is not None and a.digest == b.digest:
        return None
    if a is None and b is None:
        return None  # neither records it: nothing to compare
    models = []
    if a is not None and b is not None:
        models = sorted(k for k in a.models.keys() & b.models.keys() if a.models[k] != b.models[k])
    return PriceChange(
        a.digest if a else None,
        b.digest if b else None,
        [s.name for s in a.sources] if a else [],
        [s.name for s in b.sources] if b else [],
        models,
    )


def _per_request(a: Analysis) -> Decimal | None:
    priced = a.coverage.priced_requests
    cost = a.baseline.cost
    return cost / priced if cost is not None and priced else None


def diff_analyses(old: Analysis, new: Analysis) -> AnalysisDiff:
    """Spend, coverage and per-lever savings, old vs new (levers present in either run)."""
    if old.currency != new.currency:
        raise AdvisorError(f"cannot compare {old.currency} with {new.currency}")
    out = AnalysisDiff(new.currency, prices=_price_change(old, new))
    out.changes += [
        Change("baseline cost", old.baseline.cost, new.baseline.cost),
        Change("baseline cost per priced request", _per_request(old), _per_request(new)),
        Change("cost after levers", old.combined.cost, new.combined.cost),
        Change("combined saving", old.combined.saving, new.combined.saving),
        Change("requests", Decimal(old.coverage.requests), Decimal(new.coverage.requests), False),
        Change(
            "unpriced requests",
            Decimal(old.coverage.unpriced_requests),
            Decimal(new.coverage.unpriced_requests),
            False,
        ),
        Change(
            "quarantined rows",
            Decimal(old.coverage.quarantined_rows),
            Decimal(new.coverage.quarantined_rows),
            False,
        ),
    ]
    old_levers = {lever.id: lever for lever in old.levers}
    new_levers = {lever.id: lever for lever in new.levers}
    for lever_id in sorted(old_levers.keys() | new_levers.keys()):
        before, after = old_levers.get(lever_id), new_levers.get(lever_id)
        out.changes.append(
            Change(
                f"{lever_id} standalone saving",
                before.standalone_saving if before else None,  # did not run: unknown
                after.standalone_saving if after else None,
            )
        )
    return out


def increase_exceeds(result: AnalysisDiff, percent: float) -> bool:
    """True when the cost per priced request rose by more than `percent` %."""
    share = result.get("baseline cost per priced request").share
    return share is not None and share * 100 > percent
