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


def _tiny_store() -> duckdb.DuckDBPyConnection:
    """40 features x 3 days; feature f7's sessions start on day 1 and run into day 2."""
    con = store.connect()
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
    # 39 features x 3 days, plus f7's one session (its first request's day)
    assert drawn.units == 39 * 3 + 1
    assert 0 < drawn.units_sampled < drawn.units
    kept = con.execute(
        f"""SELECT r.feature, strftime(r.ts, '%d'), count(*) FROM {sampling.SCHEMA}.requests r
            GROUP BY ALL"""
    ).fetchall()
    assert all(n == 3 for f, _, n in kept if f != "feat7")  # a template-day is whole or absent
    f7 = [n for f, _, n in kept if f == "feat7"]
    assert f7 in ([], [3, 3, 3])  # the session spans three days and stays whole
    assert drawn.requests_sampled == sum(n for *_, n in kept)
    messages = con.execute(f"SELECT count(*) FROM {sampling.SCHEMA}.messages").fetchall()[0][0]
    assert messages == drawn.requests_sampled
    again = _tiny_store()
    assert sampling.draw(again, sampling.SamplePlan(0.5)) == drawn  # a stable hash, no RNG
    other = sampling.draw(again, sampling.SamplePlan(0.5, seed=1))
    assert other.units == drawn.units


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


def _estimator(units: dict[str, tuple[str, str]], fraction: float) -> sampling.Estimator:
    """An Estimator over hand-made units: unit -> (baseline cost, saving of lever `x`)."""
    con = duckdb.connect()
    con.execute(f"CREATE TEMP TABLE {sampling.UNITS} (request_id VARCHAR, unit VARCHAR)")
    con.execute("CREATE TABLE costs (request_id VARCHAR, baseline_cost DECIMAL(38, 18))")
    steps = "(request_id VARCHAR, lever VARCHAR, cost_before DECIMAL(38, 18), " \
        "cost_after DECIMAL(38, 18))"  # fmt: skip
    con.execute(f"CREATE TABLE sim_steps {steps}")
    con.execute(f"CREATE TABLE sim_alone {steps}")
    con.execute("CREATE TABLE requests (request_id VARCHAR, feature VARCHAR)")
    for unit, (cost, saving) in units.items():
        rid = f"req-{unit}"
        con.execute(f"INSERT INTO {sampling.UNITS} VALUES (?, ?)", [rid, unit])
        con.execute("INSERT INTO costs VALUES (?, ?)", [rid, cost])
        con.execute("INSERT INTO requests VALUES (?, 'f')", [rid])
        for table in ("sim_steps", "sim_alone"):
            con.execute(
                f"INSERT INTO {table} VALUES (?, 'x', ?, ?)",
                [rid, cost, str(Decimal(cost) - Decimal(saving))],
            )
    return sampling.Estimator(con, Decimal(100), fraction)


def test_ratio_estimate_and_its_interval_by_hand() -> None:
    est = _estimator({"a": ("10", "2"), "b": ("30", "3"), "c": ("10", "5")}, 0.5)
    fig = est.figure("marginal:x")
    assert est.scale == 2  # exact 100 / sampled 50
    assert fig.sampled == 10 and fig.estimate == 20
    # R = 10/50; residuals 2-2, 3-6, 5-2: sum of squares 18; V = (1 - 0.5) * 2^2 * 18 = 36
    half = (sampling.Z95 * 6).quantize(sampling.PLACES)
    assert (fig.low, fig.high) == (20 - half, 20 + half)
    assert est.figure("row:x:f") == fig  # the plan's row over the same requests


def test_savings_proportional_to_cost_have_no_sampling_error() -> None:
    """Where every unit saves the same share of its cost, the ratio estimator is exact."""
    est = _estimator({"a": ("10", "1"), "b": ("40", "4"), "c": ("50", "5")}, 0.25)
    fig = est.figure("standalone:x")
    assert fig.estimate == 10 and fig.low == fig.high == 10


@pytest.fixture(scope="module")
def sampled(
    tmp_path_factory: pytest.TempPathFactory, analysed_sample: api.AnalyzeResult
) -> api.AnalyzeResult:
    """The session's store of the sample log, re-analysed with the levers on 25% of it."""
    tmp = tmp_path_factory.mktemp("sampled")
    db = tmp / "store.duckdb"
    shutil.copy(analysed_sample.files["db"], db)
    return api.analyze([], db=db, out_dir=tmp / "out", sample=0.25, write_report=False)


def test_sampled_intervals_hold_the_full_runs_savings(
    sampled: api.AnalyzeResult, analysed_sample: api.AnalyzeResult
) -> None:
    full, est = analysed_sample.analysis, sampled.analysis
    assert est.sample is not None and full.sample is None
    intervals = {iv.id: iv for iv in est.sample.levers}
    assert [lv.id for lv in est.levers] == [lv.id for lv in full.levers]
    for lever in full.levers:
        iv = intervals[lever.id]
        assert iv.standalone.low <= lever.standalone_saving <= iv.standalone.high, lever.id
        assert iv.marginal.low <= lever.marginal_saving <= iv.marginal.high, lever.id
    combined = est.sample.combined
    assert combined.low <= full.combined.saving <= combined.high
    assert combined.low < est.combined.saving < combined.high
    # the baseline is exact, not sampled
    assert est.baseline == full.baseline and est.coverage == full.coverage


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
