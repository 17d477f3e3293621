"""The caching lever: replay the traffic under each provider's prompt-caching rules.

Per stream (one model, one account where the log names it) and in time order, each request's prompt
is looked up in a simulated cache of token-block prefix hashes (advisor.prefix), under the rules in
rules/prices: automatic caching (every prompt past the minimum is written; the longest cached
prefix is read, counted in the provider's increments) or explicit breakpoints at message
boundaries (written at the write price, read at the cached price), TTL, refresh-on-hit. For every
template, the provider's options (default TTL, 1 h TTL, extended retention, caching off where it is
opt-in) are replayed and priced, and the cheapest is kept (`rules/caching.yaml` sets the margin).

Approximations, all stated in details["assumptions"]:
- Token counts are ours (tiktoken, the model's encoding or o200k_base for other tokenizers, or
  4-byte pseudo-tokens without encoding files; plus one role marker per message). Counts that
  are not exact are scaled to the logged usage of the same requests (advisor.levers.token_counts)
  and the figure is also given at the low and high scales; cached tokens are clipped so they
  never exceed the logged input_tokens.
- Caches are unbounded in size and never evicted before the TTL; routing overflow (OpenAI sends a
  prefix hotter than ~15 requests/minute to several machines) is not modelled.
- Explicit breakpoints are read only where they are placed (Anthropic also looks back up to 20
  blocks), so reads can only be understated.
- A request keeps its logged cache outcome where that read more than the replay (e.g. a cache warm
  before the log starts), so the lever never makes a request dearer than it was.

details: replay (requests, replayed, blocks, not_replayable by reason), achieved (what the logs
report cached), achievable (the output state), simulated (the replay alone, replayed rows only),
rules (per model), tokenization, by_feature and by_template (stable prefix, reuse rate, below the
minimum, option, reads per write vs break-even, saving, recommendation), prefix_order (findings of
advisor.levers.prefix_order with the what-if saving), recommendations (for analysis.json),
token_counts (exact | approximate | estimated per model, tokenizer, why, calibration, and the
saving and cached share at the low and high scales), and assumptions. The per-request table
has cache_read_tokens_sim (NULL where not replayable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from advisor import prefix
from advisor.conditions import evaluate, parse
from advisor.levers import STATE_COLUMNS, LeverContext, LeverOutcome
from advisor.levers.prefix_order import (
    PrefixOrderPolicy,
    VariableSpan,
    find_variable_spans,
    span_row,
    substitute,
)
from advisor.levers.token_counts import TokenCounts, calibrate, describe, summary
from advisor.pricing import CachingRules, PriceTable, cost_sql, rates, register_prices
from advisor.redact import excerpt
from advisor.ruleset import default_rules_dir, load_model
from advisor.store import scalar


class Recommendation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    title: str
    action: str
    rationale: str
    when: dict[str, Any]
    cases: dict[str, Any]


class CachingPolicy(BaseModel):
    """rules/caching.yaml: how the lever simulates and recommends (no provider facts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int
    kind: str
    id: str
    title: str
    source: str
    rationale: str
    token_block_size: int
    per_account: bool
    min_option_gain_share: float
    max_templates: int
    prefix_order: dict[str, Any]
    recommendations: tuple[Recommendation, ...]


def load_policy(rules_dir: Path | None) -> CachingPolicy:
    path = Path(rules_dir or default_rules_dir()) / "caching.yaml"
    if not path.is_file():
        path = default_rules_dir() / "caching.yaml"
    policy = load_model(path, CachingPolicy)
    for rule in policy.recommendations:
        parse(rule.when, where=f"{rule.id}.when")
    return policy


@dataclass(frozen=True)
class Option:
    """One way to run a model's cache: a TTL and the price its writes are billed at."""

    name: str  # default | extended | 1h | off | what-if
    ttl: float
    write_1h: bool = False


@dataclass(frozen=True)
class ModelCache:
    """One model's caching rules, as the replay uses them."""

    key: str
    mode: str  # automatic | explicit
    rules: CachingRules
    block_size: int | None  # None: message-granularity breakpoints
    encoding: str
    options: tuple[Option, ...]

    @property
    def group(self) -> tuple[str, str, str, int | None, bool]:
        """Models replayed together: one tokenisation, one set of provider mechanics."""
        return (self.encoding, self.rules.id, self.mode, self.block_size, self.rules.refresh_on_hit)


def model_cache(
    prices: PriceTable, key: str, policy: CachingPolicy, ttl_override: int | None
) -> ModelCache | None:
    """The caching setup of a priced model, or None when it cannot cache."""
    rules = prices.caching_for(key)
    if rules is None:
        return None
    model = prices.models[key]
    mode = "explicit" if rules.mode == "explicit" else "automatic"
    ext = rules.extended_ttl
    ext_ok = ext is not None and (ext.models is None or key in ext.models)  # listed ids only
    options: list[Option] = []
    if ttl_override is not None:
        longer = ext is not None and ext_ok and ttl_override > rules.ttl_seconds
        options.append(Option("what-if", float(ttl_override), longer and mode == "explicit"))
    else:
        options.append(Option("default", float(rules.ttl_seconds)))
        if ext is not None and ext_ok and ext.write_price == "input":
            options.append(Option("extended", float(ext.ttl_seconds)))
        if ext is not None and ext_ok and ext.write_price == "cache_write_1h":
            options.append(Option("1h", float(ext.ttl_seconds), True))
    if mode == "explicit":
        options.insert(1, Option("off", 0.0))
    block = None if mode == "explicit" else rules.increment or policy.token_block_size
    return ModelCache(key, mode, rules, block, model.encoding, tuple(options))


@dataclass
class Replayed:
    """Tables the replay left in the store, and what it tokenised."""

    options: str  # request_id, option, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens
    info: str  # request_id, shared_tokens (provider tokens), eligible
    stats: list[prefix.TokenStats]
    blocks: int = 0  # token blocks replayed (the unit of work)
    counts: dict[str, TokenCounts] = field(
        default_factory=dict
    )  # by model: how tokens were counted
    # "low"/"high": the options table again with each model's counts at that calibration scale
    ranges: dict[str, str] = field(default_factory=dict)


def replay(
    ctx: LeverContext,
    rows: str,
    caches: dict[str, ModelCache],
    *,
    suffix: str = "",
    messages_sql: str = "messages",
    texts_sql: str = "texts",
    only: str | None = None,
    tokenizers: dict[str, prefix.Tokenizer] | None = None,
    models: dict[tuple, tuple[prefix.PrefixModel, pa.Table]] | None = None,
    counts: dict[str, TokenCounts] | None = None,
    ranges: bool = False,
) -> Replayed:
    """Replay every option of every model over the replayable rows of `rows`.

    `rows` has request_id, model_key, stream, ts, input_tokens, full_prompt and replay (bool);
    `only` optionally names a table of request_ids to restrict to (a what-if on a few streams);
    `tokenizers` (by encoding) carry token caches from one replay to the next; `models` (by
    cache group) the prefix models built from the store's prompts, with their requests: a later
    replay whose group holds the same requests reorders the model instead of building it.
    `counts` (by model) are calibrations made before, reused so that a what-if or the chained
    run scales a model's counts as the standalone run did; other models are calibrated here.
    `ranges` also replays at each model's low and high calibration scale.
    """
    tokenizers = {} if tokenizers is None else tokenizers
    counts = {} if counts is None else counts
    # only the store's own prompts: an edited prompt table may differ from one replay to the next
    models = models if (messages_sql, texts_sql) == ("messages", "texts") else None
    con = ctx.con
    out_opts = f"_cache_opts{suffix}"
    out_info = f"_cache_info{suffix}"
    variants = ("point", "low", "high") if ranges else ("point",)
    opt_parts: dict[str, list[pa.Table]] = {v: [] for v in variants}
    info_parts: list[pa.Table] = []
    stats: list[prefix.TokenStats] = []
    used: dict[str, TokenCounts] = {}
    blocks = 0
    groups: dict[tuple[str, str, str, int | None, bool], list[ModelCache]] = {}
    for cache in caches.values():
        groups.setdefault(cache.group, []).append(cache)
    for group, members in sorted(groups.items(), key=str):
        encoding, _, mode, block, refresh = group
        keys = [m.key for m in members]
        con.execute("CREATE OR REPLACE TEMP TABLE _cache_keys (model_key VARCHAR)")
        con.executemany("INSERT INTO _cache_keys VALUES (?)", [(k,) for k in keys])
        restrict = f"AND request_id IN (SELECT request_id FROM {only})" if only else ""
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _cache_q AS
                SELECT request_id, (row_number() OVER (ORDER BY stream, ts, request_id) - 1)::BIGINT
                         AS idx, stream, epoch_ms(ts) / 1000.0 AS t, input_tokens, model_key,
                       token_source = 'logged' AS logged
                FROM {rows} SEMI JOIN _cache_keys USING (model_key)
                WHERE replay {restrict}"""
        )
        q = con.execute("SELECT * FROM _cache_q ORDER BY idx").fetchnumpy()
        if not len(q["idx"]):
            continue
        tok = tokenizers.setdefault(encoding, prefix.Tokenizer(encoding))
        model = _built_before(con, models, group)
        if model is None:
            model = prefix.build(
                con,
                "_cache_q",
                encoding=encoding,
                block_size=block,
                messages_sql=messages_sql,
                texts_sql=texts_sql,
                tokenizer=tok,
            )
            if models is not None:
                ids = {"request_id": q["request_id"], "idx": np.arange(model.n, dtype=np.int64)}
                models[group] = (model, pa.table(ids))
        stats.append(model.stats)
        blocks += len(model.block_hash)
        # per-model settings, spread to requests through each request's model index
        names_of, m = np.unique(np.asarray(q["model_key"], dtype=object), return_inverse=True)
        per = [caches[k] for k in names_of]
        found = {c.key: counts[c.key] for c in per if c.key in counts}
        todo = [
            describe(c.key, c.encoding, ctx.prices.models[c.key].provider, tok)
            for c in per
            if c.key not in found
        ]
        if todo:
            texts = prefix.relation(messages_sql), prefix.relation(texts_sql)
            found |= calibrate(con, "_cache_q", model.shared_tokens, todo, tok, *texts)
        used.update(found)
        scales = {
            v: np.array([found[c.key].scales()[v] for c in per], dtype=np.float64)[m]
            for v in variants
        }
        inp = np.asarray(q["input_tokens"], dtype=np.int64)
        stream = np.asarray(q["stream"], dtype=np.int64)
        ts = np.asarray(q["t"], dtype=np.float64)
        min_tok = np.array([c.rules.min_tokens for c in per], dtype=np.int64)[m]
        exact = np.array([found[c.key].counts == "exact" for c in per])[m]
        # Counts that are not exact were already cut to whole blocks of our tokens: cutting them
        # again to the provider's increments would count the loss at a block's end twice.
        inc = np.where(exact, np.array([c.rules.increment or 0 for c in per])[m], 0)
        eligible = inp >= min_tok
        for name in dict.fromkeys(o.name for c in per for o in c.options):
            opts = [_option(c, name) for c in per]
            has = np.array([o is not None for o in opts])[m]
            ttl = np.array([o.ttl if o else 0.0 for o in opts], dtype=np.float64)[m]
            one_hour = np.array([bool(o and o.write_1h) for o in opts])[m]
            ok = eligible & has
            # automatic caching: which blocks hit does not depend on the scale of the counts
            matched = (
                prefix.replay_blocks(model, stream, ts, ok, ttl, refresh)
                if name != "off" and mode != "explicit"
                else None
            )
            done: list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = []
            for variant, scale in scales.items():
                # the low and high figures differ from the point only where counts are not exact
                rows_of = has if variant == "point" else has & ~exact
                if not rows_of.any():
                    continue
                same = next((rw for s, rw in done if np.array_equal(s, scale)), None)
                if same is not None:
                    read, write = same
                elif name == "off":  # opt-in caching left off: nothing read, nothing written
                    read = write = np.zeros_like(inp)
                elif matched is None:
                    r_ours, w_ours = prefix.replay_breakpoints(
                        model,
                        stream,
                        ts,
                        np.ceil(min_tok / scale).astype(np.int64),
                        members[0].rules.max_breakpoints,
                        ttl,
                        refresh,
                    )
                    read = np.minimum(np.floor(r_ours * scale).astype(np.int64), inp)
                    write = np.minimum(np.floor(w_ours * scale).astype(np.int64), inp - read)
                else:
                    assert block is not None
                    cached = np.minimum(np.floor(matched * block * scale), inp)
                    read = _round_down(cached, min_tok, inc)
                    write = np.where(ok & members[0].rules.write_surcharge, inp - read, 0)
                done.append((scale, (read, write)))
                opt_parts[variant].append(
                    pa.table(
                        {
                            "request_id": pa.array(q["request_id"][rows_of]),
                            "option": pa.array([name] * int(rows_of.sum())),
                            "cache_read_tokens": pa.array(read[rows_of]),
                            "cache_write_tokens": pa.array(write[rows_of]),
                            "cache_write_1h_tokens": pa.array(
                                np.where(one_hour, write, 0)[rows_of]
                            ),
                        }
                    )
                )
        info_parts.append(
            pa.table(
                {
                    "request_id": pa.array(q["request_id"]),
                    "shared_tokens": pa.array(
                        np.minimum(model.shared_tokens * scales["point"], inp).astype(np.int64)
                    ),
                    "eligible": pa.array(eligible),
                    "token_scale": pa.array(scales["point"]),
                }
            )
        )
    for variant in variants:
        _store(con, _variant(out_opts, variant), opt_parts[variant], _OPT_SCHEMA)
    _store(con, out_info, info_parts, _INFO_SCHEMA)
    con.execute("DROP TABLE IF EXISTS _cache_q")
    con.execute("DROP TABLE IF EXISTS _cache_keys")
    spans = {v: _variant(out_opts, v) for v in variants if v != "point"}
    return Replayed(out_opts, out_info, stats, blocks, dict(sorted(used.items())), spans)


def _variant(table: str, variant: str) -> str:
    return table if variant == "point" else f"{table}_{variant}"


def _built_before(
    con: Any,
    models: dict[tuple, tuple[prefix.PrefixModel, pa.Table]] | None,
    group: tuple,
) -> prefix.PrefixModel | None:
    """The model built for `group` before, reordered to _cache_q's order, if it was built for
    the same requests (a chained run where an earlier lever moved requests only between models
    of one cache group: a third of the caching lever's time at 1M requests)."""
    if models is None or group not in models:
        return None
    model, ids = models[group]
    con.register("_cache_built", ids)
    got = con.execute(
        """SELECT b.idx FROM _cache_q q LEFT JOIN _cache_built b USING (request_id)
           ORDER BY q.idx"""
    ).fetchnumpy()["idx"]
    con.unregister("_cache_built")
    if len(got) != model.n or np.ma.is_masked(got):  # request ids are unique on both sides
        return None
    return model.take(np.asarray(got, dtype=np.int64))


_OPT_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("option", pa.string()),
        ("cache_read_tokens", pa.int64()),
        ("cache_write_tokens", pa.int64()),
        ("cache_write_1h_tokens", pa.int64()),
    ]
)
_INFO_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("shared_tokens", pa.int64()),
        ("eligible", pa.bool_()),
        ("token_scale", pa.float64()),
    ]
)


