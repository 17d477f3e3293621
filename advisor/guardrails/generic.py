"""The generic guardrails document: advisor's own YAML shape of the limits (the contract in
guardrails-spec.md), which `advisor.guard` loads and every other export is rendered beside.

Only limits with a value go under `limits`; a limit the history was too thin to set goes under
`not_set` with its reason and never a value, so no runtime can enforce a number nobody derived.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any

from advisor.guardrails.models import Guardrails, Limit
from advisor.money import to_json

GENERIC_VERSION = 1


def count_value(value: Decimal) -> int:
    """A token or request limit as an int, rounded up: a limit is never tighter than derived."""
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def limit_value(limit: Limit) -> int | str:
    """The value as the spec writes it: an int for tokens/requests, a decimal string for USD."""
    if limit.value is None:
        raise ValueError(f"{limit.id} has no value")
    return to_json(limit.value) if limit.unit == "USD" else count_value(limit.value)


def generic_document(
    guardrails: Guardrails, period_start: str | None, period_end: str | None
) -> dict[str, Any]:
    """The generic export as plain data (render it with yaml.safe_dump, never by hand)."""
    limits = []
    not_set = []
    for limit in guardrails.limits:
        if limit.status != "set" or limit.value is None:
            not_set.append({"id": limit.id, "reason": limit.reason or "too little history"})
            continue
        limits.append(
            {
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
                    "prevented_spend": None
                    if limit.prevented_spend is None
                    else to_json(limit.prevented_spend),
                },
            }
        )
    return {
        "advisor_guardrails": GENERIC_VERSION,
        "period": {"start": period_start, "end": period_end},
        "limits": limits,
        "not_set": not_set,
    }
