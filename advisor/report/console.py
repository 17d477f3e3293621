"""The terminal summary of an Analysis (rich): the headline and the action plan's top rows, then
coverage, spend, levers, recommendations, and the top anomalies with the guardrails in one line
when there are any.

Every string that came from a log is escaped with `rich.markup.escape`, so a model called
`[bold]x[/bold]` prints as written instead of being styled, and its control characters (terminal
escape sequences) and bidi overrides are shown as escapes rather than obeyed.
"""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from advisor.analysis import Analysis, CostRow, Interval
from advisor.report import fmt, guardrails, waterfall

TOP_ROWS = 10
TOP_ACTIONS = 5
TOP_REASONS = 5
TOP_ANOMALIES = 5
_NAME_WIDTH = 48


def render_console(analysis: Analysis, console: Console) -> None:
    """Print the summary: what the figures rest on, where the money goes, what would save it."""
    _header(analysis, console)
    _action_plan(analysis, console)
    _coverage(analysis, console)
    _spend(analysis, console)
    _levers(analysis, console)
    _recommendations(analysis, console)
    _guardrails(analysis, console)


def _header(a: Analysis, console: Console) -> None:
    period = (
        f"{fmt.timestamp(a.period.start, 'unknown start')} to "
        f"{fmt.timestamp(a.period.end, 'unknown end')}"
    )
    console.print(
        f"[bold]LLM spend and savings[/bold]  {literal(period)} "
        f"({fmt.days(a.period.days)}, {literal(a.currency)})"
    )
    console.print(
        f"Spend [bold]{_money(a, a.baseline.cost)}[/bold] · combined saving "
        f"[bold green]{_money(a, a.combined.saving)}[/bold green] "
        f"({fmt.pct(a.combined.saving_share)}) · after levers {_money(a, a.combined.cost)}"
    )
    sampled = fmt.sample_sentence(a)
    if sampled and a.sample is not None:
        console.print(f"[bold yellow]{escape(sampled)}[/bold yellow]")
        console.print(f"Combined saving, 95% interval: {_interval(a, a.sample.combined)}")


def _action_plan(a: Analysis, console: Console) -> None:
    """The plan's largest changes, then the rest summed, so the figures shown add up to its
    total; nothing when the analysis has no plan (the levers table says what saves)."""
    plan = a.action_plan
    if not plan.rows:
        return
    table = Table(title="Action plan", title_justify="left", title_style="bold")
    table.add_column("where", overflow="fold", max_width=24)
    table.add_column("change", overflow="fold", max_width=_NAME_WIDTH)
    table.add_column("$/month", justify="right", no_wrap=True)
    table.add_column("risk", no_wrap=True)
    table.add_column("effort", no_wrap=True)
    for r in plan.rows[:TOP_ACTIONS]:
        table.add_row(
            literal(r.scope),
            literal(r.change),
            _money(a, r.saving_per_month),
            literal(r.risk),
            literal(r.effort),
        )
    rest = len(plan.rows) - TOP_ACTIONS + plan.other_changes
    if rest > 0:
        shown = sum((r.saving_per_month for r in plan.rows[:TOP_ACTIONS]), Decimal(0))
        more = _money(a, plan.total_per_month - shown)
        table.add_row(fmt.plural(rest, "more change"), "", more, "", "")
    table.add_section()
    table.add_row(
        "[bold]total[/bold]",
        f"{_money(a, plan.total)} over {fmt.days(plan.period_days or a.period.days)}",
        f"[bold green]{_money(a, plan.total_per_month)}[/bold green]",
        "",
        "",
    )
    console.print(table)


