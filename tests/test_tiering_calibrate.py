"""`advisor tiering calibrate`: measured pass rates of the evaluation set fold back into the
routing, the router exports and the report. The promptfoo results are written here from the
evaluation set exported from the analysed sample, with failures planted on one feature."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor import api, store
from advisor.errors import InputError
from advisor.levers.tiering.calibration import read_results, reliability, wilson


def promptfoo_results(tests_file: Path, failing: str | None) -> dict[str, Any]:
    """A promptfoo results document (`promptfoo eval --output results.json`, version 3) for the
    exported tests: every test on both its models; the proposed model fails on `failing`."""
    rows = []
    for i, line in enumerate(tests_file.read_text(encoding="utf-8").splitlines()):
        test = json.loads(line)
        meta = test["metadata"]
        for model in test["providers"]:
            proposed = model == meta["proposed_model"]
            ok = not (proposed and meta["feature"] == failing)
            rows.append(
                {
                    "promptIdx": 0,
                    "testIdx": i,
                    "testCase": {"vars": test["vars"], "metadata": meta},
                    "provider": {"id": f"openai:chat:{model}", "label": model},
                    "success": ok,
                    "score": 1.0 if ok else 0.2,
                    "failureReason": 0 if ok else 1,
                    "metadata": meta,
                }
            )
    return {"evalId": "eval-test", "results": {"version": 3, "results": rows}}


def test_wilson_interval() -> None:
    assert wilson(57, 60) == pytest.approx((0.862989, 0.982849), abs=1e-5)
    assert wilson(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-5)
    assert wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_reliability_table() -> None:
    cal = reliability([(0.95, True), (0.96, False), (0.6, True), (1.0, True)], "test", "passed")
    assert cal is not None
    assert cal.requests == 4
    assert cal.brier == pytest.approx((0.05**2 + 0.96**2 + 0.4**2 + 0) / 4, abs=1e-6)
    assert [(b.low, b.requests, b.observed) for b in cal.bins] == [
        (0.5, 1, 1.0),
        (0.95, 2, 0.5),
        (0.99, 1, 1.0),
    ]
    assert reliability([], "none", "passed") is None


def test_csv_results(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("request_id,pass\na,pass\nb,FAIL\nc,1\nd,false\na,true\n", encoding="utf-8")
    assert read_results(path).verdicts == {"a": True, "b": False, "c": True, "d": False}
    path.write_text("request_id,pass\na,maybe\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"r\.csv: line 2: pass: 'maybe'"):
        read_results(path)
    path.write_text("id,ok\na,1\n", encoding="utf-8")
    with pytest.raises(InputError, match="request_id and pass"):
        read_results(path)


def test_malformed_promptfoo_results(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"results": {"stats": {}}}), encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.json: no `results\.results` list"):
        read_results(path)
    row = {"testCase": {"metadata": {"request_id": "r1"}}, "success": "yes"}
    path.write_text(json.dumps({"results": {"results": [row]}}), encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.json: results\.results\[0\]\.success"):
        read_results(path)
    path.write_text(json.dumps({"results": {"results": [{"success": True}]}}), encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.results\[0\]\.testCase\.metadata\.request_id"):
        read_results(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.json: not JSON"):
        read_results(path)


def test_provider_errors_have_no_verdict(tmp_path: Path) -> None:
    meta = {"request_id": "r1", "proposed_model": "small"}
    rows = [
        {"testCase": {"metadata": meta}, "provider": {"id": "x:big", "label": "big"},
         "success": False, "failureReason": 1},
        {"testCase": {"metadata": meta}, "provider": {"id": "x:small", "label": "small"},
         "success": False, "failureReason": 2},
    ]  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"results": {"results": rows}}), encoding="utf-8")
    read = read_results(path)
    assert read.verdicts == {} and read.errored == 1


@pytest.fixture(scope="module")
def calibrated(analysed_sample: api.AnalyzeResult, tmp_path_factory: pytest.TempPathFactory):
    """The sample's store copied, its evaluation set exported, the proposed model failing every
    check of the feature with most tests, then `calibrate`d."""
    work = tmp_path_factory.mktemp("calibrate")
    db = work / "advisor.duckdb"
    shutil.copy(analysed_sample.out_dir / api.DB_FILE, db)
    api.export_evalset(db, work / "evalset")
    tests_file = work / "evalset" / "promptfoo" / "tests.jsonl"
    features = Counter(
        json.loads(line)["metadata"]["feature"]
        for line in tests_file.read_text(encoding="utf-8").splitlines()
    )
    failing = features.most_common(1)[0][0]
    results = work / "results.json"
    results.write_text(json.dumps(promptfoo_results(tests_file, failing)), encoding="utf-8")
    result = api.calibrate_tiering(results, db, out_dir=work / "out")
    return result, failing, sum(features.values()), features[failing], work


def test_calibrate_excludes_the_failing_feature(calibrated: Any) -> None:
    result, failing, n, failed, work = calibrated
    tiering = next(lv for lv in result.analysis.analysis.levers if lv.id == "tiering")
    quality = tiering.details.measured_quality
    assert quality is not None
    assert (quality.requests, quality.passed) == (n, n - failed)
    assert quality.summary.startswith(f"measured on {n} requests: {n - failed} passed")
    assert quality.requests_routed < quality.requests_routed_before
    assert "routed share adjusted from" in quality.summary
    excluded = [g for g in quality.groups if g.excluded]
    # the feature, and its template(s): the same failing requests grouped the other way
    assert [g.value for g in excluded if g.kind == "feature"] == [failing]
    assert {g.rule for g in excluded} == {"TIERQ-001"}
    assert all(g.passed == 0 for g in excluded)
    # the remaining measured requests all passed: the misroute interval starts at 0
    assert quality.expected_misrouted == 0 and quality.expected_misrouted_high > 0
    heldout, measured = tiering.details.calibration  # the log's own labels, then the results
    assert measured.requests == n and measured.outcome == "passed"
    assert heldout.requests > 0 and "held-out" in heldout.basis
    assert "measured on" in tiering.details.operating_point.why
    con = store.connect(work / api.DB_FILE, read_only=True)
    try:
        routed = store.scalar(
            con, "SELECT count(*) FROM tiering_decisions WHERE routed AND feature = ?", [failing]
        )
    finally:
        con.close()
    assert routed == 0


def test_router_exports_no_longer_route_it(calibrated: Any) -> None:
    _, failing, _, _, work = calibrated
    out = work / "out"
    spec = yaml.safe_load((out / "router.yaml").read_text(encoding="utf-8"))
    assert {"feature": "feature", "op": "eq", "value": failing} in [
        g["when"] for g in spec["guards"]
    ]
    assert all(r["match"].get("feature") != failing for r in spec["rules"])
    portkey = (out / "portkey.json").read_text(encoding="utf-8")
    assert json.dumps({"$eq": failing}) not in portkey
    from advisor.routing import Router

    decision = Router(spec).decide(
        {"model": spec["rules"][0]["match"]["model"], "feature": failing,
         "messages": [{"role": "user", "content": "hi"}]}
    )  # fmt: skip
    assert not decision.routed


def test_report_shows_measured_quality(calibrated: Any) -> None:
    _, _, n, failed, work = calibrated
    html = (work / "out" / api.REPORT_FILE).read_text(encoding="utf-8")
    assert f"measured on {n} requests: {n - failed} passed" in html
    assert "Reliability" in html


def test_calibrate_csv_and_unknown_ids(calibrated: Any, tmp_path: Path) -> None:
    _, _, _, _, work = calibrated
    path = tmp_path / "r.csv"
    path.write_text("request_id,pass\nnot-a-request,pass\n", encoding="utf-8")
    with pytest.raises(InputError, match="none of the 1 request ids"):
        api.calibrate_tiering(path, work / api.DB_FILE, out_dir=tmp_path / "o")
