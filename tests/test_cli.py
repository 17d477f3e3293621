"""The CLI end to end: the main job on sample_logs/, every command's help, the error boundary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from advisor.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_logs" / "traffic.jsonl.gz"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "advisor", *args], capture_output=True, text=True, cwd=cwd,
        timeout=600,
    )  # fmt: skip


def _commands() -> list[tuple[str, ...]]:
    group = typer.main.get_command(app)
    found = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        if subs:
            found += [(name, sub) for sub in subs]
        else:
            found.append((name,))
    return sorted(found)


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_has_help_with_an_example_and_is_in_the_readme(command) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example:" in result.stdout
    assert f"advisor {' '.join(command)}" in (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "advisor-out"
    result = run("analyze", str(SAMPLE), "-o", str(out))
    assert result.returncode == 0, result.stderr
    (out / "stdout.txt").write_text(result.stdout)
    return out


def test_analyze_sample_writes_outputs_and_summary(analyzed: Path) -> None:
    for name in ("advisor.duckdb", "analysis.json", "report.html"):
        assert (analyzed / name).is_file(), name
    stdout = (analyzed / "stdout.txt").read_text()
    # Coverage comes first, then spend.
    assert stdout.lower().index("coverage") < stdout.lower().index("by model")
    analysis = json.loads((analyzed / "analysis.json").read_text())
    truth = json.loads((ROOT / "sample_logs" / "ground_truth.json").read_text())
    cov = analysis["coverage"]
    assert cov["quarantined_rows"] == len(truth["malformed_lines"])
    assert cov["requests"] == truth["requests"]
    assert {m["model"] for m in cov["unpriced_models"]} >= set(truth["unpriced_models"])


def test_report_and_export_from_the_store(analyzed: Path, tmp_path: Path) -> None:
    md = run("report", str(analyzed / "analysis.json"), "--format", "md")
    assert md.returncode == 0 and "# " in md.stdout
    out = tmp_path / "decisions.csv"
    result = run("export", "decisions", "--db", str(analyzed / "advisor.duckdb"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    header = out.read_text().splitlines()[0].split(",")
    from advisor.api import DECISION_COLUMNS

    assert header == list(DECISION_COLUMNS)


def test_errors_go_to_stderr_without_traceback(tmp_path: Path) -> None:
    result = run("analyze", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_usage_errors_are_usage_errors(tmp_path: Path) -> None:
    """An unknown option or a missing argument: click's message and exit code 2, not an
    internal error (typer's vendored click raises classes that are not click's own)."""
    for args in (("analyze", "x.jsonl", "--no-such-flag"), ("analyze",), ("prices", "show")):
        result = run(*args)
        assert result.returncode == 2, args
        assert "internal error" not in result.stderr
        assert "Usage: advisor" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_trace_wherever_it_stands(tmp_path: Path, where: str) -> None:
    args = ["analyze", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o")]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    result = run(*args)
    assert result.returncode == 1
    assert "no such file" in result.stderr
    assert "Traceback" in result.stderr


def test_nothing_usable_exits_non_zero(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n[1]\n")
    result = run("analyze", str(junk), "-o", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "nothing usable" in result.stderr


def test_strict_fails_on_quarantined_rows(tmp_path: Path) -> None:
    from helpers import openai_line, write_jsonl

    path = write_jsonl(tmp_path / "a.jsonl", [openai_line("a"), "oops"])
    assert run("analyze", str(path), "-o", str(tmp_path / "o")).returncode == 0
    strict = run("analyze", str(path), "-o", str(tmp_path / "o"), "--strict")
    assert strict.returncode == 1 and "1 rows quarantined" in strict.stderr


def test_version_and_prices(tmp_path: Path) -> None:
    assert run("--version").stdout.startswith("advisor ")
    listing = json.loads(run("prices", "list", "--json").stdout)
    assert any(row["model"] == "gpt-4o" for row in listing)
    shown = json.loads(run("prices", "show", "gpt-4o-2024-08-06").stdout)
    assert shown["id"] == "gpt-4o" and shown["resolved_as"] == "alias"
    missing = run("prices", "show", "no-such-model")
    assert missing.returncode == 1 and "no price" in missing.stderr


def test_core_does_not_import_presentation_or_ml_libraries() -> None:
    code = (
        "import sys, advisor.api, advisor.ingest, advisor.baseline, advisor.simulate;"
        "bad = {'typer', 'rich', 'jinja2', 'altair'} & {m.split('.')[0] for m in sys.modules};"
        "print(sorted(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
    helped = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv=['advisor','--help'];"
         "import advisor.cli as c;\ntry: c.main()\nexcept SystemExit: pass\n"
         "print('sklearn' in sys.modules)"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert helped.stdout.strip().endswith("False")


def test_without_tokenizer_counts_are_estimated_and_said(tmp_path: Path) -> None:
    from helpers import openai_line, write_jsonl

    rows = [openai_line(f"l{i}") for i in range(25)] + [openai_line("x", prompt=None)]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    env = {**os.environ, "ADVISOR_TOKENIZER": "estimate", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "advisor", "analyze", str(path), "-o", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cov = json.loads((tmp_path / "o" / "analysis.json").read_text())["coverage"]
    assert cov["tokenizer"] == "estimate"
    assert cov["token_source"]["estimated"] == 1
    assert cov["token_calibration"] is not None  # calibrated against the 25 logged rows
    said = " ".join(result.stdout.split())
    assert "1 requests have estimated token counts because no tokenizer could be loaded" in said
    assert said.count("estimated token counts") == 1  # said once, not again as a note


def test_diff_reports_changes_and_gates_on_cost_per_request(tmp_path: Path) -> None:
    from helpers import openai_line, write_jsonl

    cheap = write_jsonl(tmp_path / "a.jsonl", [openai_line("a", prompt=1000, completion=10)])
    dear = write_jsonl(tmp_path / "b.jsonl", [openai_line("b", prompt=1000, completion=900)])
    for name, path in (("old", cheap), ("new", dear)):
        assert run("analyze", str(path), "-o", str(tmp_path / name)).returncode == 0
    old, new = tmp_path / "old" / "analysis.json", tmp_path / "new" / "analysis.json"
    shown = run("diff", str(old), str(new), "--json")
    assert shown.returncode == 0, shown.stderr
    changes = {c["name"]: c for c in json.loads(shown.stdout)["changes"]}
    assert changes["baseline cost"]["old"] == "0.0026"  # 1000 x $2.50/M + 10 x $10/M
    assert changes["baseline cost"]["new"] == "0.0115"
    gated = run("diff", str(old), str(new), "--fail-on-increase", "5")
    assert gated.returncode == 1 and "rose by more than 5" in gated.stderr
    assert run("diff", str(new), str(old), "--fail-on-increase", "5").returncode == 0


def test_analyze_tells_each_stage_as_it_starts(tmp_path: Path) -> None:
    """What the CLI's spinner shows after reading: a long replay never looks like a hang."""
    from helpers import openai_line, write_jsonl

    from advisor import api
    from advisor.levers.registry import LEVERS

    path = write_jsonl(tmp_path / "a.jsonl", [openai_line(f"r{i}") for i in range(5)])
    steps: list[str] = []
    api.analyze([str(path)], out_dir=tmp_path / "o", step=steps.append)
    assert steps[0] == "pricing every request"
    assert steps[-1] == "writing the analysis, report and exports"
    titles = [lever.title for lever in LEVERS]
    for title in titles:
        assert f"{title}: replaying the log" in steps
    # every lever after the first replays again on its predecessors' output
    assert sum("replaying after the levers before it" in s for s in steps) == len(titles) - 1


