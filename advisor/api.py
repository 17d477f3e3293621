"""The library facade: what the CLI (and any Python user) calls. Nothing here prints.

from advisor import api
result = api.analyze(["logs.jsonl"], out_dir="advisor-out")
print(result.analysis.combined.saving)
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from advisor import (
    __version__,
    baseline,
    guardrails,
    lever_notes,
    outputs,
    parquet_store,
    sampling,
    store,
    tokens,
)
from advisor import analysis as A
from advisor.action_plan import build_action_plan, build_unit_economics
from advisor.analysis import Analysis, FileInput, QuarantineReason, load_analysis
from advisor.diff import AnalysisDiff, diff_analyses, increase_exceeds
from advisor.errors import AdvisorError, InputError, Interrupted, UnreadableFile
from advisor.export.evalset import PRIVACY_NOTE as EVALSET_PRIVACY
from advisor.export.evalset import REDACTED_NOTE as EVALSET_REDACTED
from advisor.guardrails.store import save_guardrails
from advisor.ingest import FORMATS as INPUT_FORMATS
from advisor.ingest import IngestReport, Progress
from advisor.ingest import ingest as _ingest
from advisor.ingest.files import check_readable, expand_paths
from advisor.levers import registry, streaming
from advisor.levers.base import LeverContext, LeverNote, SimOptions
from advisor.outputs import is_interrupt
from advisor.pricing import PriceTable, load_prices
from advisor.ruleset import default_rules_dir
from advisor.sampling import AUTO_ABOVE as AUTO_SAMPLE_ABOVE
from advisor.sampling import parse_fraction as parse_sample
from advisor.simulate import LeverRun, Step, rank, simulate

__all__ = [
    "AUTO_SAMPLE_ABOVE",
    "EVALSET_PRIVACY",
    "EVALSET_REDACTED",
    "INPUT_FORMATS",
    "REPORT_FORMATS",
    "Analysis",
    "AnalyzeResult",
    "IngestReport",
    "SimOptions",
    "analyze",
    "diff",
    "export_decisions",
    "export_evalset",
    "export_guardrails",
    "export_router",
    "increase_exceeds",
    "ingest",
    "is_interrupt",
    "load_analysis",
    "load_price_table",
    "parse_sample",
    "render_report",
]

ANALYSIS_FILE = "analysis.json"
REPORT_FILE = "report.html"
DB_FILE = "advisor.duckdb"
# What `analyze` writes beside the analysis: router configs per format, and the evaluation set.
ROUTER_FILES = {
    "generic": "router.yaml",
    "litellm": "litellm_config.yaml",
    "portkey": "portkey.json",
}
EVALSET_DIR = "evalset"
# The guardrails per format (advisor.export.guardrails), written when the store holds them.
GUARDRAIL_FILES = {
    "generic": "guardrails.yaml",
    "litellm": "litellm_guardrails.yaml",
    "litellm-api": "litellm_guardrails_requests.json",
    "helicone": "helicone_guardrails.yaml",
}
REPORT_FORMATS = ("html", "md", "json")
# The set one run replaces as a whole: a fresh store (with any write-ahead log a crash left
# beside the previous one) and every output.
STORE_FILES = (DB_FILE, DB_FILE + ".wal")
OUTPUT_FILES = (
    ANALYSIS_FILE,
    REPORT_FILE,
    *ROUTER_FILES.values(),
    EVALSET_DIR,
    *GUARDRAIL_FILES.values(),
)


@dataclass
class AnalyzeResult:
    analysis: Analysis
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    ingest: IngestReport = field(default_factory=IngestReport)
    problems: list[str] = field(default_factory=list)  # what --strict refuses
    skipped: dict[str, str] = field(default_factory=dict)  # output not written -> why


def load_price_table(
    rules_dir: Path | None = None, prices_files: Sequence[Path] = ()
) -> PriceTable:
    return load_prices(rules_dir or default_rules_dir(), prices_files)


def ingest(
    logs: Sequence[str],
    db: Path,
    *,
    fmt: str = "auto",
    mapping: Mapping[str, str] | None = None,
    model: str | None = None,
    progress: Progress | None = None,
    memory: str | None = None,
    store_dir: Path | None = None,
) -> IngestReport:
    """Add logs to a store (created if needed); re-ingesting a file adds nothing. `memory`:
    DuckDB's budget (store.memory_limit). With `store_dir`, the store is that folder of
    day-partitioned Parquet files (advisor.parquet_store) and `db` is not used."""
    if store_dir is not None:
        return parquet_store.add(store_dir, logs, fmt=fmt, mapping=mapping, model=model,
                                 progress=progress, memory=memory)  # fmt: skip
    con = store.connect(db, memory=memory)
    try:
        outputs.unmark(con)
        return _ingest(con, logs, fmt=fmt, mapping=mapping, model=model, progress=progress)
    except BaseException as exc:
        if is_interrupt(exc):
            raise Interrupted(f"{db} holds the files ingested so far") from exc
        raise
    finally:
        con.close()


def quarantine_reasons(db: Path) -> list[QuarantineReason]:
    """What the store's quarantine holds, by file (its path as ingested), field and reason.
    `db`: a store file, or a --store folder."""
    if db.is_dir():
        con = store.connect(None)
        parquet_store.attach(con, db, copied=("quarantine",))
    else:
        con = store.connect(db, read_only=True)
    try:
        return [
            QuarantineReason(file=f, field=fd, reason=r, rows=n, first_line=line)
            for f, fd, r, n, line in store.quarantine_reasons(con)
        ]
    finally:
        con.close()


def _tokenizer_note(fill: tokens.TokenFill) -> tuple[str, list[str]]:
    """The tokenizer used, and what the counts alone do not say. Estimated counts need no note:
    coverage has their number, the tokenizer and the calibration, and every renderer words them
    the same way (report.fmt.estimated_warning)."""
    tokenizer = "tiktoken" if tokens.get_encoding(tokens.DEFAULT_ENCODING) else "estimate"
    notes = []
    if fill.unbilled:
        notes.append(
            f"{fill.unbilled} failed requests had no usage: counted as unbilled (0 tokens)"
        )
    return tokenizer, notes


def build_analysis(
    con: duckdb.DuckDBPyConnection,
    prices: PriceTable,
    report: IngestReport,
    *,
    rules_dir: Path | None = None,
    options: SimOptions | None = None,
    now: dt.datetime | None = None,
    step: Step | None = None,
    sample: float | None = None,
    sample_seed: int = 0,
) -> Analysis:
    """Price, fill, simulate and summarise everything in an ingested store; `step` is told
    what starts next. `sample`: the fraction of the log the levers replay (advisor.sampling;
    1.0: all of it; None: all of it up to sampling.AUTO_ABOVE requests); `sample_seed` draws
    another sample of the same size."""
    store.require_sound(con)
    options = options or SimOptions()
    if step is not None:
        step("pricing every request")
    baseline.resolve_models(con, prices, options.deployments)
    encodings = {key: m.encoding for key, m in prices.models.items()}
    fill = tokens.fill_token_counts(con, encodings)
    baseline.price_requests(con, prices)
    tokenizer, notes = _tokenizer_note(fill)
    notes += baseline.source_note(con, prices) + baseline.price_gaps(con, prices)
    ctx = LeverContext(con, prices, rules_dir or default_rules_dir(), options)
    requests = int(store.scalar(con, "SELECT count(*) FROM requests"))
    plan = sampling.plan(requests, sample, sample_seed)
    if plan is None:
        sim = simulate(ctx, step=step)
    else:
        sim, drawn = sampling.replay(ctx, plan, step)
    why_not = lever_notes.why_not(ctx, sim.levers)
    if step is not None:
        step("streaming advice")
    advice = streaming.advise(con, ctx.rules_dir, options.offline_features)
    if step is not None:
        step("anomalies and guardrail limits")
    limits, anomalies = guardrails.build(con, ctx.rules_dir)
    save_guardrails(con, limits)  # unredacted: `advisor export guardrails --db` renders from it
    generated = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    levers = [_lever_result(run, why_not.get(run.id)) for run in sim.levers]
    combined = A.Combined(**vars(sim.combined))
    period = baseline.build_period(con)
    analysis = Analysis(
        generated_at=generated,
        advisor_version=__version__,
        inputs=[
            FileInput(
                path=Path(f.path).name,
                format=f.format,
                rows=f.counts.rows,
                ingested=f.counts.ingested,
                duplicates=f.counts.duplicates,
                quarantined=f.counts.quarantined,
            )
            for f in report.files
        ],
        period=period,
        coverage=baseline.build_coverage(con, report, fill.calibration, tokenizer, notes),
        baseline=baseline.build_baseline(con),
        levers=levers,
        levers_run=[run.id for run in sim.levers],
        levers_skipped=registry.skipped(options.levers),
        combined=combined,
        guardrails=limits,
        anomalies=anomalies,
        recommendations=rank(sim.recommendations + streaming.recommendations(advice)),
        action_plan=build_action_plan(con, levers, combined, period, ctx.rules_dir),
        unit_economics=build_unit_economics(con),
        streaming=advice,
        prices=baseline.build_prices(con, prices),
    )
    if plan is not None:
        analysis = sampling.estimate(con, analysis, plan, drawn)
    return analysis.redacted()  # the boundary: nothing below sees unmasked log text


def lever_ids(ids: Sequence[str] | None) -> tuple[str, ...]:
    """Lever ids checked against the registry, in its order (None: every lever DESIGN.md
    names); an unknown id is an AdvisorError naming the valid ones."""
    return registry.validate(registry.ALL_IDS if ids is None else tuple(ids))


def _lever_result(run: LeverRun, why_not: LeverNote | None = None) -> A.LeverResult:
    """A lever's figures and findings as its analysis.json model (the union picks it by id)."""
    fields = {k: v for k, v in vars(run).items() if k != "findings"}
    return A.LEVER_RESULT.validate_python(
        {**fields, "details": run.findings.details, "risk": run.findings.risk, "why_not": why_not}
    )


