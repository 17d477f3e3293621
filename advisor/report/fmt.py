"""Display formatting of analysis values: the one place numbers are rounded for people to read.

Every renderer (html, markdown, console) formats money, shares and token counts through this
module, so the same figure reads the same everywhere. `tree` turns a lever's typed `details` (or
`risk`) into a small tree of already-formatted text that each renderer draws in its own way, so
a new lever needs no template change. A number is formatted by the type its model declares
(`advisor.money`: Money, Share, Tokens), never by its key's name.

It imports no analysis model at run time, so the levers can word their prose with the same
formatters (`money`, `count`, `plural`) without an import cycle.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from advisor.money import MONEY, SHARE, TOKENS, Kind, kind_of

if TYPE_CHECKING:
    from advisor.analysis import (
        Analysis,
        CostRow,
        Coverage,
        Interval,
        LeverResult,
        Reconciliation,
    )

NONE = "—"
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_CENT = Decimal("0.01")

# C0/C1 controls (terminal escape sequences among them) and bidi overrides (text that reads
# differently from how it is stored): shown as escapes wherever text is printed, never obeyed.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNPRINTABLE = re.compile(f"[\t\n{_CONTROLS}]")
_UNPRINTABLE_KEEPING_LAYOUT = re.compile(f"[{_CONTROLS}]")

MAX_TABLE_ROWS = 50
MAX_DEPTH = 6


def to_decimal(value: Any) -> Decimal | None:
    """A Decimal from a Decimal, int, float or decimal string; None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def money(d: Decimal | int | float | str | None, currency: str = "USD") -> str:
    """'$1,234.57', '-$3.10'; amounts under a cent keep two significant digits ('$0.0042'), so a
    non-zero amount never reads as '$0.00'. Unknown (None) is '—', never zero."""
    amount = to_decimal(d)
    if amount is None:
        return NONE
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    # enough precision for any amount's digits: quantize refuses to drop integer digits
    exact = Context(prec=max(28, amount.adjusted() + 4))
    if amount == 0 or amount >= _CENT:
        text = f"{amount.quantize(_CENT, rounding=ROUND_HALF_UP, context=exact):,}"
    else:
        exponent = Decimal(1).scaleb(amount.adjusted() - 1)
        text = format(amount.quantize(exponent, rounding=ROUND_HALF_UP), "f").rstrip("0")
    symbol = _SYMBOLS.get(currency.upper())
    if symbol is None:
        return f"{sign}{text} {currency}"
    return f"{sign}{symbol}{text}"


def pct(x: float | Decimal | None, digits: int = 1) -> str:
    """A share in 0..1 as a percentage ('12.3%'); tiny non-zero shares never read as 0 or 100."""
    if x is None or isinstance(x, bool):
        return NONE
    value = float(x)
    if math.isnan(value) or math.isinf(value):
        return NONE
    floor = 10.0**-digits / 100
    if 0 < abs(value) < floor:
        return f"{'-' if value < 0 else ''}<{floor * 100:.{digits}f}%"
    if 1 - floor < value < 1:
        return f">{(1 - floor) * 100:.{digits}f}%"
    return f"{value * 100:.{digits}f}%"


def tokens(n: int | float | Decimal | None) -> str:
    """A token count in short form: '950', '12.3k', '1.2M', '3.4B'."""
    if n is None or isinstance(n, bool):
        return NONE
    value = float(n)
    if math.isnan(value) or math.isinf(value):
        return NONE
    sign = "-" if value < 0 else ""
    value = abs(value)
    if round(value) < 1000:
        return f"{sign}{value:.0f}" if value == int(value) else f"{sign}{value:.1f}"
    for divisor, unit in ((1e3, "k"), (1e6, "M"), (1e9, "B")):
        shown = round(value / divisor, 1)
        if shown < 1000 or unit == "B":
            return f"{sign}{shown:,.1f}{unit}"
    return f"{sign}{value:,.0f}"  # pragma: no cover - the loop always returns