def _coverage(a: Analysis, console: Console) -> None:
    cov = a.coverage
    console.rule("[bold]Coverage[/bold]", align="left")
    priced = fmt.pct(cov.priced_requests / cov.requests) if cov.requests else fmt.NONE
    console.print(
        f"Requests {fmt.count(cov.requests)} · priced {fmt.count(cov.priced_requests)} ({priced})"
        f" · unpriced {fmt.count(cov.unpriced_requests)} · errors {fmt.count(cov.error_requests)}"
        f" · duplicates skipped {fmt.count(cov.duplicate_rows)}"
    )
    style = "yellow" if cov.quarantined_rows else "default"
    console.print(f"[{style}]Quarantined rows {fmt.count(cov.quarantined_rows)}[/{style}]")
    reasons = sorted(cov.quarantine_reasons, key=lambda q: (-q.rows, q.file, q.first_line))
    for q in reasons[:TOP_REASONS]:
        field = f"field {q.field}" if q.field else "no field"
        console.print(
            f"  {literal(q.file)}:{q.first_line}  {literal(field)}: {literal(q.reason)}"
            f"  ({fmt.plural(q.rows, 'row')})"
        )
    if len(reasons) > TOP_REASONS:
        console.print(f"  … and {len(reasons) - TOP_REASONS} more reasons in analysis.json")
    if cov.unpriced_models:
        console.print(
            "[yellow]Unpriced models[/yellow] (spend unknown, not counted as zero, "
            "not in any total):"
        )
        for u in sorted(cov.unpriced_models, key=lambda u: (-u.requests, u.model)):
            provider = f" ({literal(u.provider)})" if u.provider else ""
            console.print(f"  {literal(u.model)}{provider}  {fmt.plural(u.requests, 'request')}")
    console.print(f"{escape(fmt.token_sources(cov))}  (tokenizer: {literal(cov.tokenizer)})")
    warning = fmt.estimated_warning(cov)
    if warning:
        console.print(f"[bold yellow]Warning:[/bold yellow] {literal(warning)}")
    for note in cov.notes:
        console.print(f"  note: {literal(note)}")


def _spend(a: Analysis, console: Console) -> None:
    base = a.baseline
    console.rule("[bold]Spend[/bold]", align="left")
    for title, name, rows in (
        ("Spend by model", "model", base.by_model),
        ("Spend by feature", "feature", base.by_feature),
        ("Top users", "user", base.by_user),
    ):
        console.print(_cost_table(a, title, name, rows, console.width))
    console.print(escape(fmt.reconciliation_sentence(base.reconciliation, a.currency)))


def _cost_table(a: Analysis, title: str, name: str, rows: list[CostRow], width: int) -> Table:
    ranked = fmt.by_cost(rows)
    cells = [
        [
            literal(fmt.text(r.key) + (f" via {', '.join(r.via)}" if r.via else "")),
            fmt.count(r.requests),
            fmt.tokens(r.input_tokens),
            fmt.tokens(r.output_tokens),
            _money(a, r.cost),
            fmt.pct(r.share),
            fmt.count(r.unpriced_requests) if r.unpriced_requests else "",
        ]
        for r in ranked[:TOP_ROWS]
    ]
    headers = ["requests", "input", "output", "spend", "share", "unpriced"]
    table = _named_figures(title, name, headers, cells, width)
    if len(ranked) > TOP_ROWS:
        table.caption = f"top {TOP_ROWS} of {fmt.count(len(ranked))}"
    return table


def _named_figures(
    title: str, name: str, headers: list[str], rows: list[list[str]], width: int
) -> Table:
    """A table of one name column, then figures: a narrow terminal shortens the names (with an
    ellipsis) and never a figure, so no amount of money is ever shown cut."""
    figures = [
        max(len(h), *(Text.from_markup(r[i + 1]).cell_len for r in rows)) if rows else len(h)
        for i, h in enumerate(headers)
    ]
    # each column costs its width plus two of padding and one of border, and one border closes
    room = width - sum(figures) - 3 * (len(figures) + 1) - 1
    out = Table(title=title, title_justify="left", title_style="bold")
    shortest = max(8, min(_NAME_WIDTH, room))
    out.add_column(name, no_wrap=True, overflow="ellipsis", max_width=shortest)
    for header, fits in zip(headers, figures, strict=True):
        out.add_column(header, justify="right", no_wrap=True, min_width=fits)
    for row in rows:
        out.add_row(*row)
    return out


