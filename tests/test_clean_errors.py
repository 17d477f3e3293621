"""Hostile input gets a clean answer: a named error (exit 1), a usage error (exit 2) or a
quarantine row, never an internal error (exit 70), a silent skip, or text that a terminal or a
spreadsheet would obey."""

from __future__ import annotations

import csv
import os
import pathlib
import random
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import openai_line, write_jsonl

from advisor import api, store
from advisor.errors import AdvisorError, RuleError
from advisor.ingest import ingest
from advisor.ingest.files import expand_paths

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`advisor ARGS` in this process (so monkeypatches apply): exit code, stdout, stderr."""
    from advisor import cli as advisor_cli

    code: Any = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["advisor", *args])
        patch.setenv("COLUMNS", "400")  # no wrapping inside the phrases checked
        try:
            advisor_cli.main()
        except SystemExit as done:
            code = done.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _good(folder: Path, name: str = "good.jsonl", rid: str = "a") -> Path:
    return write_jsonl(folder / name, [openai_line(rid)])


# 1. Corrupt Parquet: whatever the reader raises about the file quarantines that file only.


def _parquet_corruptions(folder: Path) -> dict[str, Path]:
    good = folder / "whole.parquet"
    duckdb.sql(
        "SELECT TIMESTAMP '2026-10-01 12:00:00' + INTERVAL (i) MINUTE AS timestamp, "
        "'gpt-4o-mini' AS model, 10 + i AS prompt_tokens, 3 AS completion_tokens "
        "FROM range(200) t(i)"
    ).write_parquet(str(good))
    data = good.read_bytes()
    rng = random.Random(7)
    scrambled = bytearray(data)
    for i in range(100, len(data) - 200):  # a damaged middle: pages and metadata garbage
        scrambled[i] = (scrambled[i] * 7 + 3) % 256
    variants = {
        "truncated": data[: len(data) // 2],
        "random-after-magic": b"PAR1" + rng.randbytes(600) + b"PAR1",
        "random-no-footer": b"PAR1" + rng.randbytes(600),
        "scrambled": bytes(scrambled),
        "csv-named-parquet": b"timestamp,model,prompt_tokens,completion_tokens\n"
        b"2026-10-01T12:00:00Z,gpt-4o,1,2\n",
    }
    paths = {}
    for name, content in variants.items():
        paths[name] = folder / f"{name}.parquet"
        paths[name].write_bytes(content)
    return paths


def test_every_corrupt_parquet_is_one_quarantine_row_and_the_others_are_read(
    tmp_path: Path,
) -> None:
    corrupt = _parquet_corruptions(tmp_path)
    schema_only = tmp_path / "schema-only.parquet"
    duckdb.sql(
        "SELECT TIMESTAMP '2026-10-01' AS timestamp, 'gpt-4o' AS model, 1 AS prompt_tokens, "
        "2 AS completion_tokens LIMIT 0"
    ).write_parquet(str(schema_only))
    good = _good(tmp_path, "zz-good.jsonl")  # sorted last: read after every corrupt file
    con = store.connect()
    report = ingest(con, [str(p) for p in corrupt.values()] + [str(schema_only), str(good)])
    assert (report.totals.ingested, report.totals.quarantined) == (1, len(corrupt))
    rows = dict(con.execute("SELECT source_file, reason FROM quarantine").fetchall())
    assert sorted(Path(f).stem for f in rows) == sorted(corrupt)
    for file, reason in rows.items():
        assert reason.startswith("cannot be read as parquet: "), (file, reason)
    schema_report = next(f for f in report.files if f.path.endswith("schema-only.parquet"))
    assert schema_report.counts.rows == 0  # nothing to read is not an error


def test_a_corrupt_parquet_through_the_cli_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _parquet_corruptions(tmp_path)["random-after-magic"]
    code, out, err = cli(
        capsys, "ingest", str(bad), str(_good(tmp_path)), "--db", str(tmp_path / "s.duckdb")
    )
    assert code == 0, err
    said = " ".join(out.split())
    assert "random-after-magic.parquet (parquet): 1 rows, 0 new" in said
    assert "cannot be read as parquet" in said
    code, _, err = cli(capsys, "analyze", str(bad), "-o", str(tmp_path / "o"))
    assert code == 1 and "nothing usable" in err and "cannot be read as parquet" in err


# 2. Unreadable files and folders are named: quarantined like a corrupt file, never skipped.


def _deny_open(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Opening `denied` fails as it does without read permission (tests run as root here)."""
    real_open = pathlib.Path.open

    def fake_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if Path(self).resolve() == denied.resolve():
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", fake_open)