def _store(con: Any, name: str, parts: list[pa.Table], schema: pa.Schema) -> None:
    table = pa.concat_tables([p.cast(schema) for p in parts]) if parts else schema.empty_table()
    con.register("_cache_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _cache_arrow")
    con.unregister("_cache_arrow")


def _option(cache: ModelCache, name: str) -> Option | None:
    return next((o for o in cache.options if o.name == name), None)


def _round_down(tokens: np.ndarray, min_tokens: np.ndarray, increment: np.ndarray) -> np.ndarray:
    """Cached tokens as the provider counts them: 0 under the minimum, else whole increments."""
    t = tokens.astype(np.int64)
    stepped = np.where(
        increment > 0, min_tokens + (t - min_tokens) // np.maximum(increment, 1) * increment, t
    )
    return np.where(t >= np.maximum(min_tokens, 1), np.minimum(stepped, t), 0)


class CachingLever:
    id = "caching"
    title = "Prompt caching"

    def apply(self, ctx: LeverContext, state: str, out: str, *, standalone: bool) -> LeverOutcome:
        con = ctx.con
        policy = load_policy(ctx.rules_dir)
        ttl_override = ctx.options.cache_ttl_seconds
        register_prices(con, ctx.prices, "_cache_prices")
        keys = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT model_key FROM {state} WHERE model_key IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
        caches = {}
        for key in keys:
            if key in ctx.prices.models:
                cache = model_cache(ctx.prices, key, policy, ttl_override)
                if cache is not None:
                    caches[key] = cache
        _rows(ctx, state, caches, policy.per_account)
        spans = find_variable_spans(
            con,
            "(SELECT request_id FROM _cache_rows WHERE replay)",
            PrefixOrderPolicy(**policy.prefix_order),
        )
        what_if_sql = substitute(con, spans)
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _cache_tpl AS
               SELECT r.request_id, coalesce(r.feature, '(none)') || '|'
                      || coalesce(s.new_hash, r.system_hash, '-') AS template,
                      coalesce(s.new_hash, r.system_hash) AS template_text
               FROM _cache_rows r LEFT JOIN _cache_subst s ON s.text_hash = r.system_hash"""
        )
        tokenizers: dict[str, prefix.Tokenizer] = {}
        # the standalone run's models and calibrations serve the chained run, then are let go
        models = ctx.scratch.setdefault("caching.models", {})
        counts = ctx.scratch.setdefault("caching.counts", {})
        main = replay(
            ctx,
            "_cache_rows",
            caches,
            tokenizers=tokenizers,
            models=models,
            counts=counts,
            ranges=standalone,
        )
        counts.update(main.counts)
        if not standalone:
            ctx.scratch.pop("caching.models")
            ctx.scratch.pop("caching.counts")
        _choose(ctx, main, caches, policy)
        _final(con, state, out, main.options)
        affected = scalar(
            con,
            f"""SELECT count(*) FROM {state} s JOIN {out} o USING (request_id)
                WHERE coalesce(s.cache_read_tokens, 0) <> coalesce(o.cache_read_tokens, 0)
                   OR coalesce(s.cache_write_tokens, 0) <> coalesce(o.cache_write_tokens, 0)""",
        )
        risk: dict[str, Any] = {"quality": "none: caching never changes a response"}
        if not standalone:  # only its state is priced: the report describes the standalone run
            _cleanup(con)
            return LeverOutcome(out, int(affected or 0), risk)
        saving_by_span = (
            _prefix_order_savings(ctx, caches, policy, tokenizers, what_if_sql, main.counts)
            if spans
            else {}
        )
        tokenizers.clear()
        details = _details(ctx, state, out, main, caches, policy, spans, saving_by_span)
        details["token_counts"] = _token_counts(con, state, out, main)
        per_request = f"{out}_requests"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {per_request} AS
                SELECT s.request_id, f.cache_read_tokens AS cache_read_tokens_sim
                FROM {state} s LEFT JOIN _cache_sim f USING (request_id)"""
        )
        risk["not_replayable_requests"] = details["replay"]["not_replayable_requests"]
        _cleanup(con)
        return LeverOutcome(out, int(affected or 0), risk, details, per_request)


