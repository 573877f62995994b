"""The dashboard in a real browser: every page renders its charts with no error, offline, and
registering variants from the Deploy page reaches the MLflow registry; a deep link works as the
first page a fresh server sees; what the pages draw is readable (published models told apart,
objective axes that fit the trials, no "None" cells).

It starts ``bao-pareto dashboard`` on the session's sim workspace and drives Debian's chromium
(``/usr/bin/chromium``, installed by apt in CI) with Playwright. Without the browser the test
is skipped, unless ``BAO_PARETO_REQUIRE_BROWSER`` is set (CI sets it): then it fails.
Full-page screenshots go to ``$BAO_PARETO_ARTIFACTS`` (else the test's temporary folder).
"""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from dashboard.state import NOT_RECORDED
from tests.conftest import REPO_ROOT
from tests.dashboard.workspaces import OBJECTIVES

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, ViewportSize

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER_ENV = "BAO_PARETO_REQUIRE_BROWSER"
ARTIFACTS_ENV = "BAO_PARETO_ARTIFACTS"
REFERENCE_TABLE = REPO_ROOT.parent / "shared" / "reference" / "bao_paper_table1.csv"
SERVER_START_TIMEOUT = 60.0
IDLE_TIMEOUT_MS = 90_000  # the first visit of a page computes its analyses (resampling, fANOVA)
CHART_TIMEOUT_MS = 30_000
LOCAL_HOSTS = {"127.0.0.1"}
VIEWPORT: ViewportSize = {"width": 1440, "height": 1000}


@dataclass(frozen=True)
class PageCheck:
    """One sidebar page: its link's label (also its ``st.title``), the screenshot's name, and
    the least number of plotly charts and dataframes it must render."""

    title: str
    slug: str
    charts: int
    dataframes: int = 0


PAGES = [
    PageCheck("Sweeps", "sweeps", charts=0, dataframes=1),
    PageCheck("Frontier", "frontier", charts=1, dataframes=1),
    PageCheck("Objective space", "objectives", charts=2, dataframes=1),
    # Parallel coordinates, slices, importance.
    PageCheck("Parameters", "parameters", charts=3),
    # Pass curve and training curves; the dataframes: parameters, evaluation, turns.
    PageCheck("Trial detail", "trial", charts=2, dataframes=3),
    PageCheck("Compare sweeps", "compare", charts=1, dataframes=1),
    PageCheck("Deploy", "deploy", charts=1, dataframes=1),
]

# Counts the script runs the frontend finishes, so that a wait after a click waits for the
# run that click started, not the one before it. The frontend mirrors its run state on the
# stApp element (data-test-script-state), as Streamlit's own end-to-end tests read it.
RUN_COUNTER_SCRIPT = """
(() => {
  window.__baoFinishedRuns = 0;
  let last = null;
  const observe = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    const state = app ? app.getAttribute('data-test-script-state') : null;
    if (state !== last) {
      if (state === 'notRunning' && last !== null) window.__baoFinishedRuns += 1;
      last = state;
    }
  };
  new MutationObserver(observe).observe(document, {
    subtree: true, childList: true, attributes: true,
    attributeFilter: ['data-test-script-state'],
  });
})();
"""

# Idle: connected, no run in progress, no skeleton, spinner or stale element left, and the
# page's title shown.
IDLE_CONDITION = """
([title, runsBefore]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (window.__baoFinishedRuns <= runsBefore) return false;
  const busy = '[data-testid="stSkeleton"], [data-testid="stSpinner"], [data-stale="true"]';
  if (document.querySelector(busy)) return false;
  const heading = document.querySelector('[data-testid="stMain"] h1');
  return heading !== null && heading.innerText.trim() === title;
}
"""

# Each plotly chart drawn: the plot div carries its figure (data) and plotly's SVG; WebGL
# traces (scattergl) add their canvases.
CHARTS_DRAWN = """
(expected) => {
  const charts = Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'));
  if (charts.length < expected) return false;
  return charts.every((chart) => {
    const plot = chart.querySelector('.js-plotly-plot');
    if (!plot || !plot.querySelector('.main-svg') || !plot._fullLayout) return false;
    if (!Array.isArray(plot.data) || plot.data.length === 0) return false;
    const gl = plot.data.some((trace) => String(trace.type || '').endsWith('gl'));
    return !gl || plot.querySelector('canvas') !== null;
  });
}
"""


