"""How well the request-side difficulty ranking carries over to real prompts it has never seen.

    python benchmarks/routing_dev.py [--data ../shared/data/real/routing_dev] [--json out.json]

The development set (../shared/data/README.md, real/routing_dev) holds labelled multiple-choice
questions, one CSV per subject; a question "needs the strong model" when the small model answered
it wrongly and the frontier model rightly. The prompts go through advisor's own ingest and
request-time features (advisor.difficulty.features: task cues, size and count bins, flags; no
words, no subject names, no template ids), and a strongly regularised logistic regression
learns them under cross-validation that holds out whole subjects (GroupKFold). Beside it, on the
same folds, the trivial baselines: prompt length alone, and a bag-of-words logistic regression.

It prints a table and writes JSON: the AUC per fold, their mean and the pooled out-of-fold AUC of
each ranking; the small model's failure rate on the 10% and 25% of routable prompts each ranking
calls easiest; and what the default operating point (rules/tiers.yaml policy: easy with at least
its confidence, guards never routed) would route, with the small model's failure rate on it beside
the average, or that it routes nothing and why.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advisor import store  # noqa: E402
from advisor.difficulty.features import active_names_sql, build_features  # noqa: E402
from advisor.difficulty.heuristics import apply_rules, load_rules  # noqa: E402
from advisor.ingest import ingest  # noqa: E402
from advisor.ruleset import default_rules_dir  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "real" / "routing_dev"
SMALL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
FRONTIER = "gpt-4-1106-preview"
FOLDS = 5
DEV_C = 0.01  # ten times stronger than the product's C = 0.1: weak signal, little to trust
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
SHARES = (0.1, 0.25)  # shares of the routable prompts a ranking calls easiest
ADVISOR = "advisor request-side features"


def load(folder: Path) -> pl.DataFrame:
    """prompt, subject (the CV group only, never a feature), small_ok, needs_strong."""
    frames = [
        pl.read_csv(path).select(
            pl.col("prompt"),
            pl.lit(path.stem).alias("subject"),
            pl.col(SMALL).alias("small_ok"),
            (~pl.col(SMALL) & pl.col(FRONTIER)).alias("needs_strong"),
        )
        for path in sorted(folder.glob("*.csv"))
    ]
    if not frames:
        raise SystemExit(f"no CSV files in {folder}")
    return pl.concat(frames)


def request_features(prompts: list[str], workdir: Path) -> tuple[sparse.csr_matrix, np.ndarray]:
    """advisor's request-time binary features of each prompt (as the sole user message), and
    whether a guard rule keeps it from being routed: computed by the product's own SQL."""
    log = workdir / "dev.jsonl"
    with log.open("w", encoding="utf-8") as out:
        for i, prompt in enumerate(prompts):
            line = {
                "id": f"q{i:06d}",
                "timestamp": "2026-01-01T00:00:00Z",
                "provider": "openai",
                "request": {"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]},
                "response": {"usage": {"prompt_tokens": 1, "completion_tokens": 1}},
            }
            out.write(json.dumps(line) + "\n")
    con = store.connect(workdir / "dev.duckdb")
    try:
        ingest(con, [str(log)])
        build_features(con)
        apply_rules(con, load_rules(default_rules_dir()))
        con.execute(
            """CREATE TEMP TABLE _rows AS SELECT request_id,
               (CAST(substr(request_id, 2) AS BIGINT)) AS rn FROM dif_features"""
        )
        pairs = con.execute(active_names_sql("_rows")).fetchall()
        guarded = con.execute(
            """SELECT l.guard_label IS NOT NULL FROM _rows b JOIN dif_labels l USING (request_id)
               ORDER BY b.rn"""
        ).fetchall()
    finally:
        con.close()
    names = sorted({name for _, name in pairs})
    col = {name: j for j, name in enumerate(names)}
    rows = np.array([rn for rn, _ in pairs], dtype=np.int64)
    cols = np.array([col[name] for _, name in pairs], dtype=np.int64)
    x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(prompts), len(names)))
    x.data[:] = 1.0
    return x, np.array([g[0] for g in guarded], dtype=bool)


def ranked(x: sparse.csr_matrix, y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """P(needs the strong model) out of fold, subjects held out. Strongly regularised: with
    evidence this weak the probabilities stay near the base rate instead of claiming confidence
    (a Platt recalibration on held-out subjects was tried and ranked worse on unseen subjects).

    Classes are balanced, as in the product's classifier: otherwise the intercept carries each
    training fold's base rate, which runs against the held-out fold's (hard subjects held out
    leave easier ones to train on), and the folds' scores do not pool into one ranking.
    """
    out = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=FOLDS).split(x, y, groups):
        model = LogisticRegression(
            C=DEV_C, class_weight="balanced", max_iter=2000, random_state=seed
        )
        out[test] = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return out


def bag_of_words(prompts: list[str], y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """The word baseline, its classes balanced like advisor's ranking: the same footing."""
    out = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=FOLDS).split(prompts, y, groups):
        vec = CountVectorizer(min_df=2)
        xt = vec.fit_transform([prompts[i] for i in train])
        model = LogisticRegression(
            C=1.0, class_weight="balanced", max_iter=3000, random_state=seed
        ).fit(xt, y[train])
        out[test] = model.predict_proba(vec.transform([prompts[i] for i in test]))[:, 1]
    return out


