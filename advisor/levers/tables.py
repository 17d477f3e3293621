"""The working tables the levers and `simulate` leave in the store, declared in one place.

Every temporary table a lever creates is a constant here with its purpose; `drop_working_tables`
drops exactly a lever's declared tables and `drop_all` every one of them, so nothing is found by
name pattern. Tables a simulation keeps for the exports (`sim_final`, `lever_<id>`,
`tiering_decisions`) are products, not working tables, and are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class Table:
    name: str
    purpose: str
    view: bool = False


def _declare(*tables: Table) -> dict[str, Table]:
    return {t.name: t for t in tables}


# tiering
TIER_PRICES = "_tier_prices"
TIER_TARGETS = "_tier_targets"
TIER_LENGTHS = "_tier_len"
TIER_CANDIDATES = "_tier_cand"
TIER_STATIC = "_tier_static"
TIER_HELD = "_tier_held"

# caching
CACHE_PRICES = "_cache_prices"
CACHE_MODELS = "_cache_models"
CACHE_ROWS = "_cache_rows"
CACHE_TEMPLATES = "_cache_tpl"
CACHE_KEYS = "_cache_keys"
CACHE_QUEUE = "_cache_q"
CACHE_OPTIONS = "_cache_opts"
CACHE_OPTIONS_LOW = "_cache_opts_low"
CACHE_OPTIONS_HIGH = "_cache_opts_high"
CACHE_INFO = "_cache_info"
CACHE_CHOICE = "_cache_choice"
CACHE_SIM = "_cache_sim"
CACHE_SUBST = "_cache_subst"
CACHE_SUBST_TEXTS = "_cache_subst_texts"
CACHE_REPLAYED = "_cache_replayed"
CACHE_WHAT_IF_REQUESTS = "_cache_cf_req"
CACHE_WHAT_IF_OPTIONS = "_cache_opts_cf"
CACHE_WHAT_IF_INFO = "_cache_info_cf"
CACHE_WHAT_IF_CHOICE = "_cache_cf_choice"
CACHE_VIEW = "_cache_view"
CACHE_DECISIONS = "_cache_decisions"

# trimming
TRIM_ENCODINGS = "_trim_enc"
TRIM_TEXT_SAVINGS = "_trim_text"
TRIM_DUP_MESSAGES = "_trim_dup"
TRIM_DUP_TOKENS = "_trim_dup_tokens"
TRIM_PER_REQUEST = "_trim_req"
TRIM_UNUSED_TOOLS = "_trim_tools"
TRIM_DECISIONS = "_trim_decisions"
TRIM_MESSAGES = "_trim_messages"
TRIM_NEW_TEXTS = "_trim_new_texts"
TRIM_TEXTS = "_trim_texts_all"
# output caps
OUTPUT_CAPS_BASE = "_oc_base"
OUTPUT_CAPS_GROUPS = "_oc_groups"
OUTPUT_CAPS_RUNAWAY = "_oc_runaway"
OUTPUT_CAPS_BUDGETS = "_oc_budgets"
OUTPUT_CAPS_CAPS = "_oc_caps"
OUTPUT_CAPS_CUTS = "_oc_cuts"
OUTPUT_CAPS_RATES = "_oc_rates"
OUTPUT_CAPS_DECISIONS = "_oc_decisions"
# batching
BATCH_FEATURES = "_batch_features"
BATCH_ELIGIBLE = "_batch_eligible"
BATCH_LENIENT = "_batch_lenient"
BATCH_DECISIONS = "_batch_decisions"

# streaming advice (not a lever: run once after the levers)
STREAM_FEATURES = "_stream_features"

# simulate
STATE_BASE = "state_base"

WORKING: dict[str, dict[str, Table]] = {
    "tiering": _declare(
        Table(TIER_PRICES, "the price table, for re-pricing routed requests"),
        Table(TIER_TARGETS, "(model_key, difficulty) -> the cheaper tier it routes to"),
        Table(TIER_LENGTHS, "typical output length per (template, model)"),
        Table(TIER_CANDIDATES, "per request: class, target, cost before and after routing"),
        Table(TIER_STATIC, "features and templates a whole-feature/template route rule covers"),
        Table(TIER_HELD, "features and templates kept off routing by their measured quality"),
    ),
    "trimming": _declare(
        Table(TRIM_ENCODINGS, "model_key -> tiktoken encoding and how exact its counts are"),
        Table(TRIM_TEXT_SAVINGS, "per text and encoding: trimmed text hash, tokens saved by kind"),
        Table(TRIM_DUP_MESSAGES, "later copies of a message repeated within one request"),
        Table(TRIM_DUP_TOKENS, "token counts of the repeated messages' texts per encoding"),
        Table(TRIM_PER_REQUEST, "per request: tokens trimmed (total, in the prefix, by kind)"),
        Table(TRIM_UNUSED_TOOLS, "tool definitions of features that never call a tool"),
        Table(TRIM_DECISIONS, "per request: trimmed_tokens for `export decisions`"),
    ),
    "caching": _declare(
        Table(CACHE_PRICES, "the price table"),
        Table(CACHE_MODELS, "model keys that can cache"),
        Table(CACHE_ROWS, "the state joined to request metadata, with why it can(not) replay"),
        Table(CACHE_TEMPLATES, "per request: its template (feature + system prompt)"),
        Table(CACHE_KEYS, "the model keys of one cache group being replayed"),
        Table(CACHE_QUEUE, "the requests of one cache group in stream and time order"),
        Table(CACHE_OPTIONS, "per request and option: replayed cache counts"),
        Table(CACHE_OPTIONS_LOW, "the same at each model's low calibration scale"),
        Table(CACHE_OPTIONS_HIGH, "the same at each model's high calibration scale"),
        Table(CACHE_INFO, "per request: shared prefix tokens and cache eligibility"),
        Table(CACHE_CHOICE, "the option kept per (model, template)"),
        Table(CACHE_SIM, "the replay under the chosen options"),
        Table(CACHE_SUBST, "variable spans found in prompts and their moved-to-the-end texts"),
        Table(CACHE_SUBST_TEXTS, "the texts of the what-if prompts"),
        Table(CACHE_REPLAYED, "the requests the standalone replay replayed (spans found on)"),
        Table(CACHE_WHAT_IF_REQUESTS, "requests in streams a variable span touches"),
        Table(CACHE_WHAT_IF_OPTIONS, "the what-if replay's cache counts per option"),
        Table(CACHE_WHAT_IF_INFO, "the what-if replay's shared prefix tokens"),
        Table(CACHE_WHAT_IF_CHOICE, "the option kept per (model, template) in the what-if"),
        Table(CACHE_VIEW, "per request: figures the details aggregate"),
        Table(CACHE_DECISIONS, "per request: cache_read_tokens_sim for `export decisions`"),
    ),
    "output_caps": _declare(
        Table(OUTPUT_CAPS_BASE, "the requests it reads: visible output, reasoning, template"),
        Table(OUTPUT_CAPS_GROUPS, "per (feature, template): caps at three percentiles"),
        Table(OUTPUT_CAPS_RUNAWAY, "responses the runaway rule flags"),
        Table(OUTPUT_CAPS_BUDGETS, "per (feature, model): reasoning budgets, whether applied"),
        Table(OUTPUT_CAPS_CAPS, "per (feature, template) with a cap: its caps, whether applied"),
        Table(OUTPUT_CAPS_CUTS, "per request: the tokens each cap and budget would cut"),
        Table(OUTPUT_CAPS_RATES, "per request cut: its output price per token"),
        Table(OUTPUT_CAPS_DECISIONS, "per request: output_cap for `export decisions`"),
    ),
    "batching": _declare(
        Table(BATCH_FEATURES, "per feature: its facts, the rules it matches, its eligibility"),
        Table(BATCH_ELIGIBLE, "per request of an eligible feature that does not stream"),
        Table(BATCH_LENIENT, "the replay under lenient eligibility (the range's upper end)"),
        Table(BATCH_DECISIONS, "per request: batch_eligible for `export decisions`"),
    ),
    "streaming": _declare(
        Table(STREAM_FEATURES, "per feature: who waits, streaming, latency, speed premium"),
    ),
}


# The prompt a lever's output state names (State.messages/texts) when the lever edits prompts: a
# later lever reads it, so it lives until the simulation ends (drop_all), like the states.
PROMPTS: dict[str, dict[str, Table]] = {
    "trimming": _declare(
        Table(TRIM_MESSAGES, "the trimmed prompt: messages pointing at trimmed texts"),
        Table(TRIM_NEW_TEXTS, "the trimmed texts, by their own hash"),
        Table(TRIM_TEXTS, "view: the store's texts and the trimmed ones", view=True),
    ),
}


def state_table(lever_id: str, run: str) -> str:
    """The state a lever's replay writes: run is 'alone' (on the baseline) or 'chain'."""
    return f"state_{lever_id}_{run}"


def drop_working_tables(con: duckdb.DuckDBPyConnection, lever_id: str) -> None:
    """Drop the working tables a lever declares (its states stay for `simulate` to drop)."""
    _drop(con, WORKING.get(lever_id, {}))


def _drop(con: duckdb.DuckDBPyConnection, tables: dict[str, Table]) -> None:
    for table in tables.values():
        con.execute(f"DROP {'VIEW' if table.view else 'TABLE'} IF EXISTS {table.name}")


def drop_all(con: duckdb.DuckDBPyConnection, lever_ids: tuple[str, ...]) -> None:
    """Drop every declared working table and the simulation's states for `lever_ids`."""
    for lever_id in WORKING:
        drop_working_tables(con, lever_id)
    for tables in PROMPTS.values():
        _drop(con, tables)
    for lever_id in lever_ids:
        for run in ("alone", "chain"):
            con.execute(f"DROP TABLE IF EXISTS {state_table(lever_id, run)}")
    con.execute(f"DROP TABLE IF EXISTS {STATE_BASE}")
