"""The renderers of analysis.json: HTML, Markdown and the terminal summary.

Two hand-built analyses: a small plain one, and one full of awkward values (markup and script in
model/feature/user names, quotes, unicode, template braces, very long names, zero spend, unpriced
models), rendered by all three renderers.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from advisor.analysis import (
    ActionPlan,
    ActionRow,
    Analysis,
    Baseline,
    Combined,
    CostRow,
    Coverage,
    FileInput,
    Period,
    QuarantineReason,
    Recommendation,
    Reconciliation,
    TokenSources,
    UnitCostRow,
    UnpricedModel,
)
from advisor.guardrails.models import Anomaly, Guardrails, Limit, LimitBasis
from advisor.levers.base import LeverNote
from advisor.levers.caching.models import (
    Achievable,
    Achieved,
    CachingDetails,
    CachingResult,
    CachingRisk,
    Replay,
    Simulated,
    TokenCountsSummary,
)
from advisor.levers.tiering.models import (
    OperatingPoint,
    RouteMatch,
    RouteRule,
    SweepPoint,
    TieringCoverage,
    TieringDetails,
    TieringResult,
    TieringRisk,
    TradeOff,
)
from advisor.money import MONEY, SHARE, TOKENS, MaybeMoney, Model, Money, Share, Tokens
from advisor.report import fmt, guardrails
from advisor.report import html as html_report
from advisor.report.console import render_console
from advisor.report.html import render_html, script_json
from advisor.report.markdown import md, render_markdown

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src="https://evil.example/x.png" onerror="document.title=\'PWNED\'">'
QUOTES = 'it\'s "quoted" & <b>bold</b>'
BRACES = "{{ config }} {% if x %}{# c #}"
UNICODE = "модель-😀-日本語-\u202eRTL"
LONG = "feature-" + "x" * 300
ANSI = "user\x1b[2J\x1b[31mred\x07"
CLOSER = "</script><!-- -->]]>[bold]rich[/bold]|pipe|`tick`*star*"


def _row(key: str | None, cost: str, share: float, requests: int = 10, **kw: Any) -> CostRow:
    return CostRow(
        key=key,
        requests=requests,
        input_tokens=kw.pop("input_tokens", 12_345),
        cache_read_tokens=kw.pop("cache_read_tokens", 0),
        output_tokens=kw.pop("output_tokens", 2_000),
        cost=Decimal(cost),
        share=share,
        **kw,
    )


def _tiering(title: str, saving: str, affected: int, note: str = "", **names: str) -> TieringResult:
    """A tiering result whose strings (feature, model, target) can be awkward."""
    point = SweepPoint(
        min_confidence=0.9,
        requests_routed=affected,
        share_routed=0.4,
        saving=Decimal(saving),
        saving_share=0.3,
        expected_misrouted=1.5,
        expected_misrouted_low=0.1,
        expected_misrouted_high=2.9,
    )
    frontier = [
        point.model_copy(update={"min_confidence": t / 10, "saving": Decimal(t * 10)})
        for t in range(5, 10)
    ]
    trade = TradeOff(
        feature=names.get("feature", "chat"),
        model=names.get("model", "gpt-4o"),
        target=names.get("target", "gpt-4o-mini"),
        requests=affected,
        share_routable=1.0,
        saving=Decimal("250.25"),
        mean_confidence=0.99,
        risk=0.01,
        easy=affected,
        medium=0,
        hard=0,
        output="kept",
    )
    rule = RouteRule(
        id="ROUTE-001",
        match=RouteMatch(model=trade.model, feature=trade.feature),
        route_to=trade.target or "",
        requests=affected,
        expected_saving=Decimal("250.25"),
    )
    return TieringResult(
        id="tiering",
        title=title,
        standalone_saving=Decimal(saving),
        marginal_saving=Decimal(saving),
        affected_requests=affected,
        unpriced_requests=0,
        details=TieringDetails(
            operating_point=OperatingPoint(
                **point.model_dump(), route=["easy"], policy="P", why=note or "why"
            ),
            frontier=frontier,
            frontier_monotone=True,
            coverage=TieringCoverage(
                requests=100, unpriced=0, guarded=0, easy_without_cheaper_tier=0
            ),
            by_feature=[trade],
            by_template=[],
            route_rules=[rule],
            ladders=["TIER-GPT4O"],
            difficulty=None,
            warnings=[note] if note else [],
        ),
        risk=TieringRisk(
            expected_misrouted=1.5,
            expected_misrouted_low=0.1,
            expected_misrouted_high=2.9,
            misroute_interval=0.95,
            expected_misrouted_share=0.031,
            routed_with_negative_feedback=0,
            routed_that_failed=0,
            routed_that_were_cut_off=0,
            lowest_routed_confidence=0.9,
            routed_costlier_until_cache_warms=0,
            note=note or "note",
        ),
    )


def _caching(standalone: str, marginal: str, affected: int) -> CachingResult:
    return CachingResult(
        id="caching",
        title="Prompt caching",
        standalone_saving=Decimal(standalone),
        marginal_saving=Decimal(marginal),
        affected_requests=affected,
        unpriced_requests=0,
        details=CachingDetails(
            replay=Replay(
                requests=100,
                replayed_requests=90,
                blocks=10,
                not_replayable_requests=10,
                not_replayable={"no_text": 10},
                ttl_override_seconds=None,
            ),
            achieved=Achieved(cache_read_tokens=1000, cache_read_share=0.1),
            achievable=Achievable(
                cache_read_tokens=2_500_000, cache_write_tokens=0, cache_read_share=0.42
            ),
            simulated=Simulated(
                input_tokens=5_000_000,
                cache_read_tokens=2_500_000,
                cache_write_tokens=0,
                cache_read_share=0.5,
            ),
            rules=[],
            tokenization=[],
            by_feature=[],
            by_template=[],
            prefix_order=[],
            token_counts=TokenCountsSummary(
                counts="exact",
                low_saving=Decimal(standalone),
                high_saving=Decimal(standalone),
                low_cache_read_share=0.42,
                high_cache_read_share=0.42,
                by_model=[],
            ),
            assumptions=["caches never evict"],
        ),
        risk=CachingRisk(quality="none", not_replayable_requests=10),
    )


def _coverage(**kw: Any) -> Coverage:
    base: dict[str, Any] = {
        "requests": 100,
        "priced_requests": 100,
        "unpriced_requests": 0,
        "quarantined_rows": 0,
        "duplicate_rows": 0,
        "error_requests": 0,
        "unpriced_models": [],
        "token_source": TokenSources(logged=100),
        "tokenizer": "tiktoken",
        "model_resolution": {"exact": 100},
        "quarantine_reasons": [],
        "notes": [],
    }
    base.update(kw)
    return Coverage(**base)


def small_analysis() -> Analysis:
    return Analysis(
        generated_at="2024-06-01T00:00:00Z",
        advisor_version="0.1.0",
        inputs=[
            FileInput(
                path="logs.jsonl",
                format="openai",
                rows=100,
                ingested=100,
                duplicates=0,
                quarantined=0,
            )
        ],
        period=Period(start="2024-05-01", end="2024-05-02", days=2.0),
        coverage=_coverage(),
        baseline=Baseline(
            cost=Decimal("1234.5678"),
            by_model=[_row("gpt-4o", "1234.5678", 1.0, model_key="openai/gpt-4o")],
            by_feature=[_row("chat", "1000.00", 0.81), _row(None, "234.5678", 0.19)],
            by_user=[_row("alice", "1234.5678", 1.0)],
            by_day=[_row("2024-05-01", "600.00", 0.486), _row("2024-05-02", "634.5678", 0.514)],
            reconciliation=Reconciliation(
                rows_with_logged_cost=0,
                logged_total=Decimal(0),
                computed_total=Decimal(0),
                gap=Decimal(0),
                gap_share=None,
                by_model=[],
            ),
        ),
        levers=[_tiering("Model tiering", "400.10", 40)],
        levers_run=["tiering"],
        levers_skipped=["trimming", "output_caps", "caching", "batching"],
        combined=Combined(
            cost=Decimal("834.4678"),
            saving=Decimal("400.10"),
            saving_share=0.324,
            unpriced_requests=0,
        ),
        recommendations=[
            Recommendation(
                title="Route easy chat to gpt-4o-mini",
                lever="tiering",
                saving=Decimal("400.10"),
                action="deploy router.yaml",
            )
        ],
    )


def awkward_analysis() -> Analysis:
    names = [SCRIPT, IMG, QUOTES, BRACES, UNICODE, LONG, CLOSER, ANSI]
    by_model = [
        _row(SCRIPT, "812.3456", 0.7, model_key=SCRIPT),
        _row(UNICODE, "0.0042", 0.0, model_key="anthropic/claude"),
        _row(BRACES, "0", 0.0, requests=7, unpriced_requests=7),
        _row(QUOTES, "350.00", 0.3, cache_read_tokens=1_500_000, model_key=QUOTES),
    ]
    by_day = []
    for day in ("2024-05-01", "2024-05-02", "2024-05-03"):
        by_day.append(_row(day, "270.7818", 0.23, model_key=SCRIPT))
        by_day.append(_row(day, "116.6681", 0.1, model_key=QUOTES))
    by_day.append(_row("2024-05-03", "0.0042", 0.0, model_key="anthropic/claude"))
    levers = [
        _tiering(f"Tiering {SCRIPT}", "300.5", 55, note=SCRIPT + IMG, feature=SCRIPT, model=UNICODE,
                 target=LONG),
        _caching("120.0001", "90.75", 80),
    ]  # fmt: skip
    return Analysis(
        generated_at="2024-06-01T00:00:00Z",
        advisor_version="0.1.0",
        inputs=[
            FileInput(
                path=f"logs/{SCRIPT}.jsonl",
                format="openai",
                rows=130,
                ingested=112,
                duplicates=3,
                quarantined=15,
            )
        ],
        period=Period(start="2024-05-01T00:00:00Z", end="2024-05-03T23:59:59Z", days=3.0),
        coverage=_coverage(
            requests=112,
            priced_requests=105,
            unpriced_requests=7,
            quarantined_rows=15,
            duplicate_rows=3,
            error_requests=2,
            unpriced_models=[
                UnpricedModel(
                    model=BRACES, provider=SCRIPT, requests=7, input_tokens=9_000, output_tokens=300
                )
            ],
            token_source=TokenSources(logged=60, estimated=52),
            token_calibration=1.0731,
            tokenizer="estimate",
            model_resolution={"exact": 90, SCRIPT: 15, "unpriced": 7},
            quarantine_reasons=[
                QuarantineReason(
                    file=f"logs/{SCRIPT}.jsonl",
                    field="ts",
                    reason=f"bad {QUOTES}",
                    rows=12,
                    first_line=17,
                ),
                QuarantineReason(
                    file="logs/b.jsonl", field=None, reason="not JSON", rows=3, first_line=4
                ),
            ],
            notes=[CLOSER],
        ),
        baseline=Baseline(
            cost=Decimal("1162.3498"),
            by_model=by_model,
            by_feature=[_row(n, "100.01", 0.086) for n in names] + [_row(None, "462.2798", 0.4)],
            by_user=[_row(n, f"{i + 1}.5", 0.01) for i, n in enumerate(names)],
            by_day=by_day,
            reconciliation=Reconciliation(
                rows_with_logged_cost=80,
                logged_total=Decimal("1170.00"),
                computed_total=Decimal("1162.3498"),
                gap=Decimal("7.6502"),
                gap_share=0.0065,
                by_model=[
                    {
                        "model_key": SCRIPT,
                        "requests": 3,
                        "logged": "1170.00",
                        "computed": "1162.3498",
                        "gap": "7.6502",
                        "gap_share": 0.0066,
                    }
                ],
            ),
        ),
        levers=levers,
        levers_run=["tiering", "caching"],
        levers_skipped=["trimming", "output_caps", "batching"],
        combined=Combined(
            cost=Decimal("771.0998"),
            saving=Decimal("391.25"),
            saving_share=0.3366,
            unpriced_requests=7,
        ),
        guardrails=Guardrails(
            limits=[
                Limit(
                    id="GR-FEATURE-INPUT",
                    scope="feature",
                    subject=SCRIPT,
                    metric="input_tokens",
                    window="request",
                    sliding=False,
                    unit="tokens",
                    value=Decimal(32_000),
                    action="refuse",
                    status="set",
                    basis=LimitBasis(
                        statistic=f"p99.9 {IMG}",
                        quantile=0.999,
                        observed=20_000.0,
                        headroom=1.5,
                        samples=100,
                        subjects=1,
                        days=3.0,
                    ),
                    applies_to_requests=100,
                    refused_requests=1,
                    refused_share=0.01,
                    refused_normal_requests=0,
                    refused_normal_share=0.0,
                    target_share=0.001,
                    refused_subjects=1,
                    prevented_spend=Decimal("50.00"),
                    prevented_anomaly_spend=Decimal("50.00"),
                ),
                _limit(
                    "GR-FEATURE-MAX-TOKENS",
                    scope="feature",
                    subject=CLOSER,
                    metric="max_tokens",
                    window="request",
                    sliding=False,
                    unit="tokens",
                    value=None,
                    reason=f"too few requests of {IMG}",
                ),
            ],
            notes=[QUOTES],
        ),
        anomalies=[
            Anomaly(
                id="AN-SPEND-001",
                kind="spend_spike",
                entity_type="user",
                entity=IMG,
                feature=SCRIPT,
                window_start="2024-05-02T10:00:00Z",
                window_end="2024-05-02T12:00:00Z",
                requests=40,
                spend=Decimal("99.99"),
                expected_spend=Decimal("1.5"),
                excess_spend=Decimal("98.49"),
                score=4.2,
                evidence={"median": "1.5", BRACES: ANSI},
            ),
            Anomaly(
                id="AN-LOOP-001",
                kind="runaway_loop",
                entity_type="session",
                entity=ANSI,
                feature=None,
                window_start="2024-05-03T08:00:00Z",
                window_end="2024-05-03T08:00:40Z",
                requests=300,
                spend=None,
                expected_spend=None,
                excess_spend=None,
                score=12.0,
                evidence={CLOSER: SCRIPT, "repeats": 300},
            ),
        ],
        recommendations=[
            Recommendation(title=SCRIPT, lever="tiering", saving=Decimal("300.5"), action=CLOSER)
        ],
    )


GOLDEN = Path(__file__).resolve().parent / "golden" / "sample_analysis.json"


def golden_analysis() -> Analysis:
    """The sample's analysis.json as the golden test keeps it (which drops generated_at)."""
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return Analysis.model_validate({**data, "generated_at": "2026-11-01T00:00:00.123456Z"})