def _deny_listing(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    real_scandir = os.scandir

    def fake_scandir(path: Any = ".") -> Any:
        # shutil.rmtree lists by file descriptor: those are never the denied folder
        if not isinstance(path, int) and Path(os.fsdecode(path)).resolve() == denied.resolve():
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", fake_scandir)


@pytest.mark.parametrize("name", ["locked.jsonl", "locked.csv", "locked.parquet", "locked.log"])
def test_an_unreadable_file_among_readable_ones_is_quarantined_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    locked = _good(tmp_path, name, "locked")
    good = _good(tmp_path)
    _deny_open(monkeypatch, locked)
    con = store.connect()
    report = ingest(con, [str(locked), str(good)])
    assert (report.totals.ingested, report.totals.quarantined) == (1, 1)
    file, line, reason = con.execute(
        "SELECT source_file, source_line, reason FROM quarantine"
    ).fetchone()
    assert (Path(file).name, line) == (name, 1)
    assert reason == "cannot be read: Permission denied"


def test_an_unreadable_only_input_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = _good(tmp_path, "locked.jsonl")
    _deny_open(monkeypatch, locked)
    code, _, err = cli(capsys, "analyze", str(locked), "-o", str(tmp_path / "o"))
    assert code == 1, err
    assert "locked.jsonl" in err and "Permission denied" in err
    assert "internal error" not in err


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root reads any file whatever its mode; the monkeypatched tests cover this",
)
def test_a_file_without_read_permission_is_quarantined(tmp_path: Path) -> None:
    locked = _good(tmp_path, "locked.jsonl", "locked")
    locked.chmod(0)
    try:
        con = store.connect()
        report = ingest(con, [str(locked), str(_good(tmp_path))])
        assert (report.totals.ingested, report.totals.quarantined) == (1, 1)
    finally:
        locked.chmod(0o644)


def test_an_unlistable_folder_is_named_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    locked = logs / "locked"
    locked.mkdir(parents=True)
    _good(locked, "hidden.jsonl", "hidden")
    _good(logs)
    _deny_listing(monkeypatch, locked)
    con = store.connect()
    report = ingest(con, [str(logs)])
    assert report.totals.ingested == 1
    ((file, reason),) = con.execute("SELECT source_file, reason FROM quarantine").fetchall()
    assert (Path(file), reason) == (locked.resolve(), "cannot list folder: Permission denied")
    code, out, err = cli(capsys, "analyze", str(logs), "-o", str(tmp_path / "o"))
    assert code == 0, err
    assert "cannot list folder: Permission denied" in " ".join(out.split())
    code, _, err = cli(capsys, "analyze", str(locked), "-o", str(tmp_path / "o2"))
    assert code == 1 and "locked" in err and "Permission denied" in err


# 3. Deeply nested YAML (rules, --prices) and JSON (LiteLLM import) is a RuleError naming it.

_DEEP_YAML = "schema_version: 1\nkind: prices\nmodels: " + "[" * 3000 + "]" * 3000 + "\n"


def test_deeply_nested_rules_yaml_is_a_rule_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    deep = rules / "deep.yaml"
    deep.write_text(_DEEP_YAML)
    with pytest.raises(RuleError, match=r"deep\.yaml"):
        api.load_price_table(rules)
    code, _, err = cli(capsys, "prices", "list", "--rules-dir", str(rules))
    assert code == 1 and "deep.yaml" in err and "nested too deeply" in err
    code, _, err = cli(capsys, "prices", "list", "--prices", str(deep))
    assert code == 1 and "deep.yaml" in err and "nested too deeply" in err
    latin = rules / "latin.yaml"
    deep.unlink()
    latin.write_bytes(b"schema_version: 1\nkind: prices\ntitle: caf\xe9\n")
    code, _, err = cli(capsys, "prices", "list", "--rules-dir", str(rules))
    assert code == 1 and "latin.yaml" in err and "UTF-8" in err


