"""The trimming lever through its contract (prepare, replay, describe) on a tiny store: the report's
totals and rows, the tool-definition opportunity, the recommendation with its excerpts, and the
per-request decision column."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from advisor import baseline
from advisor.api import ingest, load_price_table
from advisor.levers.base import STATE_COLUMNS, LeverContext, SimOptions, State
from advisor.levers.trimming.counting import TokenDiff
from advisor.levers.trimming.lever import TrimmingLever
from advisor.pricing import register_prices
from advisor.ruleset import default_rules_dir

PRETTY = json.dumps({"invoice": "INV-1", "lines": [{"sku": "A", "qty": 2, "price": 9.5}]}, indent=4)
TOOLS = json.dumps([{"type": "function", "function": {"name": "lookup_order", "parameters": {}}}])


@pytest.fixture()
def ctx() -> LeverContext:
    con = duckdb.connect()
    con.execute("CREATE TABLE texts (text_hash VARCHAR, text VARCHAR)")
    con.execute(
        """CREATE TABLE messages (
             request_id VARCHAR, position INTEGER, role VARCHAR, text_hash VARCHAR)"""
    )
    con.execute(
        """CREATE TABLE requests (request_id VARCHAR, feature VARCHAR, system_hash VARCHAR,
                                  finish_reason VARCHAR, message_count INTEGER,
                                  model_key VARCHAR, input_tokens BIGINT,
                                  cache_read_tokens BIGINT, cache_write_tokens BIGINT,
                                  cache_write_1h_tokens BIGINT, output_tokens BIGINT,
                                  service_tier VARCHAR)"""
    )
    texts = {"sys": "You extract invoices.", "json": f"Invoice:\n{PRETTY}", "tools": TOOLS,
             "chat": "You help customers.", "q": "Where is my order?"}  # fmt: skip
    con.executemany("INSERT INTO texts VALUES (?, ?)", list(texts.items()))
    rows = []
    for i in range(30):
        rows += [(f"x{i}", 0, "system", "sys"), (f"x{i}", 1, "user", "json")]
        rows += [(f"c{i}", 0, "tools", "tools"), (f"c{i}", 1, "system", "chat")]
        rows += [(f"c{i}", 2, "user", "q")]
    con.executemany("INSERT INTO messages VALUES (?, ?, ?, ?)", rows)
    reqs = [(f"x{i}", "invoice-extract", "sys", "stop", 400) for i in range(30)]
    reqs += [(f"c{i}", "support-chat", "chat", "stop", 300) for i in range(30)]
    reqs += [("blind", "invoice-extract", None, "stop", 100)]  # no text logged
    con.executemany(
        "INSERT INTO requests VALUES (?, ?, ?, ?, 1, 'gpt-4o', ?, 0, 0, 0, 20, 'default')", reqs
    )
    prices = load_price_table(None, ())
    register_prices(con, prices)
    cols = ("request_id, model_key, input_tokens, cache_read_tokens, cache_write_tokens, "
            "cache_write_1h_tokens, output_tokens, service_tier")  # fmt: skip
    con.execute(f"CREATE TABLE state_base AS SELECT {cols} FROM requests")
    return LeverContext(con, prices, default_rules_dir(), SimOptions())


def test_describe_reports_what_the_replay_trimmed(ctx: LeverContext) -> None:
    lever = TrimmingLever()
    lever.prepare(ctx)
    base = State("state_base")
    alone = lever.replay(ctx, base, "state_trim")
    found = lever.describe(ctx, base, alone)
    saved = TokenDiff("o200k_base").saved([(f"Invoice:\n{PRETTY}", "Invoice:\n" + json.dumps(
        json.loads(PRETTY), separators=(",", ":")))])[0]  # fmt: skip
    totals = found.details.totals
    assert alone.affected_requests == totals.affected_requests == 30
    assert totals.trimmed_tokens == totals.by_kind.pretty_json == 30 * saved
    assert totals.token_source == "exact"
    [row] = found.details.rows
    assert (row.feature, row.template_id, row.kinds) == ("invoice-extract", "sys", ["pretty_json"])
    assert row.saving is not None and row.saving > 0
    [tools] = found.details.unused_tools
    assert (tools.feature, tools.requests) == ("support-chat", 30)
    assert tools.tokens_per_request == TokenDiff("o200k_base").tokens([TOOLS])[0]
    titles = [r.title for r in found.recommendations]
    assert any(t.startswith("Send JSON minified (invoice-extract)") for t in titles)
    assert any("support-chat" in t for t in titles)
    rec = next(r for r in found.recommendations if "JSON" in r.title)
    assert rec.excerpt_before and "⏎" in rec.excerpt_before
    assert rec.excerpt_after and '{"invoice":"INV-1"' in rec.excerpt_after
    assert rec.saving == row.saving
    decisions = dict(ctx.con.execute(f"SELECT * FROM {found.per_request}").fetchall())
    assert decisions["x0"] == saved and decisions["c0"] == 0 and decisions["blind"] is None


def test_a_feature_that_calls_tools_is_not_flagged(ctx: LeverContext) -> None:
    ctx.con.execute("UPDATE requests SET finish_reason = 'tool_calls' WHERE request_id = 'c3'")
    lever = TrimmingLever()
    lever.prepare(ctx)
    base = State("state_base")
    found = lever.describe(ctx, base, lever.replay(ctx, base, "state_trim"))
    assert found.details.unused_tools == []


def test_the_chained_state_points_at_the_trimmed_prompt(ctx: LeverContext) -> None:
    lever = TrimmingLever()
    lever.prepare(ctx)
    out = lever.replay(ctx, State("state_base"), "state_trim").state
    texts = ctx.con.execute(
        f"""SELECT DISTINCT x.text FROM {out.messages} m JOIN {out.texts} x USING (text_hash)
            WHERE m.request_id LIKE 'x%' AND m.role = 'user'"""
    ).fetchall()
    assert texts == [("Invoice:\n" + json.dumps(json.loads(PRETTY), separators=(",", ":")),)]


SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"


def test_the_sample_logs_planted_bloat_is_found(tmp_path: Path, needs_tiktoken: None) -> None:
    """sample_logs/ plants a duplicated policy paragraph and pretty-printed JSON in one feature's
    prompts; the lever's saving for that feature is within 1% of the planted tokens."""
    plant = json.loads((SAMPLE / "ground_truth.json").read_text())["plants"]["trimming"]
    db = tmp_path / "s.duckdb"
    ingest([str(SAMPLE / "traffic.jsonl.gz")], db)
    con = duckdb.connect(str(db))
    prices = load_price_table(None, ())
    baseline.resolve_models(con, prices, {})
    baseline.price_requests(con, prices)
    register_prices(con, prices)
    con.execute(f"CREATE TABLE state_base AS SELECT {', '.join(STATE_COLUMNS)} FROM requests")
    ctx = LeverContext(con, prices, default_rules_dir(), SimOptions())
    lever = TrimmingLever()
    lever.prepare(ctx)
    base = State("state_base")
    found = lever.describe(ctx, base, lever.replay(ctx, base, "state_trim"))
    rows = [r for r in found.details.rows if r.feature == plant["feature"]]
    trimmed = sum(r.trimmed_tokens for r in rows)
    assert abs(trimmed - plant["waste_tokens"]) <= 0.01 * plant["waste_tokens"]
    duplicates = sum(r.by_kind.duplicates for r in rows)
    assert abs(duplicates - plant["waste_tokens_duplicate_paragraph"]) <= 0.01 * duplicates
    titles = [r.title for r in found.recommendations]
    assert any(plant["feature"] in t and "JSON" in t for t in titles)