def analyze(
    logs: Sequence[str],
    *,
    out_dir: Path | str = "advisor-out",
    db: Path | None = None,
    fmt: str = "auto",
    mapping: Mapping[str, str] | None = None,
    model: str | None = None,
    prices_files: Sequence[Path] = (),
    rules_dir: Path | None = None,
    options: SimOptions | None = None,
    progress: Progress | None = None,
    step: Step | None = None,
    write_report: bool = True,
    memory: str | None = None,
    store_dir: Path | None = None,
    sample: float | None = None,
) -> AnalyzeResult:
    """The main job: ingest -> price -> simulate -> analysis.json + report.html in `out_dir`.

    Without `db`, the store is `out_dir/advisor.duckdb`, made afresh so the analysis covers
    exactly `logs`; with `db`, logs (none: the store as it is) are added to that store and the
    whole store is analysed. Inputs are checked before anything is touched; the outputs (and a
    fresh store) are built in a staging folder inside `out_dir` and replace the previous ones
    as one set only when complete, so a failed or interrupted run leaves them as they were.
    `progress` hears of the lines read, `step` of each stage after reading as it starts;
    `memory` is DuckDB's budget (store.memory_limit), checked before anything is touched;
    `sample` the fraction of the log the levers replay (build_analysis).
    With `store_dir` (a folder of day-partitioned Parquet, advisor.parquet_store), logs are
    added to it and the whole folder is analysed, read in place; the run's own store holds
    only what the analysis computes.
    """
    out = Path(out_dir)
    names = (*STORE_FILES, *OUTPUT_FILES) if db is None else OUTPUT_FILES  # --db: stays put
    had_outputs = out.is_dir() and any(os.path.lexists(out / name) for name in names)
    swapped = False
    try:
        _check_inputs(logs, out, db, store_dir)
        memory = store.memory_limit(memory)
        prices = load_price_table(rules_dir, prices_files)
        _check_rules(rules_dir or default_rules_dir(), prices)
        with outputs.held(out):
            if db is None:
                outputs.check_own_store(out / DB_FILE)
            with outputs.staged(out) as staging:
                result, report, files, skipped = _build(
                    logs, staging, Path(db) if db is not None else staging / DB_FILE,
                    fmt=fmt, mapping=mapping, model=model, prices=prices, rules_dir=rules_dir,
                    options=options, progress=progress, step=step, write_report=write_report,
                    memory=memory, store_dir=store_dir, sample=sample,
                )  # fmt: skip
                with outputs.interrupts_held():
                    outputs.swap_in(staging, out, names)
                    swapped = True
    except BaseException as exc:
        if not is_interrupt(exc):
            raise
        raise Interrupted(_kept(out, db, had_outputs, swapped)) from exc
    files = {name: out / p.name if p.parent == staging else p for name, p in files.items()}
    problems = []
    cov = result.coverage
    if cov.quarantined_rows:
        problems.append(f"{cov.quarantined_rows} rows quarantined")
    if cov.unpriced_requests:
        problems.append(f"{cov.unpriced_requests} requests on unpriced models")
    return AnalyzeResult(result, out, files, report, problems, skipped)


