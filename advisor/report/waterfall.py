"""The waterfall every renderer draws: baseline -> each lever's marginal step -> combined.

Computed once from analysis.json alone (the baseline cost, each lever's marginal saving in the
order the levers ran, the combined cost), so the terminal summary, report.md and report.html show
the same steps. Where a lever's figure rests on an assumption, its step carries the standalone
saving's range under that assumption.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from advisor.analysis import Analysis
from advisor.report import fmt


@dataclass(frozen=True)
class Step:
    """One bar: the cost before and after it (None: no request is priced, so unknown)."""

    label: str
    kind: Literal["baseline", "lever", "combined"]
    before: Decimal | None
    after: Decimal | None
    change: Decimal  # the cost it removes (a lever's marginal saving; 0 for the end bars)
    range_note: str | None = None  # a lever's standalone range under its key assumption


def steps(a: Analysis) -> list[Step]:
    """Baseline, one step per lever in the order they ran, then combined."""
    out = [Step("baseline", "baseline", None, a.baseline.cost, Decimal(0))]
    running = a.baseline.cost
    for lever in a.levers:
        after = None if running is None else running - lever.marginal_saving
        out.append(
            Step(lever.id, "lever", running, after, lever.marginal_saving, range_note(a, lever.id))
        )
        running = after
    out.append(Step("combined", "combined", None, a.combined.cost, Decimal(0)))
    return out


def range_note(a: Analysis, lever_id: str) -> str | None:
    """'standalone $x to $y: <assumption>' for a lever that reports a range, else None."""
    lever = next(lv for lv in a.levers if lv.id == lever_id)
    if lever.range is None:
        return None
    r = lever.range
    return (
        f"standalone {fmt.money(r.low, a.currency)} to {fmt.money(r.high, a.currency)} "
        f"depending on {r.assumption}"
    )


def sentence(a: Analysis) -> str:
    """The waterfall in one line: 'baseline $100 -> tiering -$15 -> ... -> combined $80'."""
    parts = []
    for s in steps(a):
        if s.kind == "lever":
            parts.append(f"{s.label} −{fmt.money(s.change, a.currency)}")
        else:
            parts.append(f"{s.label} {fmt.money(s.after, a.currency)}")
    return " → ".join(parts)
