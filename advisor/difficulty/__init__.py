"""Difficulty: per-request class (easy / medium / hard), calibrated confidence, and reasons.

    result = classify(con, rules_dir, tiers=ladder_ranks, seed=0)

Pipeline (all in the store, vectorised): features (features.py) -> heuristic weak labels and
guards (heuristics.py, rules/difficulty.yaml) -> a seeded scikit-learn classifier trained on the
labels and fed request-time features only (classifier.py) -> the `difficulty` table. A request a
guard rule matches takes the guard's label with confidence 1; every other request takes the
classifier's class and probability. The classifier (JSON) and the guards are kept in `meta` so
that `advisor export router` can ship them to the routing runtime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from advisor import store
from advisor.routing import MICRO

if TYPE_CHECKING:  # the pipeline (numpy, scipy, scikit-learn) loads only when classify() runs
    from advisor.difficulty.classifier import TrainingReport
    from advisor.difficulty.heuristics import Rule

SAMPLE_SIZE = 100_000  # training rows at most: enough for a linear model, bounded time at 1M+

__all__ = ["DifficultyResult", "classify", "load_classifier", "load_guards"]

META_CLASSIFIER = "difficulty.classifier"
META_GUARDS = "difficulty.guards"

DIFFICULTY_TABLE = """
CREATE OR REPLACE TABLE difficulty AS
SELECT f.request_id, f.template_id, f.feature, f.model_key,
       coalesce(l.guard_label, s.difficulty) AS difficulty,
       CASE WHEN l.guard_label IS NOT NULL THEN {micro} ELSE s.confidence_micro END
         AS confidence_micro,
       (CASE WHEN l.guard_label IS NOT NULL THEN {micro} ELSE s.confidence_micro END) / {micro}
         AS confidence,
       s.p_easy / {micro} AS p_easy, s.p_medium / {micro} AS p_medium,
       s.p_hard / {micro} AS p_hard,
       CASE WHEN l.guard_label IS NOT NULL THEN 'guard' ELSE 'classifier' END AS source,
       l.rule_label, l.rules, l.guard_rules, s.top_features,
       concat_ws('; ',
         CASE WHEN len(l.rules) > 0 THEN 'rules ' || array_to_string(l.rules, ', ') END,
         CASE WHEN l.guard_label IS NULL AND len(s.top_features) > 0
              THEN 'features ' || array_to_string(s.top_features, ', ') END) AS reasons
FROM dif_features f
JOIN dif_labels l USING (request_id)
JOIN dif_scores s USING (request_id)
"""


@dataclass
class DifficultyResult:
    requests: int
    by_difficulty: dict[str, int]
    by_source: dict[str, int]
    rule_matches: dict[str, int]
    training: TrainingReport
    rules: list[Rule] = field(default_factory=list)
    # (confidence, the log's label agrees) on held-out rows: see classifier.TrainedModel.checked
    checked: list[tuple[float, bool]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Plain data for analysis.json (lever details)."""
        return {
            "requests": self.requests,
            "by_difficulty": self.by_difficulty,
            "by_source": self.by_source,
            "rules": [
                {
                    "id": r.id,
                    "title": r.title,
                    "label": r.label,
                    "guard": r.guard,
                    "matched": self.rule_matches.get(r.id, 0),
                }
                for r in self.rules
            ],
            "classifier": {k: v for k, v in vars(self.training).items() if v is not None},
        }


def classify(
    con: duckdb.DuckDBPyConnection,
    rules_dir: Path,
    *,
    tiers: Mapping[str, tuple[str, int]] | None = None,
    seed: int = 0,
    sample_size: int = SAMPLE_SIZE,
) -> DifficultyResult:
    """Label every request in the store; write `difficulty` and the model into `meta`.

    `tiers` maps a model key to (ladder id, rank, 0 = top) for the "template already served by
    a cheaper tier" signal. Same store + rules + seed -> same table, byte for byte.
    """
    from advisor.difficulty.classifier import score, train
    from advisor.difficulty.features import build_features
    from advisor.difficulty.heuristics import apply_rules, load_rules, load_vocabulary

    rules = load_rules(rules_dir)
    vocabulary = load_vocabulary(rules_dir)
    requests = build_features(con, tiers)
    apply_rules(con, rules)
    trained = train(con, vocabulary, seed=seed, sample_size=sample_size)
    model = trained.model
    score(con, model, words=trained.words)
    con.execute(DIFFICULTY_TABLE.format(micro=MICRO))
    store.set_meta(con, META_CLASSIFIER, json.dumps(model, separators=(",", ":")))
    guards = [
        {"id": r.id, "title": r.title, "label": r.label, "priority": r.priority, "when": r.raw_when}
        for r in rules
        if r.guard
    ]
    store.set_meta(con, META_GUARDS, json.dumps(guards, separators=(",", ":")))
    by_difficulty = dict(
        con.execute("SELECT difficulty, count(*) FROM difficulty GROUP BY 1 ORDER BY 1").fetchall()
    )
    by_source = dict(
        con.execute("SELECT source, count(*) FROM difficulty GROUP BY 1 ORDER BY 1").fetchall()
    )
    matches = dict(
        con.execute(
            "SELECT r, count(*) FROM (SELECT unnest(rules) AS r FROM dif_labels) GROUP BY r"
        ).fetchall()
    )
    store.drop_temp_tables(con, "dif_", "_dif_")  # the result is in `difficulty`
    return DifficultyResult(
        requests, by_difficulty, by_source, matches, trained.report, rules, trained.checked
    )


def load_classifier(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    raw = store.get_meta(con, META_CLASSIFIER)
    return None if raw is None else json.loads(raw)


def load_guards(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    raw = store.get_meta(con, META_GUARDS)
    return [] if raw is None else json.loads(raw)