def _levers(a: Analysis, console: Console) -> None:
    console.rule("[bold]Levers[/bold]", align="left")
    console.print(literal(fmt.levers_sentence(a.levers_run, a.levers_skipped)))
    if not a.levers:
        console.print("No lever was simulated.")
        return
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("lever", overflow="fold", max_width=_NAME_WIDTH)
    table.add_column("standalone saving", justify="right")
    table.add_column("marginal saving", justify="right")
    table.add_column("affected requests", justify="right")
    if a.sample is not None:
        table.add_column("marginal, 95% interval", justify="right")
    notes = {lever.id: fmt.approximate_note(lever, a.currency) for lever in a.levers}
    for i, lever in enumerate(a.levers, start=1):
        table.add_row(
            str(i),
            literal(lever.title),
            ("≈" if notes[lever.id] else "") + _money(a, lever.standalone_saving),
            _money(a, lever.marginal_saving),
            fmt.count(lever.affected_requests),
            *([_interval(a, fmt.lever_interval(a, lever.id))] if a.sample else []),
        )
    table.add_section()
    table.add_row(
        "",
        f"[bold]combined, in this order[/bold] ({fmt.pct(a.combined.saving_share)} of spend)",
        "not summed",
        f"[bold green]{_money(a, a.combined.saving)}[/bold green]",
        "",
        *([_interval(a, a.sample.combined)] if a.sample else []),
    )
    console.print(table)
    for lever in a.levers:
        if notes[lever.id]:
            console.print(f"[yellow]≈ {literal(lever.title)}[/yellow]: {literal(notes[lever.id])}")
    idle = [lever for lever in a.levers if lever.why_not is not None]
    if idle:  # a zero saving says why, and what to log or change to get one
        console.print("[bold]Why some levers saved nothing[/bold]")
    for lever in idle:
        note = lever.why_not
        assert note is not None
        fix = f" [dim]— {literal(note.fix)}[/dim]" if note.fix else ""
        console.print(f"  {literal(lever.id)}: {literal(note.reason)}{fix}")
    console.print(f"[bold]Waterfall[/bold]  {literal(waterfall.sentence(a))}")
    for step in waterfall.steps(a):
        if step.range_note:
            console.print(f"  {literal(step.label)}: {literal(step.range_note)}")
    console.print(
        "Savings replay the logged requests. Levers interact, so standalone savings are not "
        "added up; the combined saving applies them in the order above."
    )


def _recommendations(a: Analysis, console: Console) -> None:
    console.rule("[bold]Recommendations[/bold]", align="left")
    if not a.recommendations:
        console.print("None.")
        return
    for i, r in enumerate(a.recommendations[:TOP_ROWS], start=1):
        console.print(
            f"{i}. [bold]{literal(r.title)}[/bold]  {_money(a, r.saving)}  ({literal(r.lever)})"
        )
        console.print(f"   {literal(r.action)}")
        for name, excerpt in (("before", r.excerpt_before), ("after", r.excerpt_after)):
            if excerpt is not None:
                console.print(f"   {name}: {literal(excerpt)}")
    if len(a.recommendations) > TOP_ROWS:
        more = len(a.recommendations) - TOP_ROWS
        console.print(f"… and {more} more in report.html and analysis.json")


def _guardrails(a: Analysis, console: Console) -> None:
    """Only when there is something to say: the top anomalies, and the limits in one line."""
    summary = guardrails.summary(a.guardrails, a.currency)
    if not (summary or a.anomalies or a.guardrails.notes):
        return
    console.rule("[bold]Guardrails and anomalies[/bold]", align="left")
    if a.anomalies:
        rows = guardrails.anomaly_rows(a.anomalies[:TOP_ANOMALIES], a.currency)
        cells = [
            [literal(r.entity), r.kind, literal(r.window), _money(a, r.anomaly.excess_spend)]
            for r in rows
        ]
        title = f"Top anomalies by excess spend ({fmt.count(len(a.anomalies))} found)"
        table = _named_figures(
            title, "entity", ["kind", "window (UTC)", "excess spend"], cells, console.width
        )
        console.print(table)
        if len(a.anomalies) > TOP_ANOMALIES:
            more = len(a.anomalies) - TOP_ANOMALIES
            console.print(f"… and {fmt.count(more)} more in report.html and analysis.json")
    if summary:
        console.print(literal(summary))
    for note in a.guardrails.notes:
        console.print(f"  note: {literal(note)}")


def literal(value: str | None, *, keep_layout: bool = False) -> str:
    """A log string or a file name as literal terminal text: no markup, no control or bidi
    characters obeyed (newlines and tabs too, unless `keep_layout`). Every such string that
    reaches the terminal goes through here."""
    return escape(fmt.printable(fmt.text(value), keep_layout=keep_layout))


def _interval(a: Analysis, iv: Interval | None) -> str:
    return escape(fmt.interval(iv, a.currency))


def _money(a: Analysis, amount: Decimal | None) -> str:
    return escape(fmt.money(amount, a.currency))