def _rows(ctx: LeverContext, state: str, caches: dict[str, ModelCache], per_account: bool) -> None:
    """_cache_rows: the state joined to request metadata, each row with why it can(not) replay.

    A stream is one cache: a model at one provider (Azure and OpenAI do not share), and one
    account when the policy says accounts are separate provider organisations."""
    con = ctx.con
    account = "coalesce(r.account_id, '')" if per_account else "''"
    # the logged provider tells Azure from OpenAI; a model switched by an earlier lever is served
    # by its own provider
    provider = "coalesce(CASE WHEN s.model_key = r.model_key THEN r.provider END, p.provider, '')"
    con.execute("CREATE OR REPLACE TEMP TABLE _cache_models (model_key VARCHAR)")
    if caches:
        con.executemany("INSERT INTO _cache_models VALUES (?)", [(k,) for k in caches])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cache_rows AS
            WITH gaps AS (  -- requests with a message whose text the store lacks
              SELECT DISTINCT m.request_id FROM messages m
              ANTI JOIN (SELECT text_hash FROM texts) t USING (text_hash)
            )
            SELECT s.*, r.ts, r.account_id, r.feature, r.system_hash, r.token_source,
                   r.cache_read_tokens AS logged_read,
                   dense_rank() OVER (ORDER BY s.model_key, {provider}, {account}) AS stream,
                   CASE WHEN s.model_key IS NULL OR p.model_key IS NULL THEN 'unpriced'
                        WHEN c.model_key IS NULL THEN 'no_caching'
                        WHEN coalesce(s.input_tokens, 0) <= 0 THEN 'no_input'
                        WHEN r.prompt_hash IS NULL OR g.request_id IS NOT NULL THEN 'no_text'
                        ELSE 'replay' END AS category,
                   category = 'replay' AS replay
            FROM {state} s JOIN requests r USING (request_id)
            LEFT JOIN _cache_prices p ON p.model_key = s.model_key
            LEFT JOIN _cache_models c ON c.model_key = s.model_key
            LEFT JOIN gaps g ON g.request_id = s.request_id"""
    )


def _costed(options: str) -> str:
    """Per request and option: the cost of the request billed with that option's cache counts."""
    cols = ", ".join(
        f"r.{c}"
        if c not in ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")
        else f"o.{c}"
        for c in STATE_COLUMNS
    )
    return f"""SELECT o.option, t.template, {cols}
               FROM {options} o JOIN _cache_rows r USING (request_id)
               JOIN _cache_tpl t USING (request_id)"""


