"""Issue 15's done-when, end to end: one folder holding a file of every format advisor reads
(its own envelope, LiteLLM spend logs and logging payloads, Langfuse, Helicone, OTel GenAI OTLP,
an OpenAI Batch input and output pair) analyses in one call. Each row keeps its provenance, each
file says how it was read and its counts add up, a second run into the same store adds nothing,
a gateway's stale logged cost shows as a reconciliation gap by model, and coverage says how many
requests each price source priced, in analysis.json, the terminal and the HTML report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import openai_line

from advisor import api, store
from advisor.ingest import FileReport

FIXTURES = Path(__file__).parent / "fixtures"
COMMUNITY = "community snapshot of 2026-12-04"

# file -> the format it must be read as
FORMATS = {
    "native.jsonl": "jsonl",
    "litellm_spendlogs.csv": "litellm_spendlogs",
    "litellm_payload.jsonl": "litellm_payload",
    "langfuse_observations.json": "langfuse",
    "langfuse_observations.csv": "langfuse",
    "helicone_export.jsonl": "helicone",
    "helicone_export.csv": "helicone",
    "helicone_stale.jsonl": "helicone",
    "export.otlp.json": "otel_genai",
    "traces.otlp.jsonl": "otel_genai",
    "batch_68f0_input.jsonl": "openai_batch",
    "batch_68f0_output.jsonl": "openai_batch",
}

# A Helicone row whose cost was worked out from Azure's price for mistral-large-latest (8 input,
# 24 output per 1M) while the request went to Mistral (0.5 / 1.5): a stale or wrong price table.
# logged:   1,000 x 8 + 100 x 24 = 10,400 per 1M = $0.0104
# computed: 1,000 x 0.5 + 100 x 1.5 = 650 per 1M = $0.00065 (the community snapshot's entry)
STALE = {
    "response_id": "hr-stale", "request_id": "hq-stale",
    "request_created_at": "2026-03-03T09:00:00.000Z", "response_status": 200,
    "provider": "MISTRAL", "model": "mistral-large-latest",
    "prompt_tokens": 1000, "completion_tokens": 100, "cost": 0.0104,
}  # fmt: skip


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logs = tmp_path_factory.mktemp("mixed") / "logs"
    logs.mkdir()
    for folder in ("exports", "otel", "openai_batch/paired"):
        for path in sorted((FIXTURES / folder).iterdir()):
            shutil.copy(path, logs / path.name)
    (logs / "native.jsonl").write_text(json.dumps(openai_line("native-1")) + "\n")
    (logs / "helicone_stale.jsonl").write_text(json.dumps(STALE) + "\n")
    assert sorted(p.name for p in logs.iterdir()) == sorted(FORMATS)
    return logs


@pytest.fixture(scope="module")
def first(mixed: Path) -> api.AnalyzeResult:
    return api.analyze([str(mixed)], out_dir=mixed.parent / "out", db=mixed.parent / "store.duckdb")


def _by_file(result: api.AnalyzeResult) -> dict[str, FileReport]:
    return {Path(f.path).name: f for f in result.ingest.files}


def test_every_file_is_read_as_its_format_and_its_counts_add_up(first: api.AnalyzeResult) -> None:
    files = _by_file(first)
    assert {name: f.format for name, f in files.items()} == FORMATS
    for name, f in files.items():
        c = f.counts
        assert c.rows == c.ingested + c.duplicates + c.quarantined, name
    totals = first.ingest.totals
    assert totals.ingested == first.analysis.coverage.requests
    assert totals.quarantined == first.analysis.coverage.quarantined_rows
    # the Batch input lines are read with their output: one that never ran is quarantined
    assert files["batch_68f0_input.jsonl"].counts.ingested == 0


def test_every_row_keeps_its_provenance(first: api.AnalyzeResult, mixed: Path) -> None:
    con = store.connect(mixed.parent / "store.duckdb", read_only=True)
    try:
        rows = con.execute(
            "SELECT source_file, source_format, count(*) FROM requests GROUP BY ALL"
        ).fetchall()
        nulls = store.scalar(con, "SELECT count(*) FROM requests WHERE source_format IS NULL")
    finally:
        con.close()
    assert nulls == 0
    ingested = {name: f.counts.ingested for name, f in _by_file(first).items()}
    for source_file, source_format, n in rows:
        name = Path(source_file).name
        assert source_format == FORMATS[name], name
        assert n == ingested[name], name
    assert {FORMATS[Path(r[0]).name] for r in rows} == set(FORMATS.values())


def test_a_second_run_into_the_same_store_adds_nothing(
    first: api.AnalyzeResult, mixed: Path
) -> None:
    db, out = mixed.parent / "store.duckdb", mixed.parent / "out2"
    env = {**os.environ, "COLUMNS": "200"}
    run = subprocess.run(
        [sys.executable, "-m", "advisor", "analyze", str(mixed), "--db", str(db), "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    for name, fmt in sorted(FORMATS.items())[:10]:  # the terminal names ten files
        assert f"read: {name}: {fmt}" in run.stdout
    again = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
    before = first.analysis.coverage
    assert again["coverage"]["requests"] == before.requests
    assert again["coverage"]["quarantined_rows"] == before.quarantined_rows
    assert again["coverage"]["duplicate_rows"] == first.ingest.totals.rows
    # ... and coverage says who priced what, on the terminal as in analysis.json
    note = f"requests priced by curated {before.requests - 1}, {COMMUNITY} 1"
    assert note in again["coverage"]["notes"]
    assert f"note: {note}" in run.stdout


def test_a_stale_logged_cost_shows_as_the_gap_of_its_model(first: api.AnalyzeResult) -> None:
    rec = first.analysis.baseline.reconciliation
    by_model = {r.model_key: r for r in rec.by_model}
    row = by_model["mistral/mistral-large-latest"]
    assert (row.requests, row.logged, row.computed) == (1, Decimal("0.0104"), Decimal("0.00065"))
    assert row.gap == Decimal("0.00975")
    assert row.gap_share == pytest.approx(15.0)
    assert rec.gap == sum((r.gap for r in rec.by_model), Decimal(0))
    # every source that reports a cost is reconciled: LiteLLM, Langfuse, Helicone
    assert rec.rows_with_logged_cost == 12


def test_the_report_shows_the_price_sources(first: api.AnalyzeResult) -> None:
    html = (first.out_dir / "report.html").read_text(encoding="utf-8")
    requests = first.analysis.coverage.requests
    assert f"requests priced by curated {requests - 1}, {COMMUNITY} 1" in html