def _action(i: int, lever: str, scope: str, change: str, saving: str, risk: str) -> ActionRow:
    amount = Decimal(saving)
    return ActionRow(
        id=f"{lever}:{scope}",
        lever=lever,
        scope=scope,
        change=change,
        saving=amount,
        saving_per_month=amount * 30 / Decimal("13.9158"),
        requests=100 * i + 7,
        risk=risk,
        risk_reason=f"reason {i}: {SCRIPT}" if i == 2 else f"reason {i}",
        effort="config" if i % 2 else "prompt edit",
        rule=f"RULE-{i:03d}",
    )


def planned_analysis(analysis: Analysis | None = None) -> Analysis:
    """An analysis (the golden sample's by default) with a hand-built action plan and unit
    economics whose rows add up to its combined saving (their builders are separate)."""
    a = analysis or golden_analysis()
    rows = [
        _action(1, "tiering", "ticket-triage", "route to gpt-4o-mini via the exported router",
                "12.5", "low"),
        _action(2, "caching", "support-chat", "cache_control breakpoint with ttl: 1h", "6.25",
                "low"),
        _action(3, "output_caps", "product-copy", "max_tokens: 600", "2.5", "medium"),
        _action(4, "batching", "nightly-digest", "submit the nightly job through the Batch API",
                "1.75", "high"),
    ]  # fmt: skip
    shown = sum((r.saving for r in rows), Decimal(0))
    other = a.combined.saving - shown
    plan = ActionPlan(
        rows=rows,
        other=other,
        other_changes=3,
        total=a.combined.saving,
        total_per_month=a.combined.saving * 30 / Decimal("13.9158"),
        period_days=13.9158,
        minimum=Decimal("0.5"),
        interactions=["caching saves less on requests already routed to a cheaper model"],
    )
    unit = [
        UnitCostRow(
            feature=r.key,
            requests=r.requests,
            cost_before=r.cost,
            cost_after=None if r.cost is None else r.cost * Decimal("0.75"),
            saving=Decimal(0) if r.cost is None else r.cost * Decimal("0.25"),
            per_request_before=None if r.cost is None else r.cost / r.requests,
            per_request_after=None if r.cost is None else r.cost * Decimal("0.75") / r.requests,
            unpriced_requests=r.unpriced_requests,
        )
        for r in a.baseline.by_feature
    ]
    return a.model_copy(update={"action_plan": plan, "unit_economics": unit})


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


