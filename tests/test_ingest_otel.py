"""OpenTelemetry GenAI spans (OTLP JSON): token conventions, texts, skipped spans, quarantine,
cost, idempotent re-ingest. Fixtures: tests/fixtures/otel, written from the OTLP JSON encoding
and the GenAI semantic conventions."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from source_rows import baseline_costs, rows_by_id

from advisor import api
from advisor.ingest import ingest

FIXTURES = Path(__file__).parent / "fixtures" / "otel"


def test_spans_normalise_to_canonical_tokens(con) -> None:
    report = ingest(con, [str(FIXTURES)])
    assert [(Path(f.path).name, f.format) for f in report.files] == [
        ("export.otlp.json", "otel_genai"),
        ("traces.otlp.jsonl", "otel_genai"),
    ]
    rows = rows_by_id(con)
    # the HTTP span and the agent span (whose usage sums its model calls) are not requests
    assert sorted(rows) == ["chatcmpl-A", "chatcmpl-G", "msg_B", "msg_E"]
    tokens = {
        k: (r["input_tokens"], r["cache_read_tokens"], r["cache_write_tokens"], r["output_tokens"])
        for k, r in rows.items()
    }
    # input_tokens includes cache reads and writes (semconv), kept as the total
    assert tokens["chatcmpl-A"] == (2000, 1536, 0, 300)
    assert tokens["msg_B"] == (5000, 3000, 1200, 400)
    # an input below read + creation is Anthropic's own count (cache on top): summed
    assert tokens["msg_E"] == (3600, 3000, 500, 50)
    assert tokens["chatcmpl-G"] == (1000, 0, 0, 200)
    assert rows["chatcmpl-G"]["reasoning_tokens"] == 50
    a = rows["chatcmpl-A"]
    assert (a["provider"], a["model"], a["response_model"]) == (
        "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")  # fmt: skip
    assert (a["user_id"], a["session_id"], a["feature"]) == ("u1", "conv-1", "support-bot")
    assert (a["max_tokens"], a["finish_reason"], a["latency_ms"]) == (512, "stop", 850.0)
    assert str(a["ts"]) == "2025-12-04 00:00:00"
    assert a["source_format"] == "otel_genai"
    # the older gen_ai.system attribute names the provider
    assert rows["msg_E"]["provider"] == "anthropic"
    # the pretty-printed document: the span's line is where its spanId is
    assert rows["chatcmpl-G"]["source_line"] > 1


def test_prompt_and_completion_texts_from_attributes_and_events(con) -> None:
    ingest(con, [str(FIXTURES / "traces.otlp.jsonl")])
    texts = con.execute(
        """SELECT m.request_id, m.role, t.text FROM messages m JOIN texts t USING (text_hash)
           ORDER BY m.request_id, m.position"""
    ).fetchall()
    assert texts == [
        ("chatcmpl-A", "system", "You are a support agent."),
        ("chatcmpl-A", "user", "Where is my order?"),
        ("msg_E", "user", "Summarise the ticket."),
    ]
    responses = dict(
        con.execute(
            """SELECT r.request_id, t.text FROM requests r
               JOIN texts t ON t.text_hash = r.response_hash"""
        ).fetchall()
    )
    assert responses == {"chatcmpl-A": "It ships today.", "msg_E": "Refund requested."}


def test_bad_attribute_is_quarantined_under_its_own_name(con) -> None:
    report = ingest(con, [str(FIXTURES / "traces.otlp.jsonl")])
    assert (report.totals.rows, report.totals.ingested, report.totals.quarantined) == (4, 3, 1)
    row = con.execute("SELECT source_line, field, reason, excerpt FROM quarantine").fetchone()
    assert row[:3] == (
        2,
        "gen_ai.usage.input_tokens",
        'expected a non-negative integer, got the string "lots"',
    )
    assert '"spanId":"f000000000000006"' in row[3]  # the span, not the envelope built from it


def test_reingest_adds_nothing(con) -> None:
    first = ingest(con, [str(FIXTURES)])
    again = ingest(con, [str(FIXTURES)])
    assert first.totals.ingested == 4
    assert (again.totals.ingested, again.totals.quarantined) == (0, 0)
    assert again.totals.duplicates == again.totals.rows == 5
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (1,)


def test_jsonl_export_line_that_is_not_a_trace_export(con, tmp_path: Path) -> None:
    path = tmp_path / "t.otlp.jsonl"
    lines = (FIXTURES / "traces.otlp.jsonl").read_text().splitlines()
    path.write_text(lines[0] + '\n{"resourceLogs": []}\n{"resourceSpans": [\n')
    report = ingest(con, [str(path)])
    assert (report.totals.ingested, report.totals.quarantined) == (2, 2)
    reasons = con.execute("SELECT source_line, reason FROM quarantine ORDER BY 1").fetchall()
    assert reasons == [
        (2, "not an OTLP trace export"),
        (3, "invalid JSON (truncated or malformed line)"),
    ]


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("otel") / "out"
    return api.analyze([str(FIXTURES)], out_dir=out, write_report=False)


def test_costs_match_hand_computed(analysis) -> None:
    costs = baseline_costs(analysis)
    # per 1M tokens. gpt-4o-mini: 464 uncached x 0.15 + 1536 cached x 0.075 + 300 out x 0.60
    assert costs["chatcmpl-A"] == Decimal("0.0000696") + Decimal("0.0001152") + Decimal("0.00018")
    # claude-sonnet-4-5: 800 x 3 + 3000 read x 0.30 + 1200 5-min writes x 3.75 + 400 out x 15
    assert costs["msg_B"] == Decimal("0.0024") + Decimal("0.0009") + Decimal("0.0045") + Decimal(
        "0.006"
    )
    # 100 x 3 + 3000 x 0.30 + 500 x 3.75 + 50 x 15
    assert costs["msg_E"] == Decimal("0.0003") + Decimal("0.0009") + Decimal("0.001875") + Decimal(
        "0.00075"
    )
    # gpt-4o: 1000 x 2.50 + 200 x 10 (reasoning inside the output)
    assert costs["chatcmpl-G"] == Decimal("0.0025") + Decimal("0.002")


@pytest.mark.parametrize(
    ("attrs", "usage"),
    [
        # the older names, OpenAI's shape: cached reads inside the input
        (
            {"gen_ai.usage.prompt_tokens": 900, "gen_ai.usage.completion_tokens": 9},
            {"prompt_tokens": 900, "completion_tokens": 9},
        ),
        # reads alone above the input: Anthropic's count copied, cache on top
        (
            {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
             "gen_ai.usage.cache_read.input_tokens": 500},
            {"prompt_tokens": 510, "completion_tokens": 5,
             "prompt_tokens_details": {"cached_tokens": 500}},
        ),
        # writes: Anthropic's shape, the uncached remainder as its input_tokens
        (
            {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 5,
             "gen_ai.usage.cache_creation.input_tokens": 600},
            {"input_tokens": 400, "cache_read_input_tokens": 0,
             "cache_creation_input_tokens": 600, "output_tokens": 5},
        ),
    ],
)  # fmt: skip
def test_usage_conventions(attrs: dict, usage: dict) -> None:
    from advisor.ingest import otel

    assert otel._usage(attrs)[0] == usage
