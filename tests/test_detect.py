"""Format detection from a file's first record, per file; the error for a file that is none."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from advisor.errors import UnreadableFile
from advisor.ingest import detect_format, ingest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("otel/traces.otlp.jsonl", "otel_genai"),
        ("otel/export.otlp.json", "otel_genai"),  # pretty-printed: keys from its first bytes
        ("openai_batch/paired/batch_68f0_input.jsonl", "openai_batch"),
        ("openai_batch/paired/batch_68f0_output.jsonl", "openai_batch"),
    ],
)
def test_fixtures_are_detected(path: str, fmt: str) -> None:
    assert detect_format(FIXTURES / path) == fmt


def test_detected_inside_gzip_and_without_a_json_name(tmp_path: Path) -> None:
    data = (FIXTURES / "otel" / "traces.otlp.jsonl").read_bytes()
    (tmp_path / "t.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "t.log").write_bytes(data)
    assert detect_format(tmp_path / "t.jsonl.gz") == "otel_genai"
    assert detect_format(tmp_path / "t.log") == "otel_genai"


def test_envelope_and_unparseable_first_lines_stay_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"timestamp": "2026-10-01T00:00:00Z", "model": "x"}\n')
    (tmp_path / "b.jsonl").write_text("not json\n")
    assert detect_format(tmp_path / "a.jsonl") == "jsonl"
    assert detect_format(tmp_path / "b.jsonl") == "jsonl"  # its lines are quarantined one by one


def test_no_match_names_the_formats_and_what_the_closest_lack(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text('{"custom_id": "r1", "body": {}, "extra": 1}\n')
    with pytest.raises(UnreadableFile) as error:
        detect_format(path)
    assert error.value.reason == (
        "matches no known format (its first record has the keys body, custom_id, extra); "
        "JSON formats: jsonl, otel_genai, openai_batch, litellm_spendlogs, litellm_payload, "
        "langfuse, helicone, and csv/parquet with --map; "
        "closest: openai_batch (missing method, url); force a format with --format"
    )


def test_no_match_file_is_one_quarantine_row_and_the_others_still_count(
    con, tmp_path: Path
) -> None:
    (tmp_path / "odd.json").write_text('{"foo": 1}\n')
    report = ingest(con, [str(tmp_path / "odd.json"), str(FIXTURES / "otel")])
    assert [(Path(f.path).name, f.format) for f in report.files] == [
        ("odd.json", "unknown"),
        ("export.otlp.json", "otel_genai"),
        ("traces.otlp.jsonl", "otel_genai"),
    ]
    assert report.totals.ingested == 4
    reason = con.execute("SELECT reason FROM quarantine WHERE source_file LIKE '%odd.json'")
    assert "it has none of their keys" in reason.fetchone()[0]


def test_forced_format_overrides_detection(con, tmp_path: Path) -> None:
    path = tmp_path / "spans.log"
    path.write_bytes((FIXTURES / "otel" / "traces.otlp.jsonl").read_bytes())
    report = ingest(con, [str(path)], fmt="otel_genai")
    assert (report.files[0].format, report.totals.ingested) == ("otel_genai", 3)


def test_forcing_the_wrong_format_quarantines_each_line_saying_why(con, tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_bytes((FIXTURES / "otel" / "traces.otlp.jsonl").read_bytes())
    report = ingest(con, [str(path)], fmt="openai_batch")
    assert (report.totals.ingested, report.totals.quarantined) == (0, 2)
    reasons = con.execute("SELECT DISTINCT field, reason FROM quarantine").fetchall()
    assert reasons == [("custom_id", "not a Batch API output line")]