# Streamlit scrolls its main area inside the window, so a "full page" screenshot would stop
# at the window's height: the tallest scrolling element tells how tall the window must be.
CONTENT_HEIGHT = """
() => Math.max(document.documentElement.scrollHeight, ...Array.from(
  document.querySelectorAll('*'),
  (el) => {
    const overflow = getComputedStyle(el).overflowY;
    const scrolls = (overflow === 'auto' || overflow === 'scroll')
      && el.scrollHeight > el.clientHeight;
    return scrolls ? el.getBoundingClientRect().top + el.scrollHeight : 0;
  },
))
"""


# Streamlit's dataframes are drawn on canvases (glide-data-grid): the text a user reads there
# is in no DOM node, so every string drawn is recorded per canvas.
CANVAS_TEXT_SCRIPT = """
(() => {
  window.__baoDrawnText = new WeakMap();
  const fillText = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    const drawn = window.__baoDrawnText;
    if (!drawn.has(this.canvas)) drawn.set(this.canvas, new Set());
    drawn.get(this.canvas).add(String(text));
    return fillText.call(this, text, ...rest);
  };
})();
"""

# The cell texts each dataframe of the page drew, one list per dataframe.
DATAFRAME_TEXTS = """
() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"]'), (frame) => {
  const texts = new Set();
  for (const canvas of frame.querySelectorAll('canvas')) {
    for (const text of window.__baoDrawnText.get(canvas) || []) texts.add(text);
  }
  return Array.from(texts);
})
"""

# The published-results legend of the first chart as a reader sees it: its entries in order
# (family titles and models), and each model's marker (shape and fill).
PUBLISHED_LEGEND = """
() => {
  const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const legend = plot && plot.querySelector('g.legend2');
  if (!legend) return null;
  return Array.from(legend.querySelectorAll('g.traces'), (entry) => {
    const point = entry.querySelector('path.scatterpts');
    return {
      text: entry.querySelector('text').textContent,
      marker: point ? `${point.getAttribute('d')} ${point.style.fill}` : null,
    };
  });
}
"""

# The objective chart (the page's first): its axis ranges, the values it plots as points, the
# ends of its error bars, and the trace order (later traces are drawn on top).
OBJECTIVE_CHART = """
() => {
  const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const ends = (trace, axis) => {
    const bars = trace[`error_${axis}`];
    const values = Array.from(trace[axis] || []);  // plotly keeps numbers in typed arrays
    if (!bars || bars.visible === false || !bars.array) return [];
    return values.flatMap((v, i) => [v + bars.array[i], v - (bars.arrayminus || bars.array)[i]]);
  };
  return {
    x_range: plot._fullLayout.xaxis.range,
    y_range: plot._fullLayout.yaxis.range,
    traces: plot._fullData.map((trace) => ({
      name: trace.name,
      points: trace.marker && trace.marker.opacity !== 0,
      bars: ends(trace, 'x').length > 0 || ends(trace, 'y').length > 0,
      x: Array.from(trace.x || []),
      y: Array.from(trace.y || []),
      x_ends: ends(trace, 'x'),
      y_ends: ends(trace, 'y'),
    })),
  };
}
"""

# A page opened at its own path makes the frontend look for the server under that path first
# (/frontier/_stcore/health, then /_stcore/health): those two 404s are Streamlit finding its
# base path, not errors of the app.
BASE_PATH_PROBE = re.compile(r"^/[^/]+/_stcore/(health|host-config)$")


