"""report.md as a pull-request comment: short, the action plan first, columns in a human order,
and no log string able to break a table or run as HTML; and the plan's top rows in the terminal.

The sample is the golden analysis of sample_logs/ with a hand-made action plan that adds up (rows
plus `other` make the combined saving), so these tests do not wait for the plan's builder.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from advisor.analysis import ActionPlan, ActionRow, Analysis
from advisor.levers.base import LeverNote
from advisor.report import console as terminal
from advisor.report import fmt
from advisor.report.markdown import TOP_ACTIONS, render_markdown

GOLDEN = Path(__file__).resolve().parent / "golden" / "sample_analysis.json"
MAX_LINES = 60
EVIL = "a|b\nc <script>alert(1)</script> `tick` *star* [x](javascript:alert(1))"


@pytest.fixture(scope="module")
def sample() -> Analysis:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return Analysis.model_validate({**data, "generated_at": "2026-12-03T09:15:42.123456+00:00"})


def with_plan(a: Analysis, n: int, scope: str | None = None) -> Analysis:
    """`a` with n plan rows taking 90% of the combined saving (the largest first) and the rest as
    `other`: the way the plan's builder adds up."""
    days = Decimal(str(a.period.days))
    total = a.combined.saving
    weights = [Decimal(n - i) for i in range(n)]
    share = [Decimal("0.9") * w / sum(weights) for w in weights]
    savings = [(total * s).quantize(Decimal("1e-8")) for s in share]
    rows = [
        ActionRow(
            id=f"tiering:feature-{i}",
            lever="tiering",
            scope=scope or f"feature-{i}",
            change=f"route easy requests to gpt-4o-mini via the exported router ({i})",
            saving=saving,
            saving_per_month=saving * 30 / days,
            requests=100 + i,
            risk="low" if i % 2 else "medium",
            risk_reason="1.2% of routed requests expected misrouted",
            effort="config",
        )
        for i, saving in enumerate(savings)
    ]
    plan = ActionPlan(
        rows=rows,
        other=total - sum(savings, Decimal(0)),
        other_changes=4,
        total=total,
        total_per_month=total * 30 / days,
        period_days=a.period.days,
        minimum=Decimal("0.50"),
        interactions=["caching is counted on the prompts left after trimming"],
    )
    return a.model_copy(update={"action_plan": plan})


def _table_rows(md: str, heading: str) -> list[str]:
    section = md[md.index(heading) :]
    return [line for line in section.splitlines() if line.startswith("|")]


