"""The HTML report: one self-contained file rendered from an Analysis, with no network at all.

It reads top down in the order a reader decides: headline, action plan, coverage, where the money
goes, unit economics, one collapsible section per lever, and an appendix with the internals.
Templates come from `reports/templates/` (jinja2, autoescape on, control characters of every
printed string shown as escapes); wide tables scroll inside their own box and sort on a click.
Charts are altair specs drawn by vega-embed, whose JavaScript is inlined from vl-convert-python's
offline bundle; chart data sits in `<script type="application/json">` blocks with every `<`, `>`
and `&` escaped, so no string from a log can close the block or open markup. A
Content-Security-Policy forbids every network fetch.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any

import altair as alt
import jinja2
from markupsafe import Markup

from advisor.analysis import Analysis, CostRow, Interval, LeverResult, UnitCostRow
from advisor.guardrails.models import Anomaly
from advisor.levers.tiering.models import Calibration
from advisor.report import fmt, guardrails, waterfall
from advisor.ruleset import templates_dir

TEMPLATE = "report.html.j2"
MAX_SERIES = 8  # models stacked in the daily chart; the rest are grouped as "other"
MAX_BARS = 15
MAX_TIMELINE = 20  # entities drawn on the anomaly timeline; the rest are counted below it
_LABEL_LIMIT = 260  # px; longer axis labels are cut with an ellipsis by vega
_OTHER = "(other)"
_SMALL_ITEMS = 10  # a lever's map or list shown in its own section rather than the appendix
_MONTH_DAYS = Decimal(30)  # the action plan's "per month"

_BUNDLE_SNIPPET = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"
# JSON escapes C0 controls itself; these it leaves as they are (C1 and DEL among them)
_JSON_UNSAFE = re.compile("[<>&\u2028\u2029\x7f-\x9f]")


def render_html(analysis: Analysis) -> str:
    """The report as one HTML document (charts included), the same bytes for the same analysis."""
    currency = analysis.currency
    bundle, bundle_problem = _vega_bundle()
    charts = _charts(analysis) if bundle else []
    context: dict[str, Any] = {
        "a": analysis,
        "view": _view(analysis),
        "levers_run": fmt.levers_sentence(analysis.levers_run, analysis.levers_skipped),
        "waterfall": waterfall.steps(analysis),
        "charts": {c["name"]: c for c in charts},
        "bundle": Markup(bundle) if bundle else None,
        "bundle_problem": bundle_problem,
        "guardrails_summary": guardrails.summary(analysis.guardrails, currency),
        "reconciliation": fmt.tree(analysis.baseline.reconciliation.by_model, currency),
        "money": partial(fmt.money, currency=currency),
        "pct": fmt.pct,
        "tokens": fmt.tokens,
        "count": fmt.count,
        "number": fmt.number,
        "label": fmt.label,
        "text": fmt.text,
        "when": when,
        "plural": plural,
        "sort_key": sort_key,
        "code_spans": code_spans,
        "none_mark": fmt.NONE,
        "table_limit": fmt.MAX_TABLE_ROWS,
        "sampled": fmt.sample_sentence(analysis),
        "interval": partial(fmt.interval, currency=currency),
        "iv": partial(interval_note, currency=currency),
        "lever_iv": partial(fmt.lever_interval, analysis),
        "row_iv": partial(fmt.row_interval, analysis),
    }
    return _environment().get_template(TEMPLATE).render(context)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_visible,
    )


def _visible(value: Any) -> Any:
    """What every `{{ }}` prints, before autoescape: the one place log text enters the report,
    so its control characters (terminal escapes, BEL) are shown as escapes, never written raw."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return fmt.printable(value, keep_layout=True)
    return value


