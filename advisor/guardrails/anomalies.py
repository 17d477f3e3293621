"""Spend anomalies: entity-days, feature-days and bursts far from what the history expects.

Four kinds, each a rule of rules/anomalies.yaml computed in DuckDB over the whole store (per-entity
windows, never a per-request Python loop): spend spikes (a user's or account's day spend against
its own other days), new entities (a first day heavy against the peers' days before it), tokens
jumps (the first day a feature's median input tokens per request leaps above its earlier days: a
prompt regression) and runaway loops (a session or user re-sending near-identical requests). The
statistic (median/MAD robust z, its floors) is documented in the rules file; each rule's `when`
decides which rows are anomalies. `detect` returns them ranked by excess spend and writes the
request ids inside them to ANOMALOUS_TABLE, for the limits to tell normal traffic from the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from advisor.conditions import FeatureType
from advisor.guardrails import ANOMALOUS_TABLE
from advisor.guardrails.models import Anomaly, AnomalyKind, EntityType
from advisor.money import maybe_money, to_json
from advisor.rule_model import ConditionRule
from advisor.ruleset import load_model
from advisor.store import drop_temp_tables

RULES_FILE = "anomalies.yaml"
MAD_SCALE = 1.4826  # MAD * 1.4826 estimates the standard deviation of normally distributed data
COLUMNS = {
    "user": "user_id",
    "account": "account_id",
    "feature": "feature",
    "session": "session_id",
}
_TMP = "_anom_"  # prefix of this module's working tables (dropped at the end)
# What near-identical ignores: digits and whitespace (translate deletes them; a regex collapsing
# runs instead was 4x slower over long prompts)
_DROP = "'0123456789 ' || chr(9) || chr(10) || chr(13)"

_NUMBER: FeatureType = "number"
SPIKE_FEATURES = dict.fromkeys(
    ("spend", "median", "mad", "history_days", "robust_z", "ratio", "excess_spend"), _NUMBER
)
NEW_FEATURES = dict.fromkeys(
    ("spend", "robust_z", "excess_spend", "peer_median", "peer_p99", "p99_ratio", "peer_days",
     "days_after_start"),
    _NUMBER,
)  # fmt: skip
JUMP_FEATURES = dict.fromkeys(
    ("tokens_after", "tokens_before", "extra_tokens", "ratio", "robust_z", "history_days",
     "requests"),
    _NUMBER,
)  # fmt: skip
LOOP_FEATURES = dict.fromkeys(
    ("looping_requests", "requests", "top_key_requests", "distinct_share", "minutes",
     "excess_spend"),
    _NUMBER,
)  # fmt: skip
FEATURES: dict[str, FeatureType] = {
    **SPIKE_FEATURES, **NEW_FEATURES, **JUMP_FEATURES, **LOOP_FEATURES
}  # fmt: skip


class _Rule(ConditionRule):
    kind: AnomalyKind
    entity: EntityType


class _Robust(_Rule):
    min_scale_share: float = Field(ge=0, description="scale floor as a share of |median|")
    min_scale: float = Field(gt=0, description="absolute scale floor (USD or tokens)")

    def z_sql(self, value: str, median: str, mad: str) -> str:
        floors = f"{self.min_scale_share} * abs({median}), {self.min_scale}"
        scale = f"greatest({MAD_SCALE} * {mad}, {floors})"
        return f"(({value}) - ({median})) / {scale}"


class SpendSpike(_Robust):
    FEATURES = SPIKE_FEATURES
    kind: Literal["spend_spike"]
    entity: Literal["user", "account"]


class NewEntity(_Robust):
    FEATURES = NEW_FEATURES
    kind: Literal["new_entity"]
    entity: Literal["user", "account"]
    lookback_days: int = Field(ge=1)


class TokensJump(_Robust):
    FEATURES = JUMP_FEATURES
    kind: Literal["tokens_jump"]
    entity: Literal["feature"]
    lookback_days: int = Field(ge=1)


class RunawayLoop(_Rule):
    FEATURES = LOOP_FEATURES
    kind: Literal["runaway_loop"]
    entity: Literal["session", "user"]
    window_seconds: int = Field(gt=0)
    min_repeats: int = Field(ge=2)
    text_chars: int = Field(ge=1)


AnomalyRule = Annotated[
    SpendSpike | NewEntity | TokensJump | RunawayLoop, Field(discriminator="kind")
]


class AnomalyRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    kind: Literal["anomalies"]
    title: str
    rules: tuple[AnomalyRule, ...]

    @model_validator(mode="after")
    def _unique(self) -> AnomalyRules:
        ids = [r.id for r in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError("rules: every id once")
        return self


def load_rules(rules_dir: Path) -> AnomalyRules:
    return load_model(rules_dir / RULES_FILE, AnomalyRules)


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _iso(ts: dt.datetime) -> str:
    return ts.isoformat() + "Z"  # naive UTC, as analysis.json's period


def _money(value: Any) -> str | None:
    return None if value is None else to_json(Decimal(value))


def _num(value: Any, places: int = 4) -> float | None:
    return None if value is None else round(float(value), places)


def _anomaly(rule: _Rule, row: dict[str, Any], score: Any, **kw: Any) -> Anomaly:
    spend, expected = maybe_money(row["spend"]), maybe_money(row["expected"])
    return Anomaly(
        id=rule.id,
        kind=rule.kind,
        entity_type=rule.entity,
        entity=str(row["entity"]),
        window_start=_iso(row["ws"]),
        window_end=_iso(row["we"]),
        requests=int(row["n"]),
        spend=spend,
        expected_spend=expected,
        excess_spend=None if spend is None or expected is None else spend - expected,
        score=_num(score) or 0.0,
        **kw,
    )


_DAYS = """SELECT {col} AS entity, day, count(*) AS n, sum(cost) AS spend,
                  count(*) FILTER (WHERE cost IS NULL) AS unpriced, min(ts) AS ws, max(ts) AS we
           FROM {base} WHERE {col} IS NOT NULL GROUP BY ALL"""


def _spend_spikes(con: duckdb.DuckDBPyConnection, rule: SpendSpike) -> list[Anomaly]:
    days = _DAYS.format(col=COLUMNS[rule.entity], base=f"{_TMP}base")
    rows = _rows(
        con,
        f"""WITH days AS ({days}),
        stats AS (
            SELECT *, median(spend) OVER w AS expected, mad(spend::DOUBLE) OVER w AS mad,
                   count(spend) OVER w AS history_days
            FROM days WINDOW w AS (PARTITION BY entity ORDER BY day ROWS BETWEEN UNBOUNDED
                                   PRECEDING AND UNBOUNDED FOLLOWING EXCLUDE CURRENT ROW)),
        scored AS (
            SELECT *, expected::DOUBLE AS "median",
                   {rule.z_sql("spend::DOUBLE", "expected::DOUBLE", "mad")} AS robust_z,
                   spend::DOUBLE / nullif(expected::DOUBLE, 0) AS ratio,
                   spend - expected AS excess_spend
            FROM stats)
        SELECT * FROM scored WHERE {rule.matches_sql()} ORDER BY entity, day""",
    )
    return [
        _anomaly(
            rule,
            r,
            r["robust_z"],
            evidence={
                "day": r["day"].isoformat(),
                "median_spend": _money(r["expected"]),
                "mad_spend": _num(r["mad"], 6),
                "history_days": r["history_days"],
                "ratio": _num(r["ratio"]),
                "unpriced_requests": r["unpriced"],
            },
        )
        for r in rows
    ]


def _new_entities(con: duckdb.DuckDBPyConnection, rule: NewEntity) -> list[Anomaly]:
    days = _DAYS.format(col=COLUMNS[rule.entity], base=f"{_TMP}base")
    rows = _rows(
        con,
        f"""WITH days AS ({days}),
        firsts AS (
            SELECT * FROM days QUALIFY day = min(day) OVER (PARTITION BY entity)),
        start AS (SELECT min(day) AS d0 FROM {_TMP}base),
        -- per candidate day, not a window over all entity-days: a windowed MAD is quadratic
        peers AS (
            SELECT c.day, median(d.spend) AS expected, mad(d.spend::DOUBLE) AS peer_mad,
                   quantile_cont(d.spend::DOUBLE, 0.99) AS peer_p99,
                   count(d.spend) AS peer_days
            FROM (SELECT DISTINCT day FROM firsts, start WHERE day > d0) c
            JOIN days d ON d.day < c.day AND d.day >= c.day - {rule.lookback_days}
            GROUP BY c.day),
        scored AS (
            SELECT f.*, p.*, p.expected::DOUBLE AS peer_median,
                   {rule.z_sql("f.spend::DOUBLE", "p.expected::DOUBLE", "p.peer_mad")} AS robust_z,
                   f.spend::DOUBLE / nullif(p.peer_p99, 0) AS p99_ratio,
                   f.spend - p.expected AS excess_spend, f.day - start.d0 AS days_after_start
            FROM firsts f JOIN peers p USING (day), start)
        SELECT * FROM scored WHERE {rule.matches_sql()} ORDER BY entity""",
    )
    return [
        _anomaly(
            rule,
            r,
            r["robust_z"],
            evidence={
                "day": r["day"].isoformat(),
                "peer_median_spend": _money(r["expected"]),
                "peer_mad_spend": _num(r["peer_mad"], 6),
                "peer_p99_spend": _num(r["peer_p99"], 6),
                "peer_days": r["peer_days"],
                "days_after_start": r["days_after_start"],
                "unpriced_requests": r["unpriced"],
            },
        )
        for r in rows
    ]


def _tokens_jumps(con: duckdb.DuckDBPyConnection, rule: TokensJump) -> list[Anomaly]:
    """The first day of each jump; requests inside a flagged runaway loop are left out of the
    token statistics (not of the day's spend)."""
    rows = _rows(
        con,
        f"""WITH days AS (
            SELECT feature AS entity, day, count(*) AS n, sum(cost) AS spend,
                   count(*) FILTER (WHERE cost IS NULL) AS unpriced, min(ts) AS ws, max(ts) AS we,
                   count(input_tokens) FILTER (WHERE l.request_id IS NULL) AS requests,
                   median(input_tokens) FILTER (WHERE l.request_id IS NULL)::DOUBLE AS tokens_after,
                   sum(cost) / nullif(count(cost), 0) AS cost_per_request, count(cost) AS priced
            FROM {_TMP}base b LEFT JOIN {_TMP}loop_ids l USING (request_id)
            WHERE feature IS NOT NULL GROUP BY ALL),
        hist AS (
            SELECT *, median(tokens_after) OVER w AS tokens_before, mad(tokens_after) OVER w AS mad,
                   count(tokens_after) OVER w AS history_days,
                   median(cost_per_request) OVER w AS cost_per_request_before
            FROM days WINDOW w AS (PARTITION BY entity ORDER BY day RANGE BETWEEN
                INTERVAL {rule.lookback_days} DAYS PRECEDING AND INTERVAL 1 DAY PRECEDING)),
        scored AS (
            SELECT *, tokens_after - tokens_before AS extra_tokens,
                   tokens_after / nullif(tokens_before, 0) AS ratio,
                   {rule.z_sql("tokens_after", "tokens_before", "mad")} AS robust_z,
                   CAST(priced * cost_per_request_before AS DECIMAL(18, 9)) AS expected
            FROM hist),
        met AS (SELECT *, {rule.matches_sql()} AS met FROM scored),
        firsts AS (
            SELECT *, coalesce(lag(met) OVER (PARTITION BY entity ORDER BY day), FALSE) AS was
            FROM met)
        SELECT * FROM firsts WHERE met AND NOT was ORDER BY entity, day""",
    )
    out = []
    for r in rows:
        after = con.execute(
            f"""SELECT median(input_tokens) FROM {_TMP}base b
                LEFT JOIN {_TMP}loop_ids l USING (request_id)
                WHERE feature = ? AND day >= ? AND l.request_id IS NULL""",
            [r["entity"], r["day"]],
        ).fetchone()
        evidence = {
            "day": r["day"].isoformat(), "tokens_per_request_before": _num(r["tokens_before"], 1),
            "tokens_per_request_after": _num(r["tokens_after"], 1),
            "tokens_per_request_since": _num(after[0] if after else None, 1),
            "mad_tokens": _num(r["mad"], 1), "history_days": r["history_days"],
            "ratio": _num(r["ratio"]),
            "cost_per_request_before": _num(r["cost_per_request_before"], 9),
            "unpriced_requests": r["unpriced"],
        }  # fmt: skip
        out.append(_anomaly(rule, r, r["robust_z"], feature=r["entity"], evidence=evidence))
    return out


def _loops(
    con: duckdb.DuckDBPyConnection, rule: RunawayLoop
) -> list[tuple[Anomaly, frozenset[str]]]:
    """Bursts of near-identical requests. Candidates narrow in steps that read no text, so only
    few texts are read: min_repeats requests of one feature and system prompt in all, then within
    the window, then also of one last-message size (near-identical texts are about as long)."""
    col, w, k = COLUMNS[rule.entity], f"INTERVAL {rule.window_seconds} SECONDS", rule.text_chars
    near = f"RANGE BETWEEN {w} PRECEDING AND {w} FOLLOWING"
    group, n = "entity, feature, system_hash", rule.min_repeats
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {_TMP}keyed AS
        WITH own AS (
            SELECT request_id, {col} AS entity, ts, feature, session_id, system_hash,
                   prompt_hash, cost
            FROM {_TMP}base WHERE {col} IS NOT NULL),
        busy AS (SELECT * FROM own QUALIFY count(*) OVER (PARTITION BY {group}) >= {n}),
        near AS (
            SELECT * FROM busy
            QUALIFY count(*) OVER (PARTITION BY {group} ORDER BY ts {near}) >= {n}),
        last AS (
            SELECT request_id, arg_max(text_hash, position) AS th FROM messages
            WHERE role = 'user' AND request_id IN (SELECT request_id FROM near)
            GROUP BY request_id),
        -- one read of the texts: size and normalised text together (normalising a few
        -- thousand texts costs less than a second scan of them all)
        norm AS (
            SELECT text_hash, strlen(text) // 32 AS size,
                   translate(lower(left(text, {k})), {_DROP}, '') AS t
            FROM texts WHERE text_hash IN (SELECT th FROM last)),
        cand AS (
            SELECT near.*, norm.* FROM near LEFT JOIN last USING (request_id)
            LEFT JOIN norm ON norm.text_hash = last.th
            QUALIFY count(*) OVER (PARTITION BY {group}, size ORDER BY ts {near}) >= {n})
        SELECT c.* EXCLUDE (text_hash, size, t),
               CASE WHEN c.t IS NOT NULL THEN hash(c.feature, c.system_hash, c.t)
                    WHEN c.prompt_hash IS NOT NULL THEN hash(c.feature, c.prompt_hash)
               END AS key
        FROM cand c"""
    )
    rows = _rows(
        con,
        f"""WITH rep AS (
            SELECT *, count(*) OVER (PARTITION BY entity, key ORDER BY ts {near}) AS repeats
            FROM {_TMP}keyed WHERE key IS NOT NULL),
        looping AS (
            SELECT *, coalesce(ts - lag(ts) OVER (PARTITION BY entity ORDER BY ts, request_id)
                               > {w}, TRUE) AS new
            FROM rep WHERE repeats >= {rule.min_repeats}),
        islands AS (
            SELECT *, sum(new::INTEGER) OVER (PARTITION BY entity ORDER BY ts, request_id
                                             ROWS UNBOUNDED PRECEDING) AS island
            FROM looping),
        numbered AS (
            SELECT *, row_number() OVER (PARTITION BY entity, island, key
                                         ORDER BY ts, request_id) AS nth,
                      count(*) OVER (PARTITION BY entity, island, key) AS per_key,
                      count(*) OVER (PARTITION BY entity, island, feature) AS per_feature
            FROM islands),
        bursts AS (
            SELECT entity, island, min(ts) AS ws, max(ts) AS we, count(*) AS looping_requests,
                   count(DISTINCT key) AS looping_keys, max(per_key) AS top_key_requests,
                   sum(cost) FILTER (WHERE nth > 1) AS repeat_spend,
                   arg_max(feature, (per_feature, feature)) AS feature,
                   list(request_id ORDER BY request_id) AS looping_ids
            FROM numbered GROUP BY entity, island),
        scored AS (
            SELECT b.*, (SELECT count(*) FROM {_TMP}base r WHERE r.{col} = b.entity
                         AND r.ts BETWEEN b.ws AND b.we) AS n,
                   (SELECT sum(cost) FROM {_TMP}base r WHERE r.{col} = b.entity
                         AND r.ts BETWEEN b.ws AND b.we) AS spend,
                   (SELECT count(*) FILTER (WHERE cost IS NULL) FROM {_TMP}base r
                    WHERE r.{col} = b.entity AND r.ts BETWEEN b.ws AND b.we) AS unpriced,
                   (SELECT count(DISTINCT key) / count(key) FROM {_TMP}keyed q
                    WHERE q.entity = b.entity AND q.ts BETWEEN b.ws AND b.we) AS distinct_share,
                   (SELECT count(DISTINCT session_id) FROM {_TMP}base r
                    WHERE r.{col} = b.entity AND r.ts BETWEEN b.ws AND b.we) AS sessions,
                   epoch(b.we - b.ws) / 60 AS minutes
            FROM bursts b),
        final AS (
            SELECT *, n AS requests, spend - repeat_spend AS expected,
                   repeat_spend AS excess_spend FROM scored)
        SELECT * FROM final WHERE {rule.matches_sql()} ORDER BY entity, ws""",
    )
    out = []
    for r in rows:
        minutes = float(r["minutes"])
        evidence = {
            "looping_requests": r["looping_requests"], "repeated_keys": r["looping_keys"],
            "top_key_requests": r["top_key_requests"], "distinct_share": _num(r["distinct_share"]),
            "minutes": _num(minutes, 1), "sessions": r["sessions"],
            "requests_per_minute": _num(r["n"] / minutes if minutes else None, 2),
            "window_seconds": rule.window_seconds, "min_repeats": rule.min_repeats,
            "unpriced_requests": r["unpriced"],
        }  # fmt: skip
        score = r["looping_requests"] / r["looping_keys"]
        anomaly = _anomaly(rule, r, score, feature=r["feature"], evidence=evidence)
        out.append((anomaly, frozenset(r["looping_ids"])))
    return out


def _window_table(con: duckdb.DuckDBPyConnection, found: list[Anomaly], table: str) -> None:
    """Write `table` (request_id): every request of each anomaly's entity inside its window."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} (request_id VARCHAR)")
    wins = [(a.entity_type, a.entity, a.window_start[:-1], a.window_end[:-1]) for a in found]
    if not wins:
        return
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_TMP}windows (etype VARCHAR, entity VARCHAR,"
        " ws TIMESTAMP, we TIMESTAMP)"
    )
    con.executemany(f"INSERT INTO {_TMP}windows VALUES (?, ?, ?, ?)", wins)
    union = " UNION ".join(
        f"""SELECT b.request_id FROM {_TMP}base b JOIN {_TMP}windows w
            ON w.etype = '{etype}' AND b.{col} = w.entity AND b.ts BETWEEN w.ws AND w.we"""
        for etype, col in COLUMNS.items()
    )
    con.execute(f"INSERT INTO {table} SELECT request_id FROM ({union}) ORDER BY request_id")