def _kept(out: Path, db: Path | None, had_outputs: bool, swapped: bool) -> str:
    """What an interrupted `analyze` leaves, in a line."""
    if swapped:
        return f"the run had completed: {out} holds its outputs"
    if db is not None:
        return f"{db} holds the logs ingested so far; " + (
            f"{out} still holds the previous outputs" if had_outputs else "no output written"
        )
    return "nothing written" + (f"; {out} still holds the previous run" if had_outputs else "")


def _build(
    logs: Sequence[str],
    staging: Path,
    db_path: Path,
    *,
    prices: PriceTable,
    write_report: bool,
    fmt: str,
    mapping: Mapping[str, str] | None,
    model: str | None,
    rules_dir: Path | None,
    options: SimOptions | None,
    progress: Progress | None,
    step: Step | None,
    memory: str,
    store_dir: Path | None,
    sample: float | None = None,
) -> tuple[Analysis, IngestReport, dict[str, Path], dict[str, str]]:
    """Ingest into the store and write every output into `staging`; the files written, and
    the outputs not written with the reason."""
    report = IngestReport()
    if store_dir is not None and logs:
        report = parquet_store.add(store_dir, logs, fmt=fmt, mapping=mapping, model=model,
                                   progress=progress, memory=memory)  # fmt: skip
    con = store.connect(db_path, memory=memory)
    try:
        if db_path.parent == staging:  # a store this run creates: `analyze` may replace it
            outputs.mark_as_own(con)
        elif logs:
            outputs.unmark(con)
        if store_dir is not None:
            parquet_store.attach(con, store_dir)
        elif logs:
            report = _ingest(con, logs, fmt=fmt, mapping=mapping, model=model, progress=progress)
        if store.scalar(con, "SELECT count(*) FROM requests") == 0:
            examples = con.execute(
                """SELECT source_file, source_line, coalesce(field, '(line)'), reason
                   FROM quarantine ORDER BY source_file, source_line LIMIT 3"""
            ).fetchall()
            seen = "; ".join(f"{Path(f).name}:{n}: {fd}: {r}" for f, n, fd, r in examples)
            raise InputError(
                "nothing usable: no request could be read from "
                + (", ".join(logs) or str(db_path))
                + (f" ({seen})" if seen else ""),
                hint="check the format (docs/logging-format.md), or force one with --format",
            )
        result = build_analysis(
            con, prices, report, rules_dir=rules_dir, options=options, step=step, sample=sample
        )
        if step is not None:
            step("writing the analysis, report and exports")
        files = {"db": db_path, "analysis": staging / ANALYSIS_FILE}
        files["analysis"].write_text(result.to_json(), encoding="utf-8")
        skipped: dict[str, str] = {}
        if write_report:
            files["report"] = staging / REPORT_FILE
            files["report"].write_text(render_report(result, "html"), encoding="utf-8")
            skipped = skipped_exports(result)
            if not skipped:
                files.update(_write_exports(con, staging, skipped))
            files.update(_write_guardrail_exports(con, staging))
    finally:
        con.close()
    return result, report, files, skipped


