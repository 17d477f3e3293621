"""The difficulty ranking on real prompts it never saw (../shared/data/real/routing_dev, subjects
held out): never worse than the trivial baselines on the same folds, fold by fold and pooled; the
prompts it calls easiest fail on the small model less often than the average; and what the
default operating point routes (if anything) does too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import SHARED, require_shared

ADVISOR = "advisor request-side features"


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
    auc = dict(result["auc"])
    ours = auc.pop(ADVISOR)
    for name, baseline in auc.items():
        for figure in ("fold_mean", "pooled"):
            assert ours[figure] >= baseline[figure], (name, figure, result["auc"])
    average = result["small_failure_rate"]
    for share, rate in result["easiest_small_failure_rate"][ADVISOR].items():
        assert rate < average, (share, result)
    op = result["operating_point"]
    if op["routed"]:
        assert op["small_failure_rate"] < average, result
    else:  # nothing routed is the honest outcome of weak evidence: nothing cleared the bar
        assert op["max_confidence"] < op["min_confidence"], result
    quantiles = result["confidence_quantiles"]
    assert quantiles["0.9"] - quantiles["0.1"] > 0.01, "confidences must spread"
    assert quantiles["1.0"] < 0.99, "no near-certainty from text alone"
