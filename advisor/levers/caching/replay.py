"""The caching replay: every caching option of every model over the replayable requests.

Per stream (one model, one account where the log names it) and in time order, each request's
prompt is looked up in a simulated cache of token-block prefix hashes (`prefix`), under the
provider's rules: automatic caching (the longest cached prefix is read, counted in the provider's
increments) or explicit breakpoints at message boundaries, TTL, refresh-on-hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from advisor.levers import tables as T
from advisor.levers.base import STATE_COLUMNS, LeverContext
from advisor.levers.caching import prefix
from advisor.levers.caching.policy import CachingPolicy
from advisor.levers.caching.token_counts import TokenCounts, calibrate, describe
from advisor.pricing import CachingRules, PriceTable, cost_sql
from advisor.store import scalar


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
class ReplayTables:
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
    opts_table: str = T.CACHE_OPTIONS,
    info_table: str = T.CACHE_INFO,
    messages_sql: str = "messages",
    texts_sql: str = "texts",
    only: str | None = None,
    tokenizers: dict[str, prefix.Tokenizer] | None = None,
    models: dict[tuple, tuple[prefix.PrefixModel, pa.Table]] | None = None,
    counts: dict[str, TokenCounts] | None = None,
    ranges: bool = False,
) -> ReplayTables:
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
    # models are built from the store's own prompts only (an edited prompt table may differ from
    # one replay to the next); an edited one reuses them for requests whose prompts it left alone
    own_prompts = (messages_sql, texts_sql) == ("messages", "texts")
    con = ctx.con
    out_opts, out_info = opts_table, info_table
    variants = ("point", "low", "high") if ranges else ("point",)
    # each part goes to the store as soon as it is replayed: Python holds one group's at a time
    for variant in variants:
        _create(con, _variant(out_opts, variant), _OPT_SCHEMA)
    _create(con, out_info, _INFO_SCHEMA)
    stats: list[prefix.TokenStats] = []
    used: dict[str, TokenCounts] = {}
    blocks = 0
    groups: dict[tuple[str, str, str, int | None, bool], list[ModelCache]] = {}
    for cache in caches.values():
        groups.setdefault(cache.group, []).append(cache)
    for group, members in sorted(groups.items(), key=str):
        encoding, _, mode, block, refresh = group
        keys = [m.key for m in members]
        con.execute(f"CREATE OR REPLACE TEMP TABLE {T.CACHE_KEYS} (model_key VARCHAR)")
        con.executemany(f"INSERT INTO {T.CACHE_KEYS} VALUES (?)", [(k,) for k in keys])
        restrict = f"AND request_id IN (SELECT request_id FROM {only})" if only else ""
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {T.CACHE_QUEUE} AS
                SELECT request_id, (row_number() OVER (ORDER BY stream, ts, request_id) - 1)::BIGINT
                         AS idx, stream, epoch_ms(ts) / 1000.0 AS t, input_tokens, model_key,
                       token_source = 'logged' AS logged
                FROM {rows} SEMI JOIN {T.CACHE_KEYS} USING (model_key)
                WHERE replay {restrict}"""
        )
        q = con.execute(f"SELECT * FROM {T.CACHE_QUEUE} ORDER BY idx").fetchnumpy()
        if not len(q["idx"]):
            continue
        tok = tokenizers.setdefault(encoding, prefix.Tokenizer(encoding))
        model = _built_before(con, models, group, None if own_prompts else messages_sql)
        if model is None:
            model = prefix.build(
                con,
                T.CACHE_QUEUE,
                encoding=encoding,
                block_size=block,
                messages_sql=messages_sql,
                texts_sql=texts_sql,
                tokenizer=tok,
            )
            if models is not None and own_prompts:
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
            found |= calibrate(con, T.CACHE_QUEUE, model.shared_tokens, todo, tok, *texts)
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
                _append(
                    con,
                    _variant(out_opts, variant),
                    _OPT_SCHEMA,
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
                    ),
                )
        _append(
            con,
            out_info,
            _INFO_SCHEMA,
            pa.table(
                {
                    "request_id": pa.array(q["request_id"]),
                    "shared_tokens": pa.array(
                        np.minimum(model.shared_tokens * scales["point"], inp).astype(np.int64)
                    ),
                    "eligible": pa.array(eligible),
                    "token_scale": pa.array(scales["point"]),
                }
            ),
        )
    con.execute(f"DROP TABLE IF EXISTS {T.CACHE_QUEUE}")
    con.execute(f"DROP TABLE IF EXISTS {T.CACHE_KEYS}")
    spans = {v: _variant(out_opts, v) for v in variants if v != "point"}
    return ReplayTables(out_opts, out_info, stats, blocks, dict(sorted(used.items())), spans)


