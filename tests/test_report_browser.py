"""The HTML report in a real browser: charts draw offline, log strings stay text, and the page
reads at 1280 px: no horizontal scroll, the action plan in the first screenful.

Renders the awkward analysis of test_report, and the sample logs' analysis, to a file and loads
it in headless Chromium with --dump-dom; a probe script added to the test's copy of the page
writes the layout figures into the DOM. CI installs Debian's chromium; elsewhere the test skips
when it is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from advisor.api import AnalyzeResult
from advisor.report.html import render_html

try:  # tests/ on sys.path (pytest's default) or tests as a package
    from test_report import SCRIPT, awkward_analysis, guarded_analysis, planned_analysis
except ImportError:  # pragma: no cover
    from tests.test_report import SCRIPT, awkward_analysis, guarded_analysis, planned_analysis

CHARTS = ("by_day", "by_feature", "by_user", "levers", "anomalies")
VIEWPORT = 1280
FIRST_SCREEN = 1200  # px: the action plan starts within it

# Added to the test's copy of the page only. The listener goes right after the CSP <meta> so it
# hears every refused fetch; the probe reads the layout once vega-embed has drawn.
_LISTEN = (
    "<script>window.__refused = [];document.addEventListener('securitypolicyviolation',"
    "function (e) { window.__refused.push(e.blockedURI); });</script>"
)
_PROBE = """<script>setTimeout(function () {
  var plan = document.getElementById("action-plan");
  var out = document.createElement("pre");
  out.id = "layout-probe";
  out.textContent = JSON.stringify({
    scrollWidth: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
    planTop: plan ? plan.getBoundingClientRect().top + window.scrollY : null,
    resources: performance.getEntriesByType("resource").map(function (r) { return r.name; }),
    refused: window.__refused
  });
  document.body.appendChild(out);
}, 5000);</script>"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (apt-get install -y chromium) for the browser test"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class _Dom(HTMLParser):
    """Scripts (type, text), the elements opened inside each chart div, and <title> text."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[str | None, str]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._script_type: str | None = None
        self._in_script = False
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script, self._script_type = True, dict(attrs).get("type")
            self.scripts.append((self._script_type, ""))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            kind, text = self.scripts[-1]
            self.scripts[-1] = (kind, text + data)
        elif self._in_title:
            self.title += data


def _probed(html: str) -> str:
    """The page with the violation listener and the layout probe added (the vega bundle holds
    '</body>' in a string: the probe goes before the last one)."""
    meta = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', html)
    assert meta, "the report has no Content-Security-Policy"
    html = html[: meta.end()] + _LISTEN + html[meta.end() :]
    end = html.rindex("</body>")
    return html[:end] + _PROBE + html[end:]


def _chromium_command(folder: Path, *extra: str) -> list[str]:
    return [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={folder / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",  # let vega-embed's promises settle before the dump
        *extra,
    ]


def _load(folder: Path, html: str, width: int = 1200) -> tuple[str, str]:
    """The DOM after scripts ran, and the browser's console log."""
    page = folder / "report.html"
    page.write_text(html, encoding="utf-8")
    command = _chromium_command(
        folder, f"--window-size={width},{FIRST_SCREEN}", "--dump-dom", page.as_uri()
    )
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish loading the report within 120 s")
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    assert "<body" in done.stdout, f"chromium printed no DOM: {done.stderr[-2000:]}"
    return done.stdout, done.stderr


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return _load(tmp_path_factory.mktemp("browser"), render_html(awkward_analysis()))


def _drawn(dom: str, name: str) -> str:
    """The inside of a chart's container, once vega-embed drew it."""
    match = re.search(rf'<div[^>]*id="chart-{name}"[^>]*>(.*?)</figure>', dom, re.S)
    assert match, f"chart container {name} missing"
    inner = match.group(1)
    assert "vega-embed" in match.group(0), f"vega-embed did not run on {name}"
    assert re.search(r'<svg[^>]*class="marks"', inner) or "<canvas" in inner, name
    assert "chart failed to render" not in inner
    return inner


