"""The display formatters every renderer and the levers' prose share (advisor.report.fmt):
money with its currency and no false zero, counts with separators and agreeing nouns, shares as
percentages, times to the minute in UTC."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from advisor.report import fmt


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("13.79239295"), "$13.79"),
        (Decimal("1234.5678"), "$1,234.57"),
        (Decimal("0.00000123"), "$0.0000012"),
        (Decimal("0.5"), "$0.50"),
        ("3.10", "$3.10"),
        (Decimal("0.0046"), "$0.0046"),
        (Decimal("0.004649"), "$0.0046"),
        (Decimal("0.00004649"), "$0.000046"),
        (Decimal("0.009999"), "$0.01"),
        (Decimal("0.005"), "$0.005"),
        (Decimal("-0.0046"), "-$0.0046"),
        (Decimal("-13.795"), "-$13.80"),
        (Decimal("4012"), "$4,012.00"),
        (Decimal("0"), "$0.00"),
        (Decimal("1E+30"), "$1,000,000,000,000,000,000,000,000,000,000.00"),
        (None, fmt.NONE),
    ],
)
def test_money_in_prose(value: Decimal | str | None, expected: str) -> None:
    assert fmt.money(value) == expected


def test_money_keeps_an_unknown_symbol_as_a_code() -> None:
    assert fmt.money(Decimal("2.5"), "GBP") == "£2.50"
    assert fmt.money(Decimal("0.0046"), "CHF") == "0.0046 CHF"


def _parse(text: str) -> Decimal:
    match = re.fullmatch(r"(-?)\$([\d,]+\.\d+)", text)
    assert match, text
    return Decimal(match.group(1) + match.group(2).replace(",", ""))


def _rounded(amount: Decimal) -> Decimal:
    """What the reader is told: cents, or two significant digits under a cent."""
    size = abs(amount)
    unit = (
        Decimal("0.01")
        if size == 0 or size >= Decimal("0.01")
        else Decimal(1).scaleb(size.adjusted() - 1)
    )
    return amount.quantize(unit, rounding=ROUND_HALF_UP)


@given(
    st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), allow_nan=False, places=12)
)
def test_formatted_money_reads_back_as_the_rounded_amount(amount: Decimal) -> None:
    shown = fmt.money(amount)
    assert _parse(shown) == _rounded(amount)
    if amount:
        assert _parse(shown) != 0 and shown.startswith("-") == (amount < 0)  # no false $0.00


def test_counts_with_separators_and_agreeing_nouns() -> None:
    assert fmt.count(4012) == "4,012"
    assert fmt.plural(1, "row") == "1 row"
    assert fmt.plural(2, "row") == "2 rows"
    assert fmt.plural(0, "request") == "0 requests"
    assert fmt.plural(1624, "request") == "1,624 requests"
    assert fmt.plural(3, "anomaly", "anomalies") == "3 anomalies"
    assert fmt.days(1) == "1 day" and fmt.days(13.92) == "13.92 days"


def test_shares_as_percentages() -> None:
    assert fmt.pct(0.334) == "33.4%"
    assert fmt.pct(0.212) == "21.2%"
    assert fmt.pct(0.00001) == "<0.1%"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-04T12:00:59.906000Z", "2025-03-04 12:00 UTC"),
        ("2025-03-04T14:00:00+02:00", "2025-03-04 12:00 UTC"),
        ("2025-03-04 12:00:00", "2025-03-04 12:00 UTC"),  # naive: the store's UTC
        ("2025-03-04", "2025-03-04"),  # a day stays a day
        ("yesterday", "yesterday"),
        (None, fmt.NONE),
    ],
)
def test_timestamps_to_the_minute_in_utc(value: str | None, expected: str) -> None:
    assert fmt.timestamp(value) == expected


def test_lever_prose_on_the_sample_words_money_and_counts_for_people() -> None:
    """The levers' prose in the golden analysis: no raw Decimal ('13.79239295 USD'), no false
    '$0.00', counts past a thousand with separators."""
    golden = Path(__file__).resolve().parent / "golden" / "sample_analysis.json"
    text = golden.read_text(encoding="utf-8")
    assert not re.search(r"\d USD", text)
    assert not re.search(r"\$0\.00 less", text)
    assert not re.search(r"\b\d{4,} requests", text)
