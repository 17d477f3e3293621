"""The generic guardrails document: the limits as plain data, the shape `advisor.guard` loads
and every other export is rendered beside.

`generic_document` builds the dict; the exporter renders it as YAML (yaml.safe_dump, so every
name taken from a log is quoted safely) under a header comment. Only limits with a value go under
`limits`; a limit the history was too thin to set goes under `not_set` with its reason and never a
value, so no runtime can enforce a number nobody derived.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any

from advisor.guard import GUARDRAILS_VERSION
from advisor.guardrails.models import Guardrails, Limit
from advisor.money import to_json


def count_value(value: Decimal) -> int:
    """A token or request limit as an int, rounded up: a limit is never tighter than derived."""
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def limit_value(limit: Limit) -> int | str:
    """An int for tokens and requests, an exact decimal string for USD."""
    if limit.value is None:
        raise ValueError(f"{limit.id} has no value")
    return to_json(limit.value) if limit.unit == "USD" else count_value(limit.value)


def generic_limit(limit: Limit) -> dict[str, Any]:
    """One set limit as the runtime reads it, with its back-test figures."""
    return {
        "id": limit.id,
        "scope": limit.scope,
        "subject": limit.subject,
        "metric": limit.metric,
        "window": limit.window,
        "sliding": limit.sliding,
        "unit": limit.unit,
        "value": limit_value(limit),
        "action": limit.action,
        "backtest": {
            "refused_requests": limit.refused_requests,
            "refused_share": limit.refused_share,
            "refused_normal_share": limit.refused_normal_share,
            "refused_subjects": limit.refused_subjects,
            "prevented_spend": (
                None if limit.prevented_spend is None else to_json(limit.prevented_spend)
            ),
        },
    }


def generic_document(
    guardrails: Guardrails, period_start: str | None, period_end: str | None
) -> dict[str, Any]:
    """The generic export of analysis.json's guardrails (version GUARDRAILS_VERSION)."""
    unset = [lim for lim in guardrails.limits if lim.status != "set" or lim.value is None]
    return {
        "advisor_guardrails": GUARDRAILS_VERSION,
        "period": {"start": period_start, "end": period_end},
        "limits": [generic_limit(lim) for lim in guardrails.limits if lim not in unset],
        "not_set": [
            {"id": lim.id, "subject": lim.subject, "reason": lim.reason or "too little history"}
            for lim in unset
        ],
    }