@dataclass
class BrowserLog:
    """What the browser reported over the whole session."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    base_path_probes: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", lambda request: self._check_url(request.url))
        page.on("websocket", lambda websocket: self._check_url(websocket.url))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = str(message.location.get("url", ""))
        if "404" in message.text and BASE_PATH_PROBE.match(urlsplit(url).path):
            self.base_path_probes.append(url)
        else:
            self.console_errors.append(f"{message.text} ({message.location})")

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname not in LOCAL_HOSTS:
            self.outside_requests.append(url)


@dataclass(frozen=True)
class Dashboard:
    url: str
    port: int
    workspace: Path
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one (a UDP connect sends
    nothing: it only picks the outgoing interface)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


def server_output(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else "(no output)"


def wait_until_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    health = f"http://127.0.0.1:{port}/_stcore/health"
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the dashboard exited with status {process.returncode} before it served "
                f"{health}; its output:\n{server_output(log)}"
            )
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(
        f"{health} did not answer ok within {SERVER_START_TIMEOUT:.0f} s; the server's "
        f"output:\n{server_output(log)}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture
def dashboard(sim_workspace: Path, tmp_path: Path) -> Iterator[Dashboard]:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "bao-pareto"),
        "dashboard",
        "--workspace",
        str(sim_workspace),
        "--port",
        str(port),
    ]
    if REFERENCE_TABLE.is_file():
        command += ["--reference-table", str(REFERENCE_TABLE)]
    log = tmp_path / "dashboard.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(process, port, log)
        yield Dashboard(f"http://127.0.0.1:{port}", port, sim_workspace, log)
    finally:
        stop(process)
    print(f"\ndashboard output: {log}")


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.is_file():
        reason = f"no browser at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get(REQUIRE_BROWSER_ENV):
            pytest.fail(f"{reason}, and {REQUIRE_BROWSER_ENV} is set")
        pytest.skip(f"{reason}; set {REQUIRE_BROWSER_ENV}=1 to make this a failure")
    return CHROMIUM


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get(ARTIFACTS_ENV) or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def finished_runs(page: Page) -> int:
    return int(page.evaluate("window.__baoFinishedRuns"))


def wait_for_idle(page: Page, title: str, runs_before: int) -> None:
    """Wait until a script run after the first ``runs_before`` has finished and the page
    shows ``title``, then make sure it stays idle (a widget settling its value can start one
    more run at once): idle twice, 300 ms apart."""
    page.wait_for_function(IDLE_CONDITION, arg=[title, runs_before], timeout=IDLE_TIMEOUT_MS)
    page.wait_for_timeout(300)
    settled = finished_runs(page) - 1  # any run count from now on
    page.wait_for_function(IDLE_CONDITION, arg=[title, settled], timeout=IDLE_TIMEOUT_MS)


def open_page(page: Page, check: PageCheck) -> None:
    """Click the page's link in the sidebar navigation, as a user does."""
    page.evaluate("window.__baoDrawnText = new WeakMap()")  # only this page's tables count
    before = finished_runs(page)
    link = page.locator(f'[data-testid="stSidebarNav"] a:has(span[label="{check.title}"])')
    link.click()
    wait_for_idle(page, check.title, before)


def assert_rendered(page: Page, check: PageCheck) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, (
        f"{check.title}: Streamlit shows an exception:\n"
        + "\n---\n".join(exceptions.all_inner_texts())
    )
    if check.charts:
        try:
            page.wait_for_function(CHARTS_DRAWN, arg=check.charts, timeout=CHART_TIMEOUT_MS)
        except Exception as error:
            drawn = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg')
            pytest.fail(
                f"{check.title}: expected {check.charts} drawn plotly charts, found "
                f"{page.locator('[data-testid=stPlotlyChart]').count()} chart elements, "
                f"{drawn.count()} with an SVG ({error})"
            )
    frames = page.locator('[data-testid="stDataFrame"]')
    assert frames.count() >= check.dataframes, (
        f"{check.title}: expected {check.dataframes} dataframes, found {frames.count()}"
    )


def sidebar_links(page: Page) -> list[str]:
    links = page.locator('[data-testid="stSidebarNav"] a span[label]')
    return [
        str(label)
        for label in links.evaluate_all("spans => spans.map((s) => s.getAttribute('label'))")
    ]


def published_models(gym: str) -> dict[str, list[str]]:
    """The reference table's models of ``gym`` by family (its ``group`` column), in the
    table's order: read from the CSV itself, not through the code under test."""
    families: dict[str, list[str]] = {}
    with REFERENCE_TABLE.open(newline="") as table:
        for row in csv.DictReader(table):
            if row["gym"] == gym:
                families.setdefault(row["group"], []).append(row["model"])
    return families


def assert_published_results_told_apart(page: Page) -> None:
    """The Frontier's published models each have a legend entry under their family's title,
    and no two models share a marker (shape and colour)."""
    entries = page.evaluate(PUBLISHED_LEGEND)
    assert entries, "the Frontier has no legend of published results"
    families = published_models("function_gym")  # the page's default gym
    expected = [
        text for family, models in families.items() for text in (family.replace("_", " "), *models)
    ]
    assert [entry["text"] for entry in entries] == expected
    models = {model for members in families.values() for model in members}
    markers = [entry["marker"] for entry in entries if entry["text"] in models]
    assert None not in markers, entries
    assert len(set(markers)) == len(models), markers