def test_deeply_nested_litellm_json_is_a_rule_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "litellm.json"
    deep.write_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, _, err = cli(capsys, "prices", "import", str(deep), "-o", str(tmp_path / "p.yaml"))
    assert code == 1 and "litellm.json" in err


# 4. report / diff on a file that is not an analysis.json: an error naming it.


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe{\x00}\x00",  # UTF-16, not UTF-8
        b'{"schema_version": "1.0", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"schema_version": "1.0", "currency": "USD"}',  # the right version, the wrong shape
    ],
    ids=["not-utf8", "deep", "wrong-shape"],
)
def test_report_and_diff_on_a_bad_analysis_file_name_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    bad = tmp_path / "bad-analysis.json"
    bad.write_bytes(content)
    with pytest.raises(AdvisorError, match=r"bad-analysis\.json"):
        api.load_analysis(bad)
    for args in (("report", str(bad)), ("diff", str(bad), str(bad))):
        code, out, err = cli(capsys, *args)
        assert code == 1, (args, err)
        assert "bad-analysis.json" in err and "internal error" not in err
        assert out == ""


# 5. Usage errors exit 2 and say what is allowed.


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (("analyze", "x.jsonl"), "auto, jsonl, openai, anthropic, csv, parquet"),
        (("ingest", "x.jsonl"), "auto, jsonl, openai, anthropic, csv, parquet"),
        (("report", "analysis.json"), "html, md, json"),
        (("export", "router"), "generic, litellm, portkey"),
    ],
    ids=["analyze", "ingest", "report", "router"],
)
def test_an_unknown_format_is_a_usage_error_listing_the_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], allowed: str
) -> None:
    os.chdir(tmp_path)  # nothing is written where the test runs from
    code, _, err = cli(capsys, *args, "--format", "bogus")
    assert code == 2, err
    said = " ".join(err.split())
    assert "--format" in said and "bogus" in said and allowed in said


@pytest.mark.parametrize(
    ("option", "value", "shape"),
    [("--deployment", "nonsense", "NAME=MODEL"), ("--map", "nonsense", "FIELD=COLUMN"),
     ("--map", "=ts", "FIELD=COLUMN"), ("--deployment", "prod=", "NAME=MODEL")],
)  # fmt: skip
def test_a_malformed_pair_is_a_usage_error_naming_its_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, shape: str
) -> None:
    good = _good(tmp_path)
    code, _, err = cli(capsys, "analyze", str(good), "-o", str(tmp_path / "o"), option, value)
    assert code == 2, err
    said = " ".join(err.split())
    assert option in said and shape in said
    other = "--map" if option == "--deployment" else "--deployment"
    assert other not in said


# 6. A file whose name holds glob characters is found by that name.


@pytest.mark.parametrize("name", ["a[1].jsonl", "b*.jsonl", "c?.jsonl", "[bold].jsonl"])
def test_literal_names_with_glob_characters_are_found(tmp_path: Path, name: str) -> None:
    path = _good(tmp_path, name)
    _good(tmp_path, "bx.jsonl", "other")  # what b*.jsonl or c?.jsonl would match as a glob
    _good(tmp_path, "a1.jsonl", "other")  # what a[1].jsonl would match as a glob
    _good(tmp_path, "cx.jsonl", "other")
    assert expand_paths([str(path)]) == [path.resolve()]
    con = store.connect()
    assert ingest(con, [str(path)]).totals.ingested == 1


def test_a_pattern_no_file_is_named_after_is_still_a_glob(tmp_path: Path) -> None:
    first, second = _good(tmp_path, "x1.jsonl"), _good(tmp_path, "x2.jsonl", "b")
    assert expand_paths([str(tmp_path / "x[12].jsonl")]) == [first.resolve(), second.resolve()]
    assert expand_paths([str(tmp_path / "x?.jsonl")]) == [first.resolve(), second.resolve()]


# 7. CSV formula injection: text cells a spreadsheet would run are neutralised in CSV only.

_FORMULAS = ['=HYPERLINK("http://x","y")', "+1", "@SUM(1)", "-2+3", "\tTAB", "\rCR", "=1+1"]


