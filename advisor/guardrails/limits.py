"""Limits derived from the logged history and back-tested on it (rules/guardrails.yaml).

For each policy: the usage the limiter would have seen at each request (its input or output
tokens; the subject's requests in the trailing window including it; the subject's tokens or
spend earlier in the window), its quantile over normal requests (outside every anomaly) times
the headroom, clamped to floor and ceiling and rounded up to a readable number. Too little
history (samples, subjects or days) leaves the limit unset, with the reason.

The back-test replays each limit alone over the whole history in (ts, request_id) order with the
semantics of advisor.guard. Most of it is exact in SQL: a per-request cap looks at one request,
and a calendar budget refuses exactly the requests whose attempted usage earlier in the window
reached the value (nothing is refused before that point, so admitted = attempted up to it, and
nothing is admitted after it). A sliding window can admit again once refused requests age out, so
its refusals come from replaying, through the runtime itself, the few requests that can be
refused (those whose attempted usage already reached the value) and the window before each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import duckdb

from advisor.guard import REQUEST_KEYS, SLIDING_SECONDS, Guard
from advisor.guardrails import ANOMALOUS_TABLE
from advisor.guardrails.models import Guardrails, Limit, LimitBasis
from advisor.guardrails.policy import Policy
from advisor.guardrails.policy import load_rules as _load_rules
from advisor.money import maybe_money
from advisor.pricing import cost_sql

BASE = "_gr_requests"  # the requests with what every policy reads
USAGE = "_gr_usage"  # one policy's usage per request
VALUES = "_gr_values"  # one policy's value per group (feature, or '' for one value)
REFUSED = "_gr_refused"  # one policy's refused (or capped) requests
HOT = "_gr_hot"  # requests a sliding window can refuse: attempted usage before them reached it
SUBJECT_SQL = {"user": "user_id", "account": "account_id", "feature": "feature"}
WINDOW_WORD = {"1m": "minute", "1h": "hour", "1d": "day", "1mo": "month"}
CALENDAR_TRUNC = {"1d": "day", "1mo": "month"}


def load_rules(rules_dir: Path) -> list[Policy]:
    """The guardrails policies of a rules folder (rules/guardrails.yaml), validated."""
    return _load_rules(rules_dir)


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    sql = "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?"
    row = con.execute(sql, [table]).fetchone()
    return bool(row and row[0])


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    """BASE: each request with its tokens, baseline cost (NULL: unpriced), anomaly flag and
    `seq`, its place in (ts, request_id) order (windows sort one integer, not a string)."""
    cost = "c.baseline_cost" if _exists(con, "costs") else "CAST(NULL AS DECIMAL(38, 18))"
    costs = "LEFT JOIN costs c USING (request_id)" if _exists(con, "costs") else ""
    anomalous = (
        f"r.request_id IN (SELECT request_id FROM {ANOMALOUS_TABLE})"
        if _exists(con, ANOMALOUS_TABLE)
        else "false"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {BASE} AS
            SELECT r.request_id, r.ts, row_number() OVER (ORDER BY r.ts, r.request_id) AS seq,
                   r.user_id, r.account_id, r.feature,
                   r.input_tokens, r.output_tokens,
                   COALESCE(r.input_tokens, 0) + COALESCE(r.output_tokens, 0) AS tokens,
                   {cost} AS cost, {anomalous} AS anomalous
            FROM requests r {costs}"""
    )


