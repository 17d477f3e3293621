"""Guardrails kept in the store, so `advisor export guardrails --db FILE` renders them later.

The store's `meta` table holds the Guardrails JSON as built, unredacted: the feature names and
the limits' subjects must match what the application sends at run time. analysis.json carries
the redacted copy.
"""

from __future__ import annotations

import duckdb
from pydantic import ValidationError

from advisor import store
from advisor.errors import AdvisorError
from advisor.guardrails.models import Guardrails

META_GUARDRAILS = "guardrails"


def save_guardrails(con: duckdb.DuckDBPyConnection, guardrails: Guardrails) -> None:
    store.set_meta(con, META_GUARDRAILS, guardrails.model_dump_json())


def load_guardrails(con: duckdb.DuckDBPyConnection) -> Guardrails | None:
    """The store's guardrails; None when no analysis saved any."""
    raw = store.get_meta(con, META_GUARDRAILS)
    if raw is None:
        return None
    try:
        return Guardrails.model_validate_json(raw)
    except ValidationError as exc:
        raise AdvisorError(
            "the guardrails in this store were written by another advisor version",
            hint="run `advisor analyze` on the store again",
        ) from exc
