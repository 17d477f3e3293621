"""The Markdown report of an Analysis: a pull-request comment that reads in a minute.

Headline, action plan, how the saving adds up, coverage, and a pointer to report.html for the rest
(spend tables, each lever's details, recommendations, guardrails and anomalies), in about 60 lines.
Log strings are escaped for Markdown and for the HTML that Markdown passes through: markup
characters become entities, Markdown punctuation and '|' are backslash-escaped, and control or
bidi characters (newlines too) are shown as escapes, so no name can break a table or run a script.
"""

from __future__ import annotations

import re
from decimal import Decimal

from advisor.analysis import ActionPlan, Analysis, Interval
from advisor.report import fmt, guardrails, waterfall

TOP_ACTIONS = 12  # rows beyond these are summed into one line, so the table still adds up
TOP_NOTES = 3
TOP_UNPRICED_MODELS = 3
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_PUNCT = re.compile(r"([\\`*_\[\]|#~$!])")

HOW_TO_READ = (
    "_Every saving replays the logged requests under the change, not an assumed percentage; "
    "\\$/month scales the period's saving to 30 days. Unknown is never counted as zero._"
)


def md(text: str | None) -> str:
    """A string from a log (or any text) made inert in Markdown, on one line."""
    value = fmt.printable(fmt.text(text))
    value = "".join(_HTML.get(ch, ch) for ch in value)
    value = _PUNCT.sub(r"\\\1", value)
    return " ".join(value.split())


def render_markdown(analysis: Analysis) -> str:
    """The report as GitHub-flavoured Markdown, the same text for the same analysis."""
    lines: list[str] = []
    lines += _header(analysis)
    lines += _action_plan(analysis)
    lines += _adds_up(analysis)
    lines += _coverage(analysis)
    lines += _more(analysis)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip("\n") + "\n"


def _header(a: Analysis) -> list[str]:
    if a.baseline.cost is None:
        headline = "**Spend unknown: no request could be priced.**"
    else:
        after = "the changes below" if a.action_plan.rows else "the levers"
        headline = (
            f"**Spend {_money(a, a.baseline.cost)} → {_money(a, a.combined.cost)} after "
            f"{after}: saving {_money(a, a.combined.saving)} "
            f"({fmt.pct(a.combined.saving_share)} of spend)"
        )
        if a.action_plan.total_per_month:
            headline += f", about {_money(a, a.action_plan.total_per_month)} a month"
        headline += ".**"
    period = (
        f"{fmt.timestamp(a.period.start, 'unknown start')} to "
        f"{fmt.timestamp(a.period.end, 'unknown end')}"
    )
    sampled = fmt.sample_sentence(a)
    return [
        "# LLM spend and savings",
        "",
        headline,
        "",
        *([f"> **{md(sampled)}**", ""] if sampled else []),
        f"{md(fmt.plural(a.coverage.requests, 'request'))} from {md(period)} "
        f"({md(fmt.days(a.period.days))}) · {md(a.currency)} · "
        f"advisor {md(a.advisor_version)} · generated {md(fmt.timestamp(a.generated_at))}",
        "",
    ]


def _action_plan(a: Analysis) -> list[str]:
    plan = a.action_plan
    lines = ["## Action plan", ""]
    if plan.rows:
        lines += _plan_table(a, plan)
        lines += [f"- {md(note)}" for note in plan.interactions]
        lines += ["", HOW_TO_READ, ""]
    elif plan.other:
        lines += [
            f"No single change saves {_money(a, plan.minimum)} or more: "
            f"{md(fmt.plural(plan.other_changes, 'smaller change'))} add up to "
            f"{_money(a, plan.other)} over the period.",
            "",
        ]
    elif a.combined.saving:
        # an analysis written before action plans: the levers' steps below still add up
        lines += [
            "This analysis has no action plan; the saving by lever is below, and each "
            "recommendation is in report.html.",
            "",
        ]
    else:
        lines += ["No change is worth making on these logs.", ""]
    lines += _why_not(a)
    return lines


def _plan_table(a: Analysis, plan: ActionPlan) -> list[str]:
    """Where, what to change, how much (a month, then over the period), how risky, how much
    work; the rows past TOP_ACTIONS, the ones below the minimum ('other') and the total close it,
    so the column adds up to the combined saving."""
    shown, rest = plan.rows[:TOP_ACTIONS], plan.rows[TOP_ACTIONS:]
    body = [
        [
            md(r.scope),
            md(r.change),
            _money(a, r.saving_per_month),
            _money(a, r.saving) + _interval(a, fmt.row_interval(a, r.id)),
            md(f"{r.risk}: {r.risk_reason}" if r.risk_reason else r.risk),
            md(r.effort),
        ]
        for r in shown
    ]
    if rest:
        body.append(
            [
                f"{md(fmt.plural(len(rest), 'more change'))} (in report.html)",
                "",
                _money(a, sum((r.saving_per_month for r in rest), Decimal(0))),
                _money(a, sum((r.saving for r in rest), Decimal(0))),
                "",
                "",
            ]
        )
    if plan.other or plan.other_changes:
        # per month, what the listed rows leave of the plan's total: the column adds up exactly
        listed = sum((r.saving_per_month for r in plan.rows), Decimal(0))
        body.append(
            [
                "Other",
                f"{md(fmt.plural(plan.other_changes, 'smaller change'))}, each under "
                f"{_money(a, plan.minimum)}",
                _money(a, plan.total_per_month - listed),
                _money(a, plan.other),
                "",
                "",
            ]
        )
    body.append(
        [
            "**Total**",
            "the combined saving",
            f"**{_money(a, plan.total_per_month)}**",
            f"**{_money(a, plan.total)}**" + _interval(a, a.sample.combined if a.sample else None),
            "",
            "",
        ]
    )
    in_period = f"In {fmt.days(plan.period_days or a.period.days)}"
    header = ["Where", "Change", md("$/month"), md(in_period), "Risk", "Effort"]
    return _table(header, body, right={2, 3})