@pytest.fixture(scope="module")
def awkward_html() -> str:
    return render_html(awkward_analysis())


def _without_code(html: str) -> str:
    """The page minus the bodies of our own (untyped) scripts: the vega bundle and embed call."""
    return re.sub(r"<script>.*?</script>", "<script></script>", html, flags=re.S)


def _baseline_money(a: Analysis) -> list[Decimal]:
    b = a.baseline
    rows = b.by_model + b.by_feature + b.by_user + b.by_day
    rec = b.reconciliation
    return [b.cost, rec.logged_total, rec.computed_total, rec.gap] + [r.cost for r in rows]


# --- fmt -------------------------------------------------------------------------------------


def test_money_other_currencies() -> None:
    assert fmt.money(Decimal("5"), "EUR") == "€5.00"
    assert fmt.money(Decimal("5"), "CHF") == "5.00 CHF"
    assert fmt.money(None) == fmt.NONE


def test_pct_and_tokens() -> None:
    assert fmt.pct(0.1234) == "12.3%"
    assert fmt.pct(0.0) == "0.0%"
    assert fmt.pct(1.0) == "100.0%"
    assert fmt.pct(0.00001) == "<0.1%"
    assert fmt.pct(0.99999) == ">99.9%"
    assert fmt.pct(None) == fmt.NONE
    assert [fmt.tokens(n) for n in (0, 950, 12_345, 999_999, 1_234_567, 3_400_000_000)] == [
        "0",
        "950",
        "12.3k",
        "1.0M",
        "1.2M",
        "3.4B",
    ]


