"""What `advisor analyze` does to what is already there.

Inputs are checked before anything is touched; a run builds its store and outputs beside the
previous ones and swaps them in, whole, only when complete; a store `analyze` did not create
is never deleted; `analyze --db STORE` without logs analyses the store as it is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import folder_snapshot, requests_in, small_log

from advisor import api
from advisor.errors import AdvisorError

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "advisor", *args], capture_output=True, text=True, timeout=600
    )


def staging_left(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".advisor-")]


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder as a completed `advisor analyze` of 20 requests leaves it."""
    base = tmp_path_factory.mktemp("previous")
    api.analyze([str(small_log(base / "a.jsonl", "a"))], out_dir=base / "advisor-out")
    return base / "advisor-out"


@pytest.fixture
def out(previous: Path, tmp_path: Path) -> Path:
    """A copy of the previous run's folder, for one test to run into."""
    return Path(shutil.copytree(previous, tmp_path / "advisor-out"))


def test_a_missing_log_leaves_every_previous_output_byte_identical(
    out: Path, tmp_path: Path
) -> None:
    before = folder_snapshot(out)
    result = run("analyze", str(tmp_path / "nosuchfile.jsonl"), "-o", str(out))
    assert result.returncode == 1, result.stderr
    assert "nosuchfile.jsonl" in result.stderr
    assert folder_snapshot(out) == before
    assert staging_left(out) == []


def _broken_rules(tmp_path: Path) -> dict[str, object]:
    rules = Path(shutil.copytree(ROOT / "rules", tmp_path / "rules"))
    (rules / "tiers.yaml").write_text("schema_version: 1\nkind: tiers\nno_such_field: 1\n")
    return {"rules_dir": rules}


def _broken_prices(tmp_path: Path) -> dict[str, object]:
    prices = tmp_path / "prices.yaml"
    prices.write_text("schema_version: 1\nkind: prices\nmodels: [1, 2\n")
    return {"prices_files": [prices]}


@pytest.mark.parametrize("broken", [_broken_rules, _broken_prices], ids=["rules", "prices"])
def test_rules_and_prices_are_checked_before_anything_is_touched(
    out: Path, tmp_path: Path, broken
) -> None:
    before = folder_snapshot(out)
    log = small_log(tmp_path / "b.jsonl", "b")
    with pytest.raises(AdvisorError):
        api.analyze([str(log)], out_dir=out, **broken(tmp_path))
    assert folder_snapshot(out) == before
    assert staging_left(out) == []


@pytest.mark.parametrize(
    # the guardrail exports: written on every run (a router that routes nothing is not written)
    "stage",
    ["simulate", "render_report", "_write_guardrail_exports"],
    ids=["levers", "report", "exports"],
)
def test_a_run_failing_midway_leaves_the_previous_set_and_no_staging_folder(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"{stage} broke")

    monkeypatch.setattr(api, stage, boom)
    before = folder_snapshot(out)
    with pytest.raises(RuntimeError, match="broke"):
        api.analyze([str(small_log(tmp_path / "b.jsonl", "b"))], out_dir=out)
    assert folder_snapshot(out) == before
    assert staging_left(out) == []


def test_a_second_run_replaces_the_whole_set(out: Path, tmp_path: Path) -> None:
    """Nothing of the previous run stays beside the new one: a file the new run does not
    write (here the report and exports, with write_report=False) goes too."""
    log = small_log(tmp_path / "b.jsonl", "b", n=7)
    result = api.analyze([str(log)], out_dir=out, write_report=False)
    assert sorted(p.name for p in out.iterdir()) == ["advisor.duckdb", "analysis.json"]
    analysis = json.loads((out / "analysis.json").read_text())
    assert [i["path"] for i in analysis["inputs"]] == ["b.jsonl"]
    assert requests_in(out / "advisor.duckdb") == 7
    assert {name: path.parent for name, path in result.files.items()} == {
        "db": out,
        "analysis": out,
    }
    # ... and the store it made is its own: a third run replaces it in turn
    api.analyze([str(small_log(tmp_path / "c.jsonl", "c", n=3))], out_dir=out)
    assert requests_in(out / "advisor.duckdb") == 3
    assert (out / "report.html").is_file() and staging_left(out) == []