def count(n: int | None) -> str:
    """An exact count with thousands separators: '1,234'."""
    if n is None or isinstance(n, bool):
        return NONE
    return f"{n:,}"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """A count with its noun agreeing: '1 row', '2 rows', '1,234 requests' ('nouns' for an
    irregular plural)."""
    return f"{count(n)} {noun if n == 1 else nouns or noun + 's'}"


def days(n: float) -> str:
    """A period's length: '1 day', '13.92 days'."""
    return f"{number(n)} {'day' if n == 1 else 'days'}"


def moment(value: str) -> datetime | None:
    """An ISO 8601 time in UTC (a naive one is taken as UTC); None when it does not parse."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def timestamp(value: str | None, missing: str = NONE) -> str:
    """An instant to the minute in UTC, '2025-03-04 12:00 UTC' (no microseconds, no 'T'); a date
    alone stays a date, and text that is not a time is shown as it is (callers escape it)."""
    if value is None:
        return missing
    parsed = moment(value) if len(value) > len("2025-03-04") else None
    return value if parsed is None else parsed.strftime("%Y-%m-%d %H:%M UTC")


def number(x: float | int | Decimal | None) -> str:
    """A plain measurement (a ratio, a threshold, a number of days) to four significant digits."""
    if x is None or isinstance(x, bool):
        return NONE
    if isinstance(x, int):
        return count(x)
    value = float(x)
    if math.isnan(value) or math.isinf(value):
        return NONE
    if value == int(value) and abs(value) < 1e15:
        return count(int(value))
    return f"{value:,.4g}" if abs(value) >= 1e-4 else f"{value:.2e}"


# Fields whose plain name would claim more than the figure is: said for what they measure.
_HONEST_LABELS = {
    "expected_misrouted": "Expected misrouted (the classifier's own estimate)",
}


def label(key: str) -> str:
    """A field name as a heading: 'standalone_saving' -> 'Standalone saving'."""
    if key in _HONEST_LABELS:
        return _HONEST_LABELS[key]
    text = key.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else key


def text(value: str | None) -> str:
    """A log string for display; a missing key reads as '(none)', never as an empty cell."""
    return "(none)" if value is None else value


def printable(value: str, *, keep_layout: bool = False) -> str:
    """A string for a terminal or plain text: control and bidi characters become visible escapes
    (newlines and tabs too, unless `keep_layout`: HTML lays them out as spaces)."""
    pattern = _UNPRINTABLE_KEEPING_LAYOUT if keep_layout else _UNPRINTABLE
    return pattern.sub(_escape_char, value)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def scalar(value: Any, kind: Kind | None = None, currency: str = "USD") -> str:
    """One value, formatted by its declared kind (money, share, tokens), else by its type."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == MONEY:
        return money(to_decimal(value), currency)
    if kind == SHARE:
        return pct(value)
    if kind == TOKENS:
        return tokens(value)
    return number(value) if isinstance(value, int | float | Decimal) else str(value)


def is_numeric(value: Any, kind: Kind | None = None) -> bool:
    """Whether a value renders as a number (right-aligned in tables)."""
    if isinstance(value, bool) or value is None:
        return False
    return kind is not None or isinstance(value, int | float | Decimal)


@dataclass
class Node:
    """A formatted value: 'scalar' (text), 'map' (items), 'table' (columns, rows) or 'list'."""

    kind: str
    text: str = ""
    numeric: bool = False
    items: list[tuple[str, Node]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Node]] = field(default_factory=list)
    omitted: int = 0