def test_an_unknown_lever_is_a_usage_error_naming_the_levers(tmp_path: Path) -> None:
    from helpers import openai_line, write_jsonl

    path = write_jsonl(tmp_path / "a.jsonl", [openai_line("a")])
    for flag in (["--levers", "tiering,cachng"], ["--no-lever", "nope"]):
        result = run("analyze", str(path), "-o", str(tmp_path / "o"), *flag)
        assert result.returncode == 2, result.stderr
        said = " ".join(result.stderr.split())
        assert (
            "unknown lever" in said and "tiering, trimming, output_caps, caching, batching" in said
        )
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_levers_can_be_switched_off_and_the_run_says_which_ran(tmp_path: Path) -> None:
    from helpers import openai_line, write_jsonl

    path = write_jsonl(tmp_path / "a.jsonl", [openai_line(f"r{i}") for i in range(5)])
    result = run("analyze", str(path), "-o", str(tmp_path / "o"), "--no-lever", "caching")
    assert result.returncode == 0, result.stderr
    assert "Levers run: tiering, batching; not run: trimming, output_caps, caching" in " ".join(
        result.stdout.split()
    )
    analysis = json.loads((tmp_path / "o" / "analysis.json").read_text())
    ran = ["tiering", "batching"]
    assert analysis["levers_run"] == ran == [lv["id"] for lv in analysis["levers"]]
    assert analysis["levers_skipped"] == ["trimming", "output_caps", "caching"]
    only = run("analyze", str(path), "-o", str(tmp_path / "p"), "--levers", "caching,trimming")
    assert only.returncode == 0, only.stderr
    analysis = json.loads((tmp_path / "p" / "analysis.json").read_text())
    assert analysis["levers_run"] == ["caching"]  # trimming is valid, not built yet


def test_a_corrupt_file_among_good_ones_does_not_stop_the_run(tmp_path: Path) -> None:
    from helpers import openai_line, write_jsonl

    good = write_jsonl(tmp_path / "good.jsonl", [openai_line("a"), openai_line("b")])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    result = run("analyze", str(good), str(bad), "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "Quarantined rows 1" in said and "bad.parquet:1" in said
    assert "cannot be read as parquet" in said
    strict = run("analyze", str(good), str(bad), "-o", str(tmp_path / "s"), "--strict")
    assert strict.returncode == 1 and "1 rows quarantined" in strict.stderr
    alone = run("analyze", str(bad), "-o", str(tmp_path / "b"))
    assert alone.returncode == 1
    assert "nothing usable" in alone.stderr and "cannot be read as parquet" in alone.stderr


def test_ingest_says_why_rows_were_quarantined(tmp_path: Path) -> None:
    from helpers import openai_line, write_jsonl

    path = write_jsonl(tmp_path / "a.jsonl", [openai_line("a"), openai_line("b")])
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"truncated": \n')
    db = str(tmp_path / "s.duckdb")
    result = run("ingest", str(path), "--db", db)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "1 quarantined" in said and "line 3: invalid JSON" in said
    rows = json.loads(run("ingest", str(path), "--db", db, "--json").stdout)
    # again: nothing added, the bad line included (already quarantined: a duplicate)
    assert (rows[0]["ingested"], rows[0]["duplicates"], rows[0]["quarantined"]) == (0, 3, 0)
    assert rows[0]["quarantine"] == []