def test_a_store_built_by_ingest_is_never_deleted(tmp_path: Path) -> None:
    """The README's own paths: `advisor ingest b --db DIR/advisor.duckdb`, then
    `advisor analyze a -o DIR` is refused with what to do instead."""
    folder = tmp_path / "advisor-out"
    db = folder / "advisor.duckdb"
    api.ingest([str(small_log(tmp_path / "b.jsonl", "b", n=5))], db)
    before = folder_snapshot(folder)
    a = small_log(tmp_path / "a.jsonl", "a", n=3)
    result = run("analyze", str(a), "-o", str(folder))
    assert result.returncode == 1, result.stderr
    assert str(db) in result.stderr and f"--db {db}" in result.stderr
    assert "Traceback" not in result.stderr
    assert folder_snapshot(folder) == before
    # the hint works: the logs are added to that store, and the whole store is analysed
    done = api.analyze([str(a)], out_dir=folder, db=db)
    assert done.analysis.coverage.requests == 8 and requests_in(db) == 8


@pytest.mark.parametrize("how", ["ingest", "analyze --db"])
def test_a_store_analyze_made_is_kept_once_logs_are_added_to_it_another_way(
    out: Path, tmp_path: Path, how: str
) -> None:
    """`advisor ingest b --db DIR/advisor.duckdb` into a store `analyze` made: it now holds
    logs no run of `analyze` would put back, so the next `analyze c -o DIR` must not drop it."""
    db = out / "advisor.duckdb"
    b = str(small_log(tmp_path / "b.jsonl", "b", n=4))
    if how == "ingest":
        api.ingest([b], db)
    else:
        api.analyze([b], out_dir=out, db=db, write_report=False)
    with pytest.raises(AdvisorError, match="not replacing it"):
        api.analyze([str(small_log(tmp_path / "c.jsonl", "c", n=2))], out_dir=out)
    assert requests_in(db) == 24


def test_analyze_db_without_logs_analyses_what_the_store_holds(tmp_path: Path) -> None:
    """The incremental workflow: ingest daily, analyse monthly."""
    db = tmp_path / "store.duckdb"
    api.ingest([str(small_log(tmp_path / "d1.jsonl", "d1", n=4))], db)
    api.ingest([str(small_log(tmp_path / "d2.jsonl", "d2", n=6))], db)
    result = run("analyze", "--db", str(db), "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["coverage"]["requests"] == 10
    assert (tmp_path / "out" / "report.html").is_file()


def test_analyze_db_without_logs_needs_an_existing_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing.duckdb"
    with pytest.raises(AdvisorError, match="no store"):
        api.analyze([], out_dir=tmp_path / "out", db=missing)
    assert not missing.exists()


def test_output_that_is_a_file_is_an_error_naming_it(tmp_path: Path) -> None:
    log = small_log(tmp_path / "a.jsonl", "a", n=2)
    target = tmp_path / "out.txt"
    target.write_text("keep me")
    for output in (target, target / "sub"):
        result = run("analyze", str(log), "-o", str(output))
        assert result.returncode == 1, result.stderr
        assert str(output) in result.stderr and "internal error" not in result.stderr
    assert target.read_text() == "keep me"


def _unwritable_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").mkdir()
    except PermissionError:
        return folder
    (folder / "probe").rmdir()  # root writes anywhere: /sys refuses even root
    sys_folder = Path("/sys")
    try:
        (sys_folder / "advisor-probe").mkdir()
    except PermissionError:
        return sys_folder
    except OSError:
        pass
    pytest.skip("no folder this user cannot write in")


def test_an_unwritable_output_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    log = small_log(tmp_path / "a.jsonl", "a", n=2)
    folder = _unwritable_folder(tmp_path)
    for output in (folder, folder / "advisor-out"):
        result = run("analyze", str(log), "-o", str(output))
        assert result.returncode == 1, result.stderr
        assert str(output) in result.stderr and "internal error" not in result.stderr