def _choose(
    ctx: LeverContext,
    replayed: Replayed,
    caches: dict[str, ModelCache],
    policy: CachingPolicy,
    table: str = "_cache_choice",
) -> dict[tuple[str, str], str]:
    """The option kept per (model, template), also written to `table`: the first listed unless
    another is cheaper by the policy's margin."""
    rows = ctx.con.execute(
        f"""SELECT c.model_key, c.template, c.option, sum({cost_sql("c", "p")})
            FROM ({_costed(replayed.options)}) c JOIN _cache_prices p USING (model_key)
            GROUP BY ALL"""
    ).fetchall()
    costs: dict[tuple[str, str], dict[str, Decimal]] = {}
    for key, template, option, cost in rows:
        costs.setdefault((key, template), {})[option] = Decimal(cost or 0)
    chosen: dict[tuple[str, str], str] = {}
    for (key, template), by_option in costs.items():
        order = [o.name for o in caches[key].options if o.name in by_option]
        first = order[0]
        best = min(order, key=lambda o: (by_option[o], order.index(o)))
        margin = Decimal(str(policy.min_option_gain_share)) * by_option[first]
        chosen[(key, template)] = best if by_option[first] - by_option[best] > margin else first
    con = ctx.con
    columns = "model_key VARCHAR, template VARCHAR, option VARCHAR"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({columns})")
    if chosen:
        con.executemany(
            f"INSERT INTO {table} VALUES (?, ?, ?)", [(*k, v) for k, v in chosen.items()]
        )
    return chosen


