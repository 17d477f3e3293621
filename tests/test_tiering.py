"""The tiering lever on the seeded sample logs: planted easy work is routed, planted hard work is
not (accuracy against the generator's ground truth), the frontier is monotone, runs repeat exactly.

`analysed_sample` (also used by the router, parity and evalset tests) builds one analysed store per
test session from sample_logs/traffic.jsonl.gz, or from a fresh run of sample_logs/generate.py when
the committed sample is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import run_standalone

from advisor import baseline, store, tokens
from advisor.errors import RuleError
from advisor.ingest import ingest
from advisor.levers.base import STATE_COLUMNS, LeverContext, SimOptions
from advisor.levers.tiering import TieringLever, load_tiers
from advisor.pricing import load_prices
from advisor.ruleset import default_rules_dir

SAMPLE = Path(__file__).resolve().parents[1] / "sample_logs"


def sample_files(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    traffic, truth = SAMPLE / "traffic.jsonl.gz", SAMPLE / "ground_truth.json"
    if traffic.is_file() and truth.is_file():
        return traffic, truth
    out = factory.getbasetemp() / "advisor-sample-logs"
    traffic, truth = out / "traffic.jsonl.gz", out / "ground_truth.json"
    if not traffic.is_file():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                str(SAMPLE / "generate.py"),
                "--out",
                str(traffic),
                "--truth",
                str(truth),
            ],
            check=True,
        )
    return traffic, truth


def build_store(traffic: Path, db: Path) -> dict[str, Any]:
    """ingest -> resolve -> tokens -> price -> the tiering lever; return its outcome as data."""
    prices = load_prices(default_rules_dir())
    con = store.connect(db)
    try:
        ingest(con, [str(traffic)])
        baseline.resolve_models(con, prices, {})
        tokens.fill_token_counts(con, {k: m.encoding for k, m in prices.models.items()})
        baseline.price_requests(con, prices)
        con.execute(
            f"CREATE OR REPLACE TABLE state_base AS SELECT {', '.join(STATE_COLUMNS)} FROM requests"
        )
        ctx = LeverContext(con, prices, default_rules_dir(), SimOptions())
        outcome = run_standalone(TieringLever(), ctx, "state_base", "state_tiering")
        con.execute("CREATE OR REPLACE TABLE state_tiering_out AS SELECT * FROM state_tiering")
        return {
            "affected": outcome.affected_requests,
            "risk": outcome.risk,
            "details": outcome.details,
            "recommendations": outcome.recommendations,
            "per_request": outcome.per_request,
        }
    finally:
        con.close()


def analysed_sample(factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path, Path]:
    """(store, lever outcome, traffic file, ground truth file), built once per session."""
    traffic, truth = sample_files(factory)
    folder = factory.getbasetemp() / "advisor-sample"
    db, saved = folder / "advisor.duckdb", folder / "outcome.json"
    if not saved.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        outcome = build_store(traffic, db)
        saved.write_text(json.dumps(outcome, default=str), encoding="utf-8")
    return db, json.loads(saved.read_text(encoding="utf-8")), traffic, truth


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path, Path]:
    return analysed_sample(tmp_path_factory)


def _confusion(db: Path, truth: Path) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, bool]]]:
    expected = json.loads(truth.read_text(encoding="utf-8"))["difficulty_by_request_id"]
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT request_id, difficulty, routed, model_key FROM tiering_decisions"
        ).fetchall()
    finally:
        con.close()
    matrix: Counter[tuple[str, str]] = Counter()
    routing: Counter[tuple[str, bool]] = Counter()
    for rid, difficulty, routed, key in rows:
        planted = expected.get(rid)
        if not planted:  # the runaway client's calls carry no planted difficulty
            continue
        matrix[(planted, difficulty)] += 1
        if key is not None:
            routing[(planted, bool(routed))] += 1
    return matrix, routing


def test_planted_easy_work_is_routed_and_hard_work_is_not(sample: Any) -> None:
    db, _, _, truth = sample
    matrix, routing = _confusion(db, truth)
    classes = ("easy", "medium", "hard")
    table = (
        "truth \\ predicted  "
        + "  ".join(f"{c:>7}" for c in classes)
        + "\n"
        + "\n".join(
            f"{t:>18}  " + "  ".join(f"{matrix[(t, p)]:>7}" for p in classes) for t in classes
        )
    )
    total = sum(matrix.values())
    accuracy = sum(matrix[(c, c)] for c in classes) / total
    easy_routed = routing[("easy", True)] / (routing[("easy", True)] + routing[("easy", False)])
    report = (
        f"{table}\naccuracy {accuracy:.3f} on {total} requests; priced easy requests routed "
        f"{easy_routed:.1%}; routing {dict(routing)}"
    )
    print(report)
    assert routing[("hard", True)] == 0, report
    assert routing[("medium", True)] <= 0.01 * (
        routing[("medium", True)] + routing[("medium", False)]
    )
    assert easy_routed >= 0.85, report
    assert accuracy >= 0.9, report
    assert matrix[("hard", "easy")] == 0, report


def test_frontier_is_monotone_and_operating_point_is_on_it(sample: Any) -> None:
    _, outcome, _, _ = sample
    details = outcome["details"]
    frontier = details["frontier"]
    assert details["frontier_monotone"] is True
    for looser, stricter in pairwise(frontier):
        assert looser["min_confidence"] < stricter["min_confidence"]
        assert looser["requests_routed"] >= stricter["requests_routed"]
        assert float(looser["saving"]) >= float(stricter["saving"])
    op = details["operating_point"]
    assert op["min_confidence"] == 0.9 and op["route"] == ["easy"]
    assert op["requests_routed"] == outcome["affected"] > 0
    assert "90%" in op["why"]
    assert outcome["recommendations"][0]["saving"] == op["saving"]
    for row in details["by_feature"] + details["by_template"]:
        assert 0.0 <= row["share_routable"] <= 1.0


def test_routed_rows_are_repriced_on_the_target(sample: Any) -> None:
    db, _, _, _ = sample
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            """SELECT d.routed, d.routed_model, d.model_key, s.model_key, s.cache_read_tokens,
                      s.cache_write_tokens, s.input_tokens, b.input_tokens, s.output_tokens,
                      b.output_tokens, d.length_ratio
               FROM tiering_decisions d JOIN state_tiering_out s USING (request_id)
               JOIN state_base b USING (request_id)"""
        ).fetchall()
    finally:
        con.close()
    routed = [r for r in rows if r[0]]
    assert routed
    for _, target, source, state_model, read, write, inp, base_inp, out, base_out, ratio in routed:
        assert state_model == target != source
        assert read == write == 0 and inp == base_inp
        assert out == round(base_out * ratio)
    for r in rows:
        if not r[0]:
            assert r[3] == r[2]


def test_decisions_are_identical_across_runs(sample: Any, tmp_path: Path) -> None:
    db, outcome, traffic, _ = sample
    again = build_store(traffic, tmp_path / "again.duckdb")
    assert again["details"] == json.loads(json.dumps(outcome["details"]))
    queries = [
        "SELECT * FROM tiering_decisions ORDER BY request_id",
        "SELECT * FROM difficulty ORDER BY request_id",
        "SELECT key, value FROM meta WHERE key IN ('difficulty.classifier', 'tiering.router') "
        "ORDER BY key",
    ]
    first, second = (
        duckdb.connect(str(p), read_only=True) for p in (db, tmp_path / "again.duckdb")
    )
    try:
        for query in queries:
            assert first.execute(query).fetchall() == second.execute(query).fetchall(), query
    finally:
        first.close()
        second.close()


def _rules(tmp_path: Path, ladders: str, policy: bool = True) -> Path:
    text = "schema_version: 1\nkind: tiers\n"
    if policy:
        text += "policy: {id: P-1, title: t, route: [easy], min_confidence: 0.9, rationale: r}\n"
    (tmp_path / "tiers.yaml").write_text(text + ladders, encoding="utf-8")
    return tmp_path


def test_ladders_are_checked_against_prices(tmp_path: Path) -> None:
    prices = load_prices(default_rules_dir())
    tiers = load_tiers(default_rules_dir(), prices)
    assert tiers.targets["gpt-4o"] == {"easy": "gpt-4o-mini"}
    assert tiers.targets["gpt-5"] == {"easy": "gpt-5-nano", "medium": "gpt-5-mini"}
    assert tiers.targets["claude-opus-4-1"]["medium"] == "claude-sonnet-4-5"
    assert "gpt-4o-mini" not in tiers.targets  # the bottom tier stays
    assert tiers.ranks["gpt-4.1-mini"] == ("TIER-GPT41", 1)
    assert not any(
        "gemini-2.5-flash-lite" in t.values()
        for s, t in tiers.targets.items()
        if s.startswith("gpt")
    )  # cross-provider ladders are opt-in
    upside_down = _rules(
        tmp_path,
        """ladders:
  - {id: L-1, title: t, rationale: r, tiers: [{models: [gpt-4o-mini]},
     {models: [gpt-4o], serves: [easy]}]}
""",
    )
    loaded = load_tiers(upside_down, prices)
    assert loaded.targets == {} and "not cheaper" in loaded.warnings[0]


def test_ladder_errors(tmp_path: Path) -> None:
    prices = load_prices(default_rules_dir())
    twice = """ladders:
  - id: L-1
    title: t
    rationale: r
    tiers: [{models: [gpt-4o]}, {models: [gpt-4o-mini], serves: [easy]}]
  - id: L-2
    title: t
    rationale: r
    tiers: [{models: [gpt-4o]}, {models: [gpt-4.1-nano], serves: [easy]}]
"""
    with pytest.raises(RuleError, match="in ladders L-1 and L-2"):
        load_tiers(_rules(tmp_path, twice), prices)
    with pytest.raises(RuleError, match="no tiering policy"):
        load_tiers(_rules(tmp_path, "ladders: []\n", policy=False), prices)
