"""Validations on ../shared/data/real/: the token-only CSV path on Azure's production traces."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from advisor import api


@pytest.mark.parametrize("trace", ["code", "conv"])
def test_azure_trace_baseline_matches_the_file(
    shared_data: Path, tmp_path: Path, trace: str
) -> None:
    path = shared_data / "real" / f"AzureLLMInferenceTrace_{trace}.csv"
    rows, distinct, inp, out = duckdb.sql(
        f"""SELECT count(*), count(DISTINCT (TIMESTAMP, ContextTokens, GeneratedTokens)),
                   sum(ContextTokens), sum(GeneratedTokens) FROM read_csv('{path}')"""
    ).fetchall()[0]
    result = api.analyze([str(path)], out_dir=tmp_path, model="gpt-4o", write_report=False)
    a = result.analysis
    # Every row is read: identical rows (same arrival time and counts) are counted duplicates.
    assert a.inputs[0].rows == rows
    assert a.coverage.requests == distinct
    assert a.coverage.duplicate_rows == rows - distinct
    assert a.coverage.quarantined_rows == 0
    assert a.coverage.priced_requests == distinct
    assert a.coverage.token_source.logged == distinct
    by_model = a.baseline.by_model[0]
    assert by_model.model_key == "gpt-4o"
    con = duckdb.connect(str(result.files["db"]), read_only=True)
    stored_in, stored_out = con.execute(
        "SELECT sum(input_tokens), sum(output_tokens) FROM requests"
    ).fetchall()[0]
    con.close()
    if distinct == rows:
        assert (stored_in, stored_out) == (inp, out)
    # gpt-4o list price, no cache information in the trace: $2.50 in, $10 out per 1M.
    expected = (Decimal(stored_in) * Decimal("2.5") + Decimal(stored_out) * 10) / 1_000_000
    assert a.baseline.cost == expected
    assert a.period.days < 0.05  # one hour of traffic
