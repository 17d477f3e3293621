"""What every renderer shows of analysis.json's guardrails and anomalies, formatted once.

The HTML report, report.md and the terminal summary draw the same rows: each limit with its value
in its unit and its back-test, each anomaly with its window, spend and key evidence, and one
sentence that sums the guardrails up. Rows hold plain text (log strings among them): each renderer
escapes every cell its own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from advisor.guardrails.models import Anomaly, Guardrails, Limit
from advisor.report import fmt

MAX_EVIDENCE = 4  # evidence items shown beside an anomaly; all of them are in analysis.json
SHARE_DIGITS = 2  # refused shares sit near the 0.1 % target: one decimal would read '<0.1%'

_WINDOWS = {"request": "request", "1m": "minute", "1h": "hour", "1d": "day", "1mo": "month"}
_METRICS = {
    "input_tokens": "input tokens",
    "max_tokens": "max_tokens (output cap)",
    "requests": "requests",
    "tokens": "tokens",
    "spend": "spend",
}


@dataclass(frozen=True)
class LimitRow:
    """One limit as text. `value` is None when the history is too thin to set it (`reason`)."""

    limit: Limit
    subject: str  # the feature name, 'each user', 'each account' or 'all traffic'
    measure: str  # 'requests per minute (sliding)'
    value: str | None  # '32,000 tokens', '$12.50'
    reason: str | None
    basis: str  # the statistic and its observed value, headroom
    refused: str  # '12 of 9,000'
    refused_share: str  # '0.13%'
    normal_share: str  # refused share of the requests outside every anomaly
    target: str  # '≤0.10%', the most the policy allows of that share
    subjects: str
    prevented: str
    during_anomalies: str
    over_target: bool  # refuses more normal requests than the policy allows


@dataclass(frozen=True)
class AnomalyRow:
    """One anomaly as text, with its place in the ranking (1 = largest excess spend)."""

    rank: int
    anomaly: Anomaly
    kind: str
    entity: str  # 'user: alice'
    feature: str
    window: str  # '2024-05-02 10:00 → 12:00' (UTC)
    requests: str
    spend: str
    expected: str
    excess: str
    score: str
    evidence: list[tuple[str, str]]  # the first MAX_EVIDENCE items
    more_evidence: int

    @property
    def evidence_text(self) -> str:
        """The evidence on one line, for a table cell."""
        more = [f"+{self.more_evidence} more"] if self.more_evidence else []
        return "; ".join([f"{k}: {v}" for k, v in self.evidence] + more)


def limit_value(limit: Limit) -> str | None:
    """The value in its unit: tokens and requests as whole numbers, USD as money."""
    if limit.value is None:
        return None
    if limit.unit == "USD":
        return fmt.money(limit.value, "USD")
    whole = limit.value == limit.value.to_integral_value()  # never a fraction cut off unsaid
    return f"{fmt.count(int(limit.value)) if whole else fmt.number(limit.value)} {limit.unit}"


def limit_rows(guardrails: Guardrails, currency: str) -> list[LimitRow]:
    """Every limit, in the rules file's order, too-thin ones included."""
    return [_limit_row(limit, currency) for limit in guardrails.limits]


def _limit_row(limit: Limit, currency: str) -> LimitRow:
    window = "per request" if limit.window == "request" else f"per {_WINDOWS[limit.window]}"
    kind = "" if limit.window == "request" else (" (sliding)" if limit.sliding else " (UTC)")
    basis = limit.basis
    observed = f"observed {fmt.number(basis.observed)}" if basis.observed is not None else None
    headroom = f"×{fmt.number(basis.headroom)} headroom"
    thin = limit.value is None
    over = not thin and limit.refused_normal_share > limit.target_share
    return LimitRow(
        limit=limit,
        subject=_subject(limit),
        measure=f"{_METRICS[limit.metric]} {window}{kind}",
        value=limit_value(limit),
        reason=limit.reason or ("too thin" if thin else None),
        basis=", ".join(p for p in (basis.statistic, observed, headroom) if p),
        refused=fmt.NONE
        if thin
        else f"{fmt.count(limit.refused_requests)} of {fmt.count(limit.applies_to_requests)}",
        refused_share=fmt.NONE if thin else share(limit.refused_share),
        normal_share=fmt.NONE if thin else share(limit.refused_normal_share),
        target=f"≤{share(limit.target_share)}",
        subjects=fmt.NONE if thin else fmt.count(limit.refused_subjects),
        prevented=fmt.NONE if thin else fmt.money(limit.prevented_spend, currency),
        during_anomalies=fmt.NONE if thin else fmt.money(limit.prevented_anomaly_spend, currency),
        over_target=over,
    )