def assert_objective_axes(page: Page, *, with_reference: bool) -> None:
    """The objective chart's axes hold everything it draws (points and error bars) and fit it
    (at most a quarter wider than the drawn span), unless ``with_reference``: then they reach
    the reference point too. Every error bar is drawn before (beneath) every dominated point."""
    chart = page.evaluate(OBJECTIVE_CHART)
    traces = chart["traces"]
    for index, axis in enumerate(("x", "y")):
        drawn = [v for trace in traces for v in trace[axis] + trace[f"{axis}_ends"]]
        low, high = min(drawn), max(drawn)
        shown_low, shown_high = sorted(chart[f"{axis}_range"])
        where = f"{axis} axis [{shown_low:.4f}, {shown_high:.4f}], drawn [{low:.4f}, {high:.4f}]"
        assert shown_low <= low, f"something drawn is cut off: {where}"
        assert high <= shown_high, f"something drawn is cut off: {where}"
        threshold = float(OBJECTIVES[index]["threshold"])  # type: ignore[arg-type]
        if with_reference:
            assert shown_low <= threshold <= shown_high, f"reference {threshold}: {where}"
        else:
            assert shown_high - shown_low <= 1.25 * (high - low), f"axis wider than drawn: {where}"
    bars = [i for i, trace in enumerate(traces) if trace["bars"]]
    dominated = [
        i
        for i, trace in enumerate(traces)
        if trace["points"] and str(trace["name"]).startswith(("dominated", "infeasible"))
    ]
    assert bars, [trace["name"] for trace in traces]
    assert dominated, [trace["name"] for trace in traces]
    assert max(bars) < min(dominated), "error bars are drawn over dominated points: " + ", ".join(
        f"{i}: {trace['name']}" for i, trace in enumerate(traces)
    )


def check_objective_axes(page: Page) -> None:
    assert_objective_axes(page, with_reference=False)
    before = finished_runs(page)
    toggle = page.locator('[data-testid="stCheckbox"] label')
    toggle.filter(has_text="include the reference point").click()  # the label, as users click
    wait_for_idle(page, "Objective space", before)
    page.wait_for_function(CHARTS_DRAWN, arg=1, timeout=CHART_TIMEOUT_MS)
    assert_objective_axes(page, with_reference=True)


def assert_no_none_cells(page: Page) -> None:
    """No table of the page shows the word "None"; a metric logged without an interval shows
    the placeholder in its low and high cells."""
    tables = page.evaluate(DATAFRAME_TEXTS)
    evaluation = [texts for texts in tables if "eval/pass_at_u_1" in texts]
    assert evaluation, f"no table drew the evaluation metrics: {tables}"
    shown = [texts for texts in tables if "None" in texts]
    assert not shown, f"tables show the word None: {shown}"
    assert "eval/mean_turns" in evaluation[0]  # logged without an interval
    assert NOT_RECORDED in evaluation[0], evaluation[0]


def launch(playwright: Playwright, chromium: Path) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(chromium),
        headless=True,
        args=["--no-sandbox", "--disable-background-networking"],
    )


def assert_quiet(log: BrowserLog, dashboard: Dashboard) -> None:
    assert not log.outside_requests, f"requests left this machine: {log.outside_requests}"
    assert not log.page_errors, f"uncaught errors in the page: {log.page_errors}"
    assert not log.console_errors, f"console errors: {log.console_errors}"
    assert "Traceback" not in server_output(dashboard.log), server_output(dashboard.log)


def screenshot(page: Page, path: Path) -> None:
    """The whole page, by making the window as tall as the content for the shot."""
    viewport = page.viewport_size or VIEWPORT
    height = int(page.evaluate(CONTENT_HEIGHT))
    if height > viewport["height"]:
        page.set_viewport_size({"width": viewport["width"], "height": min(height, 20_000)})
        page.wait_for_timeout(500)  # charts follow the resize
    try:
        page.screenshot(path=path, full_page=True)
    finally:
        page.set_viewport_size(viewport)


