"""Sampled lever replay (advisor.sampling): whole units drawn, savings scaled, intervals that
hold the full run's figures, and an exact run's analysis.json left as it was."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from advisor import api, sampling, store
from advisor.analysis import Analysis
from advisor.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "fraction"), [("5%", 0.05), ("0.25", 0.25), ("100%", 1.0), (" 12.5% ", 0.125)]
)
def test_parse_fraction(text: str, fraction: float) -> None:
    assert sampling.parse_fraction(text) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["0", "0%", "150%", "-5%", "abc", "", "nan"])
def test_parse_fraction_refuses(text: str) -> None:
    with pytest.raises(InputError):
        sampling.parse_fraction(text)


def test_plan_is_automatic_only_above_the_threshold() -> None:
    assert sampling.plan(1_000, None) is None
    assert sampling.plan(1_000, 1.0) is None  # 100% forces a full replay
    assert sampling.plan(1_000, 0.1) == sampling.SamplePlan(0.1)
    auto = sampling.plan(sampling.AUTO_ABOVE * 5, None)
    assert auto is not None and auto.automatic
    assert auto.fraction == pytest.approx(sampling.AUTO_TARGET / (sampling.AUTO_ABOVE * 5))
    assert sampling.plan(sampling.AUTO_ABOVE * 5, 1.0) is None


def _tiny_store(path: Path | None = None) -> duckdb.DuckDBPyConnection:
    """40 features x 3 days; feature f7's sessions start on day 1 and run into day 2."""
    con = store.connect(path)
    rows = []
    for f in range(40):
        for day in range(1, 4):
            for i in range(3):
                rid = f"r{f}-{day}-{i}"
                session = f"s{f}" if f == 7 else None
                ts = f"2026-01-0{day} 23:5{i}:00" if f != 7 else f"2026-01-0{day} 10:00:0{i}"
                rows.append((rid, ts, f"feat{f}", session, f"sys{f % 3}"))
    con.executemany(
        "INSERT INTO requests (request_id, ts, feature, session_id, system_hash) "
        "VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    con.execute("INSERT INTO messages SELECT request_id, 1, 'system', system_hash FROM requests")
    con.execute("INSERT INTO texts SELECT DISTINCT system_hash, 'text' FROM requests")
    con.execute(
        "CREATE TABLE costs AS SELECT request_id, 1.0::DECIMAL(38, 18) AS baseline_cost "
        "FROM requests"
    )
    return con


def test_draw_keeps_whole_template_days_and_whole_sessions() -> None:
    con = _tiny_store()
    drawn = sampling.draw(con, sampling.SamplePlan(0.5))
    # 39 features x 3 days, plus f7's one session (the unit of its first request's day)
    assert (drawn.strata, drawn.units) == (40, 39 * 3 + 1)
    # two of each feature's three days (round(1.5) is 2, and two at the least); f7 whole
    assert drawn.units_sampled == 39 * 2 + 1
    kept = con.execute(
        f"""SELECT r.feature, strftime(r.ts, '%d'), count(*)
            FROM {sampling.sample_schema(con)}.requests r GROUP BY ALL"""
    ).fetchall()
    assert all(n == 3 for f, _, n in kept if f != "feat7")  # a template-day is whole or absent
    assert sorted(n for f, _, n in kept if f == "feat7") == [3, 3, 3]  # the session, whole
    assert drawn.requests_sampled == sum(n for *_, n in kept) == (39 * 2 + 3) * 3
    messages = con.execute(
        f"SELECT count(*) FROM {sampling.sample_schema(con)}.messages"
    ).fetchall()[0][0]
    assert messages == drawn.requests_sampled
    strata = con.execute(
        f"SELECT units, units_sampled, exact_cost, sampled_cost FROM {sampling.STRATA} "
        "WHERE stratum = 'feat0'"
    ).fetchall()
    assert strata == [(3, 2, 9, 6)]
    again = _tiny_store()
    assert sampling.draw(again, sampling.SamplePlan(0.5)) == drawn  # a stable hash, no RNG
    picked = set(con.execute(f"SELECT DISTINCT unit FROM {sampling.UNITS}").fetchall())
    other = _tiny_store()
    sampling.draw(other, sampling.SamplePlan(0.5, seed=1))
    assert set(other.execute(f"SELECT DISTINCT unit FROM {sampling.UNITS}").fetchall()) != picked


def test_narrowed_reads_the_sample_and_moves_what_the_levers_made() -> None:
    con = _tiny_store()
    drawn = sampling.draw(con, sampling.SamplePlan(0.3))
    with sampling.narrowed(con):
        assert store.scalar(con, "SELECT count(*) FROM requests") == drawn.requests_sampled
        con.execute("CREATE OR REPLACE TABLE sim_final AS SELECT request_id FROM requests")
    assert store.scalar(con, "SELECT count(*) FROM requests") == 40 * 9
    assert store.scalar(con, "SELECT count(*) FROM main.sim_final") == drawn.requests_sampled
    schemas = {r[0] for r in con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()}
    assert sampling.SCHEMA not in schemas


@pytest.mark.parametrize("name", ["sampled.duckdb", "main.duckdb", 'o\'brien "x".duckdb'])
def test_a_store_named_like_the_schema_still_samples(name: str, tmp_path: Path) -> None:
    """A store file's name is its catalog's: the sampled schema is always named with it."""
    con = _tiny_store(tmp_path / name)
    drawn = sampling.draw(con, sampling.SamplePlan(0.3))
    with sampling.narrowed(con):
        assert store.scalar(con, "SELECT count(*) FROM requests") == drawn.requests_sampled
        con.execute("CREATE OR REPLACE TABLE sim_final AS SELECT request_id FROM requests")
    assert store.scalar(con, "SELECT count(*) FROM sim_final") == drawn.requests_sampled
    con.close()


def _estimator(units: dict[str, tuple[str, str]], of_units: int) -> sampling.Estimator:
    """An Estimator over hand-made units of one stratum: unit -> (baseline cost, saving of lever
    `x`), drawn from `of_units` units whose exact baseline cost is 100."""
    con = duckdb.connect()
    con.execute(
        f"CREATE TEMP TABLE {sampling.UNITS} (request_id VARCHAR, stratum VARCHAR, unit VARCHAR)"
    )
    sampled = sum(Decimal(cost) for cost, _ in units.values())
    con.execute(
        f"CREATE TEMP TABLE {sampling.STRATA} AS SELECT 'f' AS stratum, ? AS units, "
        "? AS units_sampled, 100::DECIMAL(38, 18) AS exact_cost, "
        "?::DECIMAL(38, 18) AS sampled_cost",
        [of_units, len(units), str(sampled)],
    )
    con.execute("CREATE TABLE costs (request_id VARCHAR, baseline_cost DECIMAL(38, 18))")
    steps = "(request_id VARCHAR, lever VARCHAR, cost_before DECIMAL(38, 18), " \
        "cost_after DECIMAL(38, 18))"  # fmt: skip
    con.execute(f"CREATE TABLE sim_steps {steps}")
    con.execute(f"CREATE TABLE sim_alone {steps}")
    con.execute("CREATE TABLE requests (request_id VARCHAR, feature VARCHAR)")
    for unit, (cost, saving) in units.items():
        rid = f"req-{unit}"
        con.execute(f"INSERT INTO {sampling.UNITS} VALUES (?, 'f', ?)", [rid, unit])
        con.execute("INSERT INTO costs VALUES (?, ?)", [rid, cost])
        con.execute("INSERT INTO requests VALUES (?, 'f')", [rid])
        for table in ("sim_steps", "sim_alone"):
            con.execute(
                f"INSERT INTO {table} VALUES (?, 'x', ?, ?)",
                [rid, cost, str(Decimal(cost) - Decimal(saving))],
            )
    return sampling.Estimator(con)


def test_ratio_estimate_and_its_interval_by_hand() -> None:
    est = _estimator({"a": ("10", "2"), "b": ("30", "3"), "c": ("10", "5")}, 6)
    fig = est.figure("marginal:x")
    assert est.scale == 2  # exact 100 / sampled 50
    assert fig.sampled == 10 and fig.estimate == 20
    # R = 10/50; residuals 2-2, 3-6, 5-2: sum of squares 18;
    # V = (1 - 3/6) * 2^2 * 3/2 * 18 = 54
    half = (sampling.Z95 * Decimal(54).sqrt()).quantize(sampling.PLACES)
    assert (fig.low, fig.high) == (20 - half, 20 + half)
    assert est.figure("row:x:f") == fig  # the plan's row over the same requests


def test_no_sampling_error_where_savings_follow_cost_or_all_was_drawn() -> None:
    """Where every unit saves the same share of its cost, the ratio estimator is exact; where a
    stratum was drawn whole, nothing is left to estimate."""
    est = _estimator({"a": ("10", "1"), "b": ("40", "4"), "c": ("50", "5")}, 12)
    fig = est.figure("standalone:x")
    assert fig.estimate == 10 and fig.low == fig.high == 10
    whole = _estimator({"a": ("40", "2"), "b": ("60", "9")}, 2)
    fig = whole.figure("standalone:x")
    assert fig.estimate == 11 and fig.low == fig.high == 11


@pytest.fixture(scope="module")
def sampled(
    tmp_path_factory: pytest.TempPathFactory, analysed_sample: api.AnalyzeResult
) -> api.AnalyzeResult:
    """The session's store of the sample log, re-analysed with the levers on 25% of it."""
    tmp = tmp_path_factory.mktemp("sampled")
    db = tmp / "store.duckdb"
    shutil.copy(analysed_sample.files["db"], db)
    return api.analyze([], db=db, out_dir=tmp / "out", sample=0.25, write_report=False)


# Levers whose policy the sample itself learns, and learns differently from a smaller log: the
# tiering classifier is more confident when trained on fewer requests (on a generated 100k log it
# routes 20% of a 20% sample against 11% of the full log: $31.46, 95% $30.40-$32.52, against
# $17.09), and output caps set each feature's cap from the days drawn. Their gap is a bias the
# sampling intervals do not state (README, "Very large logs"); the second test holds it, so a fix
# shows as an XPASS.
LEARNED = ("tiering", "output_caps")


def _outside(full: Analysis, sampled: Analysis, levers: tuple[str, ...]) -> list[str]:
    """The figures of `levers` (standalone, marginal) the sampled intervals miss."""
    assert sampled.sample is not None
    intervals = {iv.id: iv for iv in sampled.sample.levers}
    missed = []
    for lever in full.levers:
        if lever.id not in levers:
            continue
        iv = intervals[lever.id]
        if not iv.standalone.low <= lever.standalone_saving <= iv.standalone.high:
            missed.append(f"{lever.id} standalone")
        if not iv.marginal.low <= lever.marginal_saving <= iv.marginal.high:
            missed.append(f"{lever.id} marginal")
    return missed


def test_sampled_intervals_hold_the_full_runs_savings(
    sampled: api.AnalyzeResult, analysed_sample: api.AnalyzeResult
) -> None:
    full, est = analysed_sample.analysis, sampled.analysis
    assert est.sample is not None and full.sample is None
    assert [lv.id for lv in est.levers] == [lv.id for lv in full.levers]
    replayed = tuple(lv.id for lv in full.levers if lv.id not in LEARNED)
    assert replayed == ("trimming", "caching", "batching")
    assert _outside(full, est, replayed) == []
    combined = est.sample.combined
    assert combined.low <= full.combined.saving <= combined.high
    assert combined.low < est.combined.saving < combined.high
    # the baseline is exact, not sampled
    assert est.baseline == full.baseline and est.coverage == full.coverage


@pytest.mark.xfail(strict=True, reason="policies learned from the sample: see LEARNED")
def test_learned_policies_hold_too(
    sampled: api.AnalyzeResult, analysed_sample: api.AnalyzeResult
) -> None:
    assert _outside(analysed_sample.analysis, sampled.analysis, LEARNED) == []


def test_sampled_figures_still_add_up(sampled: api.AnalyzeResult) -> None:
    a = sampled.analysis
    assert a.sample is not None
    assert sum(lv.marginal_saving for lv in a.levers) == a.combined.saving
    plan = a.action_plan
    assert sum(r.saving for r in plan.rows) + plan.other == plan.total == a.combined.saving
    assert a.baseline.cost is not None and a.combined.cost == a.baseline.cost - a.combined.saving
    assert {iv.id for iv in a.sample.action_plan} == {r.id for r in plan.rows}
    assert a.sample.requests_sampled < a.sample.requests == a.coverage.requests
    assert 0 < a.sample.units_sampled < a.sample.units


def test_sampled_analysis_is_deterministic_and_says_so(
    sampled: api.AnalyzeResult, tmp_path: Path
) -> None:
    data = json.loads(sampled.files["analysis"].read_text())
    assert data["sample"]["fraction"] == 0.25 and data["sample"]["automatic"] is False
    db = tmp_path / "again.duckdb"
    shutil.copy(sampled.files["db"], db)
    again = api.analyze([], db=db, out_dir=tmp_path / "out", sample=0.25, write_report=False)
    first = sampled.files["analysis"].read_text().splitlines()
    second = again.files["analysis"].read_text().splitlines()
    assert [(x, y) for x, y in zip(first, second, strict=True) if x != y] == [
        (x, y) for x, y in zip(first, second, strict=True) if '"generated_at"' in x
    ]
    md = api.render_report(sampled.analysis, "md")
    assert "Sampled: the levers were replayed on 25.00% of the log" in md
    assert "(95%: " in md
    html = api.render_report(sampled.analysis, "html")
    assert "95%: " in html and "Sampled: the levers" in html


def test_exact_analysis_writes_no_sample_key(analysed_sample: api.AnalyzeResult) -> None:
    assert '"sample"' not in analysed_sample.files["analysis"].read_text()


@pytest.mark.parametrize("value", ["0%", "abc", "200%"])
def test_cli_refuses_a_bad_sample_before_reading_anything(value: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from advisor.cli import app

    log = ROOT / "sample_logs" / "traffic.jsonl.gz"
    result = CliRunner().invoke(
        app, ["analyze", str(log), "-o", str(tmp_path / "out"), "--sample", value]
    )
    assert result.exit_code == 2
    assert "--sample" in result.output
    assert not (tmp_path / "out").exists()


def test_an_automatic_sample_says_why(sampled: api.AnalyzeResult) -> None:
    from advisor.report import fmt

    a = sampled.analysis
    assert a.sample is not None
    auto = a.model_copy(update={"sample": a.sample.model_copy(update={"automatic": True})})
    sentence = fmt.sample_sentence(auto)
    assert sentence is not None
    assert f"chosen because the log holds over {sampling.AUTO_ABOVE:,} requests" in sentence
    assert "chosen because" not in (fmt.sample_sentence(a) or "")