def script_json(data: Any) -> Markup:
    """JSON safe to place inside a <script> element: no '<', '>' or '&' survives unescaped."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return Markup(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text))


@lru_cache(maxsize=1)
def _vega_bundle() -> tuple[str | None, str | None]:
    """vega + vega-lite + vega-embed as one inline script, or None and why it is unavailable."""
    try:
        import vl_convert
    except ImportError:
        return None, "charts omitted: the vl-convert-python package is not installed"
    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    version = wanted if wanted in vl_convert.get_vegalite_versions() else None
    bundle = vl_convert.javascript_bundle(_BUNDLE_SNIPPET, vl_version=version)
    # The bundle never contains these today; escaping keeps it so if a future one does.
    bundle = re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE).replace("<!--", "<\\!--")
    return bundle, None


def when(value: str | None) -> str:
    """A logged time to the minute in UTC ('2026-10-18 02:00 UTC'): no microseconds; the
    string as it is when it does not parse."""
    if value is None:
        return fmt.NONE
    moment = guardrails.moment(value)
    return value if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """'1 row', '2 rows', '1,234 requests'."""
    return f"{fmt.count(n)} {noun if n == 1 else nouns or noun + 's'}"


_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def interval_note(iv: Interval | None, currency: str = "USD") -> Markup:
    """A sampled figure's 95 % interval as a line under it; nothing for an exact figure."""
    if iv is None:
        return Markup("")
    return Markup('<div class="muted">95%: {}</div>').format(fmt.interval(iv, currency))


def code_spans(text: str) -> Markup:
    """Prose with its `backticked` settings shown as code: escaped first, so log text stays text."""
    return Markup(_CODE_SPAN.sub(r"<code>\1</code>", str(Markup.escape(text))))


def sort_key(value: Decimal | float | int | None) -> str:
    """A table cell's `data-sort`: the exact number the click-to-sort script compares (formatted
    text such as '$1.2k' is not); empty for unknown, which sorts last. A Decimal loses its trailing
    zeros: a long run of digits in the page reads as a leaked number to the redaction checks."""
    if value is None or isinstance(value, bool):
        return ""
    return format(value.normalize(), "f") if isinstance(value, Decimal) else repr(value)


def per_month(amount: Decimal | None, days: float) -> Decimal | None:
    """An amount over a period of `days`, normalised to 30 days (None when the period is 0)."""
    if amount is None or days <= 0:
        return None
    return amount * _MONTH_DAYS / Decimal(repr(days))


def _view(analysis: Analysis) -> dict[str, Any]:
    """Figures the template shows that are derived from the analysis rather than stored in it."""
    cov = analysis.coverage
    src = cov.token_source
    counted = src.logged + src.tokenized + src.estimated + src.unbilled
    base = analysis.baseline
    return {
        "priced_share": cov.priced_requests / cov.requests if cov.requests else None,
        "unpriced_share": cov.unpriced_requests / cov.requests if cov.requests else None,
        "estimated_share": src.estimated / counted if counted else None,
        "estimated_warning": fmt.estimated_warning(cov),
        "token_rows": [
            ("logged", src.logged),
            ("tokenized", src.tokenized),
            ("estimated", src.estimated),
            ("unbilled", src.unbilled),
        ],
        "by_model": _by_cost(base.by_model),
        "by_feature": _by_cost(base.by_feature),
        "by_user": _by_cost(base.by_user),
        "by_day": sorted(base.by_day, key=lambda r: (fmt.text(r.key), fmt.text(r.model_key))),
        "levers": [_lever_view(lever, analysis.currency) for lever in analysis.levers],
        "plan": _plan_view(analysis),
        "unit": [_unit_view(row) for row in analysis.unit_economics],
        "anomaly_days": _anomaly_days(analysis),
        "positive_saving": analysis.combined.saving > 0,
        # an analysis from before guardrails ran has neither: no empty sections for it
        "guardrails_shown": bool(
            analysis.guardrails.limits or analysis.guardrails.notes or analysis.anomalies
        ),
        "limits": guardrails.limit_rows(analysis.guardrails, analysis.currency),
        "anomalies": guardrails.anomaly_rows(analysis.anomalies, analysis.currency),
        "timeline": _timeline(analysis.anomalies),
    }


def _by_cost(rows: list[CostRow]) -> list[CostRow]:
    return fmt.by_cost(rows)


