"""The one money type of analysis.json, and the base of every analysis.json model.

Money is a Decimal serialised as an exact decimal string ('0.01728', never '1.7E-2' nor a float).
`MaybeMoney` is money that may be unknown: None means "could not be priced", never zero. `Share`
and `Tokens` mark a float as a 0..1 share and an int as a token count, so renderers format a
field by its declared type (`kind_of`), never by guessing from its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema


@dataclass(frozen=True)
class Kind:
    """What a number field holds, for display: money, share or tokens."""

    name: str


def to_json(amount: Decimal) -> str:
    """An exact decimal string without exponent or trailing zeros (DuckDB sums carry 18 places)."""
    return format(amount.normalize(), "f")


MONEY = Kind("money")
SHARE = Kind("share")
TOKENS = Kind("tokens")

# Serialised only to JSON: a Python dump keeps the Decimal, so nothing that walks a dump's strings
# (the redaction of Analysis.redacted) can mistake an amount's digits for a card number.
Money = Annotated[
    Decimal,
    PlainSerializer(to_json, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}),
    MONEY,
]
MaybeMoney = Annotated[
    Decimal | None,
    PlainSerializer(
        lambda d: None if d is None else to_json(d), return_type=str | None, when_used="json"
    ),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}, {"type": "null"}]}
    ),
    MONEY,
]
Share = Annotated[float, SHARE]
Tokens = Annotated[int, TOKENS]


def money(value: Any) -> Decimal:
    """A query's sum as money: DuckDB DECIMAL or int to Decimal (None is refused: say unknown)."""
    if value is None:
        raise ValueError("an unknown amount is not money: keep it None (MaybeMoney)")
    return Decimal(value)


def maybe_money(value: Any) -> Decimal | None:
    """A query's value as money, None (unknown) where the query had nothing to price."""
    return None if value is None else Decimal(value)


class Model(BaseModel):
    """Base of every analysis.json model: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


def kind_of(model: type[BaseModel], field: str) -> Kind | None:
    """The display kind a model declares for one of its fields (None: format by value type)."""
    info = model.model_fields.get(field)
    if info is None:
        return None
    return next((m for m in info.metadata if isinstance(m, Kind)), None)