def _final(con: Any, state: str, out: str, options: str) -> None:
    """_cache_sim (the replay under the chosen options) and the lever's output state."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _cache_sim AS {_chosen(options)}")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
            SELECT {_with_sim("s", "f")} FROM {state} s LEFT JOIN _cache_sim f USING (request_id)"""
    )


def _chosen(options: str) -> str:
    """The rows of an options table under the option chosen for their (model, template)."""
    return f"""SELECT o.* FROM {options} o JOIN _cache_rows r USING (request_id)
               JOIN _cache_tpl t USING (request_id)
               JOIN _cache_choice c ON c.model_key = r.model_key AND c.template = t.template
                                   AND c.option = o.option"""


def _with_sim(state: str, sim: str) -> str:
    """STATE_COLUMNS of a state row with a replayed row's cache counts: a replayed request takes
    the simulated counts unless its logged ones read more."""
    use = (
        f"{sim}.request_id IS NOT NULL "
        f"AND {sim}.cache_read_tokens >= coalesce({state}.cache_read_tokens, 0)"
    )
    cols = []
    for c in STATE_COLUMNS:
        if c in ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens"):
            cols.append(f"CASE WHEN {use} THEN {sim}.{c} ELSE {state}.{c} END AS {c}")
        else:
            cols.append(f"{state}.{c}")
    return ", ".join(cols)