def _lever_view(lever: LeverResult, currency: str) -> dict[str, Any]:
    """A lever's figures split for reading: its single-value details in its own section, its
    tables and nested figures (the classifier's among them) in the appendix."""
    details = fmt.tree(lever.details, currency)
    items = details.items if details.kind == "map" else [("details", details)]
    return {
        "lever": lever,
        "approximate": fmt.approximate_note(lever, currency),
        "risk": fmt.tree(lever.risk, currency),
        "summary": fmt.Node("map", items=[(k, n) for k, n in items if _small(n)]),
        "internals": fmt.Node("map", items=[(k, n) for k, n in items if not _small(n)]),
    }


def _small(node: fmt.Node) -> bool:
    """A figure that reads at a glance: a value, or a short map or list of values (a lever's
    chosen setting); tables and nested figures are internals."""
    if node.kind == "scalar":
        return True
    if node.kind in ("map", "list") and len(node.items) <= _SMALL_ITEMS:
        return all(_flat(child) for _, child in node.items)
    return False


def _flat(node: fmt.Node) -> bool:
    """A value, or a list of values."""
    return node.kind == "scalar" or (
        node.kind == "list" and all(child.kind == "scalar" for _, child in node.items)
    )


def _plan_view(analysis: Analysis) -> dict[str, Any]:
    """The action plan as shown: its rows, the 'smaller changes' row, and the period it is
    normalised from (the plan's own, else the analysis's)."""
    plan = analysis.action_plan
    days = plan.period_days or analysis.period.days
    return {
        "plan": plan,
        "days": days,
        "other_per_month": per_month(plan.other, days),
        "adds_up": plan.total == analysis.combined.saving,
        "empty": not plan.rows and not plan.other_changes,
        "combined_per_month": per_month(analysis.combined.saving, analysis.period.days),
    }


def _unit_view(row: UnitCostRow) -> dict[str, Any]:
    def per_1k(x: Decimal | None) -> Decimal | None:
        return None if x is None else x * 1000

    before = row.cost_before
    return {
        "row": row,
        "per_1k_before": per_1k(row.per_request_before),
        "per_1k_after": per_1k(row.per_request_after),
        "saving_share": float(row.saving / before) if before else None,
    }


def _anomaly_days(analysis: Analysis) -> dict[str, dict[str, Any]]:
    """The UTC days on which an anomaly started: how many, and their excess spend where known."""
    days: dict[str, dict[str, Any]] = {}
    for a in analysis.anomalies:
        start = guardrails.moment(a.window_start)
        if start is None:
            continue
        day = days.setdefault(start.strftime("%Y-%m-%d"), {"count": 0, "excess": Decimal(0)})
        day["count"] += 1
        if a.excess_spend is not None:
            day["excess"] += a.excess_spend
    return dict(sorted(days.items()))


def _charts(analysis: Analysis) -> list[dict[str, Any]]:
    currency = analysis.currency
    built = {
        "by_day": _day_chart(
            analysis.baseline.by_day_model or analysis.baseline.by_day,
            currency,
            _anomaly_days(analysis),
        ),
        "by_feature": _ranked_bars(analysis.baseline.by_feature, MAX_BARS, currency),
        "by_user": _ranked_bars(analysis.baseline.by_user, 10, currency),
        "levers": _lever_chart(analysis.levers, currency),
        "waterfall": _waterfall_chart(analysis),
        "anomalies": _anomaly_chart(analysis.anomalies, currency),
        **_reliability_charts(analysis.levers),
    }
    charts = []
    for name, chart in built.items():
        if chart is None:
            continue
        spec = chart.to_dict()
        spec.pop("$schema", None)  # vega-embed is told the mode; the schema URL is not needed
        charts.append({"name": name, "id": f"chart-{name}", "json": script_json(spec)})
    return charts


def _money_value(cost: Decimal) -> float:
    """Bar length in the chart only; every figure a reader sees is formatted by fmt."""
    return float(cost)


