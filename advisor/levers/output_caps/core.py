"""Output caps and reasoning budgets, vectorised in DuckDB: from the logged requests to one
decision per request, the replay that applies it to a state, and the saving priced per group.

A *cap group* is a feature, split by template (system prompt) where the feature has two or more
templates with enough requests each; a *reasoning group* is a feature on one model. Only
successful, billed requests with a feature count (`unattributed` says how many others there
are). Visible output = output - reasoning tokens. Working tables are declared in levers/tables.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import duckdb

from advisor.conditions import evaluate, sql_literal, to_sql
from advisor.levers import tables as T
from advisor.levers.output_caps.policy import OutputCapsPolicy
from advisor.pricing import cost_sql
from advisor.store import first_row, scalar

# Working tables, declared in advisor/levers/tables.py
BASE = T.OUTPUT_CAPS_BASE
GROUPS = T.OUTPUT_CAPS_GROUPS
RUNAWAY = T.OUTPUT_CAPS_RUNAWAY
BUDGETS = T.OUTPUT_CAPS_BUDGETS
CAPS = T.OUTPUT_CAPS_CAPS
DECISIONS = T.OUTPUT_CAPS_CUTS
RATES = T.OUTPUT_CAPS_RATES
_SAME_GROUP = "b.feature = g.feature AND b.template IS NOT DISTINCT FROM g.template"


@dataclass(frozen=True)
class CapGroup:
    feature: str
    template: str | None  # the system prompt's hash where the feature is split by template
    requests: int
    visible_tokens: int
    providers: tuple[str, ...]
    norm_tokens: float  # median visible output
    uncapped: int  # requests logged without max_tokens
    at_cap: int  # requests that ended at their cap (finish_reason = length)
    max_reasoning: int
    cap: int | None  # None: too few requests to set one
    cap_more: int | None  # at the lower range percentile (cuts more)
    cap_less: int | None  # at the higher range percentile
    tokens_saved: int
    truncated: int
    tokens_saved_more: int
    truncated_more: int
    tokens_saved_less: int
    truncated_less: int
    runaway: int = 0
    rule: str | None = None  # the recommendation rule that applied the cap; None: not applied

    def metrics(self) -> dict[str, Any]:
        n, v = self.requests, self.visible_tokens
        return {
            "requests": n,
            "tokens_saved_share": self.tokens_saved / v if v else 0.0,
            "truncated_share": self.truncated / n if n else 0.0,
            "uncapped_share": self.uncapped / n if n else 0.0,
            "at_cap_share": self.at_cap / n if n else 0.0,
            "runaway_requests": self.runaway,
        }


@dataclass(frozen=True)
class ReasoningGroup:
    feature: str
    model: str
    provider: str | None
    requests: int
    output_tokens: int
    reasoning_tokens: int
    easy_medium: int | None  # None: no difficulty classification to read
    hard: int | None  # classified, but not one of the easy classes
    budget: int | None  # None: too few requests
    budget_more: int | None
    budget_less: int | None
    reasoning_saved: int = 0
    above_budget: int = 0
    reasoning_saved_more: int = 0
    reasoning_saved_less: int = 0
    rule: str | None = None

    def metrics(self) -> dict[str, Any]:
        n, r = self.requests, self.reasoning_tokens
        return {
            "requests": n,
            "reasoning_share": r / self.output_tokens if self.output_tokens else 0.0,
            "easy_medium_share": None if self.easy_medium is None else self.easy_medium / n,
            "reasoning_saved_share": self.reasoning_saved / r if r else 0.0,
        }


@dataclass(frozen=True)
class Runaway:
    request_id: str
    feature: str
    model: str | None
    visible_tokens: int
    norm_tokens: float
    repeated_share: float | None
    repetition: bool  # the runaway rule holds on the repetition alone
    beyond_norm: bool  # the runaway rule holds on the length against the norm alone
    capped: bool  # sent with max_tokens
    response_hash: str | None


@dataclass(frozen=True)
class Plan:
    caps: list[CapGroup]
    reasoning: list[ReasoningGroup]
    runaways: list[Runaway]  # the longest, at most runaway.max_listed
    runaway_count: int
    classified: bool  # a difficulty table was there to read
    unattributed: int  # requests without a feature: no cap group


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    sql = "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT internal"
    return bool(scalar(con, sql, [name]))


def _base(con: duckdb.DuckDBPyConnection, policy: OutputCapsPolicy) -> int:
    """`_oc_base`: the requests the lever reads, with visible output and their template."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {BASE} AS
        WITH b AS (
          SELECT request_id, feature, provider, coalesce(model_key, model) AS model, system_hash,
                 response_hash, max_tokens, finish_reason, output_tokens,
                 greatest(output_tokens - coalesce(reasoning_tokens, 0), 0) AS visible,
                 least(coalesce(reasoning_tokens, 0), output_tokens) AS reasoning
          FROM requests
          WHERE feature IS NOT NULL AND output_tokens IS NOT NULL
            AND coalesce(status, 'ok') = 'ok' AND coalesce(token_source, '') <> 'unbilled'
        ), t AS (
          SELECT feature, system_hash, count(*) AS n FROM b WHERE system_hash IS NOT NULL
          GROUP BY ALL HAVING count(*) >= {policy.cap.min_requests}
        ), split AS (SELECT feature FROM t GROUP BY feature HAVING count(*) >= 2)
        SELECT b.*, CASE WHEN s.feature IS NOT NULL AND t.n IS NOT NULL
                         THEN b.system_hash END AS template
        FROM b LEFT JOIN split s USING (feature) LEFT JOIN t USING (feature, system_hash)"""
    )
    return int(
        scalar(
            con,
            """SELECT count(*) FROM requests WHERE feature IS NULL AND output_tokens IS NOT NULL
               AND coalesce(status, 'ok') = 'ok' AND coalesce(token_source, '') <> 'unbilled'""",
        )
    )


def _groups(con: duckdb.DuckDBPyConnection) -> None:
    """`_oc_groups`: per cap group, what it answered (the median is the runaway rule's norm)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {GROUPS} AS
        SELECT feature, template, count(*) AS requests, sum(visible) AS visible_tokens,
               list(DISTINCT provider ORDER BY provider) FILTER (WHERE provider IS NOT NULL)
                 AS providers,
               median(visible) AS norm_tokens,
               count(*) FILTER (WHERE max_tokens IS NULL) AS uncapped,
               count(*) FILTER (WHERE finish_reason = 'length') AS at_cap,
               max(reasoning) AS max_reasoning
        FROM {BASE} GROUP BY ALL"""
    )


def _cap_groups(con: duckdb.DuckDBPyConnection, policy: OutputCapsPolicy) -> list[CapGroup]:
    """Per cap group, its caps at the three percentiles and what each would cut. A cap is set
    from the group's answers other than its runaways (runaways are what a cap is for: a few of
    them would otherwise lift the percentile above themselves)."""
    k = policy.cap
    low, high = k.range_percentiles

    def cap(p: float) -> str:
        # rounded first: a float product a hair above an integer must not add a token
        return (
            f"CASE WHEN count(*) >= {k.min_requests} THEN greatest(ceil(round(quantile_cont("
            f"visible, {p}) * {k.headroom}, 6)), {k.min_cap_tokens})::BIGINT END"
        )

    def cut(col: str) -> str:
        return (
            f"coalesce(sum(greatest(b.visible - c.{col}, 0)), 0)::BIGINT, "
            f"count(*) FILTER (WHERE b.visible > c.{col})"
        )

    rows = con.execute(
        f"""WITH c AS (
              SELECT feature, template, {cap(k.percentile)} AS cap, {cap(low)} AS cap_more,
                     {cap(high)} AS cap_less
              FROM {BASE} ANTI JOIN {RUNAWAY} USING (request_id) GROUP BY ALL
            )
            SELECT g.feature, g.template, any_value(g.requests), any_value(g.visible_tokens),
                   any_value(g.providers), any_value(g.norm_tokens), any_value(g.uncapped),
                   any_value(g.at_cap), any_value(g.max_reasoning), any_value(c.cap),
                   any_value(c.cap_more), any_value(c.cap_less),
                   {cut("cap")}, {cut("cap_more")}, {cut("cap_less")}
            FROM {GROUPS} g JOIN {BASE} b ON {_SAME_GROUP}
            LEFT JOIN c ON c.feature = g.feature AND c.template IS NOT DISTINCT FROM g.template
            GROUP BY g.feature, g.template ORDER BY g.feature, g.template NULLS FIRST"""
    ).fetchall()
    return [
        CapGroup(
            feature=r[0],
            template=r[1],
            requests=int(r[2]),
            visible_tokens=int(r[3] or 0),
            providers=tuple(r[4] or ()),
            norm_tokens=float(r[5] or 0),
            uncapped=int(r[6]),
            at_cap=int(r[7]),
            max_reasoning=int(r[8] or 0),
            cap=r[9],
            cap_more=r[10],
            cap_less=r[11],
            tokens_saved=int(r[12]),
            truncated=int(r[13]),
            tokens_saved_more=int(r[14]),
            truncated_more=int(r[15]),
            tokens_saved_less=int(r[16]),
            truncated_less=int(r[17]),
        )
        for r in rows
    ]


def repeated_share_sql(text: str, words: int) -> str:
    """Share of a text's word n-grams that repeat an earlier one (0 = none, near 1 = a loop);
    NULL below ten n-grams, too short to tell."""
    grams = (
        f"list_transform(range(1, len(w) - {words} + 2), "
        f"lambda i: array_to_string(w[i:i + {words - 1}], ' '))"
    )
    return f"""(SELECT CASE WHEN len(g) >= 10 THEN 1 - len(list_distinct(g)) / len(g) END
                FROM (SELECT {grams} AS g
                      FROM (SELECT string_split_regex(trim({text}), '\\s+') AS w)))"""


def _runaways(
    con: duckdb.DuckDBPyConnection, policy: OutputCapsPolicy
) -> tuple[list[Runaway], dict[tuple[str, str | None], int]]:
    """`_oc_runaway`: responses the runaway rule flags (repetition scanned on long ones only)."""
    r = policy.runaway
    columns = {
        "visible_tokens": "c.visible_tokens",
        "norm_ratio": "c.norm_ratio",
        "repeated_share": "x.repeated_share",
    }
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {RUNAWAY} AS
        WITH c AS (
          SELECT b.request_id, b.feature, b.template, b.model, b.response_hash, b.max_tokens,
                 b.visible AS visible_tokens, g.norm_tokens,
                 b.visible / greatest(g.norm_tokens, 1) AS norm_ratio
          FROM {BASE} b JOIN {GROUPS} g ON {_SAME_GROUP}
        ), x AS (
          SELECT t.text_hash,
                 {repeated_share_sql(f"left(t.text, {r.scan_chars})", r.ngram_words)}
                   AS repeated_share
          FROM texts t
          WHERE t.text_hash IN (SELECT response_hash FROM c
                                WHERE visible_tokens >= {r.scan_min_tokens})
        )
        SELECT c.*, x.repeated_share FROM c LEFT JOIN x ON x.text_hash = c.response_hash
        WHERE {to_sql(r.condition, columns.__getitem__)}"""
    )
    counts = {
        (f, t): int(n)
        for f, t, n in con.execute(
            f"SELECT feature, template, count(*) FROM {RUNAWAY} GROUP BY ALL"
        ).fetchall()
    }
    rows = con.execute(
        f"""SELECT request_id, feature, model, visible_tokens, norm_tokens, repeated_share,
                   max_tokens IS NOT NULL, response_hash, norm_ratio
            FROM {RUNAWAY} ORDER BY visible_tokens DESC, request_id LIMIT {r.max_listed}"""
    ).fetchall()

    def holds(**features: Any) -> bool:
        return evaluate(r.condition, features)

    listed = [
        Runaway(
            request_id=x[0],
            feature=x[1],
            model=x[2],
            visible_tokens=int(x[3]),
            norm_tokens=float(x[4]),
            repeated_share=None if x[5] is None else float(x[5]),
            repetition=holds(visible_tokens=x[3], repeated_share=x[5]),
            beyond_norm=holds(visible_tokens=x[3], norm_ratio=x[8]),
            capped=bool(x[6]),
            response_hash=x[7],
        )
        for x in rows
    ]
    return listed, counts


