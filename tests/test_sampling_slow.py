"""Slow checks of the sampled replay (marked `slow`: `pytest -m slow tests/test_sampling_slow.py`).

- On a generated 1M-request log (ADVISOR_SAMPLING_REQUESTS to change the size), the levers
  replayed on 5% of it give intervals that hold the full run's savings of the levers whose policy
  the sample does not learn (test_sampling.LEARNED says why those are apart).
- On the sample log, several draws (seeds) at 25%: the intervals hold those figures in at least
  90% of the checks (95% intervals; a few misses among many are expected).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_sampling import LEARNED

from advisor import api, store
from advisor.analysis import Analysis

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _held(full: Analysis, sampled: Analysis) -> list[bool]:
    """Per lever not in LEARNED (standalone, marginal): inside its interval."""
    assert sampled.sample is not None
    intervals = {iv.id: iv for iv in sampled.sample.levers}
    held = []
    for lever in full.levers:
        if lever.id in LEARNED:
            continue
        iv = intervals[lever.id]
        held.append(iv.standalone.low <= lever.standalone_saving <= iv.standalone.high)
        held.append(iv.marginal.low <= lever.marginal_saving <= iv.marginal.high)
    return held


def test_generated_log_sampled_at_5_percent(tmp_path: Path) -> None:
    requests = int(os.environ.get("ADVISOR_SAMPLING_REQUESTS", "1000000"))
    log = tmp_path / "log.jsonl"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "generate_log.py"), "--requests",
         str(requests), "-o", str(log)],
        check=True,
    )  # fmt: skip
    full = api.analyze([str(log)], out_dir=tmp_path / "full", write_report=False)
    db = tmp_path / "sampled.duckdb"
    shutil.copy(full.files["db"], db)
    sampled = api.analyze([], db=db, out_dir=tmp_path / "s", sample=0.05, write_report=False)
    assert all(_held(full.analysis, sampled.analysis))


def test_repeated_draws_on_the_sample_log(
    tmp_path: Path, analysed_sample: api.AnalyzeResult
) -> None:
    prices = api.load_price_table()
    held: list[bool] = []
    for seed in range(6):
        db = tmp_path / f"seed{seed}.duckdb"
        shutil.copy(analysed_sample.files["db"], db)
        con = store.connect(db)
        try:
            sampled = api.build_analysis(
                con, prices, analysed_sample.ingest, sample=0.25, sample_seed=seed
            )
        finally:
            con.close()
        held += _held(analysed_sample.analysis, sampled)
    assert sum(held) >= 0.9 * len(held), held