def _token_counts(con: Any, state: str, out: str, main: Replayed) -> dict[str, Any]:
    """details.token_counts: how the replay counted tokens per model and, where the counts are
    not exact, the saving and cached share with every such model at its low and high
    calibration scale (the same options chosen): the range of the lever's figure. A range
    table holds only the rows whose counts are not exact, so its figure is the point's plus
    what those rows change."""
    saving = _cost(con, state) - _cost(con, out)
    read, inp = con.execute(
        f"""SELECT sum(s.cache_read_tokens), sum(coalesce(r.input_tokens, 0))
            FROM _cache_rows r JOIN {out} s USING (request_id)"""
    ).fetchone()
    figures = [(saving, int(read or 0))]
    for _, options in sorted(main.ranges.items()):
        cost, more = con.execute(
            f"""WITH v AS (
                  SELECT {_with_sim("s", "f")} FROM {state} s JOIN ({_chosen(options)}) f
                  USING (request_id)
                )
                SELECT sum({cost_sql("o", "p")} - {cost_sql("v", "p")}),
                       sum(v.cache_read_tokens - o.cache_read_tokens)
                FROM v JOIN {out} o USING (request_id)
                JOIN _cache_prices p ON p.model_key = v.model_key"""
        ).fetchone()
        figures.append((saving + Decimal(cost or 0), int(read or 0) + int(more or 0)))
        con.execute(f"DROP TABLE IF EXISTS {options}")
    savings = [f[0] for f in figures]
    shares = [f[1] / float(inp) if inp else 0.0 for f in figures]
    counts = list(main.counts.values())
    return {
        "counts": summary(counts),
        "low_saving": _money(min(savings)),
        "high_saving": _money(max(savings)),
        "low_cache_read_share": min(shares),
        "high_cache_read_share": max(shares),
        "by_model": [c.row() for c in counts],
    }