def skipped_exports(analysis: Analysis) -> dict[str, str]:
    """The tiering exports `analyze` leaves out, with the reason: a router that routes nothing
    and an empty evaluation set would only look like something to deploy."""
    tiering = next((lever for lever in analysis.levers if lever.id == "tiering"), None)
    if tiering is None:
        reason = "the tiering lever did not run"
    elif tiering.affected_requests == 0:
        why = f": {tiering.why_not.reason}" if tiering.why_not is not None else ""
        reason = "the tiering lever routes no request" + why
    else:
        return {}
    return {name: reason for name in (*ROUTER_FILES.values(), EVALSET_DIR + "/")}


def _check_inputs(
    logs: Sequence[str], out: Path, db: Path | None, store_dir: Path | None = None
) -> None:
    """Everything a run needs, checked before it touches anything: logs that expand to files
    this process can read, a store to analyse, an output folder it can write in."""
    if not logs and db is None and store_dir is None:
        raise InputError("no logs to analyse", hint="name log files, or --db STORE")
    if db is not None and store_dir is not None:
        raise InputError("--db and --store name two stores", hint="give one of them")
    if store_dir is not None and not logs and not (store_dir / parquet_store.MANIFEST).is_file():
        raise InputError(
            f"no store at {store_dir}", hint="add logs to it with `advisor ingest LOGS --store DIR`"
        )
    # One unreadable file among readable ones is quarantined by ingest, as a bad row is; only
    # when none can be read is there nothing to run on.
    unreadable = []
    for path in expand_paths(logs) if logs else ():
        try:
            check_readable(path)
        except UnreadableFile as exc:
            unreadable.append(exc)
        else:
            break
    else:
        if unreadable:
            raise InputError("nothing usable: " + "; ".join(e.message for e in unreadable[:3]))
    if db is not None and Path(db).is_dir():
        raise InputError(f"--db {db} is a folder", hint="--db names a store file")
    if db is not None and not logs and not Path(db).is_file():
        raise InputError(f"no store at {db}", hint="add logs to it with `advisor ingest` first")
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out} is a file", hint="-o names a folder (created if needed)")