def test_scalar_by_declared_kind() -> None:
    assert fmt.scalar(0.25, SHARE) == "25.0%"
    assert fmt.scalar(Decimal("50"), MONEY) == "$50.00"
    assert fmt.scalar(None, MONEY) == fmt.NONE  # unknown money is not $0.00
    assert fmt.scalar(2_500_000, TOKENS) == "2.5M"
    assert fmt.scalar(12345) == "12,345"
    assert fmt.scalar(0.8) == "0.8"
    assert fmt.scalar("gpt-4o") == "gpt-4o"
    assert fmt.scalar(False) == "no"


def test_tree_formats_by_the_models_types_not_the_key_names() -> None:
    """A field is formatted by its declared type: a share named `rate` and money named
    `amount` read right, a float named `saving_share` that is not declared a share does not
    become a percentage, and a decimal string under a money-like name is not money."""

    class Row(Model):
        name: str
        amount: Money
        rate: Share
        cached: Tokens
        unknown: MaybeMoney

    class Details(Model):
        rows: list[Row]
        saving_share: float
        saving: str
        flag: bool

    details = Details(
        rows=[Row(name="a", amount=Decimal("1.5"), rate=0.5, cached=2_500_000, unknown=None)],
        saving_share=0.25,
        saving="1.5",
        flag=True,
    )
    node = fmt.tree(details)
    assert node.kind == "map"
    items = dict(node.items)
    table = items["rows"]
    assert table.kind == "table" and table.columns == [
        "name",
        "amount",
        "rate",
        "cached",
        "unknown",
    ]
    assert [c.text for c in table.rows[0]] == ["a", "$1.50", "50.0%", "2.5M", fmt.NONE]
    assert items["saving_share"].text == "0.25"
    assert items["saving"].text == "1.5" and not items["saving"].numeric
    assert items["flag"].text == "yes"


def test_script_json_cannot_close_a_script() -> None:
    text = str(script_json({"name": CLOSER}))
    assert "<" not in text and ">" not in text and "&" not in text


# --- html ------------------------------------------------------------------------------------


def test_html_escapes_log_strings(awkward_html: str) -> None:
    assert "<script>alert" not in awkward_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in awkward_html
    page = _without_code(awkward_html)
    assert "<img" not in page and "<b>bold" not in page
    assert "{{ config }}" in awkward_html  # braces from a log are data, not template
    assert UNICODE in awkward_html
    tags = _tags(awkward_html)
    assert not [t for t, _ in tags if t in {"img", "b", "iframe", "object", "embed", "link"}]
    assert not [(t, n) for t, attrs in tags for n in attrs if n.startswith("on")]
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    # only ours: one JSON block per chart, the vega bundle and the embed call
    assert all(set(attrs) <= {"type", "data-chart"} for attrs in scripts)
    assert all(a.get("type") in {None, "application/json"} for a in scripts)


def test_html_loads_nothing_from_the_network(awkward_html: str) -> None:
    for tag, attrs in _tags(awkward_html):
        for name in ("src", "href", "action", "data", "poster", "srcset"):
            value = (attrs.get(name) or "").strip().lower()
            assert not re.match(r"^(https?:)?//", value), (tag, name, value)
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", awkward_html, re.I)
    assert "@import" not in awkward_html and "url(http" not in awkward_html
    assert "default-src 'none'" in awkward_html


def test_html_shows_every_baseline_money_figure(awkward_html: str) -> None:
    a = awkward_analysis()
    for amount in _baseline_money(a):
        assert fmt.money(amount) in awkward_html, amount


def test_html_structure(awkward_html: str) -> None:
    a = awkward_analysis()
    body = awkward_html.split("<body>", 1)[1]
    order = ["action-plan", "coverage", "spend", "unit-economics", "levers", "appendix"]
    positions = [body.index(f'<section id="{name}"') for name in order]
    assert positions == sorted(positions)
    assert "counterfactual replay of the logged requests" in body
    assert "because no tokenizer could be loaded offline" in body  # fmt.estimated_warning
    assert fmt.money(a.combined.saving) in body and fmt.pct(a.combined.saving_share) in body
    for lever in a.levers:
        assert fmt.money(lever.standalone_saving) in body
        assert fmt.money(lever.marginal_saving) in body
    # typed details: a list of models becomes a table, scalars key/values
    assert "<th>Share routable</th>" in body and "$250.25" in body and "Min confidence" in body
    assert "Levers run: tiering, caching" in body
    assert "<th>Field</th>" in body and ">17<" in body  # quarantine reason: file, line, field
    for chart in ("by_day", "by_feature", "by_user", "levers"):
        assert f'id="chart-{chart}"' in body, "no chart: is vl-convert-python installed?"
        assert f'data-chart="chart-{chart}"' in body


def test_html_small_report() -> None:
    html = render_html(small_analysis())
    assert "$1,234.57" in html and "$400.10" in html and "32.4%" in html
    assert "Every request was priced" in html


def empty_analysis() -> Analysis:
    zero = Decimal(0)
    return Analysis(
        generated_at="2024-06-01T00:00:00Z",
        advisor_version="0.1.0",
        inputs=[],
        period=Period(start=None, end=None, days=0.0),
        coverage=_coverage(
            requests=0, priced_requests=0, token_source=TokenSources(), model_resolution={}
        ),
        baseline=Baseline(
            cost=zero,
            by_model=[],
            by_feature=[],
            by_user=[],
            by_day=[],
            reconciliation=Reconciliation(
                rows_with_logged_cost=0,
                logged_total=zero,
                computed_total=zero,
                gap=zero,
                gap_share=None,
                by_model=[],
            ),
        ),
        combined=Combined(cost=zero, saving=zero, saving_share=0.0, unpriced_requests=0),
    )


def test_empty_analysis_renders_everywhere() -> None:
    a = empty_analysis()
    html = render_html(a)
    assert "No lever was simulated" in html and "unknown start" in html
    assert "No lever was simulated" in render_markdown(a)
    assert "No lever was simulated" in _console_text(a)


