"""The caching lever: replay the traffic under each provider's prompt-caching rules and keep, per
template, the cheapest of the provider's options (`rules/caching.yaml` sets the margin)."""

from __future__ import annotations

from typing import ClassVar

import duckdb
import pyarrow as pa

from advisor.levers import tables as T
from advisor.levers.base import Findings, LeverContext, Replayed, SavingRange, State
from advisor.levers.caching import prefix
from advisor.levers.caching.details import build_details, prefix_order_savings
from advisor.levers.caching.models import CachingDetails, CachingRisk
from advisor.levers.caching.policy import load_policy
from advisor.levers.caching.prefix_order import (
    PrefixOrderPolicy,
    VariableSpan,
    find_variable_spans,
    substitute,
)
from advisor.levers.caching.replay import (
    ModelCache,
    ReplayTables,
    choose,
    final,
    model_cache,
    replay,
)
from advisor.levers.caching.token_counts import TokenCounts
from advisor.pricing import register_prices
from advisor.store import scalar


class CachingLever:
    """A fresh instance per simulation: the standalone replay's prefix models, token caches,
    calibrations and prefix-order findings serve the chained replay where its requests and
    prompts are the same (the store's prompts do not change in between)."""

    id: ClassVar[str] = "caching"
    title: ClassVar[str] = "Prompt caching"

    def prepare(self, ctx: LeverContext) -> None:
        self.policy = load_policy(ctx.rules_dir)
        register_prices(ctx.con, ctx.prices, T.CACHE_PRICES)
        self.models: dict[tuple, tuple[prefix.PrefixModel, pa.Table]] = {}
        self.counts: dict[str, TokenCounts] = {}
        self.replays = 0
        self.tokenizers: dict[str, prefix.Tokenizer] = {}
        self.caches: dict[str, ModelCache] = {}
        self.spans: list[VariableSpan] = []
        self.what_if_sql = ("messages", "texts")
        self.main: ReplayTables | None = None

    def replay(self, ctx: LeverContext, state: State, out: str) -> Replayed:
        con, policy = ctx.con, self.policy
        self.replays += 1
        keys = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT model_key FROM {state.table} WHERE model_key IS NOT NULL "
                "ORDER BY 1"
            ).fetchall()
        ]
        caches = {}
        for key in keys:
            if key in ctx.prices.models:
                cache = model_cache(ctx.prices, key, policy, ctx.options.cache_ttl_seconds)
                if cache is not None:
                    caches[key] = cache
        _rows(ctx, state, caches, policy.per_account)
        if self.replays == 1 or not _same_replayed(con):
            # the findings depend on the replayed requests alone (the store's prompts): the
            # chained run keeps the standalone run's where it replays the same requests
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE {T.CACHE_REPLAYED} AS
                    SELECT request_id FROM {T.CACHE_ROWS} WHERE replay"""
            )
            self.spans = find_variable_spans(
                con, T.CACHE_REPLAYED, PrefixOrderPolicy(**policy.prefix_order)
            )
            self.what_if_sql = substitute(con, self.spans)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {T.CACHE_TEMPLATES} AS
               SELECT r.request_id, coalesce(r.feature, '(none)') || '|'
                      || coalesce(s.new_hash, r.system_hash, '-') AS template,
                      coalesce(s.new_hash, r.system_hash) AS template_text
               FROM {T.CACHE_ROWS} r
               LEFT JOIN {T.CACHE_SUBST} s ON s.text_hash = r.system_hash"""
        )
        main = replay(
            ctx,
            T.CACHE_ROWS,
            caches,
            messages_sql=state.messages,
            texts_sql=state.texts,
            tokenizers=self.tokenizers,
            models=self.models,
            counts=self.counts,
            ranges=self.replays == 1,  # the standalone replay: describe reports its range
        )
        self.counts.update(main.counts)
        if self.replays > 1:  # no replay follows the chained one: let its inputs go
            self.models.clear()
            self.tokenizers.clear()
        self.caches, self.main = caches, main
        choose(ctx, main, caches, policy)
        final(con, state.table, out, main.options)
        affected = scalar(
            con,
            f"""SELECT count(*) FROM {state.table} s JOIN {out} o USING (request_id)
                WHERE coalesce(s.cache_read_tokens, 0) <> coalesce(o.cache_read_tokens, 0)
                   OR coalesce(s.cache_write_tokens, 0) <> coalesce(o.cache_write_tokens, 0)""",
        )
        # caching bills the same prompt: a later lever reads the same messages and texts
        return Replayed(State(out, state.messages, state.texts), int(affected or 0))

    def describe(
        self, ctx: LeverContext, base: State, alone: Replayed
    ) -> Findings[CachingDetails, CachingRisk]:
        """From the working tables the standalone replay left."""
        assert self.main is not None, "describe() follows the standalone replay"
        con, main = ctx.con, self.main
        saving_by_span = (
            prefix_order_savings(
                ctx, self.caches, self.policy, self.tokenizers, self.what_if_sql, main.counts
            )
            if self.spans
            else {}
        )
        details, recommendations = build_details(
            ctx, base.table, alone.state.table, main, self.caches, self.policy, self.spans,
            saving_by_span,
        )  # fmt: skip
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {T.CACHE_DECISIONS} AS
                SELECT s.request_id, f.cache_read_tokens AS cache_read_tokens_sim
                FROM {base.table} s LEFT JOIN {T.CACHE_SIM} f USING (request_id)"""
        )
        risk = CachingRisk(
            quality="none: caching never changes a response",
            not_replayable_requests=details.replay.not_replayable_requests,
        )
        return Findings(
            details, risk, recommendations, T.CACHE_DECISIONS, _token_count_range(details)
        )


def _token_count_range(details: CachingDetails) -> SavingRange | None:
    """Where the lever counted tokens itself and the counts are not exact, the saving at the low
    and high calibration scale (details.token_counts); exact counts leave no range."""
    counts = details.token_counts
    if counts.counts == "exact":
        return None
    return SavingRange(
        low=counts.low_saving,
        high=counts.high_saving,
        assumption=f"prompt token counts {counts.counts} (low to high calibration scale)",
    )


def _same_replayed(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether _cache_rows replays exactly the requests the standalone run replayed."""
    before, now, both = con.execute(
        f"""SELECT (SELECT count(*) FROM {T.CACHE_REPLAYED}),
                   (SELECT count(*) FROM {T.CACHE_ROWS} WHERE replay),
                   (SELECT count(*) FROM {T.CACHE_ROWS} r SEMI JOIN {T.CACHE_REPLAYED} USING
                    (request_id) WHERE r.replay)"""
    ).fetchone()  # type: ignore[misc]
    return before == now == both


