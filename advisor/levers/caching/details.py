"""levers[id=caching].details: the figures of the standalone replay, per feature and template,
the prefix-order what-if, and the range the token counts leave (models in `models.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from advisor.levers import tables as T
from advisor.levers.base import LeverContext, Recommendation
from advisor.levers.caching import prefix
from advisor.levers.caching.models import CachingDetails, TokenCountsRow, TokenCountsSummary
from advisor.levers.caching.policy import CachingPolicy, recommend
from advisor.levers.caching.prefix_order import VariableSpan, span_row
from advisor.levers.caching.replay import (
    ModelCache,
    ReplayTables,
    choose,
    chosen,
    cost_of,
    costed,
    replay,
    with_sim,
)
from advisor.levers.caching.token_counts import TokenCounts, summary
from advisor.money import maybe_money
from advisor.pricing import PriceTable, cost_sql, rates
from advisor.redact import excerpt
from advisor.report import fmt


def _token_counts(con: Any, state: str, out: str, main: ReplayTables) -> TokenCountsSummary:
    """details.token_counts: how the replay counted tokens per model and, where the counts are
    not exact, the saving and cached share with every such model at its low and high
    calibration scale (the same options chosen): the range of the lever's figure. A range
    table holds only the rows whose counts are not exact, so its figure is the point's plus
    what those rows change."""
    saving = cost_of(con, state) - cost_of(con, out)
    read, inp = con.execute(
        f"""SELECT sum(s.cache_read_tokens), sum(coalesce(r.input_tokens, 0))
            FROM {T.CACHE_ROWS} r JOIN {out} s USING (request_id)"""
    ).fetchone()
    figures = [(saving, int(read or 0))]
    for _, options in sorted(main.ranges.items()):
        cost, more = con.execute(
            f"""WITH v AS (
                  SELECT {with_sim("s", "f")} FROM {state} s JOIN ({chosen(options)}) f
                  USING (request_id)
                )
                SELECT sum({cost_sql("o", "p")} - {cost_sql("v", "p")}),
                       sum(v.cache_read_tokens - o.cache_read_tokens)
                FROM v JOIN {out} o USING (request_id)
                JOIN {T.CACHE_PRICES} p ON p.model_key = v.model_key"""
        ).fetchone()
        figures.append((saving + Decimal(cost or 0), int(read or 0) + int(more or 0)))
        con.execute(f"DROP TABLE IF EXISTS {options}")
    savings = [f[0] for f in figures]
    shares = [f[1] / float(inp) if inp else 0.0 for f in figures]
    counts = list(main.counts.values())
    return TokenCountsSummary(
        counts=summary(counts),
        low_saving=min(savings),
        high_saving=max(savings),
        low_cache_read_share=min(shares),
        high_cache_read_share=max(shares),
        by_model=[TokenCountsRow.model_validate(c.row()) for c in counts],
    )


def prefix_order_savings(
    ctx: LeverContext,
    caches: dict[str, ModelCache],
    policy: CachingPolicy,
    tokenizers: dict[str, prefix.Tokenizer],
    what_if_sql: tuple[str, str],
    counts: dict[str, TokenCounts],
) -> dict[tuple[int, str], dict[str, Any]]:
    """Replay the streams of affected requests with every variable span moved to the end (each
    template then taking its best option again); saving and extra cached tokens per finding and
    model, against the lever's own result."""
    con = ctx.con
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {T.CACHE_WHAT_IF_REQUESTS} AS
           SELECT r.request_id FROM {T.CACHE_ROWS} r WHERE r.replay AND r.stream IN (
             SELECT DISTINCT r2.stream FROM messages m JOIN {T.CACHE_SUBST} s USING (text_hash)
             JOIN {T.CACHE_ROWS} r2 ON r2.request_id = m.request_id)"""
    )
    messages_sql, texts_sql = what_if_sql
    what_if = replay(
        ctx,
        T.CACHE_ROWS,
        caches,
        opts_table=T.CACHE_WHAT_IF_OPTIONS,
        info_table=T.CACHE_WHAT_IF_INFO,
        only=T.CACHE_WHAT_IF_REQUESTS,
        messages_sql=messages_sql,
        texts_sql=texts_sql,
        tokenizers=tokenizers,
        counts=counts,
    )
    choose(ctx, what_if, caches, policy, T.CACHE_WHAT_IF_CHOICE)
    rows = con.execute(
        f"""WITH cf AS (
              SELECT c.request_id, c.model_key, {cost_sql("c", "p")} AS cost,
                     c.cache_read_tokens AS rd
              FROM ({costed(what_if.options)}) c JOIN {T.CACHE_PRICES} p USING (model_key)
              JOIN {T.CACHE_WHAT_IF_CHOICE} k
                ON k.model_key = c.model_key AND k.template = c.template
                                     AND k.option = c.option
            ), now AS (
              SELECT c.request_id, {cost_sql("c", "p")} AS cost, c.cache_read_tokens AS rd
              FROM ({costed(T.CACHE_SIM)}) c JOIN {T.CACHE_PRICES} p USING (model_key)
            ), span_req AS (
              SELECT DISTINCT s.span, m.request_id FROM messages m
              JOIN {T.CACHE_SUBST} s USING (text_hash)
            )
            SELECT x.span, cf.model_key, count(*), sum(now.cost - cf.cost), sum(cf.rd - now.rd)
            FROM span_req x JOIN cf USING (request_id) JOIN now USING (request_id)
            GROUP BY ALL"""
    ).fetchall()
    for table in (what_if.options, what_if.info, T.CACHE_WHAT_IF_REQUESTS, T.CACHE_WHAT_IF_CHOICE):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return {
        (int(span), str(key)): {
            "requests": int(n),
            "saving": Decimal(saving or 0),
            "extra": int(extra or 0),
        }
        for span, key, n, saving, extra in rows
    }


def build_details(
    ctx: LeverContext,
    state: str,
    out: str,
    main: ReplayTables,
    caches: dict[str, ModelCache],
    policy: CachingPolicy,
    spans: Sequence[VariableSpan],
    span_savings: dict[tuple[int, str], dict[str, Any]],
) -> tuple[CachingDetails, list[Recommendation]]:
    """details of levers[id=caching] in analysis.json (terms in `models`) and the lever's
    recommendations, from the standalone replay `main` of `state` into `out`."""
    con = ctx.con
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {T.CACHE_VIEW} AS
            SELECT r.request_id, r.model_key, coalesce(r.feature, '(none)') AS feature, r.ts,
                   t.template, t.template_text, r.category, r.replay,
                   coalesce(r.input_tokens, 0) AS input, coalesce(r.logged_read, 0) AS achieved,
                   f.option, f.cache_read_tokens AS sim_read, f.cache_write_tokens AS sim_write,
                   o.cache_read_tokens AS final_read, o.cache_write_tokens AS final_write,
                   i.shared_tokens, i.eligible, sp.span,
                   {cost_sql("r", "p")} AS base_cost, {cost_sql("o", "p")} AS final_cost
            FROM {T.CACHE_ROWS} r JOIN {T.CACHE_TEMPLATES} t USING (request_id)
            JOIN {out} o USING (request_id)
            LEFT JOIN {T.CACHE_SIM} f USING (request_id) LEFT JOIN {main.info} i USING (request_id)
            LEFT JOIN (SELECT m.request_id, min(s.span) AS span FROM messages m
                       JOIN {T.CACHE_SUBST} s USING (text_hash) GROUP BY ALL) sp USING (request_id)
            LEFT JOIN {T.CACHE_PRICES} p ON p.model_key = r.model_key"""
    )
    categories = dict(
        con.execute(f"SELECT category, count(*) FROM {T.CACHE_VIEW} GROUP BY ALL").fetchall()
    )
    total = _aggregate(con, "true", "scope")[0]
    templates = _aggregate(con, "replay", "template, model_key", policy.max_templates)
    labels = _labels(con, [t["template"] for t in templates])
    recs: list[Recommendation] = []
    for row in templates:
        cache = caches.get(row["model_key"])
        row["label"] = labels.get(row["template"], row["template"])
        row["mode"] = cache.mode if cache else None
        row["break_even_reads_per_write"] = _break_even(ctx.prices, row["model_key"], row["option"])
        span = row.pop("span")
        # moving the span only counts where the what-if says it pays on this model
        moved = span_savings.get((span, row["model_key"]), {}) if span is not None else {}
        pays = moved.get("saving", Decimal(0)) > 0
        rule = recommend(policy, {**row, "variable_prefix": pays})
        if rule is None:
            continue
        row["recommendation"] = {"id": rule.id, "title": rule.title, "action": rule.action}
        # the lever's saving holds the template's replay, not the what-if: the what-if's figure
        # goes in the action, so a lever's recommendations never sum to more than its saving
        saving = row["saving"]
        what_if = (
            f" Moved, it would save {fmt.money(moved['saving'])} more (a what-if, not in the"
            " lever's saving)."
            if pays
            else ""
        )
        if rule.action not in ("none", "keep") and saving is not None and (saving > 0 or pays):
            recs.append(
                Recommendation(
                    title=f"{rule.title}: {row['label']} on {row['model_key']}",
                    lever="caching",
                    saving=max(saving, Decimal(0)),
                    action=rule.rationale + what_if,
                )
            )
    features = _aggregate(con, "true", "feature", policy.max_templates)
    for row in features:
        del row["span"]
    not_replayable = {k: int(v) for k, v in sorted(categories.items()) if k != "replay"}
    details = CachingDetails.model_validate(
        {
            "replay": {
                "requests": total["requests"],
                "replayed_requests": int(categories.get("replay", 0)),
                "blocks": main.blocks,
                "not_replayable_requests": sum(not_replayable.values()),
                "not_replayable": not_replayable,
                "ttl_override_seconds": ctx.options.cache_ttl_seconds,
            },
            "achieved": {
                "cache_read_tokens": total["achieved_tokens"],
                "cache_read_share": total["achieved_share"],
            },
            "achievable": {
                "cache_read_tokens": total["achievable_tokens"],
                "cache_write_tokens": total["write_tokens"],
                "cache_read_share": total["achievable_share"],
            },
            "simulated": _simulated(con),
            "rules": [_rules_row(c) for c in caches.values()],
            "tokenization": [vars(s) for s in main.stats],
            "by_feature": features,
            "by_template": templates,
            "prefix_order": [span_row(s, span_savings) for s in spans],
            "token_counts": _token_counts(con, state, out, main),
            "assumptions": ASSUMPTIONS,
        }
    )
    return details, sorted(recs, key=lambda r: (-r.saving, r.title))[:10]