def test_html_is_deterministic() -> None:
    assert render_html(awkward_analysis()) == render_html(awkward_analysis())


def _plan_section(html: str) -> str:
    start = html.index('<section id="action-plan"')
    return html[start : html.index("</section>", start)]


def test_html_action_plan_rows_other_and_total() -> None:
    a = planned_analysis()
    html = render_html(a)
    body = html.split("<body>", 1)[1]
    assert body.index('id="action-plan"') < body.index('id="coverage"')
    plan = _plan_section(html)
    rows = re.findall(r"<tr>\s*<td class=\"num rank\"", plan)
    assert len(rows) == 4
    assert plan.index("ticket-triage") < plan.index("support-chat") < plan.index("nightly-digest")
    for change in ("cache_control breakpoint with ttl: 1h", "max_tokens: 600"):
        assert change in plan
    assert "$12.50" in plan and fmt.money(Decimal("12.5") * 30 / Decimal("13.9158")) in plan
    assert "3 smaller changes, each below the $0.50 worth a row" in plan
    assert fmt.money(a.action_plan.other) in plan
    total = re.search(r'<tr class="total">.*?</tr>', plan, re.S)
    assert total and fmt.money(a.combined.saving) in total.group(0)
    assert "differs from the combined" not in plan  # rows + other add up
    assert "risk-low" in plan and "risk-high" in plan and ">config<" in plan
    assert "caching saves less on requests already routed" in plan  # interactions
    assert "normalised to 30 days from 13.92 days" in plan
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in plan and SCRIPT not in plan


def test_html_action_plan_empty_states() -> None:
    nothing = render_html(empty_analysis())
    assert 'id="action-plan"' in nothing
    assert "No change worth making" in _plan_section(nothing)
    # levers saved money but the analysis holds no plan: never "no change worth making"
    planless = golden_analysis().model_copy(update={"action_plan": ActionPlan()})
    golden = _plan_section(render_html(planless))
    assert "No change worth making" not in golden and "holds no action plan" in golden


def test_html_says_why_a_lever_found_nothing() -> None:
    a = golden_analysis()
    note = LeverNote(id="NOTE-NO-TEXT", reason="no prompt text in these logs", fix="log <body>")
    a.levers[3] = a.levers[3].model_copy(update={"why_not": note})
    html = render_html(a)
    assert "no prompt text in these logs" in _plan_section(html)
    assert "To get an answer: log &lt;body&gt;" in _plan_section(html)
    summary = re.search(
        r'<details class="lever" id="lever-4">\s*<summary>(.*?)</summary>', html, re.S
    )
    assert summary and "no prompt text in these logs" in summary.group(1)


def test_html_unit_economics() -> None:
    a = planned_analysis()
    section = _section(render_html(a), "unit-economics")
    first = a.unit_economics[0]
    assert first.per_request_before is not None
    assert fmt.money(first.per_request_before) in section
    assert fmt.money(first.per_request_before * 1000) in section  # per 1k requests
    assert f"({len(a.unit_economics)} features)" in section and "25.0%" in section
    no_units = golden_analysis().model_copy(update={"unit_economics": []})
    assert "No per-feature unit costs" in _section(render_html(no_units), "unit-economics")


def test_html_spend_per_day_marks_anomaly_days() -> None:
    a = golden_analysis()
    spec = _chart_spec(render_html(a), "by_day")
    marks = spec["layer"][1]
    assert marks["mark"]["shape"] == "triangle-down"
    days = sorted(v["day"] for v in marks["data"]["values"])
    assert days == sorted({x.window_start[:10] for x in a.anomalies})


def test_html_figures_read_as_people_write_them() -> None:
    a = golden_analysis()
    by_model = a.baseline.by_model
    by_model[0] = by_model[0].model_copy(update={"via": ["gpt-4o-2024-08-06", "prod-gpt4o-eu"]})
    html = render_html(a)
    assert "via <bdi>gpt-4o-2024-08-06</bdi>, <bdi>prod-gpt4o-eu</bdi>" in html
    assert "02:00:12.906000" not in html and "2026-10-18 02:00 UTC" in html
    assert not re.search(r'class="good">\$0\.00<', html)  # nothing saved is not green
    assert "(1 row)" in render_html(small_analysis()) and "1 rows" not in html
    assert "(13 rows)" in html  # by feature
    unpriced = re.search(r"<bdi>acme-llama-3.1-70b-ft</bdi>.*?</tr>", html, re.S)
    assert unpriced and "0.0%" not in unpriced.group(0)  # an unknown cost has no share


def test_html_tables_scroll_in_their_box_and_sort() -> None:
    html = render_html(planned_analysis())
    body = _without_code(html)
    tables = re.findall(r"(.{0,40})<table class=\"data", body, re.S)
    assert tables and all(before.rstrip().endswith('<div class="scroll">') for before in tables)
    assert 'data-sort="' in body and "table.sortable" in html
    assert 'addEventListener("click"' in html  # the inline sorter: no library, no CDN
    assert "@media print" in html and "prefers-color-scheme: dark" in html
    assert "overflow-x: auto" in html


# --- markdown --------------------------------------------------------------------------------


def test_markdown_totals_and_escaping() -> None:
    a = awkward_analysis()
    md = render_markdown(a)
    for amount in [a.baseline.cost, a.combined.saving, a.combined.cost]:
        assert fmt.money(amount) in md
    assert fmt.pct(a.combined.saving_share) in md
    assert "<script>" not in md and "<img" not in md
    assert "\x1b" not in md and "\u202e" not in md
    assert md.index("## Action plan") < md.index("## How the saving adds up")
    assert md.index("## How the saving adds up") < md.index("## Coverage")
    assert "## Spend" not in md and "| Model |" not in md  # spend tables: report.html only
    assert render_markdown(a) == md


def test_markdown_same_totals_as_html() -> None:
    a = small_analysis()
    md, html = render_markdown(a), render_html(a)
    for figure in ("$1,234.57", "$834.47", "$400.10", "32.4%"):
        assert figure in md and figure in html


# --- console ---------------------------------------------------------------------------------


