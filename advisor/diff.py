"""Comparing two analyses: what changed in spend, coverage and each lever's saving.

Periods and traffic volumes differ between runs, so the figure a regression gate uses is the
cost per request, not the total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from advisor.analysis import Analysis
from advisor.errors import AdvisorError


@dataclass
class Change:
    name: str
    old: Decimal
    new: Decimal

    @property
    def delta(self) -> Decimal:
        return self.new - self.old

    @property
    def share(self) -> float | None:
        return float(self.delta / self.old) if self.old else None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "old": format(self.old.normalize(), "f"),
            "new": format(self.new.normalize(), "f"),
            "delta": format(self.delta.normalize(), "f"),
            "share": self.share,
        }


@dataclass
class AnalysisDiff:
    currency: str
    changes: list[Change] = field(default_factory=list)

    def get(self, name: str) -> Change:
        return next(c for c in self.changes if c.name == name)

    def as_dict(self) -> dict[str, object]:
        return {"currency": self.currency, "changes": [c.as_dict() for c in self.changes]}


def _per_request(a: Analysis) -> Decimal:
    priced = a.coverage.priced_requests
    return a.baseline.cost / priced if priced else Decimal(0)


def diff_analyses(old: Analysis, new: Analysis) -> AnalysisDiff:
    """Spend, coverage and per-lever savings, old vs new (levers present in either run)."""
    if old.currency != new.currency:
        raise AdvisorError(f"cannot compare {old.currency} with {new.currency}")
    out = AnalysisDiff(new.currency)
    out.changes += [
        Change("baseline cost", old.baseline.cost, new.baseline.cost),
        Change("baseline cost per priced request", _per_request(old), _per_request(new)),
        Change("cost after levers", old.combined.cost, new.combined.cost),
        Change("combined saving", old.combined.saving, new.combined.saving),
        Change("requests", Decimal(old.coverage.requests), Decimal(new.coverage.requests)),
        Change(
            "unpriced requests",
            Decimal(old.coverage.unpriced_requests),
            Decimal(new.coverage.unpriced_requests),
        ),
        Change(
            "quarantined rows",
            Decimal(old.coverage.quarantined_rows),
            Decimal(new.coverage.quarantined_rows),
        ),
    ]
    old_levers = {lever.id: lever for lever in old.levers}
    new_levers = {lever.id: lever for lever in new.levers}
    for lever_id in sorted(old_levers.keys() | new_levers.keys()):
        before, after = old_levers.get(lever_id), new_levers.get(lever_id)
        out.changes.append(
            Change(
                f"{lever_id} standalone saving",
                before.standalone_saving if before else Decimal(0),
                after.standalone_saving if after else Decimal(0),
            )
        )
    return out


def increase_exceeds(result: AnalysisDiff, percent: float) -> bool:
    """True when the cost per priced request rose by more than `percent` %."""
    share = result.get("baseline cost per priced request").share
    return share is not None and share * 100 > percent