def tree(value: Any, currency: str = "USD", depth: int = 0, kind: Kind | None = None) -> Node:
    """A model (or plain JSON-like data) as a Node tree; a model's fields keep its order and are
    formatted by their declared kind. Long tables keep their first MAX_TABLE_ROWS rows."""
    if isinstance(value, BaseModel) and depth < MAX_DEPTH:
        model = type(value)
        items = [
            (name, tree(getattr(value, name), currency, depth + 1, kind_of(model, name)))
            for name in model.model_fields
        ]
        return Node("map", items=items)
    if isinstance(value, Mapping) and depth < MAX_DEPTH:
        items = [(str(k), tree(v, currency, depth + 1, kind)) for k, v in value.items()]
        return Node("map", items=items)
    is_list = isinstance(value, Sequence) and not isinstance(value, str | bytes)
    if is_list and depth < MAX_DEPTH:
        entries = list(value)
        if entries and all(isinstance(e, BaseModel | Mapping) for e in entries):
            columns: list[str] = []
            for entry in entries:
                names = type(entry).model_fields if isinstance(entry, BaseModel) else entry
                columns.extend(str(k) for k in names if str(k) not in columns)
            rows = [
                [_cell(entry, c, currency, depth + 1) for c in columns]
                for entry in entries[:MAX_TABLE_ROWS]
            ]
            omitted = max(0, len(entries) - MAX_TABLE_ROWS)
            return Node("table", columns=columns, rows=rows, omitted=omitted)
        shown = [tree(e, currency, depth + 1, kind) for e in entries[:MAX_TABLE_ROWS]]
        return Node("list", items=[("", n) for n in shown], omitted=len(entries) - len(shown))
    if isinstance(value, BaseModel):
        return Node("scalar", text=value.model_dump_json()[:200])
    if isinstance(value, Mapping | list | tuple):
        return Node("scalar", text=json.dumps(value, default=str, sort_keys=True)[:200])
    return Node("scalar", text=scalar(value, kind, currency), numeric=is_numeric(value, kind))


def _cell(entry: Any, column: str, currency: str, depth: int) -> Node:
    if isinstance(entry, BaseModel):
        value = getattr(entry, column, None)
        return tree(value, currency, depth, kind_of(type(entry), column))
    value = next((v for k, v in entry.items() if str(k) == column), None)
    return tree(value, currency, depth)


def flat(node: Node) -> str:
    """A Node as one line of text (for a table cell in plain-text renderers)."""
    if node.kind == "scalar":
        return node.text
    if node.kind == "list":
        more = f", … {node.omitted} more" if node.omitted else ""
        return ", ".join(flat(n) for _, n in node.items) + more
    if node.kind == "map":
        return "; ".join(f"{label(k)}: {flat(n)}" for k, n in node.items)
    return f"table of {len(node.rows) + node.omitted} rows"


def by_cost(rows: Sequence[CostRow]) -> list[CostRow]:
    """Costliest first; rows whose cost is unknown (nothing priced) last, not as zero."""
    return sorted(rows, key=lambda r: (r.cost is None, -(r.cost or 0), text(r.key)))


def levers_sentence(run: Sequence[str], skipped: Sequence[str]) -> str:
    """Which levers ran, and which did not (switched off, or not built yet)."""
    ran = ", ".join(run) if run else "none"
    return f"Levers run: {ran}" + (f"; not run: {', '.join(skipped)}" if skipped else "")


def token_sources(coverage: Coverage) -> str:
    """Where the token counts come from, in one line (plain text: callers add the tokenizer)."""
    src = coverage.token_source
    return (
        f"Token counts: {count(src.logged)} logged, {count(src.tokenized)} tokenized, "
        f"{count(src.estimated)} estimated, {count(src.unbilled)} unbilled"
    )


def estimated_warning(coverage: Coverage) -> str | None:
    """The one sentence every renderer shows when some token counts are estimates."""
    estimated = coverage.token_source.estimated
    if not estimated:
        return None
    if coverage.tokenizer.lower().startswith("estimat"):
        why = " because no tokenizer could be loaded offline"
        exact = (
            "set TIKTOKEN_CACHE_DIR to a folder holding tiktoken's encoding files "
            "(o200k_base, cl100k_base)"
        )
    else:  # no offline tokenizer exists for these providers: only logged usage is exact
        why = " (their provider's tokenizer was approximated with o200k_base)"
        exact = "log the provider's usage (token counts) with each request"
    calibrated = (
        f", calibrated ×{number(coverage.token_calibration)} against logged usage"
        if coverage.token_calibration is not None
        else ""
    )
    return (
        f"{count(estimated)} requests have estimated token counts{why}{calibrated}; "
        f"their costs are approximate. For exact counts, {exact}."
    )