def _check_rules(rules_dir: Path, prices: PriceTable) -> None:
    """Load every policy a lever reads, so that a broken rules file fails before the run."""
    from advisor.difficulty.heuristics import load_rules
    from advisor.levers.caching import load_policy
    from advisor.levers.tiering import load_tiers
    from advisor.levers.trimming.policy import load_policy as load_trimming_policy

    load_tiers(rules_dir, prices)
    load_rules(rules_dir)
    load_policy(rules_dir)
    load_trimming_policy(rules_dir)
    lever_notes.load_notes(rules_dir)
    guardrails.check_rules(rules_dir)


def diff(old: Path, new: Path) -> AnalysisDiff:
    """What changed between two analysis.json files (spend, coverage, lever savings)."""
    return diff_analyses(load_analysis(Path(old)), load_analysis(Path(new)))


def _write_exports(
    con: duckdb.DuckDBPyConnection, out: Path, skipped: dict[str, str]
) -> dict[str, Path]:
    """The router in every format (one spec, rendered three ways) and the evaluation set, unless
    no routed request has a logged answer to compare with (then `skipped` says so)."""
    from advisor import export

    files = {}
    spec = export.router_spec(con)
    for fmt_name, name in ROUTER_FILES.items():
        text = export.render_router(spec, fmt_name)  # type: ignore[arg-type]
        files[f"router ({fmt_name})"] = out / name
        files[f"router ({fmt_name})"].write_text(text, encoding="utf-8")
    if export.evalset_size(con) == 0:
        skipped[EVALSET_DIR + "/"] = "no routed request has a logged answer to compare with"
        return files
    files["evalset"] = out / EVALSET_DIR
    export.export_evalset(con, files["evalset"])
    return files


