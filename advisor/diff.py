"""Comparing two analyses: what changed in spend, coverage and each lever's saving.

Periods and traffic volumes differ between runs, so the figure a regression gate uses is the
cost per request, not the total; it is compared per feature and per (resolved) model too. When
the runs priced with different tables, or were written by different advisor versions, the notes
say so; the part of the change the new prices explain is estimated from each model's cost per
token, since an analysis records its price table's digests, not its rates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from advisor.analysis import Analysis, CostRow
from advisor.errors import AdvisorError
from advisor.money import to_json
from advisor.report import fmt


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


@dataclass(frozen=True)
class Traffic:
    """A feature's or a model's rows of one run, summed."""

    requests: int = 0
    priced: int = 0
    cost: Decimal | None = None  # over the priced requests; None: none of them priced
    tokens: int = 0  # input + output tokens of the fully priced rows

    @property
    def per_request(self) -> Decimal | None:
        return self.cost / self.priced if self.cost is not None and self.priced else None

    @property
    def per_token(self) -> Decimal | None:
        return self.cost / self.tokens if self.cost is not None and self.tokens else None

    def plus(self, row: CostRow) -> Traffic:
        priced = row.requests - row.unpriced_requests
        cost = self.cost if row.cost is None else (self.cost or Decimal(0)) + row.cost
        tokens = row.input_tokens + row.output_tokens if not row.unpriced_requests else 0
        return Traffic(
            self.requests + row.requests, self.priced + priced, cost, self.tokens + tokens
        )


def _summed(rows: list[CostRow], key: Callable[[CostRow], str | None]) -> dict[str | None, Traffic]:
    out: dict[str | None, Traffic] = {}
    for row in rows:
        out[key(row)] = out.get(key(row), Traffic()).plus(row)
    return out


@dataclass
class UnitChange:
    """One feature or model in both runs: requests, and cost per priced request (None where a
    run has no such row or no priced request in it: no made-up zero)."""

    key: str | None
    old: Traffic | None
    new: Traffic | None

    @property
    def per_request(self) -> Change:
        return Change(
            "cost per priced request",
            self.old.per_request if self.old else None,
            self.new.per_request if self.new else None,
        )

    def as_dict(self) -> dict[str, object]:
        change = self.per_request
        return {
            "key": self.key,
            "old_requests": self.old.requests if self.old else None,
            "new_requests": self.new.requests if self.new else None,
            "old_per_request": _json(change.old),
            "new_per_request": _json(change.new),
            "share": change.share,
        }


def _unit_changes(
    old: dict[str | None, Traffic], new: dict[str | None, Traffic]
) -> list[UnitChange]:
    """The costliest (in the new run, else the old) first."""
    rows = [UnitChange(k, old.get(k), new.get(k)) for k in old.keys() | new.keys()]

    def cost(t: Traffic | None) -> Decimal:
        return t.cost if t is not None and t.cost is not None else Decimal(0)

    return sorted(rows, key=lambda u: (-cost(u.new), -cost(u.old), u.key is None, u.key or ""))


@dataclass
class PriceMove:
    """One model's cost per token in each run (input and output tokens together): how far its
    prices moved, as far as two analyses can tell without the price tables themselves."""

    model: str
    old_per_token: Decimal | None
    new_per_token: Decimal | None
    new_tokens: int

    @property
    def effect(self) -> Decimal | None:
        """The new run's spend on this model less the same tokens at the old cost per token."""
        if self.old_per_token is None or self.new_per_token is None:
            return None
        return (self.new_per_token - self.old_per_token) * self.new_tokens

    def as_dict(self) -> dict[str, object]:
        million = Decimal(1_000_000)
        return {
            "model": self.model,
            "old_per_million_tokens": _json(_scaled(self.old_per_token, million)),
            "new_per_million_tokens": _json(_scaled(self.new_per_token, million)),
            "effect": _json(self.effect),
        }


def _scaled(amount: Decimal | None, by: Decimal) -> Decimal | None:
    return None if amount is None else amount * by


