"""Golden: analysis.json on sample_logs/ is the same run to run and matches the golden copy.

Regenerate after an intended change with: ADVISOR_UPDATE_GOLDEN=1 pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import require_tiktoken

from advisor import api

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "sample_analysis.json"


def _stripped(path: Path) -> str:
    data = json.loads(path.read_text())
    data.pop("generated_at")
    return json.dumps(data, indent=2) + "\n"


@pytest.fixture(scope="module")
def two_runs(
    tmp_path_factory: pytest.TempPathFactory, analysed_sample: api.AnalyzeResult
) -> tuple[Path, Path]:
    """The session's analysis of the sample (conftest.py) and a second run of its own."""
    require_tiktoken()  # the golden figures count shared prefixes with o200k_base
    out = tmp_path_factory.mktemp("second")
    result = api.analyze(
        [str(ROOT / "sample_logs" / "traffic.jsonl.gz")], out_dir=out, write_report=False
    )
    return analysed_sample.files["analysis"], result.files["analysis"]


def test_same_input_gives_byte_identical_analysis(two_runs: tuple[Path, Path]) -> None:
    first, second = (p.read_text().splitlines() for p in two_runs)
    differing = [(a, b) for a, b in zip(first, second, strict=True) if a != b]
    assert len(differing) == 1 and '"generated_at"' in differing[0][0]


def test_matches_committed_golden(two_runs: tuple[Path, Path]) -> None:
    got = _stripped(two_runs[0])
    if os.environ.get("ADVISOR_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text(), "analysis.json changed: see the module docstring"