def register_from_deploy(page: Page) -> str:
    """Add budget k=2 to the selection, register, and return the success box's text."""
    budgets = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Budgets k")
    before = finished_runs(page)
    budgets.locator("input").click()
    page.locator('[role="option"]').filter(has_text=re.compile(r"^\s*2\s*$")).first.click()
    page.keyboard.press("Escape")
    wait_for_idle(page, "Deploy", before)
    tags = budgets.locator('[data-testid="stMultiSelectTagsContainer"]')
    assert re.search(r"\b2\b", tags.inner_text()), tags.inner_text()
    assert page.get_by_text("Include the knee").is_visible()

    before = finished_runs(page)
    page.get_by_role("button", name="Register in MLflow").click()
    success = page.locator('[data-testid="stAlertContentSuccess"]')
    success.wait_for(state="visible", timeout=IDLE_TIMEOUT_MS)
    wait_for_idle(page, "Deploy", before)
    return success.inner_text()


def test_dashboard_in_a_browser(chromium: Path, dashboard: Dashboard, screenshots: Path) -> None:
    from playwright.sync_api import sync_playwright

    address = non_loopback_address()
    if address is not None:  # else the machine has no other address to try
        assert not reachable(address, dashboard.port), (
            f"the dashboard answers on {address}: it must listen on 127.0.0.1 only"
        )

    print(f"\ndashboard screenshots: {screenshots}")
    log = BrowserLog()
    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            log.watch(page)
            page.add_init_script(RUN_COUNTER_SCRIPT)
            page.add_init_script(CANVAS_TEXT_SCRIPT)
            # The root, then a click per page as a user goes (deep links: the test below).
            page.goto(dashboard.url + "/")
            wait_for_idle(page, "Sweeps", 0)
            sweep = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Sweep")
            assert sweep.input_value() == "tiny-a"

            for check in PAGES:
                shot = screenshots / f"dashboard-{check.slug}.png"
                try:
                    if check.title != "Sweeps":
                        open_page(page, check)
                    assert_rendered(page, check)
                    if check.title == "Frontier" and REFERENCE_TABLE.is_file():
                        assert_published_results_told_apart(page)
                    if check.title == "Objective space":
                        check_objective_axes(page)
                    if check.title == "Trial detail":
                        assert_no_none_cells(page)
                    if check.title == "Deploy":
                        message = register_from_deploy(page)
                        assert_rendered(page, check)
                        assert re.search(r"budget-1 (->|→) version \d+", message), message
                        assert re.search(r"budget-2 (->|→) version \d+", message), message
                except Exception:
                    screenshot(page, shot.with_name(f"{shot.stem}-failed.png"))
                    print(f"\nbrowser so far: {log}")
                    raise
                screenshot(page, shot)
        finally:
            browser.close()

    from bao.tracking import mlflow_client

    client = mlflow_client(dashboard.workspace)
    for alias in ("budget-1", "budget-2"):
        version = client.get_model_version_by_alias("bao-pareto-tiny-a", alias)
        assert version.name == "bao-pareto-tiny-a"

    assert not log.base_path_probes, log.base_path_probes  # opened at the root
    assert_quiet(log, dashboard)


# A deep link per kind of page: one naming its sweep, two taking the first sweep.
DEEP_LINKS = [
    ("/frontier?sweep=tiny-b", "Frontier", "tiny-b"),
    ("/objectives", "Objective space", "tiny-a"),
    ("/deploy", "Deploy", "tiny-a"),
]


@pytest.mark.parametrize(("path", "title", "sweep"), DEEP_LINKS, ids=str)
def test_a_deep_link_works_as_the_first_page_of_a_fresh_server(
    chromium: Path, dashboard: Dashboard, screenshots: Path, *, path: str, title: str, sweep: str
) -> None:
    """Each run starts its own server (the ``dashboard`` fixture), so the link is the first
    page that server runs: Streamlit must already use the app's navigation and sidebar."""
    from playwright.sync_api import sync_playwright

    check = next(entry for entry in PAGES if entry.title == title)
    log = BrowserLog()
    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            log.watch(page)
            page.add_init_script(RUN_COUNTER_SCRIPT)
            page.goto(dashboard.url + path)
            try:
                wait_for_idle(page, title, 0)
                assert sidebar_links(page) == [entry.title for entry in PAGES]
                sidebar = page.locator('[data-testid="stSidebar"]')
                assert sidebar.get_by_role("combobox", name="Sweep").input_value() == sweep
                assert f"sweep={sweep}" in page.url
                assert page.get_by_text("No sweep in").count() == 0
                assert_rendered(page, check)
            except Exception:
                screenshot(page, screenshots / f"deep-link-{check.slug}-failed.png")
                raise
            screenshot(page, screenshots / f"deep-link-{check.slug}.png")
        finally:
            browser.close()
    assert_quiet(log, dashboard)
