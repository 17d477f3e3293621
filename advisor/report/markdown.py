"""The Markdown report of an Analysis: the same figures as the HTML report, for PRs and wikis.

Log strings are escaped for Markdown and for the HTML that Markdown passes through: markup
characters become entities, Markdown punctuation and '|' are backslash-escaped, and control or
bidi characters are shown as escapes.
"""

from __future__ import annotations

import re
from decimal import Decimal

from advisor.analysis import Analysis, CostRow, Recommendation
from advisor.report import fmt, guardrails, waterfall

TOP_ROWS = 25
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_PUNCT = re.compile(r"([\\`*_\[\]|#~$!])")

HOW_TO_READ = (
    "> **How to read this.** Every saving is a counterfactual replay of the logged requests "
    "under a changed policy, not an assumed percentage. Levers interact, so standalone savings "
    "are not added up; the combined figure applies the levers in the order listed, and each "
    "lever's marginal saving is what it adds at its place in that order. Unknown is never "
    "counted as zero: the coverage section says what the figures leave out."
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
    lines += _coverage(analysis)
    lines += _spend(analysis)
    lines += _levers(analysis)
    lines += _recommendations(analysis)
    lines += _guardrails(analysis)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip("\n") + "\n"


def _header(a: Analysis) -> list[str]:
    period = f"{a.period.start or 'unknown start'} to {a.period.end or 'unknown end'}"
    return [
        "# LLM spend and savings",
        "",
        f"{md(period)} ({fmt.number(a.period.days)} days) · generated {md(a.generated_at)} · "
        f"advisor {md(a.advisor_version)} · schema {md(a.schema_version)} · {md(a.currency)}",
        "",
        f"**Spend:** {_money(a, a.baseline.cost)} · **Combined saving:** "
        f"{_money(a, a.combined.saving)} ({fmt.pct(a.combined.saving_share)} of spend) · "
        f"**Spend after levers:** {_money(a, a.combined.cost)}",
        "",
        HOW_TO_READ,
        "",
    ]


def _coverage(a: Analysis) -> list[str]:
    cov = a.coverage
    src = cov.token_source
    priced = fmt.pct(cov.priced_requests / cov.requests) if cov.requests else fmt.NONE
    lines = [
        "## Coverage",
        "",
        f"- Requests: {fmt.count(cov.requests)}; priced {fmt.count(cov.priced_requests)} "
        f"({priced}); errors {fmt.count(cov.error_requests)}; "
        f"duplicates skipped {fmt.count(cov.duplicate_rows)}",
        f"- Unpriced requests: {fmt.count(cov.unpriced_requests)} (spend unknown, not counted "
        "as zero, not in any total)",
        f"- Quarantined rows: {fmt.count(cov.quarantined_rows)}",
        f"- Token counts: logged {fmt.count(src.logged)}, tokenized {fmt.count(src.tokenized)}, "
        f"estimated {fmt.count(src.estimated)}, unbilled {fmt.count(src.unbilled)} "
        f"(tokenizer: {md(cov.tokenizer)})",
    ]
    warning = fmt.estimated_warning(cov)
    if warning:
        lines.append(f"- **Warning:** {md(warning)}")
    lines.append(f"- {md(fmt.reconciliation_sentence(a.baseline.reconciliation, a.currency))}")
    lines += [f"- Note: {md(note)}" for note in cov.notes]
    lines.append("")
    if cov.unpriced_models:
        lines += ["### Unpriced models", ""]
        lines += _table(
            ["Model", "Provider", "Requests", "Input tokens", "Output tokens"],
            [
                [
                    md(u.model),
                    md(u.provider),
                    fmt.count(u.requests),
                    fmt.tokens(u.input_tokens),
                    fmt.tokens(u.output_tokens),
                ]
                for u in cov.unpriced_models
            ],
            right={2, 3, 4},
        )
    if cov.quarantine_reasons:
        lines += ["### Quarantined rows", ""]
        lines += _table(
            ["File", "First line", "Field", "Reason", "Rows"],
            [
                [md(q.file), str(q.first_line), md(q.field), md(q.reason), fmt.count(q.rows)]
                for q in cov.quarantine_reasons[:TOP_ROWS]
            ],
            right={1, 4},
        )
    return lines


def _spend(a: Analysis) -> list[str]:
    base = a.baseline
    lines = ["## Spend", "", f"Spend in the period: **{_money(a, base.cost)}**", ""]
    for title, name, rows in (
        ("By model", "Model", base.by_model),
        ("By feature", "Feature", base.by_feature),
        ("Top users", "User", base.by_user),
    ):
        lines += [f"### {title}", ""]
        lines += _cost_table(a, name, fmt.by_cost(rows))
    days = sorted(base.by_day, key=lambda r: (fmt.text(r.key), fmt.text(r.model_key)))
    if days:
        lines += ["### By day", ""]
        lines += _cost_table(a, "Day", days, limit=len(days))
    return lines


def _cost_table(a: Analysis, name: str, rows: list[CostRow], limit: int = TOP_ROWS) -> list[str]:
    if not rows:
        return ["No rows.", ""]
    body = [
        [
            md(r.key) + (f" ({md(r.model_key)})" if r.model_key and r.model_key != r.key else ""),
            fmt.count(r.requests),
            fmt.tokens(r.input_tokens),
            fmt.tokens(r.output_tokens),
            _money(a, r.cost),
            fmt.pct(r.share),
            fmt.count(r.unpriced_requests),
        ]
        for r in rows[:limit]
    ]
    header = [name, "Requests", "Input tokens", "Output tokens", "Spend", "Share", "Unpriced"]
    lines = _table(header, body, right={1, 2, 3, 4, 5, 6})
    if len(rows) > limit:
        lines[-1:-1] = [
            "",
            f"Top {limit} of {fmt.count(len(rows))}; every row is in analysis.json.",
        ]
    return lines


def _levers(a: Analysis) -> list[str]:
    lines = ["## Levers", "", md(fmt.levers_sentence(a.levers_run, a.levers_skipped)), ""]
    if not a.levers:
        return [*lines, "No lever was simulated.", ""]
    body = [
        [
            str(i),
            md(lv.title),
            ("≈ " if fmt.approximate_note(lv, a.currency) else "")
            + _money(a, lv.standalone_saving),
            _money(a, lv.marginal_saving),
            fmt.count(lv.affected_requests),
        ]
        for i, lv in enumerate(a.levers, start=1)
    ]
    body.append(
        [
            "",
            "**Combined, in this order**",
            "not summed",
            f"**{_money(a, a.combined.saving)}**",
            f"{fmt.pct(a.combined.saving_share)} of spend",
        ]
    )
    lines += _table(
        ["#", "Lever", "Standalone saving", "Marginal saving", "Affected requests"],
        body,
        right={2, 3, 4},
    )
    lines += [f"**Waterfall:** {md(waterfall.sentence(a))}", ""]
    lines += [
        f"- {md(step.label)}: {md(step.range_note)}"
        for step in waterfall.steps(a)
        if step.range_note
    ]
    lines.append("")
    for i, lever in enumerate(a.levers, start=1):
        note = fmt.approximate_note(lever, a.currency)
        lines += [
            f"### {i}. {md(lever.title)} (id: {md(lever.id)})",
            "",
            f"- Standalone saving: {_money(a, lever.standalone_saving)}"
            + (f" ({md(note)})" if note else ""),
            f"- Marginal saving: {_money(a, lever.marginal_saving)} (step {i} of the order)",
            f"- Affected requests: {fmt.count(lever.affected_requests)}",
            "",
        ]
        for heading, data in (("Risk", lever.risk), ("Details", lever.details)):
            lines += [f"**{heading}**", "", *_node(fmt.tree(data, a.currency)), ""]
    return lines


def _action(r: Recommendation) -> str:
    """The action, with the redacted before/after excerpt of a prompt change."""
    excerpts = [
        f"{name}: {text}"
        for name, text in (("before", r.excerpt_before), ("after", r.excerpt_after))
        if text is not None
    ]
    return "; ".join([r.action, *excerpts])


def _recommendations(a: Analysis) -> list[str]:
    if not a.recommendations:
        return []
    body = [
        [md(r.title), md(r.lever), _money(a, r.saving), md(_action(r))] for r in a.recommendations
    ]
    return [
        "## Recommendations",
        "",
        *_table(["Recommendation", "Lever", "Saving", "Action"], body, right={2}),
    ]


def _guardrails(a: Analysis) -> list[str]:
    """The limits with their back-test, then the anomalies; nothing for an analysis from before
    guardrails ran (it has neither)."""
    g = a.guardrails
    if not (g.limits or g.notes or a.anomalies):
        return []
    lines = ["## Guardrails", ""]
    summary = guardrails.summary(g, a.currency)
    lines += [md(summary), ""] if summary else []
    body = [
        [
            md(r.limit.id) + (" (caps output)" if r.limit.action == "cap" else ""),
            md(r.limit.scope),
            md(r.subject),
            md(r.measure),
            *(_backtest(r) if r.value is not None else _too_thin(r)),
        ]
        for r in guardrails.limit_rows(g, a.currency)
    ]
    header = ["Limit", "Scope", "Subject", "Metric", "Value", "Refused requests"]
    header += ["Refused normal", "Subjects refused", "Prevented spend", "During anomalies"]
    lines += _table(header, body, right={4, 5, 6, 7, 8, 9}) if body else []
    lines += [f"- Note: {md(note)}" for note in g.notes]
    lines += ["", "## Anomalies", ""]
    rows = guardrails.anomaly_rows(a.anomalies, a.currency)
    if not rows:
        return [*lines, "No anomaly found in the history.", ""]
    lines += [
        "Ranked by excess spend (spend minus what the entity's history expects), unknown last.",
        "",
    ]
    body = [
        [
            str(r.rank),
            md(r.kind),
            md(r.entity),
            md(r.feature),
            md(r.window),
            r.requests,
            md(r.spend),
            md(r.expected),
            md(r.excess),
            md(r.score),
            md(r.evidence_text),
        ]
        for r in rows[:TOP_ROWS]
    ]
    header = ["#", "Kind", "Entity", "Feature", "Window (UTC)", "Requests", "Spend", "Expected"]
    header += ["Excess", "Score", "Key evidence"]
    lines += _table(header, body, right={0, 5, 6, 7, 8, 9})
    if len(rows) > TOP_ROWS:
        lines[-1:-1] = [
            "",
            f"Top {TOP_ROWS} of {fmt.count(len(rows))}; every one is in analysis.json.",
        ]
    return lines


def _backtest(r: guardrails.LimitRow) -> list[str]:
    """A set limit's value and what it would have done to the history."""
    over = " **over target**" if r.over_target else ""
    return [
        md(r.value),
        md(f"{r.refused} ({r.refused_share})"),
        md(f"{r.normal_share} (target {r.target})") + over,
        md(r.subjects),
        md(r.prevented),
        md(r.during_anomalies),
    ]


def _too_thin(r: guardrails.LimitRow) -> list[str]:
    """A limit the history is too thin to set: why, in place of a value; no back-test."""
    return [f"too thin to set: {md(r.reason)}", *[fmt.NONE] * 5]


def _node(node: fmt.Node, indent: str = "") -> list[str]:
    """A formatted free-form value as Markdown: maps as bullets, lists of records as tables."""
    if node.kind == "scalar":
        return [indent + md(node.text)]
    if node.kind == "table":
        rows = [[md(fmt.flat(cell)) for cell in row] for row in node.rows]
        numeric = {i for i in range(len(node.columns)) if any(r[i].numeric for r in node.rows)}
        lines = _table([md(fmt.label(c)) for c in node.columns], rows, right=numeric)
        if node.omitted:
            lines.insert(-1, f"… and {fmt.count(node.omitted)} more rows, in analysis.json.")
        return [indent + line if line else line for line in lines]
    if not node.items:
        return [indent + "_none_"]
    lines = []
    for key, child in node.items:
        head = f"{indent}- **{md(fmt.label(key))}:**" if key else f"{indent}-"
        if child.kind == "scalar":
            lines.append(f"{head} {md(child.text)}")
        else:
            lines += [head, "", *_node(child, indent + "  "), ""]
    if node.omitted:
        lines.append(f"{indent}- … and {fmt.count(node.omitted)} more, in analysis.json")
    return lines


def _table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    right = right or set()
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _money(a: Analysis, amount: Decimal | None) -> str:
    return md(fmt.money(amount, a.currency))