def _console_text(a: Analysis, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    render_console(a, console)
    return console.export_text()


@pytest.mark.parametrize("width", [80, 100, 120])
def test_console_never_cuts_a_figure(width: int) -> None:
    """A narrower terminal (or a pipe: 80 columns) shortens names, never an amount or a count."""
    a = awkward_analysis()
    out = _console_text(a, width)
    spend = out[out.index("Spend by model") : out.index("Spend by feature")]
    lines = spend.splitlines()
    for row in a.baseline.by_model:
        cells = [fmt.money(row.cost, a.currency), fmt.count(row.requests), fmt.pct(row.share)]
        if row.unpriced_requests:
            cells.append(fmt.count(row.unpriced_requests))
        assert any(all(c in line for c in cells) for line in lines), cells
    assert "unpriced" in spend and all(len(line) <= width for line in lines)


def test_console_coverage_before_spend() -> None:
    out = _console_text(awkward_analysis())
    assert out.index("Coverage") < out.index("Spend by model") < out.index("Levers")
    assert out.index("Levers") < out.index("Recommendations")
    assert "estimated" in out and "no tokenizer" in out
    assert "logs/<script>alert(1)</script>.jsonl:17" in out and "ts" in out
    assert "[bold]rich[/bold]" in out  # markup in a log string is shown, not interpreted
    assert "$1,162.35" in out and "$391.25" in out
    # terminal escape sequences and bidi overrides from a log are shown, never obeyed
    assert "\x1b" not in out and "\u202e" not in out
    assert "user\\x1b[2J\\x1b[31mred\\x07" in out and "\\u202eRTL" in out


def test_console_is_deterministic() -> None:
    assert _console_text(small_analysis()) == _console_text(small_analysis())
    assert "$1,234.57" in _console_text(small_analysis())


# --- guardrails and anomalies ----------------------------------------------------------------


def _limit(id_: str, **kw: Any) -> Limit:
    """A set limit with a small back-test; `value=None` makes it too thin (with a reason)."""
    base: dict[str, Any] = {
        "id": id_,
        "scope": "user",
        "subject": "*",
        "metric": "requests",
        "window": "1m",
        "sliding": True,
        "unit": "requests",
        "value": Decimal(40),
        "action": "refuse",
        "status": "set",
        "basis": LimitBasis(
            statistic="p99.9 of each request's trailing-1m request count",
            quantile=0.999,
            observed=25.0,
            headroom=1.5,
            samples=9_000,
            subjects=12,
            days=3.0,
        ),
        "applies_to_requests": 9_000,
        "refused_requests": 12,
        "refused_share": 12 / 9_000,
        "refused_normal_requests": 0,
        "refused_normal_share": 0.0,
        "target_share": 0.001,
        "refused_subjects": 1,
        "prevented_spend": Decimal("3.21"),
        "prevented_anomaly_spend": Decimal("3.00"),
    }
    base.update(kw)
    if base["value"] is None:
        base.update(status="too_thin", refused_requests=0, refused_share=0.0, refused_subjects=0)
        base.update(prevented_spend=None, prevented_anomaly_spend=None)
    return Limit(**base)


def _limits() -> list[Limit]:
    return [
        _limit("GR-USER-RPM"),
        _limit(
            "GR-FEATURE-MAX-TOKENS",
            scope="feature",
            subject="summarise",
            metric="max_tokens",
            window="request",
            sliding=False,
            unit="tokens",
            value=Decimal(4096),
            action="cap",
            refused_normal_requests=30,
            refused_normal_share=0.004,  # over its 0.1 % target
        ),
        _limit(
            "GR-USER-SPEND-DAY",
            metric="spend",
            window="1d",
            sliding=False,
            unit="USD",
            value=Decimal("12.5"),
            refused_requests=400,
            refused_share=400 / 9_000,
            prevented_spend=Decimal("812.3456"),
            prevented_anomaly_spend=Decimal("800.10"),
        ),
        _limit(
            "GR-ACCOUNT-SPEND-MONTH",
            scope="account",
            metric="spend",
            window="1mo",
            sliding=False,
            unit="USD",
            value=None,
            reason="no account ids in the logs",
        ),
    ]


def _anomaly(i: int, **kw: Any) -> Anomaly:
    excess = Decimal(1000 - i)
    base: dict[str, Any] = {
        "id": "AN-SPEND-SPIKE",
        "kind": "spend_spike",
        "entity_type": "user",
        "entity": f"user-{i:03d}",
        "feature": "chat",
        "window_start": f"2024-05-{1 + i % 3:02d}T{i % 24:02d}:00:00Z",
        "window_end": f"2024-05-{1 + i % 3:02d}T{i % 24:02d}:59:30Z",
        "requests": 100 + i,
        "spend": excess + 2,
        "expected_spend": Decimal(2),
        "excess_spend": excess,
        "score": 7.5,
        "evidence": {"median_day_spend": "2", "mad": 0.4, "days": 14, "z": 7.5, "extra": None},
    }
    base.update(kw)
    return Anomaly(**base)


def guarded_analysis(anomalies: int = 0, limits: list[Limit] | None = None) -> Analysis:
    """The small analysis once guardrails ran: four limits (one too thin), `anomalies` ranked."""
    return small_analysis().model_copy(
        update={
            "guardrails": Guardrails(
                limits=_limits() if limits is None else limits,
                notes=["no account ids in the logs: account limits not set"],
            ),
            "anomalies": [_anomaly(i) for i in range(anomalies)],
        }
    )


def _chart_spec(html: str, name: str) -> dict[str, Any]:
    match = re.search(rf'data-chart="chart-{name}">(.*?)</script>', html, re.S)
    assert match, f"no {name} chart"
    spec: dict[str, Any] = json.loads(match.group(1))
    return spec


def _section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start : html.index("</section>", start)]