def _day_chart(
    rows: list[CostRow], currency: str, anomaly_days: dict[str, dict[str, Any]]
) -> alt.Chart | alt.LayerChart | None:
    """Spend per day stacked by model, with a red marker above each day an anomaly started."""
    if not rows:
        return None
    rows = [r for r in rows if r.cost is not None]  # a bar of unknown length is not drawn
    if not rows:
        return None
    stacked = any(r.model_key for r in rows)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        totals[_series(r, stacked)] += r.cost or 0
    ranked = sorted(totals, key=lambda s: (-totals[s], s))
    kept = set(ranked[:MAX_SERIES]) if len(ranked) > MAX_SERIES else set(ranked)
    cells: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        series = _series(r, stacked)
        cells[(r.key or "", series if series in kept else _OTHER)] += r.cost or 0
    order = [s for s in ranked if s in kept] + ([_OTHER] if len(kept) < len(ranked) else [])
    values = [
        {
            "day": day,
            "model": series,
            "rank": order.index(series),
            "cost": _money_value(cost),
            "spend": fmt.money(cost, currency),
        }
        for (day, series), cost in sorted(cells.items())
    ]
    bar = alt.Chart(alt.Data(values=values)).mark_bar()
    encoding: dict[str, Any] = {
        "x": alt.X(
            "day:O",
            timeUnit="utcyearmonthdate",
            title=None,
            axis=alt.Axis(labelAngle=0, labelOverlap=True, format="%b %d"),
        ),
        "y": alt.Y("sum(cost):Q", title=f"spend ({currency})"),
        "tooltip": [
            alt.Tooltip("day:T", timeUnit="utcyearmonthdate", title="day"),
            alt.Tooltip("model:N", title="model"),
            alt.Tooltip("spend:N", title="spend"),
        ],
    }
    if stacked:
        encoding["color"] = alt.Color(
            "model:N",
            title="model",
            sort=order,
            scale=alt.Scale(domain=order),
            legend=alt.Legend(labelLimit=_LABEL_LIMIT, orient="bottom", columns=2),
        )
        encoding["order"] = alt.Order("rank:Q")
    chart = bar.encode(**encoding)
    day_totals: dict[str, Decimal] = defaultdict(Decimal)
    for (day, _), cost in cells.items():
        day_totals[day] += cost
    marks = [
        {
            "day": day,
            "total": _money_value(day_totals[day]),
            "anomalies": fmt.count(seen["count"]),
            "excess": fmt.money(seen["excess"], currency),
        }
        for day, seen in anomaly_days.items()
        if day in day_totals
    ]
    if not marks:
        return chart.properties(width="container", height=260)
    x = alt.X("day:O", timeUnit="utcyearmonthdate")
    marker = (
        alt.Chart(alt.Data(values=marks))
        .mark_point(shape="triangle-down", filled=True, size=90, color="#c0392b", yOffset=-8)
        .encode(
            x=x,
            y=alt.Y("total:Q"),
            tooltip=[
                alt.Tooltip("day:T", timeUnit="utcyearmonthdate", title="day"),
                alt.Tooltip("anomalies:N", title="anomalies starting"),
                alt.Tooltip("excess:N", title="their excess spend"),
            ],
        )
    )
    return alt.LayerChart(layer=[chart, marker], width="container", height=260)


def _series(row: CostRow, stacked: bool) -> str:
    if not stacked:
        return "all models"
    return row.model_key or "(unpriced)"


def _ranked_bars(rows: list[CostRow], limit: int, currency: str) -> alt.Chart | None:
    if not rows:
        return None
    ranked = [r for r in fmt.by_cost(rows) if r.cost is not None][:limit]
    values = [
        {
            "name": fmt.text(r.key),
            "rank": i,
            "cost": _money_value(r.cost or Decimal(0)),
            "spend": fmt.money(r.cost, currency),
            "share": fmt.pct(r.share),
            "requests": fmt.count(r.requests),
        }
        for i, r in enumerate(ranked)
    ]
    return (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("cost:Q", title=f"spend ({currency})"),
            y=_ranked_axis("name"),
            tooltip=[
                alt.Tooltip("name:N", title="name"),
                alt.Tooltip("spend:N", title="spend"),
                alt.Tooltip("share:N", title="share"),
                alt.Tooltip("requests:N", title="requests"),
            ],
        )
        .properties(width="container", height=max(60, 22 * len(values)))
    )


def _ranked_axis(field: str) -> alt.Y:
    """A bar chart's category axis, in the order of the values' `rank`."""
    return alt.Y(
        f"{field}:N",
        title=None,
        sort=alt.EncodingSortField(field="rank", order="ascending"),
        axis=alt.Axis(labelLimit=_LABEL_LIMIT),
    )