def _has_features(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(f"SELECT count(feature) FROM {BASE}").fetchone()
    return bool(row and row[0])


def _subject_sql(policy: Policy, features: bool) -> str:
    if policy.scope == "global" or (policy.scope == "feature" and not features):
        return "'all'"
    return SUBJECT_SQL[policy.scope]


def _usage_sql(policy: Policy, subject: str) -> str:
    """SELECT of USAGE: seq (the request), subject, grp (the value's group), stat (the usage the
    value is derived from), before (the subject's usage before the request, compared with the value;
    for per-request caps the request's own usage) and amount (what the request adds)."""
    grp = subject if policy.scope == "feature" else "''"
    amount = {"requests": "1", "tokens": "tokens", "spend": "COALESCE(cost, 0)"}.get(
        policy.metric, "0"
    )
    rows = f"""SELECT seq, ts, {subject} AS subject, {grp} AS grp, anomalous, cost,
                      tokens, input_tokens, output_tokens, {amount} AS amount
               FROM {BASE} WHERE {subject} IS NOT NULL"""
    # a request rate is derived from the count including the request (a value of N admits N in
    # a window); tokens and spend from what the limiter has seen before it; a per-request cap
    # from the request's own tokens (NULL: nothing to judge, nothing refused)
    stat = "before + 1" if policy.metric == "requests" else "before"
    if policy.window == "request":
        column = "input_tokens" if policy.metric == "input_tokens" else "output_tokens"
        return f"SELECT *, {column} AS before, {column} AS stat FROM ({rows})"
    if policy.window in CALENDAR_TRUNC:
        period = f"date_trunc('{CALENDAR_TRUNC[policy.window]}', ts)"
        return f"""SELECT *, {stat} AS stat FROM (
                       SELECT *, sum(amount) OVER (PARTITION BY subject, {period} ORDER BY seq
                                                   ROWS UNBOUNDED PRECEDING) - amount AS before
                       FROM ({rows}))"""
    # (t - w, t] up to the request: the subject's running total so far, less the request's own
    # amount, less the running total at the last request at or before t - w (an ASOF join:
    # ties at t - w are outside the window, as they are in the runtime)
    seconds = SLIDING_SECONDS[policy.window]
    return f"""WITH c AS (SELECT *, sum(amount) OVER (PARTITION BY subject ORDER BY seq
                                                       ROWS UNBOUNDED PRECEDING) AS upto
                          FROM ({rows})),
                    d AS (SELECT subject, ts, max(upto) AS upto FROM c GROUP BY subject, ts),
                    b AS (SELECT c.* EXCLUDE (upto),
                                 c.upto - c.amount - COALESCE(d.upto, 0) AS before
                          FROM c ASOF LEFT JOIN d
                          ON c.subject = d.subject AND c.ts - INTERVAL {seconds} SECOND >= d.ts)
               SELECT *, {stat} AS stat FROM b"""


def _readable(raw: Decimal, digits: int) -> Decimal:
    """Rounded up to `digits` significant digits (1234 -> 1300, 0.01234 -> 0.013)."""
    if raw <= 0:
        return Decimal(0)
    exponent = raw.adjusted() - digits + 1
    step = Decimal(1).scaleb(exponent)
    return (raw / step).to_integral_value(rounding=ROUND_CEILING) * step


def _value(policy: Policy, observed: Decimal) -> Decimal:
    raw = observed * Decimal(str(policy.headroom))
    if policy.unit != "USD":
        raw = raw.to_integral_value(rounding=ROUND_CEILING)
    value = max(_readable(raw, policy.significant_digits), policy.floor)
    if policy.ceiling is not None:
        value = min(value, policy.ceiling)
    value = value if policy.unit == "USD" else value.to_integral_value(rounding=ROUND_CEILING)
    return Decimal(format(value.normalize(), "f"))


def _percent(q: float) -> str:
    return f"p{round(q * 100, 4):g}"


def _statistic(policy: Policy, subject: str) -> str:
    who = "all traffic" if subject == "'all'" else f"each {policy.scope}"
    if policy.window == "request":
        what = "input tokens" if policy.metric == "input_tokens" else "output tokens"
        return f"{_percent(policy.quantile)} of the {what} per request"
    span = WINDOW_WORD[policy.window]
    if policy.metric == "requests":
        what = f"requests in the trailing {span} including it"
    elif policy.sliding:
        what = f"tokens in the trailing {span} before it"
    else:
        noun = "tokens" if policy.metric == "tokens" else "spend"
        what = f"{noun} earlier in its UTC calendar {span}"
    return f"{_percent(policy.quantile)} over requests of {who}'s {what}"


def _thin_reason(policy: Policy, samples: int, subjects: int, days: float) -> str | None:
    if policy.scope in ("user", "account") and subjects == 0:
        return f"no {policy.scope} ids in the logs"
    if samples < policy.min_samples:
        return f"only {samples} normal requests to derive it from (at least {policy.min_samples})"
    if subjects < policy.min_subjects:
        return f"only {subjects} {policy.scope}s in the logs (at least {policy.min_subjects})"
    if days < policy.min_days:
        per = WINDOW_WORD[policy.window]
        return f"only {days:.2g} days of history (a per-{per} limit needs {policy.min_days:g} days)"
    return None


@dataclass(frozen=True)
class _Group:
    """One value's group (a feature, or everything): what the value is derived from."""

    grp: str
    observed: object  # the quantile (a number or DECIMAL), None without normal usage
    samples: int
    subjects: int
    days: float
    applies: int  # requests the limit applies to
    normal: int  # of which outside every anomaly


def _groups(con: duckdb.DuckDBPyConnection, policy: Policy) -> list[_Group]:
    rows = con.execute(
        f"""SELECT grp,
                   quantile_disc(stat, {policy.quantile}) FILTER (WHERE NOT anomalous),
                   count(stat) FILTER (WHERE NOT anomalous),
                   count(DISTINCT subject) FILTER (WHERE NOT anomalous AND stat IS NOT NULL),
                   COALESCE(epoch(max(ts) FILTER (WHERE NOT anomalous)
                                  - min(ts) FILTER (WHERE NOT anomalous)), 0) / 86400.0,
                   count(*), count(*) FILTER (WHERE NOT anomalous)
            FROM {USAGE} GROUP BY grp ORDER BY grp"""
    ).fetchall()
    return [
        _Group(g, o, int(n), int(s), float(d), int(a), int(na)) for g, o, n, s, d, a, na in rows
    ]


def _replay(con: duckdb.DuckDBPyConnection, policy: Policy) -> Iterator[int]:
    """Refused requests (seq) of a sliding window, from the runtime replaying the requests that
    can be refused (attempted usage before them reached the value) and the window before each
    (a request outside every such window is admitted whatever came before, so nothing else
    changes what the runtime decides)."""
    seconds = SLIDING_SECONDS[policy.window]
    hot = f"""SELECT u.subject, u.ts FROM {USAGE} u JOIN {VALUES} v USING (grp)
              WHERE u.before >= v.value"""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {HOT} AS {hot}")
    found = con.execute(f"SELECT count(*) FROM {HOT}").fetchone()
    if not found or not found[0]:
        return
    # each request's next hot request (ASOF: the first at or after it, same subject)
    rows = con.execute(
        f"""SELECT u.subject, u.grp, u.seq, u.ts, u.tokens, v.value
            FROM {USAGE} u JOIN {VALUES} v USING (grp)
            ASOF JOIN {HOT} h ON u.subject = h.subject AND u.ts <= h.ts
            WHERE h.ts < u.ts + INTERVAL {seconds} SECOND
            ORDER BY u.subject, u.seq"""
    ).fetchall()
    guard, current = None, None
    for subject, grp, seq, ts, tokens, value in rows:
        if (subject, grp) != current:
            current = (subject, grp)
            target = grp if policy.scope == "feature" else "*"
            guard = Guard([policy.guard_limit(target, Decimal(value))])
        assert guard is not None
        now = ts.replace(tzinfo=dt.UTC)
        request = {REQUEST_KEYS.get(policy.scope, "subject"): subject}
        verdict = guard.check(request, now)
        if not verdict.allowed:
            yield seq
        guard.record(verdict, now, tokens=tokens)


def _refuse(con: duckdb.DuckDBPyConnection, policy: Policy) -> None:
    """Fill REFUSED with the requests the limit alone refuses (or caps) over the history."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {REFUSED} (seq BIGINT)")
    if policy.sliding:
        refused = list(_replay(con, policy))
        con.execute(f"INSERT INTO {REFUSED} SELECT unnest(?::BIGINT[])", [refused])
        return
    # per-request caps: over the value; calendar budgets: usage before reached it
    op = ">" if policy.window == "request" else ">="
    con.execute(
        f"""INSERT INTO {REFUSED} SELECT seq FROM {USAGE} JOIN {VALUES} USING (grp)
            WHERE before {op} value"""
    )


def _saved_sql(con: duckdb.DuckDBPyConnection, policy: Policy) -> str:
    """(seq, saved) per refused request: the spend the limit prevents there, its
    baseline cost, or for a cap the cost of its output tokens over the cap (the request priced
    as baseline pricing prices it, less the same with its output capped); NULL where unpriced."""
    refused = f"{USAGE} u JOIN {REFUSED} USING (seq)"
    if policy.action != "cap":
        return f"SELECT seq, u.cost AS saved FROM {refused}"
    if not _exists(con, "prices"):
        return f"SELECT seq, CAST(NULL AS DECIMAL(38, 18)) AS saved FROM {refused}"
    return f"""WITH c AS (
                   SELECT u.seq, r.* REPLACE (LEAST(r.output_tokens, CAST(v.value AS BIGINT))
                                              AS output_tokens)
                   FROM {refused} JOIN {BASE} b USING (seq)
                   JOIN requests r ON r.request_id = b.request_id
                   JOIN {VALUES} v ON v.grp = u.grp)
               SELECT c.seq, {cost_sql("r", "p")} - {cost_sql("c", "p")} AS saved
               FROM c JOIN requests r USING (request_id)
               LEFT JOIN prices p ON p.model_key = r.model_key"""


@dataclass(frozen=True)
class _Refusals:
    refused: int = 0
    normal: int = 0
    subjects: int = 0
    prevented: Decimal | None = Decimal(0)
    anomaly: Decimal | None = Decimal(0)


def _spend(refused: int, priced: int, total: object) -> Decimal | None:
    """Prevented spend: zero with no refusal, None when refusals exist and none is priced."""
    if refused == 0:
        return Decimal(0)
    return maybe_money(total) if priced else None


def _figures(con: duckdb.DuckDBPyConnection, policy: Policy) -> dict[str, _Refusals]:
    """What the limit refused, per group."""
    rows = con.execute(
        f"""WITH s AS ({_saved_sql(con, policy)}),
            x AS (SELECT u.grp, u.subject, u.anomalous, s.saved
                  FROM {USAGE} u JOIN s USING (seq))
            SELECT grp, count(*), count(*) FILTER (WHERE NOT anomalous), count(DISTINCT subject),
                   count(saved), sum(saved), count(*) FILTER (WHERE anomalous),
                   count(saved) FILTER (WHERE anomalous), sum(saved) FILTER (WHERE anomalous)
            FROM x GROUP BY grp"""
    ).fetchall()
    return {
        grp: _Refusals(
            int(n), int(normal), int(subjects), _spend(n, priced, saved), _spend(an, ap, asaved)
        )
        for grp, n, normal, subjects, priced, saved, an, ap, asaved in rows
    }


def _limits(con: duckdb.DuckDBPyConnection, policy: Policy, features: bool) -> list[Limit]:
    subject = _subject_sql(policy, features)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {USAGE} AS {_usage_sql(policy, subject)}")
    groups = _groups(con, policy)
    if not groups and (policy.scope != "feature" or not features):
        # listed, too thin, even with nothing to derive it from (a feature cap over all traffic)
        groups = [_Group("all" if policy.scope == "feature" else "", None, 0, 0, 0.0, 0, 0)]
    values: dict[str, Decimal | None] = {}
    reasons: dict[str, str | None] = {}
    for g in groups:
        reason = _thin_reason(policy, g.samples, g.subjects, g.days)
        if reason is None and g.observed is None:
            reason = "no usage to derive it from"
        reasons[g.grp] = reason
        values[g.grp] = None if reason else _value(policy, Decimal(str(g.observed)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {VALUES} (grp VARCHAR, value DECIMAL(38, 18))")
    set_values = [[g, v] for g, v in values.items() if v is not None]
    if set_values:
        con.executemany(f"INSERT INTO {VALUES} VALUES (?, ?)", set_values)
    _refuse(con, policy)
    figures = _figures(con, policy)
    label = "all" if subject == "'all'" else "*"
    # logs without feature names: a per-request cap over all traffic is a global one (a feature
    # cap on subject 'all' would also catch a feature that happens to be named "all")
    scope = "global" if subject == "'all'" else policy.scope
    out = []
    for g in groups:
        f = figures.get(g.grp, _Refusals())
        out.append(
            Limit(
                id=policy.id,
                scope=scope,
                subject=g.grp if policy.scope == "feature" else label,
                metric=policy.metric,
                window=policy.window,
                sliding=policy.sliding,
                unit=policy.unit,
                value=values[g.grp],
                action=policy.action,
                status="too_thin" if values[g.grp] is None else "set",
                reason=reasons[g.grp],
                basis=LimitBasis(
                    statistic=_statistic(policy, subject),
                    quantile=policy.quantile,
                    observed=None if g.observed is None else float(str(g.observed)),
                    headroom=policy.headroom,
                    floor=float(policy.floor),
                    ceiling=None if policy.ceiling is None else float(policy.ceiling),
                    samples=g.samples,
                    subjects=g.subjects,
                    days=round(g.days, 6),
                ),
                applies_to_requests=g.applies,
                refused_requests=f.refused,
                refused_share=f.refused / g.applies if g.applies else 0.0,
                refused_normal_requests=f.normal,
                refused_normal_share=f.normal / g.normal if g.normal else 0.0,
                target_share=policy.target_share,
                refused_subjects=f.subjects,
                prevented_spend=f.prevented,
                prevented_anomaly_spend=f.anomaly,
            )
        )
    return out


def _notes(con: duckdb.DuckDBPyConnection, features: bool) -> list[str]:
    total, users, accounts, unfeatured, unpriced, anomalous = con.execute(
        f"""SELECT count(*), count(user_id), count(account_id), count(*) - count(feature),
                   count(*) - count(cost), count(*) FILTER (WHERE anomalous) FROM {BASE}"""
    ).fetchone() or (0, 0, 0, 0, 0, 0)
    notes = []
    if total == 0:
        return ["no requests in the store: no limit set"]
    if users == 0:
        notes.append("no user ids in the logs: per-user limits not set")
    if accounts == 0:
        notes.append("no account ids in the logs: per-account limits not set")
    if not features:
        notes.append("no feature names in the logs: per-request caps derived over all requests")
    elif unfeatured:
        notes.append(
            f"{unfeatured:,} requests have no feature name: no per-feature cap covers them"
        )
    if unpriced:
        notes.append(f"{unpriced:,} requests are unpriced: they add nothing to spend budgets")
    if anomalous:
        notes.append(f"{anomalous:,} requests inside anomalies: limits derived without them")
    return notes


def derive(con: duckdb.DuckDBPyConnection, rules: list[Policy]) -> Guardrails:
    """Every policy's limits (feature policies: one per feature, by name) with their back-test."""
    _prepare(con)
    try:
        features = _has_features(con)
        limits = [lim for policy in rules for lim in _limits(con, policy, features)]
        return Guardrails(limits=limits, notes=_notes(con, features))
    finally:
        for table in (BASE, USAGE, VALUES, REFUSED, HOT):
            con.execute(f"DROP TABLE IF EXISTS {table}")