@dataclass
class PriceChange:
    """The two runs priced with different tables: a cause of any cost difference."""

    old_digest: str | None
    new_digest: str | None
    old_sources: list[str]
    new_sources: list[str]
    models: list[str]  # model keys both runs priced, whose prices differ
    moves: list[PriceMove] = field(default_factory=list)  # one per model of `models`
    new_priced_requests: int = 0

    @property
    def explained(self) -> Decimal | None:
        """The estimated part of the new run's spend the new prices explain; None when it cannot
        be estimated (a run without its price table, a model without tokens in a run)."""
        if self.old_digest is None or self.new_digest is None:
            return None
        effects = [m.effect for m in self.moves]
        if any(e is None for e in effects):
            return None
        return sum((e for e in effects if e is not None), Decimal(0))

    @property
    def explained_per_request(self) -> Decimal | None:
        explained = self.explained
        if explained is None or not self.new_priced_requests:
            return None
        return explained / self.new_priced_requests

    def as_dict(self) -> dict[str, object]:
        return {
            "old_digest": self.old_digest,
            "new_digest": self.new_digest,
            "old_sources": self.old_sources,
            "new_sources": self.new_sources,
            "models": self.models,
            "moves": [m.as_dict() for m in self.moves],
            "explained": _json(self.explained),
            "explained_per_request": _json(self.explained_per_request),
        }

    def note(self, per_request: Change, currency: str) -> str:
        if self.old_digest is None or self.new_digest is None:
            return (
                "one analysis does not record its price table (written by an older advisor):"
                " a price change cannot be ruled out as a cause of the difference"
            )
        added = [s for s in self.new_sources if s not in self.old_sources]
        removed = [s for s in self.old_sources if s not in self.new_sources]
        files = [*(f"+{s}" for s in added), *(f"-{s}" for s in removed)]
        listed = f" ({' '.join(files)})" if files else ""
        if not self.models:
            return (
                f"the price table changed{listed}, but no model both runs priced has other"
                " prices: the new prices explain none of the change"
            )
        return (
            f"the price table changed{listed}: prices differ for {', '.join(self.models)}."
            f" {self._explained_sentence(per_request, currency)} ({self._moves(currency)});"
            " estimated from each model's cost per token in the two runs, so a shift between"
            " its input, cached and output tokens counts here too"
        )

    def _explained_sentence(self, per_request: Change, currency: str) -> str:
        part = self.explained_per_request
        if part is None:
            return "How much of the change they explain cannot be estimated"
        of = ""
        if per_request.delta is not None:
            delta = per_request.delta
            of = f" of the {fmt.signed(delta, fmt.money_per_unit(delta, currency))}"
            if per_request.old:
                points = float(part / per_request.old) * 100
                share = per_request.share
                of += f" ({points:+.1f} points of the {fmt.signed(share, fmt.pct(share))})"
        return (
            f"The new prices explain about {fmt.signed(part, fmt.money_per_unit(part, currency))}"
            f"{of} change in cost per priced request"
        )

    def _moves(self, currency: str) -> str:
        million = Decimal(1_000_000)
        shown = []
        for m in self.moves:
            old, new = _scaled(m.old_per_token, million), _scaled(m.new_per_token, million)
            if old is None or new is None:
                shown.append(f"{m.model}: no tokens in one run")
                continue
            move = f", {fmt.signed(new - old, fmt.pct(float((new - old) / old)))}" if old else ""
            shown.append(
                f"{m.model}: {fmt.money(old, currency)} → {fmt.money(new, currency)}"
                f" per 1M tokens{move}"
            )
        return "; ".join(shown)


@dataclass
class AnalysisDiff:
    currency: str
    changes: list[Change] = field(default_factory=list)
    prices: PriceChange | None = None  # None: both runs used the same price table
    features: list[UnitChange] = field(default_factory=list)
    models: list[UnitChange] = field(default_factory=list)  # by resolved model
    versions: tuple[str, str] = ("", "")  # the advisor versions that wrote old and new

    def get(self, name: str) -> Change:
        return next(c for c in self.changes if c.name == name)

    @property
    def notes(self) -> list[str]:
        notes = []
        if self.prices:
            per_request = self.get("baseline cost per priced request")
            notes.append(self.prices.note(per_request, self.currency))
        old, new = self.versions
        if old != new:
            notes.append(
                f"the analyses were written by different advisor versions ({old} → {new}):"
                " a change in how advisor prices or counts may explain part of the difference"
            )
        return notes

    def as_dict(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            "changes": [c.as_dict() for c in self.changes],
            "features": [u.as_dict() for u in self.features],
            "models": [u.as_dict() for u in self.models],
            "prices_changed": self.prices is not None,
            "prices": self.prices.as_dict() if self.prices else None,
            "advisor_versions": {"old": self.versions[0], "new": self.versions[1]},
            "notes": self.notes,
        }


def _model_key(row: CostRow) -> str | None:
    # An analysis written before by_model grouped by model has a row per logged name.
    return row.model_key or row.key


def _price_change(old: Analysis, new: Analysis) -> PriceChange | None:
    a, b = old.prices, new.prices
    if a is not None and b is not None and a.digest == b.digest:
        return None
    if a is None and b is None:
        return None  # neither records it: nothing to compare
    models = []
    if a is not None and b is not None:
        models = sorted(k for k in a.models.keys() & b.models.keys() if a.models[k] != b.models[k])
    before = _summed(old.baseline.by_model, _model_key)
    after = _summed(new.baseline.by_model, _model_key)
    moves = []
    for k in models:
        old_traffic, new_traffic = before.get(k, Traffic()), after.get(k, Traffic())
        moves.append(PriceMove(k, old_traffic.per_token, new_traffic.per_token, new_traffic.tokens))
    return PriceChange(
        a.digest if a else None,
        b.digest if b else None,
        [s.name for s in a.sources] if a else [],
        [s.name for s in b.sources] if b else [],
        models,
        moves,
        new.coverage.priced_requests,
    )


def _per_request(a: Analysis) -> Decimal | None:
    priced = a.coverage.priced_requests
    cost = a.baseline.cost
    return cost / priced if cost is not None and priced else None


def diff_analyses(old: Analysis, new: Analysis) -> AnalysisDiff:
    """Spend, coverage and per-lever savings, old vs new (levers present in either run)."""
    if old.currency != new.currency:
        raise AdvisorError(f"cannot compare {old.currency} with {new.currency}")
    out = AnalysisDiff(
        new.currency,
        prices=_price_change(old, new),
        features=_unit_changes(
            _summed(old.baseline.by_feature, lambda r: r.key),
            _summed(new.baseline.by_feature, lambda r: r.key),
        ),
        models=_unit_changes(
            _summed(old.baseline.by_model, _model_key),
            _summed(new.baseline.by_model, _model_key),
        ),
        versions=(old.advisor_version, new.advisor_version),
    )
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