def _reasoning_groups(
    con: duckdb.DuckDBPyConnection, policy: OutputCapsPolicy, classified: bool
) -> list[ReasoningGroup]:
    """Per (feature, model) that logged reasoning: its budgets and what each would cut."""
    k = policy.reasoning
    low, high = k.range_percentiles
    easy = ", ".join(sql_literal(c) for c in k.easy_classes)
    if classified:
        join = "LEFT JOIN difficulty d USING (request_id)"
        classes = (
            f"count(*) FILTER (WHERE d.difficulty IN ({easy})),"
            f" count(*) FILTER (WHERE d.difficulty NOT IN ({easy}))"
        )
    else:
        join, classes = "", "NULL, NULL"
    # min(provider): a model's requests come from one provider family (openai and azure share
    # parameters); the name breaks a tie deterministically
    rows = con.execute(
        f"""SELECT b.feature, b.model, min(b.provider), count(*),
                   sum(b.output_tokens), sum(b.reasoning), {classes},
                   quantile_cont(b.reasoning, {k.percentile}), quantile_cont(b.reasoning, {low}),
                   quantile_cont(b.reasoning, {high})
            FROM {BASE} b {join}
            WHERE b.model IS NOT NULL
            GROUP BY b.feature, b.model HAVING sum(b.reasoning) > 0
            ORDER BY b.feature, b.model"""
    ).fetchall()
    groups = []
    for f, model, provider, n, out, reasoning, em, hard, q, q_more, q_less in rows:
        floor = policy.provider(provider).min_budget_tokens
        enough = n >= k.min_requests

        def budget(value: float, floor: int = floor, enough: bool = enough) -> int | None:
            # rounded first: a float product a hair above an integer must not add a token
            return max(math.ceil(round(value, 6)), floor) if enough else None

        groups.append(
            ReasoningGroup(
                feature=f,
                model=model,
                provider=provider,
                requests=int(n),
                output_tokens=int(out),
                reasoning_tokens=int(reasoning),
                easy_medium=None if em is None else int(em),
                hard=None if hard is None else int(hard),
                budget=budget(q),
                budget_more=budget(q_more),
                budget_less=budget(q_less),
            )
        )
    return _reasoning_cuts(con, groups)