def _interval(a: Analysis, iv: Interval | None) -> str:
    """' (95%: low–high)' after a sampled figure; nothing after an exact one."""
    return f" (95%: {md(fmt.interval(iv, a.currency))})" if iv is not None else ""


def _why_not(a: Analysis) -> list[str]:
    """Why each lever that could not run or found nothing did so, and what would change that."""
    lines = [
        f"- **{md(lv.title)}:** {md(lv.why_not.reason)}"
        + (f" — {md(lv.why_not.fix)}" if lv.why_not.fix else "")
        for lv in a.levers
        if lv.why_not is not None
    ]
    if a.levers_skipped:
        lines.append(f"- Not run: {md(', '.join(a.levers_skipped))}")
    return ["Levers that found nothing:", "", *lines, ""] if lines else []


def _adds_up(a: Analysis) -> list[str]:
    """The waterfall in one line, with each lever's range and approximate figures beneath."""
    if not a.levers:
        return ["## How the saving adds up", "", "No lever was simulated.", ""]
    notes = [
        f"- {md(step.label)}: {md(step.range_note)}"
        for step in waterfall.steps(a)
        if step.range_note
    ]
    notes += [
        f"- ≈ {md(lv.title)}: {md(note)}"
        for lv in a.levers
        if (note := fmt.approximate_note(lv, a.currency))
    ]
    notes += [
        f"- {md(lv.title)}: sampled, 95% interval of the marginal saving "
        f"{md(fmt.interval(iv, a.currency))}"
        for lv in a.levers
        if (iv := fmt.lever_interval(a, lv.id)) is not None
    ]
    return [
        "## How the saving adds up",
        "",
        "Each lever's marginal saving, in the order applied (levers interact: their "
        "standalone savings are not added up):",
        "",
        md(waterfall.sentence(a)),
        "",
        *notes,
        "",
    ]


def _coverage(a: Analysis) -> list[str]:
    cov = a.coverage
    priced = fmt.pct(cov.priced_requests / cov.requests) if cov.requests else fmt.NONE
    lines = [
        "## Coverage",
        "",
        f"- {fmt.plural(cov.requests, 'request')}: {fmt.count(cov.priced_requests)} priced "
        f"({priced}), {fmt.plural(cov.error_requests, 'error')}, "
        f"{fmt.plural(cov.quarantined_rows, 'row')} quarantined, "
        f"{fmt.plural(cov.duplicate_rows, 'duplicate')} skipped",
    ]
    if cov.unpriced_requests:
        models = sorted(cov.unpriced_models, key=lambda u: (-u.requests, u.model))
        names = ", ".join(u.model for u in models[:TOP_UNPRICED_MODELS])
        more = len(models) - TOP_UNPRICED_MODELS
        names += f" and {fmt.plural(more, 'more model')}" if more > 0 else ""
        lines.append(
            f"- {fmt.plural(cov.unpriced_requests, 'request')} unpriced ({md(names)}): "
            "their spend is unknown, not counted as zero, in no total"
        )
    lines.append(f"- {md(fmt.token_sources(cov))} (tokenizer: {md(cov.tokenizer)})")
    warning = fmt.estimated_warning(cov)
    if warning:
        lines.append(f"- **Warning:** {md(warning)}")
    lines.append(f"- {md(fmt.reconciliation_sentence(a.baseline.reconciliation, a.currency))}")
    lines += _notes(cov.notes)
    return [*lines, ""]


def _more(a: Analysis) -> list[str]:
    """Anomalies and guardrails in a line each, then where everything else is."""
    lines = ["## More in report.html", ""]
    if a.anomalies:
        top = guardrails.anomaly_rows(a.anomalies[:1], a.currency)[0]
        excess = (
            "excess spend unknown"
            if top.anomaly.excess_spend is None
            else f"{top.excess} over what its history expects"
        )
        lines.append(
            f"- {md(fmt.plural(len(a.anomalies), 'anomaly', 'anomalies'))}; the largest: "
            f"{md(top.entity)} ({md(top.kind)}, {md(top.window)} UTC, {md(excess)})"
        )
    summary = guardrails.summary(a.guardrails, a.currency)
    if summary:
        lines.append(f"- {md(summary)}")
    lines += _notes(a.guardrails.notes)
    lines += [
        "",
        "Spend by model, feature, user and day, each lever's details and recommendations, the "
        "guardrails' back-test and every anomaly are in **report.html**, which `advisor analyze` "
        "writes beside analysis.json (or `advisor report analysis.json -o report.html`).",
    ]
    return lines


def _notes(notes: list[str]) -> list[str]:
    shown = [f"- Note: {md(note)}" for note in notes[:TOP_NOTES]]
    more = len(notes) - TOP_NOTES
    return shown + ([f"- … and {fmt.plural(more, 'more note')} in report.html"] if more > 0 else [])


def _table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    right = right or set()
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _money(a: Analysis, amount: Decimal | None) -> str:
    return md(fmt.money(amount, a.currency))