def _lever_chart(levers: list[LeverResult], currency: str) -> alt.Chart | None:
    if not levers:
        return None
    values = []
    for i, lever in enumerate(levers):
        for kind, amount in (
            ("standalone", lever.standalone_saving),
            ("marginal", lever.marginal_saving),
        ):
            values.append(
                {
                    "lever": f"{i + 1}. {lever.title}",
                    "rank": i,
                    "kind": kind,
                    "saving": _money_value(amount),
                    "amount": fmt.money(amount, currency),
                }
            )
    return (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("saving:Q", title=f"saving ({currency})"),
            y=_ranked_axis("lever"),
            yOffset=alt.YOffset("kind:N", sort=["standalone", "marginal"]),
            color=alt.Color(
                "kind:N",
                title="saving",
                sort=["standalone", "marginal"],
                scale=alt.Scale(domain=["standalone", "marginal"], range=["#9db7d5", "#2f5d8a"]),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("lever:N", title="lever"),
                alt.Tooltip("kind:N", title="saving"),
                alt.Tooltip("amount:N", title="amount"),
            ],
        )
        .properties(width="container", height=max(80, 44 * len(levers)))
    )


def _reliability_charts(levers: list[LeverResult]) -> dict[str, alt.LayerChart]:
    """One chart per calibration of the tiering lever (held-out labels, measured results),
    named reliability0, reliability1, ... in the order of details.calibration."""
    tiering = next((lv for lv in levers if lv.id == "tiering"), None)
    calibration = getattr(getattr(tiering, "details", None), "calibration", None) or []
    return {f"reliability{i}": _reliability_chart(c) for i, c in enumerate(calibration)}


def _reliability_chart(calibration: Calibration) -> alt.LayerChart:
    """A classifier's confidence against the outcome, per confidence bin, beside the diagonal a
    calibrated confidence would follow."""
    values = [
        {
            "confidence": b.mean_confidence,
            "observed": b.observed,
            "requests": b.requests,
            "bin": f"{fmt.pct(b.low)} to {fmt.pct(b.high)}",
        }
        for b in calibration.bins
    ]
    axis = alt.Scale(domain=[0, 1])
    points = (
        alt.Chart(alt.Data(values=values))
        .mark_circle(color="#2f5d8a")
        .encode(
            x=alt.X("confidence:Q", title="mean confidence", scale=axis),
            y=alt.Y("observed:Q", title=f"share that {calibration.outcome}", scale=axis),
            size=alt.Size("requests:Q", title="requests", legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("bin:N", title="confidence bin"),
                alt.Tooltip("requests:Q", title="requests"),
                alt.Tooltip("observed:Q", title=calibration.outcome, format=".0%"),
            ],
        )
    )
    diagonal = (
        alt.Chart(alt.Data(values=[{"x": 0, "y": 0}, {"x": 1, "y": 1}]))
        .mark_line(color="#999", strokeDash=[4, 4])
        .encode(x="x:Q", y="y:Q")
    )
    return alt.LayerChart(layer=[diagonal, points], width="container", height=220)


def _waterfall_chart(analysis: Analysis) -> alt.Chart | None:
    """Baseline -> each lever's marginal step -> combined, as floating bars (waterfall.steps)."""
    bars = waterfall.steps(analysis)
    if not analysis.levers or any(s.after is None for s in bars):
        return None  # a bar of unknown length is not drawn
    currency = analysis.currency
    values = [
        {
            "step": f"{i}. {s.label}",
            "rank": i,
            "kind": s.kind,
            "top": _money_value(s.before if s.before is not None else s.after or Decimal(0)),
            "bottom": _money_value(s.after if s.kind == "lever" and s.after else Decimal(0)),
            "amount": fmt.money(s.change if s.kind == "lever" else s.after, currency),
        }
        for i, s in enumerate(bars)
    ]
    return (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("step:N", sort=alt.EncodingSortField("rank"), title=None),
            y=alt.Y("top:Q", title=f"spend ({currency})"),
            y2="bottom:Q",
            color=alt.Color(
                "kind:N",
                title=None,
                scale=alt.Scale(
                    domain=["baseline", "lever", "combined"],
                    range=["#9db7d5", "#d98c5f", "#2f5d8a"],
                ),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("step:N", title="step"),
                alt.Tooltip("amount:N", title="amount"),
            ],
        )
        .properties(width="container", height=220)
    )