def test_export_decisions_neutralises_formulas_in_csv_and_keeps_parquet_exact(
    tmp_path: Path,
) -> None:
    rows = [openai_line(f"r{i}", user=value, feature=value) for i, value in enumerate(_FORMULAS)]
    rows.append(openai_line("plain", user="alice", feature="chat"))
    log = write_jsonl(tmp_path / "a.jsonl", rows)
    api.analyze([str(log)], out_dir=tmp_path / "o", write_report=False)
    db = tmp_path / "o" / "advisor.duckdb"
    api.export_decisions(db, tmp_path / "d.csv")
    with (tmp_path / "d.csv").open(newline="", encoding="utf-8") as fh:
        cells = {r["request_id"]: r for r in csv.DictReader(fh)}
    for i, value in enumerate(_FORMULAS):
        assert cells[f"r{i}"]["user_id"] == "'" + value
        assert cells[f"r{i}"]["feature"] == "'" + value
    assert cells["plain"]["user_id"] == "alice"
    assert all(not c.startswith("'") for c in (cells["r0"]["model"], cells["r0"]["ts"]))
    assert all(float(r["baseline_cost"]) >= 0 for r in cells.values())  # numbers untouched
    api.export_decisions(db, tmp_path / "d.parquet")
    exact = dict(
        duckdb.sql(f"SELECT request_id, user_id FROM '{tmp_path / 'd.parquet'}'").fetchall()
    )
    assert exact == {**{f"r{i}": v for i, v in enumerate(_FORMULAS)}, "plain": "alice"}


# 8. Terminal and report injection: log text and file names are shown, never obeyed.

_OSC8 = "\x1b]8;;http:x\x07link\x1b]8;;\x07"


def _assert_inert(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "[bold red]x" in text  # the markup as written, not applied


def test_a_hostile_file_name_is_printed_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    hostile = write_jsonl(logs / f"{_OSC8}[bold red]x.jsonl", [openai_line("a"), "oops"])
    db = str(tmp_path / "s.duckdb")
    for target in (str(logs), str(hostile)):
        code, out, err = cli(capsys, "ingest", target, "--db", db)
        assert code == 0, err
        _assert_inert(out + err)
        assert "\\x1b]8;;http:x\\x07link" in out  # shown as visible escapes
    code, out, err = cli(capsys, "analyze", str(hostile), "-o", str(tmp_path / "o"))
    assert code == 0, err
    _assert_inert(out + err)
    missing = tmp_path / f"{_OSC8}[bold red]x-missing.jsonl"
    code, out, err = cli(capsys, "analyze", str(missing), "-o", str(tmp_path / "o-missing"))
    assert code == 1
    _assert_inert(err)
    db, csv_out = tmp_path / "o" / "advisor.duckdb", tmp_path / f"{_OSC8}[bold red]x.csv"
    code, out, err = cli(capsys, "export", "decisions", "--db", str(db), "-o", str(csv_out))
    assert code == 0, err
    _assert_inert(err)


def test_the_progress_spinner_shows_file_names_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from advisor import cli as advisor_cli

    screen = Console(record=True, width=300, color_system=None, force_terminal=False)
    monkeypatch.setattr(advisor_cli, "err", screen)
    bar, update, step = advisor_cli._progress()
    update(f"/logs/{_OSC8}[bold red]x.jsonl", 12)
    screen.print(bar.get_renderable())
    step(f"pricing {_OSC8}[bold red]x")
    screen.print(bar.get_renderable())
    _assert_inert(screen.export_text(styles=False))


def test_report_html_and_markdown_carry_no_control_bytes_from_logs(tmp_path: Path) -> None:
    prompt = f"Summarise \x1b[31mred\x07 and {_OSC8} \x9b31m\x7f please"
    rows = [
        openai_line(f"r{i}", model="gpt-4o\x1b[2Jwiped\x07", user=f"u\x1b[5m{i}",
                    messages=[{"role": "user", "content": prompt}])
        for i in range(5)
    ]  # fmt: skip
    log = write_jsonl(tmp_path / "a.jsonl", rows)
    result = api.analyze([str(log)], out_dir=tmp_path / "o")
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    markdown = api.render_report(result.analysis, "md")
    for text in (html, markdown):
        assert not any(ch in text for ch in "\x1b\x07\x9b\x7f")
    assert "gpt-4o\\x1b[2Jwiped\\x07" in html  # shown as visible escapes