def _cells(line: str) -> list[str]:
    """A table line's cells, split only at the pipes Markdown reads as separators."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


@pytest.mark.parametrize("rows", [0, 3, TOP_ACTIONS, 25])
def test_the_sample_report_fits_a_pull_request_comment(sample: Analysis, rows: int) -> None:
    md = render_markdown(with_plan(sample, rows) if rows else sample)
    assert len(md.splitlines()) <= MAX_LINES
    assert md.startswith("# LLM spend and savings\n")
    order = ["## Action plan", "## How the saving adds up", "## Coverage", "## More in report"]
    assert [md.index(h) for h in order] == sorted(md.index(h) for h in order)
    assert "report.html" in md.splitlines()[-1]


def test_the_headline_says_spend_saving_and_month_with_times_to_the_minute(
    sample: Analysis,
) -> None:
    a = with_plan(sample, 3)
    headline = render_markdown(a).splitlines()[2]
    assert headline.startswith(f"**Spend \\{fmt.money(a.baseline.cost)} → ")
    saving = f"saving \\{fmt.money(a.combined.saving)} ({fmt.pct(a.combined.saving_share)}"
    assert saving in headline
    assert f"about \\{fmt.money(a.action_plan.total_per_month)} a month" in headline
    meta = render_markdown(a).splitlines()[4]
    assert "2026-10-18 02:00 UTC to 2026-10-31 23:58 UTC (13.92 days)" in meta
    assert "generated 2026-12-03 09:15 UTC" in meta and ".123456" not in meta


def test_action_plan_columns_in_a_human_order(sample: Analysis) -> None:
    """What and where first, then how much, then how risky and how much work."""
    a = with_plan(sample, 3)
    table = _table_rows(render_markdown(a), "## Action plan")
    assert _cells(table[0]) == ["Where", "Change", "\\$/month", "In 13.92 days", "Risk", "Effort"]
    assert _cells(table[1]) == ["---", "---", "---:", "---:", "---", "---"]
    first = a.action_plan.rows[0]
    assert _cells(table[2]) == [
        "feature-0",
        "route easy requests to gpt-4o-mini via the exported router (0)",
        "\\" + fmt.money(first.saving_per_month),
        "\\" + fmt.money(first.saving),
        "medium: 1.2% of routed requests expected misrouted",
        "config",
    ]
    other, total = _cells(table[-2]), _cells(table[-1])
    assert other[:2] == ["Other", "4 smaller changes, each under \\$0.50"]
    assert other[3] == "\\" + fmt.money(a.action_plan.other)
    assert total[0] == "**Total**" and total[3] == f"**\\{fmt.money(a.combined.saving)}**"
    assert total[2] == f"**\\{fmt.money(a.action_plan.total_per_month)}**"


def test_rows_past_the_top_are_summed_so_the_table_adds_up(sample: Analysis) -> None:
    a = with_plan(sample, TOP_ACTIONS + 8)
    table = _table_rows(render_markdown(a), "## Action plan")
    rest = a.action_plan.rows[TOP_ACTIONS:]
    more = _cells(table[2 + TOP_ACTIONS])
    assert more[0] == "8 more changes (in report.html)"
    assert more[3] == "\\" + fmt.money(sum((r.saving for r in rest), Decimal(0)))
    shown = [r.saving for r in a.action_plan.rows[:TOP_ACTIONS]]
    exact = sum(shown, Decimal(0)) + sum((r.saving for r in rest), Decimal(0))
    assert exact + a.action_plan.other == a.combined.saving  # what the lines stand for


def test_a_log_string_cannot_break_the_table_or_run_as_html(sample: Analysis) -> None:
    """A '|' or a newline in a feature name stays in its cell; a <script> is text on GitHub."""
    md = render_markdown(with_plan(sample, 3, scope=EVIL))
    table = _table_rows(md, "## Action plan")
    assert all(len(_cells(line)) == 6 for line in table)
    assert _cells(table[2])[0].startswith("a\\|b\\\\x0ac &lt;script&gt;")
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    assert "<script" not in html and 'href="javascript' not in html
    body = html[html.index("<tbody>") : html.index("</tbody>")]
    assert all(row.count("<td") == 6 for row in body.split("</tr>")[:-1])


def test_no_change_worth_making_says_why_each_lever_found_nothing(sample: Analysis) -> None:
    zero = Decimal(0)
    notes = {
        "caching": LeverNote(
            id="NOTE-001",
            reason="no prompt text in these logs: caching needs it",
            fix="log the request body, see docs/logging-format.md",
        ),
        "tiering": LeverNote(id="NOTE-002", reason="no prompt text | nothing to classify"),
    }
    levers = [
        lv.model_copy(
            update={"standalone_saving": zero, "marginal_saving": zero, "why_not": notes.get(lv.id)}
        )
        for lv in sample.levers
    ]
    combined = sample.combined.model_copy(
        update={"saving": zero, "saving_share": 0.0, "cost": sample.baseline.cost}
    )
    a = sample.model_copy(
        update={"levers": levers, "combined": combined, "action_plan": ActionPlan()}
    )
    md = render_markdown(a)
    plan = md[md.index("## Action plan") : md.index("## How the saving adds up")]
    assert "No change is worth making on these logs." in plan
    assert (
        "- **Prompt caching:** no prompt text in these logs: caching needs it — log the request "
        "body, see docs/logging-format.md" in plan
    )
    assert "no prompt text \\| nothing to classify" in plan
    assert len(md.splitlines()) <= MAX_LINES


def test_savings_all_below_the_minimum_are_said_so(sample: Analysis) -> None:
    plan = ActionPlan(
        other=sample.combined.saving,
        other_changes=3,
        total=sample.combined.saving,
        minimum=Decimal("0.50"),
    )
    md = render_markdown(sample.model_copy(update={"action_plan": plan}))
    assert (
        f"No single change saves \\$0.50 or more: 3 smaller changes add up to "
        f"\\{fmt.money(sample.combined.saving)} over the period." in md
    )


def test_an_analysis_without_a_plan_points_to_the_levers(sample: Analysis) -> None:
    md = render_markdown(sample.model_copy(update={"action_plan": ActionPlan()}))
    assert "This analysis has no action plan" in md and "No change is worth" not in md
    assert "after the levers: saving" in md.splitlines()[2]


def test_the_terminal_shows_the_plan_top_rows_and_sums_the_rest(sample: Analysis) -> None:
    a = with_plan(sample, 8)
    screen = Console(width=80, record=True, color_system=None)
    terminal.render_console(a, screen)
    out = screen.export_text()
    plan = out[out.index("Action plan") : out.index("Coverage")]
    shown = a.action_plan.rows[: terminal.TOP_ACTIONS]
    assert all(fmt.money(r.saving_per_month) in plan for r in shown)
    rest = a.action_plan.total_per_month - sum((r.saving_per_month for r in shown), Decimal(0))
    assert "7 more changes" in plan and fmt.money(rest) in plan  # 3 rows past the top + 4 other
    assert f"{fmt.money(a.combined.saving)} over 13.92 days" in plan
    assert fmt.money(a.action_plan.total_per_month) in plan
    assert "2026-10-18 02:00 UTC to 2026-10-31 23:58 UTC" in out.replace("\n", " ")
    planless = sample.model_copy(update={"action_plan": ActionPlan()})
    assert "Action plan" not in _terminal(planless)  # no plan: the levers table says what saves


def _terminal(a: Analysis) -> str:
    screen = Console(width=120, record=True, color_system=None)
    terminal.render_console(a, screen)
    return screen.export_text()