def _write_guardrail_exports(con: duckdb.DuckDBPyConnection, out: Path) -> dict[str, Path]:
    """The guardrails build_analysis saved in the store, in every format (tiering or not)."""
    from advisor.export import guardrails as export

    source = export.guardrail_source(con)  # read once: the store's guardrails, period and ids
    files = {}
    for fmt_name, name in GUARDRAIL_FILES.items():
        files[f"guardrails ({fmt_name})"] = out / name
        text = export.render_guardrails(source, fmt_name)  # type: ignore[arg-type]
        files[f"guardrails ({fmt_name})"].write_text(text, encoding="utf-8")
    return files


def render_report(analysis: Analysis, fmt: str = "html") -> str:
    """Render an analysis as html, md or json (presentation modules load only when asked)."""
    if fmt == "html":
        from advisor.report.html import render_html

        return render_html(analysis)
    if fmt in ("md", "markdown"):
        from advisor.report.markdown import render_markdown

        return render_markdown(analysis)
    if fmt == "json":
        return analysis.to_json()
    raise AdvisorError(
        f"unknown report format {fmt!r}", hint="formats: " + ", ".join(REPORT_FORMATS)
    )


# Every column of `export decisions`, in order, with the table it comes from: the store's
# request and cost tables, or a lever's per-request table (NULL when that lever did not run).
DECISION_SOURCES = {
    "request_id": "requests", "ts": "requests", "model": "requests", "feature": "requests",
    "user_id": "requests", "difficulty": "lever_tiering", "confidence": "lever_tiering",
    "routed_model": "lever_tiering", "baseline_cost": "costs", "final_cost": "sim_final",
    "input_tokens": "requests", "cache_read_tokens_sim": "lever_caching",
    "trimmed_tokens": "lever_trimming", "output_cap": "lever_output_caps",
    "batch_eligible": "lever_batching",
}  # fmt: skip
DECISION_COLUMNS = tuple(DECISION_SOURCES)


def _analysed_store(db: Path) -> duckdb.DuckDBPyConnection:
    if not Path(db).is_file():
        raise AdvisorError(f"no store at {db}", hint="run `advisor analyze LOGS` first")
    con = store.connect(db, read_only=True)
    tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    if "sim_final" not in tables:
        con.close()
        raise AdvisorError(f"{db} holds no analysis", hint="run `advisor analyze` on it first")
    return con


def export_router(db: Path, fmt: str = "generic") -> str:
    """The router config (generic YAML, LiteLLM config.yaml or Portkey JSON) of an analysis."""
    from advisor import export

    if fmt not in export.FORMATS:
        raise AdvisorError(
            f"unknown router format {fmt!r}", hint="formats: " + ", ".join(export.FORMATS)
        )
    con = _analysed_store(db)
    try:
        return export.export_router(con, fmt)
    finally:
        con.close()


def export_guardrails(
    db: Path | None = None, fmt: str = "generic", *, analysis: Path | None = None
) -> str:
    """The guardrails as generic YAML, LiteLLM config/API bodies or Helicone policies: from the
    store (unredacted ids, per-entity bodies), or from an analysis.json (redacted, none)."""
    from advisor.export import guardrails as export

    if fmt not in export.FORMATS:
        raise AdvisorError(
            f"unknown guardrails format {fmt!r}", hint="formats: " + ", ".join(export.FORMATS)
        )
    if analysis is not None:
        result = load_analysis(Path(analysis))
        source = export.GuardrailSource(result.guardrails, result.period.start, result.period.end)
        return export.render_guardrails(source, fmt)
    if db is None:
        raise InputError("no analysis to export", hint="name an analysis.json, or --db STORE")
    con = _analysed_store(db)
    try:
        return export.export_guardrails(con, fmt)
    finally:
        con.close()