def test_limit_value_in_its_unit() -> None:
    assert guardrails.limit_value(_limit("A", value=Decimal(32_000), unit="tokens")) == (
        "32,000 tokens"
    )
    assert guardrails.limit_value(_limit("B")) == "40 requests"
    assert guardrails.limit_value(_limit("C", unit="USD", value=Decimal("12.5"))) == "$12.50"
    assert guardrails.limit_value(_limit("D", unit="USD", value=Decimal("0.004"))) == "$0.004"
    assert guardrails.limit_value(_limit("E", value=None, reason="thin")) is None
    assert guardrails.limit_value(_limit("F", value=Decimal("40.000"))) == "40 requests"
    assert guardrails.limit_value(_limit("G", value=Decimal("2.5"))) == "2.5 requests"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-05-02T10:00:00Z", "2024-05-02T12:00:00Z", "2024-05-02 10:00 → 12:00"),
        ("2024-05-02T10:00:05Z", "2024-05-02T10:00:35Z", "2024-05-02 10:00:05 → 10:00:35"),
        ("2024-05-02T23:00:00Z", "2024-05-03T01:00:00Z", "2024-05-02 23:00 → 2024-05-03 01:00"),
        ("2024-05-02T10:00:00Z", "2024-05-02T10:00:00Z", "2024-05-02 10:00"),
        ("2024-05-02T12:00:00+02:00", "2024-05-02T11:00:00", "2024-05-02 10:00 → 11:00"),
        ("yesterday", "today", "yesterday → today"),
    ],
)
def test_anomaly_window_in_utc(start: str, end: str, expected: str) -> None:
    assert guardrails.window(start, end) == expected


def test_guardrails_summary_never_adds_limits_up() -> None:
    """One sentence naming the limit that refuses most and the one that prevents most: limits
    are replayed alone, so a total would count a request refused by two of them twice."""
    assert guardrails.summary(Guardrails(), "USD") is None
    text = guardrails.summary(Guardrails(limits=_limits()), "USD")
    assert text is not None
    assert "3 limits set, 1 too thin to set" in text
    assert "at most 400 requests (GR-USER-SPEND-DAY" in text and "424" not in text
    assert "$812.35 (GR-USER-SPEND-DAY, $800.10 of it during anomalies)" in text
    assert "over its target share of normal requests: GR-FEATURE-MAX-TOKENS" in text
    thin = [_limit("GR-A", value=None, reason="r"), _limit("GR-B", value=None, reason="r")]
    assert guardrails.summary(Guardrails(limits=thin), "USD") == (
        "Guardrails: 0 limits set, 2 too thin to set."
    )
    quiet = [_limit("GR-A", refused_requests=0, refused_share=0.0, refused_subjects=0)]
    assert "none would have refused a request" in (
        guardrails.summary(Guardrails(limits=quiet), "USD") or ""
    )
    unpriced = [_limit("GR-A", prevented_spend=None, prevented_anomaly_spend=None)]
    text = guardrails.summary(Guardrails(limits=unpriced), "USD") or ""
    assert "unknown (unpriced requests)" in text and "$0.00" not in text


def test_html_guardrails_section_shows_each_limit() -> None:
    html = render_html(guarded_analysis(3))
    section = _section(html, "guardrails")
    for figure in ("40 requests", "4,096 tokens", "$12.50", "12 of 9,000", "0.13%"):
        assert figure in section, figure
    assert "requests per minute (sliding)" in section and "spend per day (UTC)" in section
    assert "target ≤0.10%" in section and "$800.10 during anomalies" in section
    assert "$812.35" in section and "caps output" in section
    # the too-thin limit: its reason in place of a value and of a back-test
    thin = re.search(
        r"<tr>\s*<td><span class=\"mono\">GR-ACCOUNT-SPEND-MONTH.*?</tr>", section, re.S
    )
    assert thin and "too thin to set: no account ids in the logs" in thin.group(0)
    assert "$" not in thin.group(0) and 'colspan="5"' in thin.group(0)
    over = re.search(r'<tr class="warn"[^>]*>\s*<td><span class="mono">([^<]+)<', section)
    assert over and over.group(1) == "GR-FEATURE-MAX-TOKENS"
    assert "no account ids in the logs: account limits not set" in section  # notes
    assert "3 limits set, 1 too thin to set" in section
    # the generic field-by-field tree is gone
    assert "Applies to requests" not in html and "Refused normal requests" not in html
    assert 'href="#guardrails"' in html and 'href="#anomalies"' in html


def test_html_anomalies_ranked_table_and_timeline() -> None:
    html = render_html(guarded_analysis(3))
    section = _section(html, "anomalies")
    rows = re.findall(r'<td class="num rank">(\d+)</td>', section)
    assert rows == ["1", "2", "3"]
    assert section.index("user-000") < section.index("user-001") < section.index("user-002")
    assert "$1,000.00" in section and "$2.00" in section and "spend spike" in section
    assert "2024-05-01 00:00:00 → 00:59:30" in section
    assert "median_day_spend" in section and "+1 more in analysis.json" in section
    spec = _chart_spec(html, "anomalies")
    values = spec["data"]["values"]
    assert [v["entity"] for v in values] == ["user: user-000", "user: user-001", "user: user-002"]
    assert (
        values[0]["start"] == "2024-05-01T00:00:00Z" and values[0]["end"] == "2024-05-01T00:59:30Z"
    )
    assert values[0]["excess"] == 1000.0 and values[0]["excess_text"] == "$1,000.00"
    assert "The timeline shows" not in section  # nothing left out


def test_html_no_anomalies() -> None:
    html = render_html(guarded_analysis(0))
    assert "No anomaly found in the history." in _section(html, "anomalies")
    assert "chart-anomalies" not in html
    assert "40 requests" in _section(html, "guardrails")


def test_html_many_anomalies_stay_readable() -> None:
    """200 anomalies: the table keeps the top rows, the timeline the top entities, and both say
    how many more there are."""
    html = render_html(guarded_analysis(200))
    section = _section(html, "anomalies")
    assert len(re.findall(r'<td class="num rank">', section)) == fmt.MAX_TABLE_ROWS
    assert f"Showing the top {fmt.MAX_TABLE_ROWS} of 200 anomalies" in section
    values = _chart_spec(html, "anomalies")["data"]["values"]
    entities = {v["entity"] for v in values}
    assert len(entities) == html_report.MAX_TIMELINE and "user: user-000" in entities
    assert "user: user-199" not in entities
    assert "180 more anomalies, of 180 more entities, are in the table" in section
    assert _chart_spec(html, "anomalies")["height"] <= 26 * html_report.MAX_TIMELINE


