"""The command line: parse, call advisor.api, render. No analysis logic lives here."""

from __future__ import annotations

import datetime as dt
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from advisor import __version__, api
from advisor.errors import AdvisorError, Interrupted
from advisor.report.console import TOP_REASONS, literal

if TYPE_CHECKING:
    from rich.table import Table

    from advisor.diff import UnitChange

app = typer.Typer(
    help="advisor: replay your LLM traffic logs under cheaper policies and price every one.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
prices_app = typer.Typer(help="Inspect and refresh the price table.", no_args_is_help=True)
export_app = typer.Typer(help="Write deployable artefacts from an analysis.", no_args_is_help=True)
app.add_typer(prices_app, name="prices")
app.add_typer(export_app, name="export")
tiering_app = typer.Typer(help="Measure and adjust the model tiering.", no_args_is_help=True)
app.add_typer(tiering_app, name="tiering")

DIFF_ROWS = 20  # features or models per `advisor diff` table
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}


def _one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """A parse-time check: a value not among `choices` is a usage error that lists them."""

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of: {', '.join(choices)}")
        return value

    return check


# Options shared by several commands, defined once.
LogsArg = Annotated[list[str], typer.Argument(help="Log files, folders or globs (.gz ok).")]
OutputDir = Annotated[Path, typer.Option("-o", "--output", help="Output folder.")]
DbOpt = Annotated[Path, typer.Option("--db", help="DuckDB store file.")]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        callback=_one_of(api.INPUT_FORMATS),
        help="Input format: " + "|".join(api.INPUT_FORMATS) + ".",
    ),
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option("--map", help="Map a canonical field to a CSV/Parquet column: FIELD=COLUMN."),
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model for rows that name none.")]
PricesOpt = Annotated[
    list[Path] | None, typer.Option("--prices", help="Extra prices file(s) overriding the table.")
]
RulesOpt = Annotated[Path | None, typer.Option("--rules-dir", help="Use rules from this folder.")]
MemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--memory",
        help="DuckDB's memory budget before it spills to disk (default 1GB, or $ADVISOR_MEMORY).",
    ),
]
StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="A folder of day-partitioned Parquet files as the store (for large, growing logs).",
    ),
]
StdoutOpt = Annotated[
    Path | None, typer.Option("-o", "--output", help="Output file (default: stdout).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")]


def _pairs(items: list[str] | None, option: str, shape: str) -> dict[str, str]:
    """`option NAME=VALUE` values as a dict; a malformed one is a usage error naming `option`."""
    mapping = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise typer.BadParameter(f"{item!r}: expected {shape}", param_hint=f"'{option}'")
        mapping[name.strip()] = value.strip()
    return mapping


def _emit(text: str, output: Path | None) -> None:
    """Data to stdout, or to a file with a note on stderr."""
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {literal(str(output))}")


def _progress() -> tuple[Progress, api.Progress, api.Step]:
    """A spinner on stderr (terminals only): lines read per file, then each later stage."""
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def update(path: str, lines: int) -> None:
        if path not in tasks:
            tasks[path] = bar.add_task(f"reading {literal(Path(path).name)}")
        bar.update(tasks[path], description=f"reading {literal(Path(path).name)}: {lines:,} lines")

    def step(what: str) -> None:  # one line at a time: the stage running now, with its clock
        for task in tasks.values():
            bar.remove_task(task)
        tasks.clear()
        tasks[what] = bar.add_task(literal(what))

    return bar, update, step