def _rank(a: Anomaly) -> tuple[Any, ...]:
    excess = a.excess_spend
    return (excess is None, -(excess or 0), a.kind, a.entity_type, a.entity, a.window_start, a.id)


def detect(con: duckdb.DuckDBPyConnection, rules: AnomalyRules) -> list[Anomaly]:
    """Every anomaly of the store (requests priced in `costs`), largest excess spend first, and
    ANOMALOUS_TABLE listing the requests inside them. Runaway loops go first: their requests
    are left out of the tokens-jump statistics."""
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {_TMP}base AS
            SELECT r.request_id, r.ts, CAST(r.ts AS DATE) AS day, r.user_id, r.account_id,
                   r.feature, r.session_id, r.system_hash, r.prompt_hash, c.baseline_cost AS cost,
                   CASE WHEN r.token_source IS DISTINCT FROM 'unbilled' THEN r.input_tokens
                   END AS input_tokens
            FROM requests r LEFT JOIN costs c USING (request_id)"""
        )
        loops = _runaways(con, [r for r in rules.rules if isinstance(r, RunawayLoop)])
        _window_table(con, loops, f"{_TMP}loop_ids")
        found = list(loops)
        runners: dict[type[_Rule], Callable[[Any, Any], list[Anomaly]]] = {
            SpendSpike: _spend_spikes, NewEntity: _new_entities, TokensJump: _tokens_jumps,
        }  # fmt: skip
        for rule in rules.rules:
            if not isinstance(rule, RunawayLoop):
                found += runners[type(rule)](con, rule)
        _window_table(con, found, ANOMALOUS_TABLE)
        return sorted(found, key=_rank)
    finally:
        drop_temp_tables(con, _TMP)


def _runaways(con: duckdb.DuckDBPyConnection, rules: list[RunawayLoop]) -> list[Anomaly]:
    """Loops of every rule; a user burst whose looping requests all lie in flagged session
    bursts is the same loop seen twice, and only the session's is kept."""
    per_rule = [(rule, _loops(con, rule)) for rule in rules]
    in_sessions: set[str] = set()
    for rule, found in per_rule:
        if rule.entity == "session":
            for _, ids in found:
                in_sessions |= ids
    out = []
    for rule, found in per_rule:
        for anomaly, ids in found:
            if rule.entity == "session" or not ids <= in_sessions:
                out.append(anomaly)
    return out