def export_evalset(
    db: Path, out_dir: Path, *, per_stratum: int = 10, seed: int = 0, redact: bool = False
) -> list[Path]:
    """A stratified sample of the requests the router would move, plus a promptfoo config; the
    prompts as logged (the point of a replay), or masked as in the reports with `redact`."""
    from advisor import export

    con = _analysed_store(db)
    try:
        return export.export_evalset(
            con, Path(out_dir), per_stratum=per_stratum, seed=seed, redact=redact
        )
    finally:
        con.close()


@dataclass
class CalibrateResult:
    matched: int  # results whose request id is in the store
    results: int  # verdicts read
    errored: int  # results without a verdict (the eval call failed)
    analysis: AnalyzeResult


def calibrate_tiering(
    results: Path,
    db: Path,
    *,
    out_dir: Path | None = None,
    rules_dir: Path | None = None,
    prices_files: Sequence[Path] = (),
) -> CalibrateResult:
    """Keep the measured verdicts of the evaluation set (promptfoo results JSON, or a CSV of
    request_id,pass) in the store, then re-analyse it into `out_dir` (default: the store's
    folder): the operating point, the router exports and the report use them. Calls no model."""
    from advisor.levers.tiering import calibration

    db = Path(db)
    verdicts = calibration.read_results(Path(results))
    con = _analysed_store(db)  # checks it is an analysed store
    con.close()
    con = store.connect(db)
    try:
        matched = calibration.save_results(con, verdicts, Path(results).name)
    finally:
        con.close()
    if matched == 0:
        raise InputError(
            f"none of the {len(verdicts.verdicts)} request ids in {results} is in {db}",
            hint="calibrate with the store the evaluation set was exported from",
        )
    run = analyze([], out_dir=out_dir or db.parent, db=db, rules_dir=rules_dir,
                  prices_files=prices_files)  # fmt: skip
    return CalibrateResult(matched, len(verdicts.verdicts), verdicts.errored, run)


def _formulas_inert(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """`query` (ordered by ts, request_id) for a CSV file: a text cell that a spreadsheet would
    run as a formula (starting with = + - @ tab or CR, OWASP's CSV injection list) gets a leading
    quote, which spreadsheets read as "this is text". Numbers and times are left alone."""
    cells = [
        f"CASE WHEN regexp_matches(d.{name}, '^[=+@\\t\\r-]') THEN '''' || d.{name} "
        f"ELSE d.{name} END AS {name}"
        if kind == "VARCHAR"
        else f"d.{name}"
        for name, kind, *_ in con.execute(f"DESCRIBE {query}").fetchall()
    ]
    return f"SELECT {', '.join(cells)} FROM ({query}) AS d ORDER BY d.ts, d.request_id"


def export_decisions(db: Path, output: Path) -> int:
    """One row per request: the audit trail behind every figure (Parquet or CSV by extension)."""
    con = _analysed_store(db)
    try:
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
        levers = sorted({t for t in DECISION_SOURCES.values() if t.startswith("lever_")} & tables)
        selects = [
            f"{table}.{column}" if table in tables else f"NULL AS {column}"
            for column, table in DECISION_SOURCES.items()
        ]
        joins = " ".join(f"LEFT JOIN {table} USING (request_id)" for table in levers)
        query = f"""
            SELECT {", ".join(selects)}
            FROM requests JOIN costs USING (request_id) JOIN sim_final USING (request_id)
            {joins}
            ORDER BY requests.ts, requests.request_id"""
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        kind = "PARQUET" if output.suffix == ".parquet" else "CSV, HEADER"
        if kind != "PARQUET":
            query = _formulas_inert(con, query)
        con.execute(
            f"COPY ({query}) TO '{str(output).replace(chr(39), chr(39) * 2)}' ({'FORMAT ' + kind})"
        )
        return int(store.scalar(con, "SELECT count(*) FROM requests"))
    finally:
        con.close()