ASSUMPTIONS = [
    "Token counts are the lever's own: the model's tiktoken encoding where it is on disk, else "
    "o200k_base or a length-based estimate calibrated against the logged usage of the same "
    "requests (token_counts says which, and the range it leaves); cached tokens never exceed "
    "logged input tokens.",
    "Caches never evict before their TTL; routing overflow of hot prefixes is not modelled.",
    "Explicit breakpoints are placed at message boundaries whose prefix recurs in the stream (the "
    "deepest static one plus the deepest others) and read only where placed.",
    "A request keeps its logged cache counts where they read more than the replay.",
]


def _aggregate(con: Any, where: str, by: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Cache figures per group of `_cache_view` rows; groups beyond `limit` are not listed."""
    limit_sql = f"LIMIT {int(limit)}" if limit else ""
    rows = con.execute(
        f"""WITH v AS (SELECT *, 'all' AS scope FROM {T.CACHE_VIEW} WHERE {where}),
            peak AS (SELECT {by}, max(n) AS peak_rpm FROM (
                       SELECT {by}, date_trunc('minute', ts), count(*) AS n FROM v GROUP BY ALL)
                     GROUP BY ALL)
            SELECT {by}, count(*) AS requests, sum(input) AS input_tokens,
                   sum(achieved) AS achieved_tokens, sum(final_read) AS achievable_tokens,
                   sum(final_write) AS write_tokens, sum(coalesce(sim_read, 0)) AS sim_tokens,
                   count(*) FILTER (WHERE replay) AS replayed,
                   count(*) FILTER (WHERE replay AND NOT eligible) AS below_minimum,
                   count(*) FILTER (WHERE eligible AND sim_read > 0) AS reads,
                   count(*) FILTER (WHERE eligible) AS cacheable,
                   median(shared_tokens)::BIGINT AS stable_prefix_tokens,
                   sum(coalesce(sim_write, 0)) AS sim_write_tokens,
                   string_agg(DISTINCT option, ',' ORDER BY option) AS option,
                   min(span) AS span, max(peak.peak_rpm) AS peak_rpm,
                   sum(base_cost) AS base_cost, sum(final_cost) AS final_cost
            FROM v JOIN peak USING ({by}) GROUP BY ALL ORDER BY input_tokens DESC, {by}
            {limit_sql}"""
    )
    names = [d[0] for d in rows.description]
    result = []
    for values in rows.fetchall():
        row = dict(zip(names, values, strict=True))
        inp = row["input_tokens"] or 0
        # a group none of whose requests is priced has an unknown saving, not a zero one
        base, final = maybe_money(row.pop("base_cost")), maybe_money(row.pop("final_cost"))
        row["achieved_share"] = row["achieved_tokens"] / inp if inp else 0.0
        row["achievable_share"] = row["achievable_tokens"] / inp if inp else 0.0
        row["gap_share"] = row["achievable_share"] - row["achieved_share"]
        row["reuse_rate"] = row["reads"] / row["cacheable"] if row["cacheable"] else 0.0
        row["below_minimum_share"] = (
            row["below_minimum"] / row["replayed"] if row["replayed"] else 0.0
        )
        row["reads_per_write"] = (
            row["sim_tokens"] / row["sim_write_tokens"] if row["sim_write_tokens"] else None
        )
        row.pop("scope", None)
        saving = None if base is None or final is None else base - final
        row["saving"] = saving
        row["saving_share"] = float(saving / base) if saving is not None and base else 0.0
        result.append({k: _plain(v) for k, v in row.items()})
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _simulated(con: Any) -> dict[str, Any]:
    row = con.execute(
        f"""SELECT sum(input), sum(sim_read), sum(sim_write) FROM {T.CACHE_VIEW} WHERE replay"""
    ).fetchall()[0]
    inp, read, write = (int(v or 0) for v in row)
    return {
        "input_tokens": inp,
        "cache_read_tokens": read,
        "cache_write_tokens": write,
        "cache_read_share": read / inp if inp else 0.0,
    }


def _labels(con: Any, templates: list[str]) -> dict[str, str]:
    """A short redacted excerpt of each template's (canonical) system prompt."""
    if not templates:
        return {}
    rows = con.execute(
        f"""SELECT DISTINCT v.template, v.feature, left(x.text, 300)
           FROM {T.CACHE_VIEW} v LEFT JOIN (SELECT * FROM texts UNION ALL
                                         SELECT * FROM {T.CACHE_SUBST_TEXTS}) x
             ON x.text_hash = v.template_text
           WHERE v.template IN (SELECT unnest(?::VARCHAR[]))""",
        [templates],
    ).fetchall()
    return {t: f"{f}: {excerpt(text, 60)}" if text else f for t, f, text in rows}


def _break_even(prices: PriceTable, key: str | None, option: str | None) -> float | None:
    """Reads per written token that repay a write: write surcharge / read discount."""
    if key is None or key not in prices.models:
        return None
    r = rates(prices.models[key])
    write = r.cache_write_1h if option == "1h" else r.cache_write_5m
    discount = r.input - r.cached_input
    if discount <= 0:
        return None
    return float(max(write - r.input, Decimal(0)) / discount)


def _rules_row(cache: ModelCache) -> dict[str, Any]:
    keep = {
        "id",
        "mode",
        "min_tokens",
        "increment",
        "ttl_seconds",
        "refresh_on_hit",
        "write_surcharge",
        "max_breakpoints",
    }
    return {
        "model_key": cache.key,
        "replay_mode": cache.mode,
        "block_size_tokens": cache.block_size,
        **cache.rules.model_dump(mode="json", include=keep),
        "options": [
            {"name": o.name, "ttl_seconds": o.ttl, "write_1h": o.write_1h} for o in cache.options
        ],
    }