def _subject(limit: Limit) -> str:
    if limit.scope == "feature":
        return limit.subject  # a name from the log, even one that reads '*'
    if limit.scope == "global":
        return "all traffic"
    return f"each {limit.scope}" if limit.subject == "*" else f"{limit.scope} {limit.subject}"


def share(x: float | None) -> str:
    """A refused share, with the precision the 0.1 % targets need."""
    return fmt.pct(x, SHARE_DIGITS)


def anomaly_rows(anomalies: list[Anomaly], currency: str) -> list[AnomalyRow]:
    """Every anomaly in analysis.json's order (ranked by excess spend, unknown last)."""
    return [_anomaly_row(i, a, currency) for i, a in enumerate(anomalies, start=1)]


def _anomaly_row(rank: int, a: Anomaly, currency: str) -> AnomalyRow:
    items = list(a.evidence.items())
    return AnomalyRow(
        rank=rank,
        anomaly=a,
        kind=kind_label(a.kind),
        entity=entity_label(a),
        feature=fmt.text(a.feature),
        window=window(a.window_start, a.window_end),
        requests=fmt.count(a.requests),
        spend=fmt.money(a.spend, currency),
        expected=fmt.money(a.expected_spend, currency),
        excess=fmt.money(a.excess_spend, currency),
        score=fmt.number(a.score),
        evidence=[(k, _evidence(v)) for k, v in items[:MAX_EVIDENCE]],
        more_evidence=max(0, len(items) - MAX_EVIDENCE),
    )


def kind_label(kind: str) -> str:
    return kind.replace("_", " ")


def entity_label(a: Anomaly) -> str:
    return f"{a.entity_type}: {a.entity}"


def _evidence(value: str | int | float | None) -> str:
    if isinstance(value, str):
        return value
    return fmt.number(value)


moment = fmt.moment  # html.py reads it from here


def window(start: str, end: str) -> str:
    """'2024-05-02 10:00 → 12:00' in UTC (seconds only where they matter); the ISO strings as
    they are when they do not parse."""
    a, b = moment(start), moment(end)
    if a is None or b is None:
        return start if start == end else f"{start} → {end}"
    clock = "%H:%M:%S" if a.second or b.second else "%H:%M"
    first = a.strftime(f"%Y-%m-%d {clock}")
    if a == b:
        return first
    return f"{first} → {b.strftime(clock if a.date() == b.date() else f'%Y-%m-%d {clock}')}"


def summary(guardrails: Guardrails, currency: str) -> str | None:
    """The guardrails in one sentence; None when there is no limit at all. Each limit is replayed
    alone, so their refusals are never added up (a request two limits refuse would count twice):
    the sentence names the limit that refuses most and the one that prevents most."""
    limits = guardrails.limits
    if not limits:
        return None
    kept = [lm for lm in limits if lm.value is not None]
    head = f"{_n(len(kept), 'limit')} set, {fmt.count(len(limits) - len(kept))} too thin to set"
    if not kept:
        return f"Guardrails: {head}."
    refusing = [lm for lm in kept if lm.refused_requests]
    if not refusing:
        return f"Guardrails: {head}; replayed over the history, none would have refused a request."
    most = min(refusing, key=lambda lm: (-lm.refused_requests, lm.id))
    parts = [
        f"Guardrails: {head}; each replayed alone over the history, "
        f"{fmt.count(len(refusing))} would have refused requests, at most "
        f"{_n(most.refused_requests, 'request')} ({most.id}, "
        f"{share(most.refused_normal_share)} of normal requests)"
    ]
    priced = [lm for lm in refusing if lm.prevented_spend is not None]
    if priced:
        top = min(priced, key=lambda lm: (-(lm.prevented_spend or Decimal(0)), lm.id))
        during = fmt.money(top.prevented_anomaly_spend, currency)
        parts.append(
            f"the most spend prevented is {fmt.money(top.prevented_spend, currency)} "
            f"({top.id}, {during} of it during anomalies)"
        )
    else:
        parts.append("the spend they would have prevented is unknown (unpriced requests)")
    over = sorted(lm.id for lm in kept if lm.refused_normal_share > lm.target_share)
    if over:
        parts.append(f"over its target share of normal requests: {', '.join(over)}")
    return "; ".join(parts) + "."


def _n(n: int, noun: str) -> str:
    return f"{fmt.count(n)} {noun}{'' if n == 1 else 's'}"