def _auc(y: np.ndarray, score: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    folds = [
        float(roc_auc_score(y[test], score[test]))
        for _, test in GroupKFold(n_splits=FOLDS).split(score, y, groups)
    ]
    return {
        "folds": [round(a, 4) for a in folds],
        "fold_mean": round(float(np.mean(folds)), 4),
        "pooled": round(float(roc_auc_score(y, score)), 4),
    }


def _rate(mask: np.ndarray, values: np.ndarray) -> float | None:
    return round(float(values[mask].mean()), 4) if mask.any() else None


def min_confidence() -> float:
    data = yaml.safe_load((default_rules_dir() / "tiers.yaml").read_text(encoding="utf-8"))
    return float(data["policy"]["min_confidence"])


def easiest(p_hard: np.ndarray, eligible: np.ndarray, share: float) -> np.ndarray:
    """The `share` of eligible prompts a ranking calls easiest: what a cheaper tier would get if
    the operating point were set to route that much."""
    cut = np.quantile(p_hard[eligible], share)
    return eligible & (p_hard <= cut)


def measure(folder: Path = DATA, seed: int = 0) -> dict[str, Any]:
    data = load(folder)
    prompts = data["prompt"].to_list()
    y = data["needs_strong"].to_numpy().astype(np.int64)
    small_failed = ~data["small_ok"].to_numpy()
    groups = data["subject"].to_numpy()
    with tempfile.TemporaryDirectory() as tmp:
        x, guarded = request_features(prompts, Path(tmp))
    p_hard = ranked(x, y, groups, seed)
    rankings = {
        ADVISOR: p_hard,
        "prompt length": np.array([len(p) for p in prompts], dtype=np.float64),
        "bag-of-words logistic regression": bag_of_words(prompts, y, groups, seed),
    }
    threshold = min_confidence()
    p_easy = 1.0 - p_hard
    routed = ~guarded & (p_easy >= threshold)
    return {
        "rows": len(y),
        "subjects": len(set(groups.tolist())),
        "needs_strong_rate": round(float(y.mean()), 4),
        "small_failure_rate": round(float(small_failed.mean()), 4),
        "auc": {name: _auc(y, score, groups) for name, score in rankings.items()},
        # every ranking picks among the same prompts: those advisor's guards leave routable
        "easiest_small_failure_rate": {
            name: {
                str(share): _rate(easiest(score, ~guarded, share), small_failed) for share in SHARES
            }
            for name, score in rankings.items()
        },
        "confidence_quantiles": {
            str(q): round(float(v), 4)
            for q, v in zip(QUANTILES, np.quantile(p_easy, QUANTILES), strict=True)
        },
        "guarded": int(guarded.sum()),
        "guarded_small_failure_rate": _rate(guarded, small_failed),
        "operating_point": {
            "min_confidence": threshold,
            "max_confidence": round(float(p_easy[~guarded].max()), 4),
            "routed": int(routed.sum()),
            "small_failure_rate": _rate(routed, small_failed),
            "needs_strong_rate": _rate(routed, y.astype(bool)),
        },
    }


def table(result: dict[str, Any]) -> str:
    shares = " ".join(f"{'easiest ' + format(float(s), '.0%'):>12}" for s in SHARES)
    lines = [
        f"{result['rows']} prompts, {result['subjects']} subjects held out {FOLDS} ways; "
        f"needs the strong model {result['needs_strong_rate']:.1%}, small model fails "
        f"{result['small_failure_rate']:.1%}",
        f"{'ranking':<34} {'AUC fold mean':>13} {'pooled':>7} {shares}  AUC per fold",
    ]
    for name, auc in result["auc"].items():
        folds = " ".join(f"{a:.3f}" for a in auc["folds"])
        fails = " ".join(
            f"{rate:>12.1%}" for rate in result["easiest_small_failure_rate"][name].values()
        )
        lines.append(f"{name:<34} {auc['fold_mean']:>13.3f} {auc['pooled']:>7.3f} {fails}  {folds}")
    op = result["operating_point"]
    if op["routed"]:
        verdict = f"routes {op['routed']}, small model fails {op['small_failure_rate']:.1%} of them"
    else:
        verdict = (
            f"routes nothing: the highest P(easy) is {op['max_confidence']:.3f}; the text of "
            "these questions says too little about their difficulty to clear the bar"
        )
    lines += [
        "(easiest N%: the small model's failure rate on the share of routable prompts the "
        "ranking calls easiest)",
        f"confidence (P easy) quantiles: {result['confidence_quantiles']}",
        f"guards keep {result['guarded']} prompts (small model fails "
        f"{result['guarded_small_failure_rate']:.1%}) on the frontier model",
        f"default operating point (easy >= {op['min_confidence']:g}): {verdict} "
        f"(average {result['small_failure_rate']:.1%})",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = measure(args.data, args.seed)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