def _variant(table: str, variant: str) -> str:
    """The options table of a calibration variant (low and high: the main replay's only)."""
    return {"point": table, "low": T.CACHE_OPTIONS_LOW, "high": T.CACHE_OPTIONS_HIGH}[variant]


def _built_before(
    con: Any,
    models: dict[tuple, tuple[prefix.PrefixModel, pa.Table]] | None,
    group: tuple,
    edited: str | None,
) -> prefix.PrefixModel | None:
    """The model built for `group` before, reordered to _cache_q's order, if it was built for
    the same requests with the same prompts (a chained run where an earlier lever moved requests
    only between models of one cache group: a third of the caching lever's time at 1M
    requests). `edited`: the messages of an edited prompt, which must then name the store's
    texts for every request of the group (same text hash, same text)."""
    if models is None or group not in models:
        return None
    model, ids = models[group]
    con.register("_cache_built", ids)
    got = con.execute(
        f"""SELECT b.idx FROM {T.CACHE_QUEUE} q LEFT JOIN _cache_built b USING (request_id)
           ORDER BY q.idx"""
    ).fetchnumpy()["idx"]
    con.unregister("_cache_built")
    if len(got) != model.n or np.ma.is_masked(got):  # request ids are unique on both sides
        return None
    if edited is not None and _prompts_differ(con, edited):
        return None
    return model.take(np.asarray(got, dtype=np.int64))


def _prompts_differ(con: Any, edited: str) -> bool:
    """Whether the edited messages of _cache_q's requests differ from the store's."""
    columns = "request_id, position, role, text_hash"
    differ = scalar(
        con,
        f"""SELECT count(*) FROM (
              (SELECT {columns} FROM {prefix.relation(edited)} SEMI JOIN {T.CACHE_QUEUE}
               USING (request_id)
               EXCEPT SELECT {columns} FROM messages SEMI JOIN {T.CACHE_QUEUE} USING (request_id))
              UNION ALL
              (SELECT {columns} FROM messages SEMI JOIN {T.CACHE_QUEUE} USING (request_id)
               EXCEPT SELECT {columns} FROM {prefix.relation(edited)} SEMI JOIN {T.CACHE_QUEUE}
               USING (request_id)))""",
    )
    return bool(differ)


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


def _create(con: Any, name: str, schema: pa.Schema) -> None:
    con.register("_cache_arrow", schema.empty_table())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _cache_arrow")
    con.unregister("_cache_arrow")


def _append(con: Any, name: str, schema: pa.Schema, part: pa.Table) -> None:
    con.register("_cache_arrow", part.cast(schema))
    con.execute(f"INSERT INTO {name} SELECT * FROM _cache_arrow")
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


def costed(options: str) -> str:
    """Per request and option: the cost of the request billed with that option's cache counts."""
    cols = ", ".join(
        f"r.{c}"
        if c not in ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")
        else f"o.{c}"
        for c in STATE_COLUMNS
    )
    return f"""SELECT o.option, t.template, {cols}
               FROM {options} o JOIN {T.CACHE_ROWS} r USING (request_id)
               JOIN {T.CACHE_TEMPLATES} t USING (request_id)"""


def choose(
    ctx: LeverContext,
    replayed: ReplayTables,
    caches: dict[str, ModelCache],
    policy: CachingPolicy,
    table: str = T.CACHE_CHOICE,
) -> dict[tuple[str, str], str]:
    """The option kept per (model, template), also written to `table`: the first listed unless
    another is cheaper by the policy's margin."""
    rows = ctx.con.execute(
        f"""SELECT c.model_key, c.template, c.option, sum({cost_sql("c", "p")})
            FROM ({costed(replayed.options)}) c JOIN {T.CACHE_PRICES} p USING (model_key)
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


def final(con: Any, state: str, out: str, options: str) -> None:
    """`_cache_sim` (the replay under the chosen options) and the lever's output state."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {T.CACHE_SIM} AS {chosen(options)}")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
            SELECT {with_sim("s", "f")} FROM {state} s
            LEFT JOIN {T.CACHE_SIM} f USING (request_id)"""
    )


def chosen(options: str) -> str:
    """The rows of an options table under the option chosen for their (model, template)."""
    return f"""SELECT o.* FROM {options} o JOIN {T.CACHE_ROWS} r USING (request_id)
               JOIN {T.CACHE_TEMPLATES} t USING (request_id)
               JOIN {T.CACHE_CHOICE} c ON c.model_key = r.model_key AND c.template = t.template
                                   AND c.option = o.option"""


def with_sim(state: str, sim: str) -> str:
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


def cost_of(con: Any, state: str) -> Decimal:
    total = scalar(
        con,
        f"SELECT sum({cost_sql('s', 'p')}) "
        f"FROM {state} s JOIN {T.CACHE_PRICES} p USING (model_key)",
    )
    return Decimal(total or 0)
