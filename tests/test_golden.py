"""Golden: analysis.json on sample_logs/ is the same run to run and matches the golden copy, and
the report.md rendered from that copy matches tests/golden/sample_report.md.

Regenerate after an intended change with: ADVISOR_UPDATE_GOLDEN=1 pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import require_tiktoken

from advisor import api
from advisor.analysis import Analysis
from advisor.report.markdown import render_markdown

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


GOLDEN_REPORT = GOLDEN.with_name("sample_report.md")


def test_markdown_matches_committed_golden() -> None:
    """report.md of the golden analysis (after it, so one ADVISOR_UPDATE_GOLDEN=1 run renews
    both), its generation time stripped."""
    data = json.loads(GOLDEN.read_text())
    analysis = Analysis.model_validate({**data, "generated_at": "2000-01-01T00:00:00Z"})
    got = render_markdown(analysis).replace(" · generated 2000-01-01 00:00 UTC", "")
    if os.environ.get("ADVISOR_UPDATE_GOLDEN"):
        GOLDEN_REPORT.write_text(got, encoding="utf-8")
    assert got == GOLDEN_REPORT.read_text(encoding="utf-8"), "report.md changed: see the docstring"