def _rows(
    ctx: LeverContext, state: State, caches: dict[str, ModelCache], per_account: bool
) -> None:
    """_cache_rows: the state joined to request metadata, each row with why it can(not) replay.

    A stream is one cache: a model at one provider (Azure and OpenAI do not share), and one
    account when the policy says accounts are separate provider organisations."""
    con = ctx.con
    account = "coalesce(r.account_id, '')" if per_account else "''"
    # the logged provider tells Azure from OpenAI; a model switched by an earlier lever is served
    # by its own provider
    provider = "coalesce(CASE WHEN s.model_key = r.model_key THEN r.provider END, p.provider, '')"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {T.CACHE_MODELS} (model_key VARCHAR)")
    if caches:
        con.executemany(f"INSERT INTO {T.CACHE_MODELS} VALUES (?)", [(k,) for k in caches])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {T.CACHE_ROWS} AS
            WITH gaps AS (  -- requests with a message whose text the store lacks
              SELECT DISTINCT m.request_id FROM {state.messages} m
              ANTI JOIN (SELECT text_hash FROM {state.texts}) t USING (text_hash)
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
            FROM {state.table} s JOIN requests r USING (request_id)
            LEFT JOIN {T.CACHE_PRICES} p ON p.model_key = s.model_key
            LEFT JOIN {T.CACHE_MODELS} c ON c.model_key = s.model_key
            LEFT JOIN gaps g ON g.request_id = s.request_id"""
    )