def _cost(con: Any, state: str) -> Decimal:
    total = scalar(
        con,
        f"SELECT sum({cost_sql('s', 'p')}) FROM {state} s JOIN _cache_prices p USING (model_key)",
    )
    return Decimal(total or 0)


def _prefix_order_savings(
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
        """CREATE OR REPLACE TEMP TABLE _cache_cf_req AS
           SELECT r.request_id FROM _cache_rows r WHERE r.replay AND r.stream IN (
             SELECT DISTINCT r2.stream FROM messages m JOIN _cache_subst s USING (text_hash)
             JOIN _cache_rows r2 ON r2.request_id = m.request_id)"""
    )
    messages_sql, texts_sql = what_if_sql
    what_if = replay(
        ctx,
        "_cache_rows",
        caches,
        suffix="_cf",
        only="_cache_cf_req",
        messages_sql=messages_sql,
        texts_sql=texts_sql,
        tokenizers=tokenizers,
        counts=counts,
    )
    _choose(ctx, what_if, caches, policy, "_cache_cf_choice")
    rows = con.execute(
        f"""WITH cf AS (
              SELECT c.request_id, c.model_key, {cost_sql("c", "p")} AS cost,
                     c.cache_read_tokens AS rd
              FROM ({_costed(what_if.options)}) c JOIN _cache_prices p USING (model_key)
              JOIN _cache_cf_choice k ON k.model_key = c.model_key AND k.template = c.template
                                     AND k.option = c.option
            ), now AS (
              SELECT c.request_id, {cost_sql("c", "p")} AS cost, c.cache_read_tokens AS rd
              FROM ({_costed("_cache_sim")}) c JOIN _cache_prices p USING (model_key)
            ), span_req AS (
              SELECT DISTINCT s.span, m.request_id FROM messages m
              JOIN _cache_subst s USING (text_hash)
            )
            SELECT x.span, cf.model_key, count(*), sum(now.cost - cf.cost), sum(cf.rd - now.rd)
            FROM span_req x JOIN cf USING (request_id) JOIN now USING (request_id)
            GROUP BY ALL"""
    ).fetchall()
    for table in (what_if.options, what_if.info, "_cache_cf_req", "_cache_cf_choice"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return {
        (int(span), str(key)): {
            "requests": int(n),
            "saving": Decimal(saving or 0),
            "extra": int(extra or 0),
        }
        for span, key, n, saving, extra in rows
    }


def recommend(policy: CachingPolicy, metrics: dict[str, Any]) -> Recommendation | None:
    """The first recommendation rule whose condition holds for a template's metrics."""
    for rule in policy.recommendations:
        if evaluate(parse(rule.when), metrics):
            return rule
    return None


def _cleanup(con: Any) -> None:
    for table in (
        "rows",
        "models",
        "tpl",
        "opts",
        "info",
        "view",
        "choice",
        "subst",
        "subst_texts",
        "sim",
        "prices",
    ):
        con.execute(f"DROP TABLE IF EXISTS _cache_{table}")


def _details(
    ctx: LeverContext,
    state: str,
    out: str,
    main: Replayed,
    caches: dict[str, ModelCache],
    policy: CachingPolicy,
    spans: Sequence[VariableSpan],
    span_savings: dict[tuple[int, str], dict[str, Any]],
) -> dict[str, Any]:
    """details of levers[id=caching] in analysis.json (see the module docstring for the terms)."""
    con = ctx.con
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cache_view AS
            SELECT r.request_id, r.model_key, coalesce(r.feature, '(none)') AS feature, r.ts,
                   t.template, t.template_text, r.category, r.replay,
                   coalesce(r.input_tokens, 0) AS input, coalesce(r.logged_read, 0) AS achieved,
                   f.option, f.cache_read_tokens AS sim_read, f.cache_write_tokens AS sim_write,
                   o.cache_read_tokens AS final_read, o.cache_write_tokens AS final_write,
                   i.shared_tokens, i.eligible, sp.span,
                   {cost_sql("r", "p")} AS base_cost, {cost_sql("o", "p")} AS final_cost
            FROM _cache_rows r JOIN _cache_tpl t USING (request_id) JOIN {out} o USING (request_id)
            LEFT JOIN _cache_sim f USING (request_id) LEFT JOIN {main.info} i USING (request_id)
            LEFT JOIN (SELECT m.request_id, min(s.span) AS span FROM messages m
                       JOIN _cache_subst s USING (text_hash) GROUP BY ALL) sp USING (request_id)
            LEFT JOIN _cache_prices p ON p.model_key = r.model_key"""
    )
    categories = dict(
        con.execute("SELECT category, count(*) FROM _cache_view GROUP BY ALL").fetchall()
    )
    total = _aggregate(con, "true", "scope")[0]
    templates = _aggregate(con, "replay", "template, model_key", policy.max_templates)
    labels = _labels(con, [t["template"] for t in templates])
    recs: list[dict[str, Any]] = []
    for row in templates:
        cache = caches.get(row["model_key"])
        row["label"] = labels.get(row["template"], row["template"])
        row["mode"] = cache.mode if cache else None
        row["break_even_reads_per_write"] = _break_even(ctx.prices, row["model_key"], row["option"])
        span = row.pop("span")
        # moving the span only counts where the what-if says it pays on this model
        moved = span_savings.get((span, row["model_key"]), {}) if span is not None else {}
        pays = Decimal(moved.get("saving", 0)) > 0
        rule = recommend(policy, {**row, "variable_prefix": pays})
        if rule is None:
            continue
        row["recommendation"] = {"id": rule.id, "title": rule.title, "action": rule.action}
        saving = moved["saving"] if pays else row["saving"]
        if rule.action not in ("none", "keep") and Decimal(saving) > 0:
            recs.append(
                {
                    "title": f"{rule.title}: {row['label']} on {row['model_key']}",
                    "saving": _money(saving),
                    "action": rule.rationale,
                }
            )
    features = _aggregate(con, "true", "feature", policy.max_templates)
    for row in features:
        del row["span"]
    not_replayable = {k: int(v) for k, v in sorted(categories.items()) if k != "replay"}
    return {
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
        "recommendations": sorted(recs, key=lambda r: (-Decimal(r["saving"]), r["title"]))[:10],
        "assumptions": ASSUMPTIONS,
    }


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
    """Cache figures per group of _cache_view rows; groups beyond `limit` are not listed."""
    limit_sql = f"LIMIT {int(limit)}" if limit else ""
    rows = con.execute(
        f"""WITH v AS (SELECT *, 'all' AS scope FROM _cache_view WHERE {where}),
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
        base, final = Decimal(row.pop("base_cost") or 0), Decimal(row.pop("final_cost") or 0)
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
        row["saving"] = _money(base - final)
        row["saving_share"] = float((base - final) / base) if base else 0.0
        result.append({k: _plain(v) for k, v in row.items()})
    return result


def _money(value: Any) -> str:
    """A decimal string without exponent or trailing zeros ('0.01728', '0')."""
    return format(Decimal(value).normalize(), "f")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _money(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _simulated(con: Any) -> dict[str, Any]:
    row = con.execute(
        """SELECT sum(input), sum(sim_read), sum(sim_write) FROM _cache_view WHERE replay"""
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
        """SELECT DISTINCT v.template, v.feature, left(x.text, 300)
           FROM _cache_view v LEFT JOIN (SELECT * FROM texts UNION ALL
                                         SELECT * FROM _cache_subst_texts) x
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


LEVER = CachingLever()