def _script_problems(log: str) -> list[str]:
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    return [
        line
        for line in console
        if "Content Security Policy" in line or "Uncaught" in line or "Error" in line
    ]


def test_every_chart_is_drawn(loaded: tuple[str, str]) -> None:
    dom, _ = loaded
    for name in CHARTS:
        _drawn(dom, name)


def test_injected_markup_stays_text(loaded: tuple[str, str]) -> None:
    dom, _ = loaded
    parsed = _Dom()
    parsed.feed(dom)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    # drawn by vega as a chart label: an SVG text node, not markup
    assert re.search(r"<text[^>]*>&lt;script&gt;alert\(1\)&lt;/script&gt;</text>", dom)
    assert SCRIPT not in dom
    for kind, text in parsed.scripts:
        assert "alert(1)" not in text or kind == "application/json", text[:200]
    assert not [attrs for tag, attrs in parsed.tags if tag == "img"]
    assert "PWNED" not in parsed.title  # the onerror payload never ran


def test_no_network_and_no_script_errors(loaded: tuple[str, str]) -> None:
    _, log = loaded
    problems = _script_problems(log)
    assert not problems, "\n".join(problems)


def test_anomaly_timeline_with_many_anomalies(tmp_path: Path) -> None:
    """200 anomalies: the timeline draws its top entities, one row each, without a script error."""
    dom, log = _load(tmp_path, render_html(guarded_analysis(200)))
    inner = _drawn(dom, "anomalies")
    assert "user: user-000" in inner and "user: user-019" in inner
    assert "user: user-020" not in inner
    problems = _script_problems(log)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def sample_page(
    tmp_path_factory: pytest.TempPathFactory, analysed_sample: AnalyzeResult
) -> tuple[Path, str, str, str]:
    """The sample logs' report at 1280 px: its folder, HTML, DOM after scripts, console log. Its
    action plan is hand-built while the analysis has none (the plan's builder is separate)."""
    analysis = analysed_sample.analysis
    if not analysis.action_plan.rows:
        analysis = planned_analysis(analysis)
    folder = tmp_path_factory.mktemp("sample-browser")
    html = render_html(analysis)
    dom, log = _load(folder, _probed(html), width=VIEWPORT)
    return folder, html, dom, log


def _layout(dom: str) -> dict[str, object]:
    match = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    assert match, "the layout probe did not run"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_sample_report_reads_at_1280_px(sample_page: tuple[Path, str, str, str]) -> None:
    """No horizontal scroll at a 1280 px window, and the action plan in the first screenful."""
    _, _, dom, _ = sample_page
    layout = _layout(dom)
    assert layout["scrollWidth"] <= VIEWPORT, layout
    top = layout["planTop"]
    assert isinstance(top, int | float) and top <= FIRST_SCREEN, layout


def test_sample_report_draws_every_chart_offline(sample_page: tuple[Path, str, str, str]) -> None:
    _, html, dom, log = sample_page
    names = re.findall(r'data-chart="chart-([a-z_]+)"', html)
    assert set(names) >= {"by_day", "by_feature", "by_user", "levers", "waterfall", "anomalies"}
    for name in names:
        _drawn(dom, name)
    layout = _layout(dom)
    assert layout["resources"] == [] and layout["refused"] == [], layout
    problems = _script_problems(log)
    assert not problems, "\n".join(problems)


def test_sample_report_screenshot(sample_page: tuple[Path, str, str, str]) -> None:
    """A picture of the first screenful, kept in the test's temp dir for a person to look at."""
    folder, html, _, _ = sample_page
    page = folder / "screenshot.html"
    page.write_text(html, encoding="utf-8")
    shot = folder / "report-1280.png"
    command = _chromium_command(
        folder, f"--window-size={VIEWPORT},{FIRST_SCREEN}", f"--screenshot={shot}", page.as_uri()
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
