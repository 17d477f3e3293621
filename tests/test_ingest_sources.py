"""Gateway and observability exports (LiteLLM, Langfuse, Helicone): detection, token accounting
normalised to advisor's (input_tokens holds cache reads and writes), logged costs, provenance.

The fixtures under fixtures/exports/ are hand-written from each tool's documented schema; each
expected row below is computed by hand from the tool's own token convention.
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import openai_line

from advisor import api, store
from advisor.ingest import detect_format, ingest

EXPORTS = Path(__file__).parent / "fixtures" / "exports"

# request id -> (source_format, input, cache read, cache write, output, reasoning, logged cost)
EXPECTED = {
    # LiteLLM: prompt_tokens already holds the cached part (usage_object breaks it out)
    "ls-openai-cached": ("litellm_spendlogs", 1000, 400, 0, 200, None, "0.00024"),
    "ls-claude-cache": ("litellm_spendlogs", 3000, 2000, 500, 100, None, "0.00146"),
    "ls-failed": ("litellm_spendlogs", 0, 0, 0, 0, None, "0"),
    "slp-1": ("litellm_payload", 1500, 1024, 0, 150, 0, "0.0042"),
    "slp-2": ("litellm_payload", 4000, 3000, 800, 200, None, "0.00535"),
    # Langfuse: usage types add up; input 600 + input_cached_tokens 400, output 50 + 20
    "lf-openai": ("langfuse", 1000, 400, 0, 70, 20, "0.000192"),
    # input 100 + cache_read_input_tokens 2000 + cache_creation_input_tokens 500
    "lf-claude": ("langfuse", 2600, 2000, 500, 80, None, "0.00096"),
    "lf-csv-1": ("langfuse", 1000, 100, 0, 5, None, "0.00015"),
    # Helicone: prompt_tokens are the fresh ones, cache reads and writes come on top
    "hq-openai": ("helicone", 1000, 400, 0, 50, None, "0.000162"),
    "hq-claude": ("helicone", 2600, 2000, 500, 80, None, "0.00096"),
    "hr-3": ("helicone", 12, 0, 0, 0, None, "0"),
}


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("litellm_spendlogs.csv", "litellm_spendlogs"),
        ("litellm_payload.jsonl", "litellm_payload"),
        ("langfuse_observations.json", "langfuse"),
        ("langfuse_observations.csv", "langfuse"),
        ("helicone_export.jsonl", "helicone"),
        ("helicone_export.csv", "helicone"),
    ],
)
def test_each_export_is_detected_from_its_keys(name: str, fmt: str) -> None:
    assert detect_format(EXPORTS / name) == fmt


def test_a_native_log_is_still_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    path.write_text(json.dumps(openai_line("n1")) + "\n")
    assert detect_format(path) == "jsonl"


def test_tokens_and_logged_costs_are_normalised() -> None:
    con = store.connect(None)
    report = ingest(con, [str(EXPORTS)])
    assert {Path(f.path).name: f.format for f in report.files}["litellm_spendlogs.csv"] == (
        "litellm_spendlogs"
    )
    rows = {
        r[0]: (r[1], r[2], r[3], r[4], r[5], r[6], r[7])
        for r in con.execute(
            """SELECT request_id, source_format, input_tokens, cache_read_tokens,
                      cache_write_tokens, output_tokens, reasoning_tokens, logged_cost
               FROM requests"""
        ).fetchall()
    }
    assert rows == {k: (*v[:6], Decimal(v[6])) for k, v in EXPECTED.items()}


def test_fields_times_and_texts_are_read() -> None:
    con = store.connect(None)
    ingest(con, [str(EXPORTS)])
    got = {
        r[0]: r[1:]
        for r in con.execute(
            """SELECT request_id, latency_ms, ttft_ms, user_id, feature, session_id, status,
                      provider, message_count
               FROM requests WHERE request_id IN ('ls-openai-cached', 'lf-openai', 'hq-openai',
                                                  'lf-claude', 'ls-failed', 'hr-3')"""
        ).fetchall()
    }
    assert got["ls-openai-cached"] == (1500.0, 400.0, "cust-9", "ticket-triage", None, "ok",
                                       "openai", None)  # fmt: skip
    assert got["lf-openai"] == (3000.0, 800.0, "cust-3", "faq", "sess-3", "ok", None, 1)
    assert got["hq-openai"] == (1200.0, 350.0, "cust-5", "checkout-help", "hs-1", "ok",
                                "openai", 1)  # fmt: skip
    assert [got[k][5] for k in ("lf-claude", "ls-failed", "hr-3")] == ["error"] * 3
    system = con.execute(
        """SELECT t.text FROM messages m JOIN texts t USING (text_hash)
           WHERE m.request_id = 'hq-claude' AND m.role = 'system'"""
    ).fetchall()
    assert system == [("You are a lawyer.",)]


def test_spans_are_left_out_and_bad_rows_quarantined_with_file_line_and_field() -> None:
    con = store.connect(None)
    ingest(con, [str(EXPORTS)])
    assert store.scalar(con, "SELECT count(*) FROM requests WHERE request_id = 'lf-span'") == 0
    bad = con.execute("SELECT source_file, source_line, field, reason FROM quarantine").fetchall()
    assert [(Path(f).name, line, field) for f, line, field, _ in bad] == [
        ("litellm_spendlogs.csv", 5, "prompt_tokens")
    ]


def test_reingesting_adds_nothing() -> None:
    con = store.connect(None)
    ingest(con, [str(EXPORTS)])
    again = ingest(con, [str(EXPORTS)]).totals
    assert (again.ingested, again.quarantined) == (0, 0)
    assert store.scalar(con, "SELECT count(*) FROM requests") == len(EXPECTED)


def test_format_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "export.log.jsonl"  # a name that says nothing
    shutil.copy(EXPORTS / "helicone_export.jsonl", path)
    con = store.connect(None)
    report = ingest(con, [str(path)], fmt="helicone")
    assert [f.format for f in report.files] == ["helicone"]
    assert report.totals.ingested == 2


def test_a_mixed_folder_analyses_in_one_call_keeping_provenance(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(EXPORTS, logs)
    (logs / "native.jsonl").write_text(json.dumps(openai_line("native-1")) + "\n")
    result = api.analyze([str(logs)], out_dir=tmp_path / "out", write_report=False)
    con = store.connect(result.out_dir / "advisor.duckdb", read_only=True)
    formats = dict(
        con.execute("SELECT source_format, count(*) FROM requests GROUP BY 1").fetchall()
    )
    assert formats == {"litellm_spendlogs": 3, "litellm_payload": 2, "langfuse": 3,
                       "helicone": 3, "jsonl": 1}  # fmt: skip
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["coverage"]["requests"] == len(EXPECTED) + 1
    rec = analysis["baseline"]["reconciliation"]
    assert rec["rows_with_logged_cost"] == len(EXPECTED)


def test_a_token_only_litellm_export_analyses_on_counts(tmp_path: Path) -> None:
    result = api.analyze(
        [str(EXPORTS / "litellm_spendlogs.csv")], out_dir=tmp_path / "out", write_report=False
    )
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["coverage"]["token_source"]["logged"] == 3
    # hand-computed at the curated prices: the logged spend matches exactly
    by_model = {r["model_key"]: r for r in analysis["baseline"]["reconciliation"]["by_model"]}
    assert by_model["claude-3-5-haiku"]["computed"] == "0.00146"
    assert by_model["gpt-4o-mini"]["computed"] == "0.00024"
    assert analysis["baseline"]["reconciliation"]["gap"] == "0"
    con = store.connect(result.out_dir / "advisor.duckdb", read_only=True)
    assert store.scalar(con, "SELECT count(*) FROM messages") == 0  # no prompt text at all