def _timeline(anomalies: list[Anomaly]) -> dict[str, Any]:
    """Which anomalies the timeline draws: those of the MAX_TIMELINE entities met first in the
    ranking (largest excess spend), each entity one row; and how many it leaves out (those
    beyond, and any whose window does not parse as a time)."""
    entities = list(dict.fromkeys((a.entity_type, a.entity) for a in anomalies))
    rows = {entity: rank for rank, entity in enumerate(entities[:MAX_TIMELINE])}
    drawn = []
    for a in anomalies:
        start, end = guardrails.moment(a.window_start), guardrails.moment(a.window_end)
        if (a.entity_type, a.entity) in rows and start is not None and end is not None:
            drawn.append((rows[(a.entity_type, a.entity)], a, start, end))
    return {
        "drawn": drawn,
        "entities": len(rows),
        "more_entities": len(entities) - len(rows),
        "more_anomalies": len(anomalies) - len(drawn),
        "unpriced": sum(1 for _, a, _, _ in drawn if a.excess_spend is None),
    }


def _anomaly_chart(anomalies: list[Anomaly], currency: str) -> alt.LayerChart | None:
    """One row per entity, time across: a bar over each anomaly's window and a dot at its middle
    (a window of seconds is too thin to see across weeks), both sized and coloured by excess
    spend; an anomaly whose excess is unknown (unpriced) is grey at a fixed size, never sized
    as zero."""
    timeline = _timeline(anomalies)
    if not timeline["drawn"]:
        return None
    iso = "%Y-%m-%dT%H:%M:%SZ"  # with its zone: vega reads it as UTC, not as local time
    values = [
        {
            "entity": fmt.printable(guardrails.entity_label(a)),
            "rank": rank,
            "kind": guardrails.kind_label(a.kind),
            "start": start.strftime(iso),
            "end": end.strftime(iso),
            "middle": (start + (end - start) / 2).strftime(iso),
            "priced": a.excess_spend is not None,
            "excess": _money_value(max(a.excess_spend or Decimal(0), Decimal(0))),
            "excess_text": fmt.money(a.excess_spend, currency),
            "spend": fmt.money(a.spend, currency),
            "window": guardrails.window(a.window_start, a.window_end),
            "requests": fmt.count(a.requests),
        }
        for rank, a, start, end in timeline["drawn"]
    ]
    priced = "datum.priced"
    colour = alt.condition(
        priced,
        alt.Color(
            "excess:Q",
            title=f"excess spend ({currency})",
            scale=alt.Scale(scheme="orangered", zero=True),
            legend=alt.Legend(orient="bottom"),
        ),
        alt.value("#9aa3ad"),
    )
    tooltip = [
        alt.Tooltip("entity:N", title="entity"),
        alt.Tooltip("kind:N", title="kind"),
        alt.Tooltip("window:N", title="window (UTC)"),
        alt.Tooltip("requests:N", title="requests"),
        alt.Tooltip("spend:N", title="spend"),
        alt.Tooltip("excess_text:N", title="excess spend"),
    ]
    utc = alt.Scale(type="utc", padding=10)  # a dot at either end is drawn whole
    base = alt.Chart(alt.Data(values=values)).encode(y=_ranked_axis("entity"), tooltip=tooltip)
    bars = base.mark_bar(size=8, opacity=0.6).encode(
        x=alt.X("start:T", title=None, scale=utc, axis=alt.Axis(labelOverlap=True)),
        x2="end:T",
        color=colour,
    )
    dots = base.mark_circle(opacity=0.9).encode(
        x=alt.X("middle:T", scale=utc),
        color=colour,
        size=alt.condition(
            priced,
            alt.Size("excess:Q", scale=alt.Scale(range=[40, 500], zero=True), legend=None),
            alt.value(60),
        ),
    )
    height = max(60, 26 * timeline["entities"])
    return alt.LayerChart(layer=[bars, dots], width="container", height=height)