def approximate_note(lever: LeverResult, currency: str) -> str | None:
    """The note every renderer shows beside a lever's figure that rests on token counts the lever
    made itself and that are not exact (caching's details.token_counts): the saving's range."""
    if lever.id != "caching":
        return None
    counts = lever.details.token_counts
    if counts.counts == "exact":
        return None
    models = [m for m in counts.by_model if m.counts != "exact"]
    reasons = "; ".join(sorted({m.why for m in models}))
    calibrated = sum(1 for m in models if m.calibrated_on)
    how = (
        "calibrated against the logged usage of the same requests"
        if calibrated == len(models)
        else f"{calibrated} of {len(models)} models calibrated against logged usage, "
        "the others too little logged usage: a wide range assumed"
    )
    return (
        f"approximate: {money(counts.low_saving, currency)} to "
        f"{money(counts.high_saving, currency)}; token counts {counts.counts}"
        f" ({reasons}), {how}"
    )


def reconciliation_sentence(rec: Reconciliation, currency: str) -> str:
    """Logged cost against our pricing, as one sentence (plain text: callers escape it)."""
    if not rec.rows_with_logged_cost:
        return "Reconciliation: no logged cost to compare our pricing against"
    share = f" ({pct(rec.gap_share)})" if rec.gap_share is not None else ""
    return (
        f"Reconciliation: logs report {money(rec.logged_total, currency)} for "
        f"{count(rec.rows_with_logged_cost)} requests; our prices give "
        f"{money(rec.computed_total, currency)}; gap {money(rec.gap, currency)}{share}"
    )


def signed(value: Decimal | float | None, shown: str) -> str:
    """A formatted change with its sign: '+$1.23', '+4.0%' (a negative one has its '-')."""
    return f"+{shown}" if value is not None and value > 0 else shown


def money_per_unit(d: Decimal | None, currency: str = "USD") -> str:
    """A small amount (a cost per request) to three significant digits, so runs compare:
    '$0.0712', '$0.641'; from one unit up, as `money` ('$35.81')."""
    amount = to_decimal(d)
    if amount is None or amount == 0:
        return money(amount, currency)
    exponent = Decimal(1).scaleb(min(amount.adjusted() - 2, -2))
    rounded = abs(amount).quantize(exponent, rounding=ROUND_HALF_UP)
    if rounded >= 1:
        return money(amount, currency)
    text = format(rounded, "f").rstrip("0")
    text = text if len(text.split(".")[1]) >= 2 else f"{text}0"
    symbol = _SYMBOLS.get(currency.upper())
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"


def sample_sentence(a: Analysis) -> str | None:
    """What a sampled analysis rests on, in one sentence (plain text); None: nothing sampled."""
    smp = a.sample
    if smp is None:
        return None
    why = f", chosen because the log holds over {count(smp.auto_above)} requests" * smp.automatic
    return (
        f"Sampled: the levers were replayed on {pct(smp.fraction, 2)} of the log{why} "
        f"({count(smp.units_sampled)} of {count(smp.units)} units of {smp.unit}; "
        f"{count(smp.requests_sampled)} of {count(smp.requests)} requests). Their savings are "
        "scaled to the whole log, with 95% intervals; the spend, coverage and guardrails are "
        "exact. Lever details and request counts are the sample's."
    )


def interval(iv: Interval | None, currency: str = "USD") -> str:
    """A 95 % interval as 'low–high'; empty when the figure was not sampled."""
    if iv is None:
        return ""
    return f"{money(iv.low, currency)}–{money(iv.high, currency)}"


def lever_interval(a: Analysis, lever_id: str, which: str = "marginal") -> Interval | None:
    """A lever's standalone or marginal interval in a sampled analysis (None: exact)."""
    if a.sample is None:
        return None
    found = next((iv for iv in a.sample.levers if iv.id == lever_id), None)
    return None if found is None else getattr(found, which)


def row_interval(a: Analysis, row_id: str) -> Interval | None:
    """An action-plan row's interval in a sampled analysis (None: exact)."""
    if a.sample is None:
        return None
    return next((iv for iv in a.sample.action_plan if iv.id == row_id), None)