@app.callback(invoke_without_command=True)
def main_options(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """advisor: replay your LLM traffic logs under cheaper policies and price every one."""
    # main() has already read --debug wherever it stood; it is declared here for the help
    _state["debug"] = _state["debug"] or debug
    if version:
        out.print(f"advisor {__version__}")
        raise typer.Exit()


@app.command()
def analyze(
    logs: Annotated[
        list[str] | None,
        typer.Argument(help="Log files, folders or globs (.gz ok); none with --db: the store."),
    ] = None,
    output: OutputDir = Path("advisor-out"),
    db: Annotated[
        Path | None, typer.Option("--db", help="Add to this store and analyse all of it.")
    ] = None,
    fmt: FormatOpt = "auto",
    map_: MapOpt = None,
    model: ModelOpt = None,
    prices: PricesOpt = None,
    rules_dir: RulesOpt = None,
    cache_ttl: Annotated[
        int | None, typer.Option("--cache-ttl", help="What-if cache TTL in seconds.")
    ] = None,
    offline_feature: Annotated[
        list[str] | None,
        typer.Option("--offline-feature", help="Feature with no user waiting (batchable)."),
    ] = None,
    deployment: Annotated[
        list[str] | None,
        typer.Option("--deployment", help="Azure deployment name to model: NAME=MODEL."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on any quarantined row or unpriced model.")
    ] = False,
    levers: Annotated[
        str | None,
        typer.Option("--levers", help="Only these levers, comma-separated (e.g. tiering,caching)."),
    ] = None,
    no_lever: Annotated[
        list[str] | None, typer.Option("--no-lever", help="Switch a lever off (repeatable).")
    ] = None,
    memory: MemoryOpt = None,
    store_dir: StoreOpt = None,
    sample: Annotated[
        str | None,
        typer.Option(
            "--sample",
            help="Replay the levers on this share of the log (e.g. 5%; 100% forces a full "
            "replay); the baseline stays exact. Default: full, sampled above "
            f"{api.AUTO_SAMPLE_ABOVE:,} requests.",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Ingest logs, price them, replay every lever; write analysis.json and report.html.

    Example: advisor analyze sample_logs/traffic.jsonl.gz -o advisor-out
    Example: advisor analyze --store lake/ -o advisor-out   (a partitioned store, read in place)
    """
    if not logs and db is None and store_dir is None:
        raise typer.BadParameter(
            "give log files, or --db STORE / --store DIR to analyse a store", param_hint="LOGS"
        )
    options = api.SimOptions(
        cache_ttl_seconds=cache_ttl,
        offline_features=tuple(offline_feature or ()),
        deployments=_pairs(deployment, "--deployment", "NAME=MODEL"),
        levers=_lever_ids(levers, no_lever or []),
    )
    try:
        fraction = None if sample is None else api.parse_sample(sample)
    except AdvisorError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--sample'") from None
    bar, update, step = _progress()
    with bar:
        result = api.analyze(
            logs or [],
            out_dir=output,
            db=db,
            fmt=fmt,
            mapping=_pairs(map_, "--map", "FIELD=COLUMN"),
            model=model,
            prices_files=prices or (),
            rules_dir=rules_dir,
            options=options,
            progress=update,
            step=step,
            memory=memory,
            store_dir=store_dir,
            sample=fraction,
        )
    if json_:
        sys.stdout.write(result.analysis.to_json())
    else:
        from advisor.report.console import render_console

        render_console(result.analysis, out)
        _print_formats(result.ingest)
        for name, path in result.files.items():
            out.print(f"[dim]{name}:[/dim] {literal(str(path))}")
        by_reason: dict[str, list[str]] = {}  # an empty artefact is left out, and said so
        for name, why in result.skipped.items():
            by_reason.setdefault(why, []).append(name)
        for why, names in by_reason.items():
            out.print(f"[dim]not written:[/dim] {literal(', '.join(names))} ({literal(why)})")
        if "evalset" in result.files:
            out.print(literal("note: " + api.EVALSET_PRIVACY))
    if strict and result.problems:
        raise AdvisorError("--strict: " + "; ".join(result.problems))


_FORMATS_SHOWN = 10  # files named with their format; more are summed by format


def _print_formats(report: api.IngestReport) -> None:
    """Each file read and the format it was read as (detected, or --format)."""
    files = report.files
    for f in files[:_FORMATS_SHOWN]:
        out.print(f"[dim]read:[/dim] {literal(Path(f.path).name)}: {f.format}")
    rest: dict[str, int] = {}
    for f in files[_FORMATS_SHOWN:]:
        rest[f.format] = rest.get(f.format, 0) + 1
    if rest:
        summed = ", ".join(f"{n:,} {fmt}" for fmt, n in sorted(rest.items()))
        out.print(f"[dim]read:[/dim] {len(files) - _FORMATS_SHOWN:,} more files: {summed}")


def _lever_ids(levers: str | None, off: list[str]) -> tuple[str, ...] | None:
    """--levers and --no-lever as the ids to run (None: all), checked against the registry."""
    if levers is None and not off:
        return None
    wanted = [i.strip() for i in levers.split(",") if i.strip()] if levers is not None else []
    try:
        chosen = api.lever_ids(wanted) if levers is not None else api.lever_ids(None)
        dropped = api.lever_ids(off)
    except AdvisorError as exc:
        option = "--no-lever" if levers is None else "--levers / --no-lever"
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None
    return tuple(i for i in chosen if i not in dropped)


@app.command()
def ingest(
    logs: LogsArg,
    db: DbOpt = Path("advisor-out/advisor.duckdb"),
    fmt: FormatOpt = "auto",
    map_: MapOpt = None,
    model: ModelOpt = None,
    memory: MemoryOpt = None,
    store_dir: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Add logs to a DuckDB store (or a --store folder); re-ingesting a file adds nothing.

    Example: advisor ingest logs/*.jsonl.gz --db advisor-out/advisor.duckdb
    Example: advisor ingest logs/2026-12-*.jsonl.gz --store lake/   (day-partitioned Parquet)
    """
    bar, update, _ = _progress()
    with bar:
        report = api.ingest(
            logs,
            db,
            fmt=fmt,
            mapping=_pairs(map_, "--map", "FIELD=COLUMN"),
            model=model,
            progress=update,
            memory=memory,
            store_dir=store_dir,
        )
    held_in = store_dir if store_dir is not None else db
    reasons = api.quarantine_reasons(held_in) if report.totals.quarantined else []
    rows = [
        {
            "file": f.path,
            "format": f.format,
            **vars(f.counts),
            "quarantine": [r.model_dump() for r in reasons if r.file == f.path],
        }
        for f in report.files
    ]
    if json_:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        out.print(
            f"{literal(str(row['file']))} ({row['format']}): {row['rows']:,} rows, "
            f"{row['ingested']:,} new, {row['duplicates']:,} already present, "
            f"{row['quarantined']:,} quarantined"
        )
        for r in row["quarantine"][:TOP_REASONS]:  # the rest: `advisor analyze` or the store
            where = f"line {r['first_line']:,}" + (f", {r['field']}" if r["field"] else "")
            said = literal(f"{where}: {r['reason']}")
            out.print(f"  {said} ({r['rows']:,} rows)")


@app.command()
def report(
    analysis_file: Annotated[Path, typer.Argument(help="An analysis.json.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", callback=_one_of(api.REPORT_FORMATS), help="|".join(api.REPORT_FORMATS)
        ),
    ] = "html",
    output: StdoutOpt = None,
) -> None:
    """Render an analysis.json without re-running the pipeline.

    Example: advisor report advisor-out/analysis.json --format md -o report.md
    """
    text = api.render_report(api.load_analysis(analysis_file), fmt)
    _emit(text, output)


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="The earlier analysis.json.")],
    new: Annotated[Path, typer.Argument(help="The later analysis.json.")],
    fail_on_increase: Annotated[
        float | None,
        typer.Option("--fail-on-increase", help="Exit 1 if cost per request rose by > PCT %."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Compare two analyses: spend, coverage, levers, cost per request by feature and model.

    Example: advisor diff last-month/analysis.json advisor-out/analysis.json --fail-on-increase 5
    """
    from advisor.report import fmt

    result = api.diff(old, new)
    if json_:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
    else:
        from rich.table import Table

        grid = Table("figure", "old", "new", "change")
        cash = partial(fmt.money_per_unit, currency=result.currency)
        for change in result.changes:
            show = cash if change.money else fmt.number
            delta, share = change.delta, change.share
            grid.add_row(
                literal(change.name), show(change.old), show(change.new),
                f"{fmt.signed(delta, show(delta))} ({fmt.signed(share, fmt.pct(share))})",
            )  # fmt: skip
        out.print(grid)
        for note in result.notes:  # e.g. the price table changed: a cause of the difference
            out.print(literal(note))
        for title, units in (("feature", result.features), ("model", result.models)):
            out.print(_unit_table(title, units, result.currency))
    if fail_on_increase is not None and api.increase_exceeds(result, fail_on_increase):
        raise AdvisorError(
            f"cost per priced request rose by more than {fail_on_increase}%",
            hint="see the table above",
        )


def _unit_table(name: str, units: list[UnitChange], currency: str) -> Table:
    """Per feature or model: requests and cost per priced request, old → new (the costliest)."""
    from rich.table import Table

    from advisor.report import fmt

    def pair(old: str, new: str) -> str:
        return f"{old} → {new}"

    grid = Table(name, "requests", "cost per priced request", "change", title=f"By {name}")
    for unit in units[:DIFF_ROWS]:
        cost = unit.per_request
        grid.add_row(
            literal(fmt.text(unit.key)),
            pair(*(fmt.count(t.requests if t else None) for t in (unit.old, unit.new))),
            pair(fmt.money_per_unit(cost.old, currency), fmt.money_per_unit(cost.new, currency)),
            fmt.signed(cost.share, fmt.pct(cost.share)),
        )
    if len(units) > DIFF_ROWS:
        grid.caption = f"the costliest {DIFF_ROWS} of {fmt.count(len(units))} (all in --json)"
    return grid


@export_app.command("decisions")
def export_decisions(
    db: DbOpt = Path("advisor-out/advisor.duckdb"),
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Parquet or CSV, by extension.")
    ] = Path("advisor-out/decisions.parquet"),
) -> None:
    """One row per request with every lever's decision: the audit trail behind the report.

    Example: advisor export decisions --db advisor-out/advisor.duckdb -o decisions.csv
    """
    count = api.export_decisions(db, output)
    err.print(f"wrote {count:,} rows to {literal(str(output))}")


@export_app.command("router")
def export_router(
    fmt: Annotated[
        str,
        typer.Option(
            "--format", callback=_one_of(tuple(api.ROUTER_FILES)), help="|".join(api.ROUTER_FILES)
        ),
    ] = "generic",
    db: DbOpt = Path("advisor-out/advisor.duckdb"),
    output: StdoutOpt = None,
) -> None:
    """The router config that applies the tiering decisions in production.

    Example: advisor export router --format litellm -o litellm_config.yaml
    """
    text = api.export_router(db, fmt)
    _emit(text, output)


@export_app.command("guardrails")
def export_guardrails(
    analysis: Annotated[
        Path | None,
        typer.Argument(help="An analysis.json instead of the store (its ids are redacted)."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            callback=_one_of(tuple(api.GUARDRAIL_FILES)),
            help="|".join(api.GUARDRAIL_FILES),
        ),
    ] = "generic",
    db: DbOpt = Path("advisor-out/advisor.duckdb"),
    output: StdoutOpt = None,
) -> None:
    """The derived limits for a gateway: advisor.guard YAML, LiteLLM config and API, Helicone.

    Example: advisor export guardrails --format litellm -o litellm_guardrails.yaml
    """
    if analysis is not None:
        err.print(
            "reading an analysis.json: its ids are redacted, so no per-user or per-account "
            "body is written (export from the store with --db for them)"
        )
    text = api.export_guardrails(db, fmt, analysis=analysis)
    _emit(text, output)


@export_app.command("evalset")
def export_evalset(
    db: DbOpt = Path("advisor-out/advisor.duckdb"),
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder.")] = Path(
        "advisor-out/evalset"
    ),
    per_stratum: Annotated[
        int,
        typer.Option("--per-stratum", help="Requests per feature/template and confidence band."),
    ] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    redact: Annotated[
        bool, typer.Option("--redact", help="Mask secrets and personal data in the prompts.")
    ] = False,
) -> None:
    """Requests the router would move, as chat JSONL plus a promptfoo config to compare models.

    Example: advisor export evalset -o evalset  (then: promptfoo eval -c evalset/promptfoo/...)
    """
    paths = api.export_evalset(db, output, per_stratum=per_stratum, seed=seed, redact=redact)
    for path in paths:
        err.print(f"wrote {literal(str(path))}")
    err.print(literal("note: " + (api.EVALSET_REDACTED if redact else api.EVALSET_PRIVACY)))


@tiering_app.command("calibrate")
def tiering_calibrate(
    results: Annotated[
        Path,
        typer.Argument(
            help="promptfoo results JSON of the evaluation set, or CSV request_id,pass."
        ),
    ],
    db: DbOpt = Path("advisor-out/advisor.duckdb"),
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Output folder (default: the store's).")
    ] = None,
    prices: PricesOpt = None,
    rules_dir: RulesOpt = None,
) -> None:
    """Fold measured pass rates into the routing, router exports and report; calls no model.

    Example: advisor tiering calibrate evalset/results.json --db advisor-out/advisor.duckdb
    """
    result = api.calibrate_tiering(
        results, db, out_dir=output, rules_dir=rules_dir, prices_files=prices or ()
    )
    err.print(
        f"read {result.results:,} verdicts ({result.matched:,} in the store"
        + (f", {result.errored:,} eval errors left out" if result.errored else "")
        + ")"
    )
    tiering = next((lv for lv in result.analysis.analysis.levers if lv.id == "tiering"), None)
    quality = getattr(getattr(tiering, "details", None), "measured_quality", None)
    if quality is not None:
        out.print(literal(quality.summary))
        for group in quality.groups:
            if group.excluded:
                out.print(
                    literal(
                        f"  not routed: {group.kind} {group.value}: {group.passed} of "
                        f"{group.requests} passed ({group.rule})"
                    )
                )
    for name, path in result.analysis.files.items():
        out.print(f"[dim]{name}:[/dim] {literal(str(path))}")


@prices_app.command("list")
def prices_list(
    prices: PricesOpt = None,
    rules_dir: RulesOpt = None,
    json_: JsonOpt = False,
    all_: Annotated[
        bool, typer.Option("--all", help="Also the community snapshot's models (the fallback).")
    ] = False,
) -> None:
    """List the curated and --prices models (USD per 1M tokens); --all adds the community ones.

    Example: advisor prices list --all --json
    """
    table = api.load_price_table(rules_dir, prices or ())
    if all_:
        table.load_community()
    rows = [
        {
            "model": key,
            "provider": m.provider,
            "input": m.prices.input,
            "cached_input": m.prices.cached_input,
            "output": m.prices.output,
            "source": table.origin.get(key),
        }
        for key, m in sorted(table.models.items())
    ]
    if json_:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    from rich.table import Table

    grid = Table(
        "model", "provider", "input", "cached input", "output", "source", title="USD per 1M tokens"
    )
    for row in rows:
        grid.add_row(*(literal("" if v is None else str(v)) for v in row.values()))
    out.print(grid)


@prices_app.command("show")
def prices_show(
    model: Annotated[str, typer.Argument(help="A model name as logged (aliases resolve).")],
    prices: PricesOpt = None,
    rules_dir: RulesOpt = None,
) -> None:
    """Show one model's prices, source and caching rules, as JSON.

    Example: advisor prices show gpt-4o-2024-08-06
    """
    table = api.load_price_table(rules_dir, prices or ())
    hit = table.resolve(model)
    if hit is None:
        raise AdvisorError(f"no price for model {model!r}", hint="see `advisor prices list`")
    entry = table.models[hit.key]
    doc = {"resolved_as": hit.how, **entry.model_dump(mode="json")}
    caching = table.caching_for(hit.key)
    doc["caching"] = caching.model_dump(mode="json") if caching else None
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


@prices_app.command("import")
def prices_import(
    litellm_file: Annotated[
        Path, typer.Argument(help="LiteLLM model_prices_and_context_window.json")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Prices YAML to write.")] = Path(
        "prices-litellm.yaml"
    ),
    snapshot: Annotated[
        str | None,
        typer.Option(
            "--snapshot",
            help="Write the bundled community snapshot (JSON) instead, naming the source's"
            " version (e.g. 'litellm 1.110.2').",
        ),
    ] = None,
    retrieved: Annotated[
        str | None, typer.Option("--retrieved", help="The snapshot's date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Convert LiteLLM's price table to a prices file usable with --prices.

    Example: advisor prices import model_prices_and_context_window.json -o prices.yaml
    """
    from advisor.price_import import import_litellm, write_prices_yaml

    when = dt.date.fromisoformat(retrieved) if retrieved else None
    imported = import_litellm(litellm_file, when)
    if snapshot is None:
        write_prices_yaml(imported.models, output)
    else:
        from advisor.price_snapshot import snapshot_command, write_snapshot

        write_snapshot(
            imported.models,
            output,
            source=f"LiteLLM {litellm_file.name}",
            version=snapshot,
            retrieved=when or dt.date.today(),
            command=snapshot_command(litellm_file.name, snapshot, when or dt.date.today()),
            entries=imported.entries,
        )
    for line in imported.summary():
        err.print(literal(line))
    err.print(f"wrote {literal(str(output))}" + ("; use it with --prices" if not snapshot else ""))


def _debug_flag(args: list[str]) -> tuple[bool, list[str]]:
    """--debug anywhere before a `--`, after the command too (`advisor analyze x --debug`), and
    the arguments without it: known before parsing, so a usage error can show its trace."""
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != "--debug"]
    return len(kept) < end, kept + args[end:]


def _interrupted(kept: str | None = None) -> NoReturn:
    """Ctrl-C: one line saying what the command kept, and exit 130."""
    err.print(literal(f"interrupted: {kept}" if kept else "interrupted"))
    sys.exit(130)


def _error(message: str, hint: str | None) -> NoReturn:
    """An error the user can act on: its message and hint (with --debug, its trace), exit 1."""
    if _state["debug"]:
        traceback.print_exc()
    err.print(f"[bold red]error:[/bold red] {literal(message, keep_layout=True)}")
    if hint:
        err.print(f"[dim]hint:[/dim] {literal(hint, keep_layout=True)}")
    sys.exit(1)


def main() -> None:
    """Entry point: the one error boundary (messages on stderr, data on stdout)."""
    _state["debug"], args = _debug_flag(sys.argv[1:])
    try:
        code = app(args=args, prog_name="advisor", standalone_mode=False)
    except AdvisorError as exc:
        _error(exc.message, exc.hint)
    except Interrupted as exc:
        _interrupted(exc.kept)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except Exception as exc:
        if api.is_interrupt(exc):  # Ctrl-C inside a DuckDB query
            _interrupted()
        if isinstance(exc, OSError) and exc.filename is not None:  # a path the user can fix
            _error(f"{exc.filename}: {exc.strerror}", None)
        if _state["debug"]:
            traceback.print_exc()
        # A usage error (unknown option, missing argument) carries its message and exit code.
        # Recognised by its interface: newer typer vendors click, whose classes are not click's.
        code, show = getattr(exc, "exit_code", None), getattr(exc, "show", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        err.print(f"[bold red]internal error:[/bold red] {literal(repr(exc))}")
        if not _state["debug"]:
            err.print("[dim]hint:[/dim] re-run with --debug for the traceback, and report it")
        sys.exit(70)
    # Without standalone mode, typer returns an exit code instead of raising it: 130 is its
    # translation of a KeyboardInterrupt in Python code.
    if code == 130:
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