def _reasoning_cuts(
    con: duckdb.DuckDBPyConnection, groups: list[ReasoningGroup]
) -> list[ReasoningGroup]:
    """Fill each group's reasoning tokens above its budgets (`_oc_budgets` holds the budgets)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {BUDGETS} (feature VARCHAR, model VARCHAR,
            budget BIGINT, budget_more BIGINT, budget_less BIGINT, applied BOOLEAN)"""
    )
    with_budget = [g for g in groups if g.budget is not None]
    if with_budget:
        con.executemany(
            f"INSERT INTO {BUDGETS} VALUES (?, ?, ?, ?, ?, false)",
            [[g.feature, g.model, g.budget, g.budget_more, g.budget_less] for g in with_budget],
        )
    cuts = {
        (f, m): tuple(int(v) for v in rest)
        for f, m, *rest in con.execute(
            f"""SELECT g.feature, g.model,
                       coalesce(sum(greatest(b.reasoning - g.budget, 0)), 0),
                       count(*) FILTER (WHERE b.reasoning > g.budget),
                       coalesce(sum(greatest(b.reasoning - g.budget_more, 0)), 0),
                       coalesce(sum(greatest(b.reasoning - g.budget_less, 0)), 0)
                FROM {BUDGETS} g JOIN {BASE} b ON b.feature = g.feature AND b.model = g.model
                GROUP BY ALL"""
        ).fetchall()
    }
    out = []
    for g in groups:
        saved, above, more, less = cuts.get((g.feature, g.model), (0, 0, 0, 0))
        out.append(
            replace(
                g,
                reasoning_saved=saved,
                above_budget=above,
                reasoning_saved_more=more,
                reasoning_saved_less=less,
            )
        )
    return out


