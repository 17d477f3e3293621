"""OpenAI Batch API files: output joined to its input by custom_id, batch-tier prices, an
output alone, an input alone, failed and unrun requests, idempotent re-ingest. Fixtures:
tests/fixtures/openai_batch, written from the Batch API's documented file formats."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from source_rows import baseline_costs, rows_by_id

from advisor import api
from advisor.ingest import ingest

FIXTURES = Path(__file__).parent / "fixtures" / "openai_batch"


def test_output_joined_to_its_input(con) -> None:
    report = ingest(con, [str(FIXTURES / "paired")])
    by_file = {Path(f.path).name: (f.format, f.counts.ingested, f.counts.quarantined)
               for f in report.files}  # fmt: skip
    # input lines joined to an output line are counted with the output
    assert by_file == {
        "batch_68f0_input.jsonl": ("openai_batch", 0, 1),
        "batch_68f0_output.jsonl": ("openai_batch", 2, 1),
    }
    rows = rows_by_id(con)
    assert sorted(rows) == ["batch_req_1", "batch_req_4"]
    one, four = rows["batch_req_1"], rows["batch_req_4"]
    assert (one["input_tokens"], one["cache_read_tokens"], one["cache_write_tokens"],
            one["output_tokens"]) == (2048, 1024, 0, 100)  # fmt: skip
    # a /v1/responses body: input_tokens includes input_tokens_details.cached_tokens
    assert (four["input_tokens"], four["cache_read_tokens"], four["output_tokens"]) == (
        1500, 1000, 200)  # fmt: skip
    for row in (one, four):
        assert (row["service_tier"], row["provider"], row["source_format"]) == (
            "batch", "openai", "openai_batch")  # fmt: skip
    assert (one["model"], one["response_model"], one["user_id"], one["max_tokens"]) == (
        "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "u9", 50)  # fmt: skip
    assert str(one["ts"]) == "2025-12-04 00:00:00"
    texts = con.execute(
        """SELECT m.request_id, m.role, t.text FROM messages m JOIN texts t USING (text_hash)
           ORDER BY 1, m.position"""
    ).fetchall()
    assert texts == [
        ("batch_req_1", "system", "Classify the ticket."),
        ("batch_req_1", "user", "My parcel is late."),
        ("batch_req_4", "system", "Be brief."),
        ("batch_req_4", "user", "Summarise this order history."),
    ]
    reasons = con.execute("SELECT source_line, field, reason FROM quarantine ORDER BY 1").fetchall()
    assert reasons == [
        (2, "error", "failed in the batch (batch_expired: This request could not be executed "
                     "before the completion window expired.): not billed"),
        (3, "custom_id", "no result in the batch output beside it: not run (expired or "
                         "cancelled)"),
    ]  # fmt: skip


def test_output_alone_is_priced_without_prompts(con) -> None:
    report = ingest(con, [str(FIXTURES / "output_only")])
    assert (report.totals.ingested, report.totals.quarantined) == (2, 1)
    assert con.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    row = rows_by_id(con)["batch_req_1"]
    assert (row["model"], row["input_tokens"], row["token_source"]) == ("gpt-4o-mini-2024-07-18",
                                                                        2048, "logged")  # fmt: skip


def test_input_alone_is_quarantined_not_estimated(con) -> None:
    report = ingest(con, [str(FIXTURES / "input_only")])
    assert (report.totals.rows, report.totals.ingested, report.totals.quarantined) == (4, 0, 4)
    reason = con.execute("SELECT DISTINCT reason FROM quarantine").fetchall()
    assert len(reason) == 1 and "output file" in reason[0][0]


def test_each_output_joins_its_own_batch(con, tmp_path: Path) -> None:
    """custom_ids repeat across batches: an output joins the input of its own batch."""
    for batch in ("a", "b"):
        for kind in ("input", "output"):
            shutil.copy(FIXTURES / "paired" / f"batch_68f0_{kind}.jsonl",
                        tmp_path / f"batch_{batch}_{kind}.jsonl")  # fmt: skip
    text = (tmp_path / "batch_b_output.jsonl").read_text().replace("batch_req_", "batch_req_b")
    (tmp_path / "batch_b_output.jsonl").write_text(text)
    report = ingest(con, [str(tmp_path)])
    assert report.totals.ingested == 4
    assert con.execute("SELECT count(DISTINCT request_id) FROM messages").fetchone() == (4,)


def test_reingest_adds_nothing(con) -> None:
    ingest(con, [str(FIXTURES / "paired")])
    again = ingest(con, [str(FIXTURES / "paired")])
    assert (again.totals.ingested, again.totals.quarantined, again.totals.duplicates) == (0, 0, 4)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("batch") / "out"
    return api.analyze([str(FIXTURES / "paired")], out_dir=out, write_report=False)


def test_priced_at_batch_rates(analysis) -> None:
    costs = baseline_costs(analysis)
    # gpt-4o-mini batch, per 1M: 1024 uncached x 0.075 + 1024 cached x 0.0375 + 100 out x 0.30
    assert costs["batch_req_1"] == Decimal("0.0000768") + Decimal("0.0000384") + Decimal("0.00003")
    # gpt-4o batch: 500 x 1.25 + 1000 cached x 0.625 + 200 out x 5
    assert costs["batch_req_4"] == Decimal("0.000625") + Decimal("0.000625") + Decimal("0.001")
