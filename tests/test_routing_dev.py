"""The difficulty ranking on real prompts it never saw (../shared/data/real/routing_dev, subjects
held out): never worse than the trivial baselines on the same folds, and what the default
operating point routes fails on the small model no more often than the average."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import SHARED, require_shared

TOLERANCE = 0.02  # AUC: folds of a few hundred to 1,500 questions


def test_ranking_is_never_worse_than_trivial_and_routes_safely(
    repo_root: Path, tmp_path: Path
) -> None:
    data = require_shared(SHARED / "data" / "real" / "routing_dev", "the routing dev set")
    out = tmp_path / "dev.json"
    subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "routing_dev.py"), "--data", str(data),
         "--json", str(out)],
        check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    result = json.loads(out.read_text(encoding="utf-8"))
    auc = result["auc"]
    ours = auc.pop("advisor request-side features")
    best = max(a["fold_mean"] for a in auc.values())
    assert ours["fold_mean"] >= best - TOLERANCE, result
    op = result["operating_point"]
    if op["routed"]:  # nothing routed is the honest outcome of weak evidence, and safe
        assert op["small_failure_rate"] <= result["small_failure_rate"], result
    quantiles = result["confidence_quantiles"]
    assert quantiles["0.9"] - quantiles["0.1"] > 0.01, "confidences must spread"
    assert quantiles["1.0"] < 0.99, "no near-certainty from text alone"