def _first_rule(policy: OutputCapsPolicy, action: str, metrics: dict[str, Any]) -> str | None:
    return next((r.id for r in policy.rules(action) if evaluate(r.condition, metrics)), None)


def plan(con: duckdb.DuckDBPyConnection, policy: OutputCapsPolicy) -> Plan:
    """Decide every group's cap and budget under the policy; write `_oc_decisions`."""
    unattributed = _base(con, policy)
    _groups(con)
    runaways, counts = _runaways(con, policy)
    groups = _cap_groups(con, policy)
    caps = []
    for g in groups:
        g = replace(g, runaway=counts.get((g.feature, g.template), 0))
        rule = _first_rule(policy, "cap", g.metrics()) if g.cap is not None else None
        caps.append(replace(g, rule=rule))
    classified = has_table(con, "difficulty")
    reasoning = [
        replace(r, rule=_first_rule(policy, "reasoning_budget", r.metrics()))
        if r.budget is not None
        else r
        for r in _reasoning_groups(con, policy, classified)
    ]
    _decisions(con, caps, reasoning)
    return Plan(
        caps=caps,
        reasoning=reasoning,
        runaways=runaways,
        runaway_count=sum(counts.values()),
        classified=classified,
        unattributed=unattributed,
    )


def _decisions(
    con: duckdb.DuckDBPyConnection, caps: Sequence[CapGroup], reasoning: Sequence[ReasoningGroup]
) -> None:
    """`_oc_decisions`: per request of a group with a cap or a budget, the tokens each would cut
    and whether a rule applied it (the replay cuts only applied ones; every one is priced)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {CAPS} (feature VARCHAR, template VARCHAR,
           cap BIGINT, cap_more BIGINT, cap_less BIGINT, applied BOOLEAN)"""
    )
    with_cap = [g for g in caps if g.cap is not None]
    if with_cap:
        con.executemany(
            f"INSERT INTO {CAPS} VALUES (?, ?, ?, ?, ?, ?)",
            [
                [g.feature, g.template, g.cap, g.cap_more, g.cap_less, g.rule is not None]
                for g in with_cap
            ],
        )
    budgeted = [[r.feature, r.model] for r in reasoning if r.rule is not None]
    if budgeted:
        con.executemany(
            f"UPDATE {BUDGETS} SET applied = true WHERE feature = ? AND model = ?", budgeted
        )

    def cut(suffix: str) -> str:
        visible = f"coalesce(greatest(b.visible - g.cap{suffix}, 0), 0)"
        thought = f"coalesce(greatest(b.reasoning - r.budget{suffix}, 0), 0)"
        return f"{visible} AS visible_cut{suffix}, {thought} AS reasoning_cut{suffix}"

    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {DECISIONS} AS
        SELECT b.request_id, b.feature, b.template, b.model,
               CASE WHEN g.applied THEN g.cap END AS output_cap,
               CASE WHEN r.applied THEN r.budget END AS reasoning_budget,
               coalesce(g.applied, false) AS cap_applied,
               coalesce(r.applied, false) AS budget_applied,
               {cut("")}, {cut("_more")}, {cut("_less")}
        FROM {BASE} b
        LEFT JOIN {CAPS} g ON {_SAME_GROUP}
        LEFT JOIN {BUDGETS} r ON r.feature = b.feature AND r.model = b.model
        WHERE g.cap IS NOT NULL OR r.budget IS NOT NULL"""
    )


def _cut(suffix: str = "") -> str:
    """The tokens a request loses under the applied caps and budgets. Both are settings of the
    call site (the feature), so they follow a request an earlier lever moved to another model."""
    return (
        f"(CASE WHEN d.cap_applied THEN d.visible_cut{suffix} ELSE 0 END"
        f" + CASE WHEN d.budget_applied THEN d.reasoning_cut{suffix} ELSE 0 END)"
    )


def replay(con: duckdb.DuckDBPyConnection, state: str, out: str) -> int:
    """Write `out` from `state` with each request's output lowered by its cut (never raised, never
    below zero); return how many requests it lowered."""
    cut = f"least(greatest({_cut()}, 0), greatest(s.output_tokens, 0))"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT s.request_id, s.model_key, s.input_tokens, s.cache_read_tokens,
               s.cache_write_tokens, s.cache_write_1h_tokens,
               s.output_tokens - coalesce({cut}, 0) AS output_tokens, s.service_tier
        FROM {state} s LEFT JOIN {DECISIONS} d USING (request_id)"""
    )
    return int(
        scalar(
            con,
            f"""SELECT count(*) FROM {state} s JOIN {DECISIONS} d USING (request_id)
                WHERE {_cut()} > 0 AND s.output_tokens > 0""",
        )
    )


