"""Guardrails: spend anomalies found in the history, and limits derived from it and back-tested
on it (DESIGN.md: `guardrails: limits + anomalies -> Analysis`).

Anomalies come first: the requests inside them are not "normal", so the limits are derived from
the rest of the history and then replayed over all of it, saying what they would have refused.
"""

from __future__ import annotations

from advisor.guardrails.models import Anomaly, Guardrails, Limit

__all__ = ["Anomaly", "Guardrails", "Limit"]

# Request ids inside an anomaly's window (request_id VARCHAR): written by anomalies.detect,
# read by limits.derive to tell normal requests from anomalous ones.
ANOMALOUS_TABLE = "_anomalous_requests"
