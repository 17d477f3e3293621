"""Guardrails: spend anomalies found in the history, and limits derived from it and back-tested
on it (DESIGN.md: `guardrails: limits + anomalies -> Analysis`).

Anomalies come first: the requests inside them are not "normal", so the limits are derived from
the rest of the history and then replayed over all of it, saying what they would have refused.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from advisor.guardrails.models import Anomaly, Guardrails, Limit

__all__ = ["Anomaly", "Guardrails", "Limit", "build", "check_rules"]

# Request ids inside an anomaly's window (request_id VARCHAR): written by anomalies.detect,
# read by limits.derive to tell normal requests from anomalous ones.
ANOMALOUS_TABLE = "_anomalous_requests"


def build(con: duckdb.DuckDBPyConnection, rules_dir: Path) -> tuple[Guardrails, list[Anomaly]]:
    """Anomalies, then limits derived from the normal history and back-tested on all of it."""
    from advisor.guardrails import anomalies, limits

    found = anomalies.detect(con, anomalies.load_rules(rules_dir))
    return limits.derive(con, limits.load_rules(rules_dir)), found


def check_rules(rules_dir: Path) -> None:
    """Load both rules files, so that a broken one fails before a run starts."""
    from advisor.guardrails import anomalies, limits

    anomalies.load_rules(rules_dir)
    limits.load_rules(rules_dir)