@dataclass(frozen=True)
class Priced:
    """Savings priced on a state (over priced requests): per group, applied or not, and the
    applied caps' and budgets' total at the chosen percentiles and the range's ends."""

    by_cap_group: dict[tuple[str, str | None], Decimal]
    by_reasoning_group: dict[tuple[str, str], Decimal]
    total: Decimal
    more: Decimal  # at the lower percentiles (more cut)
    less: Decimal
    unpriced: int  # requests with a cut but no price: their saving is unknown


def price(con: duckdb.DuckDBPyConnection, state: str, prices: str = "prices") -> Priced:
    """Price every decision's cuts on `state` (normally the baseline) with the one cost formula:
    a request's output rate is its cost at one output token minus its cost at none (exact, and
    the long-context tier still follows its input), so a cut of n tokens saves n x that rate."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {RATES} AS
        WITH one AS (SELECT s.* REPLACE (1 AS output_tokens) FROM {state} s
                     SEMI JOIN {DECISIONS} d USING (request_id)),
             none AS (SELECT one.* REPLACE (0 AS output_tokens) FROM one)
        SELECT one.request_id, {cost_sql("one", "p")} - {cost_sql("none", "p")} AS rate
        FROM one JOIN none USING (request_id) LEFT JOIN {prices} p ON p.model_key = one.model_key"""
    )
    joined = f"{DECISIONS} d JOIN {RATES} r USING (request_id)"
    by_cap = {
        (f, t): Decimal(v or 0)
        for f, t, v in con.execute(
            f"SELECT d.feature, d.template, sum(d.visible_cut * r.rate) FROM {joined} GROUP BY ALL"
        ).fetchall()
    }
    by_reasoning = {
        (f, m): Decimal(v or 0)
        for f, m, v in con.execute(
            f"SELECT d.feature, d.model, sum(d.reasoning_cut * r.rate) FROM {joined} GROUP BY ALL"
        ).fetchall()
    }
    row = first_row(
        con,
        f"""SELECT sum({_cut()} * r.rate), sum({_cut("_more")} * r.rate),
                   sum({_cut("_less")} * r.rate),
                   count(*) FILTER (WHERE r.rate IS NULL AND {_cut()} > 0)
            FROM {joined}""",
    )
    total, more, less, unpriced = row if row else (0, 0, 0, 0)
    return Priced(
        by_cap_group=by_cap,
        by_reasoning_group=by_reasoning,
        total=Decimal(total or 0),
        more=Decimal(more or 0),
        less=Decimal(less or 0),
        unpriced=int(unpriced),
    )