def test_anomaly_with_unknown_spend_is_never_zero() -> None:
    """Unpriced requests: spend, expected and excess read as unknown everywhere, the timeline
    draws it grey, and it ranks last."""
    unpriced = _anomaly(9, spend=None, expected_spend=None, excess_spend=None, entity="loop-9")
    a = guarded_analysis(1).model_copy(update={"anomalies": [_anomaly(0), unpriced]})
    html = render_html(a)
    row = re.search(r'<td class="num rank">2</td>.*?</tr>', _section(html, "anomalies"), re.S)
    assert row and "loop-9" in row.group(0) and "$" not in row.group(0)
    assert row.group(0).count(f"{fmt.NONE}<") >= 3
    values = _chart_spec(html, "anomalies")["data"]["values"]
    assert [v["priced"] for v in values] == [True, False]
    assert "Grey: 1 anomaly whose excess spend is unknown" in html
    only = a.model_copy(update={"anomalies": [unpriced]})
    md_line = next(line for line in render_markdown(only).splitlines() if "loop-9" in line)
    assert "excess spend unknown" in md_line and "$" not in md_line
    out = _console_text(a)
    line = next(line for line in out.splitlines() if "loop-9" in line)
    assert fmt.NONE in line and "$0.00" not in line


def test_analysis_without_guardrails_shows_no_empty_sections() -> None:
    a = small_analysis()
    html = render_html(a)
    assert 'id="guardrails"' not in html and 'href="#anomalies"' not in html
    assert "Guardrails:" not in render_markdown(a) and "- Note:" not in render_markdown(a)
    assert "Guardrails and anomalies" not in _console_text(a)


def test_markdown_guardrails_and_anomalies_in_a_line_each() -> None:
    """A pull-request comment names the largest anomaly and sums the limits up in a line each;
    the back-test table and every anomaly are in report.html."""
    a = guarded_analysis(200)
    md_text = render_markdown(a)
    more = md_text[md_text.index("## More in report.html") :]
    assert "- 200 anomalies; the largest: user: user-000 (spend spike, " in more
    assert "\\$1,000.00 over what its history expects)" in more
    summary = guardrails.summary(a.guardrails, a.currency)
    assert summary and md(summary) in more
    assert "- Note: no account ids in the logs: account limits not set" in more
    assert "user-001" not in md_text and "| GR-USER-RPM |" not in md_text
    assert "anomalies; the largest" not in render_markdown(guarded_analysis(0))


def test_guardrails_and_anomalies_escape_log_strings(awkward_html: str) -> None:
    """Entity, feature, subject, reason and evidence keys and values from a log stay text."""
    for name in ("guardrails", "anomalies"):
        section = _section(awkward_html, name)
        assert "<script" not in section and "<img" not in section and "<b>" not in section
        assert not [t for t, _ in _tags(section) if t in {"img", "b", "script"}]
    anomalies = _section(awkward_html, "anomalies")
    assert "&lt;img src=&#34;https://evil.example/x.png&#34;" in anomalies
    assert "\x1b" not in anomalies and "user\\x1b[2J\\x1b[31mred\\x07" in anomalies
    assert "{{ config }}" in anomalies  # an evidence key, as data
    assert "&lt;/script&gt;&lt;!-- --&gt;" in anomalies  # an evidence key that closes a script
    guard = _section(awkward_html, "guardrails")
    assert "too thin to set: too few requests of &lt;img" in guard
    chart = re.search(r'data-chart="chart-anomalies">(.*?)</script>', awkward_html, re.S)
    assert chart and "<" not in chart.group(1) and "\\u003cimg" in chart.group(1)
    md_text = render_markdown(awkward_analysis())
    tail = md_text[md_text.index("## More in report.html") :]
    assert "<img" not in tail and "<script" not in tail and "\x1b" not in tail
    assert "&lt;img" in tail  # the largest anomaly's entity, as text


def test_console_top_anomalies_and_guardrails_line() -> None:
    out = _console_text(guarded_analysis(200), width=100)
    part = out[out.index("Guardrails and anomalies") :]
    assert "Top anomalies by excess spend (200 found)" in part
    for i in range(5):
        assert f"user: user-{i:03d}" in part
    assert "user-005" not in part and "… and 195 more in report.html and analysis.json" in part
    assert "$1,000.00" in part and "2024-05-01 00:00:00 → 00:59:30" in part
    assert "Guardrails: 3 limits set, 1 too thin to set" in part
    assert "note: no account ids in the logs" in part
    assert all(len(line) <= 100 for line in part.splitlines())


def test_console_guardrails_only_when_there_is_something_to_say() -> None:
    quiet = guarded_analysis(0).model_copy(update={"guardrails": Guardrails()})
    assert "Guardrails and anomalies" not in _console_text(quiet)
    out = _console_text(guarded_analysis(0))
    assert "Guardrails: 3 limits set" in out and "Top anomalies" not in out


def test_console_escapes_anomaly_entities() -> None:
    out = _console_text(awkward_analysis())
    part = out[out.index("Guardrails and anomalies") :]
    assert "session: user\\x1b[2J\\x1b[31mred\\x07" in part and "\x1b" not in part
    assert "runaway loop" in part and "spend spike" in part
    assert "user: <img" in part  # shown as written: a terminal has no markup to inject
    # a window that is not a time is shown as written, its markup not obeyed
    odd = _anomaly(0, window_start="[bold]x[/bold]", window_end="[red]y")
    out = _console_text(guarded_analysis(0).model_copy(update={"anomalies": [odd]}))
    assert "[bold]x[/bold] → [red]y" in out


def test_html_one_anomaly() -> None:
    html = render_html(guarded_analysis(1))
    spec = _chart_spec(html, "anomalies")
    assert [v["entity"] for v in spec["data"]["values"]] == ["user: user-000"]
    assert spec["height"] == 60  # one row still gets a readable band
    assert "The timeline shows" not in html and "Showing the top" not in _section(html, "anomalies")


def test_plan_settings_show_as_code_and_log_text_stays_text() -> None:
    shown = str(html_report.code_spans("set `max_tokens: 600` on <script>x</script> `a<b`"))
    assert "<code>max_tokens: 600</code>" in shown and "<code>a&lt;b</code>" in shown
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert str(html_report.code_spans("no backticks")) == "no backticks"
