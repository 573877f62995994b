"""How fast the dashboard's frontier page is on a large workspace (target: < 2 s once warm).

    .venv/bin/python benchmarks/bench_dashboard.py [--trials 5000] [--workspace DIR] [--browser]

Builds (or reuses) a synthetic workspace of N trials (``benchmarks/workspace.py``), then
times the frontier page three ways:

* ``AppTest`` (Streamlit's own headless runner, the server side of a page view): the first
  view (cold: loads the sweep, analyses the front), a rerun of the same session (what a widget
  change costs), and a new session in the same server process (what the next visitor gets);
* the pieces of a warm view: the change check (``sweep_stamp``), building the figure, and
  turning it into the JSON the browser receives;
* with ``--browser`` (needs ``/usr/bin/chromium``): a real ``bao-pareto dashboard`` server
  and headless Chromium, from clicking "Frontier" to the chart's SVG being drawn.

Prints a table and writes the numbers as JSON next to this script's results
(``benchmarks/results/bench_dashboard.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP = HERE.parent / "dashboard" / "app.py"
RESULTS = HERE / "results" / "bench_dashboard.json"
REPEATS = 5


def _app_test_timings(workspace: Path, name: str, repeats: int = REPEATS) -> dict[str, Any]:
    """Server-side page views with ``AppTest``. Also used by ``bench_scale.py``: call it in a
    fresh interpreter, since Streamlit's caches and the loader's live for the process.

    ``start_s`` is the app's first run (the Sweeps page, which loads every sweep), before the
    frontier page's first view (``cold_s``: the analysis and the figure)."""
    os.environ["BAO_PARETO_HOME"] = str(workspace)
    from streamlit.testing.v1 import AppTest

    def view(app: AppTest) -> float:
        started = time.perf_counter()
        app.switch_page("views/frontier.py").run()
        elapsed = time.perf_counter() - started
        if app.exception or not app.get("plotly_chart"):
            raise RuntimeError(f"the frontier page failed: {[e.value for e in app.exception]}")
        return elapsed

    first = AppTest.from_file(str(APP), default_timeout=600)
    started = time.perf_counter()
    first.run()
    start = time.perf_counter() - started
    first.session_state["sweep"] = name
    cold = view(first)
    rerun = [view(first) for _ in range(repeats)]
    sessions = []
    for _ in range(repeats):
        other = AppTest.from_file(str(APP), default_timeout=600)
        other.run()
        sessions.append(view(other))
    return {
        "start_s": start,
        "cold_s": cold,
        "rerun_s": statistics.median(rerun),
        "new_session_s": statistics.median(sessions),
        "rerun_all_s": rerun,
        "new_session_all_s": sessions,
    }


def _piece_timings(workspace: Path, name: str) -> dict[str, float]:
    import plotly.io

    from analysis.loader import load_sweep
    from analysis.report import COLLAPSE_AT, COLLAPSE_METRIC, analyse_front
    from dashboard.data import sweep_stamp
    from dashboard.figures import frontier_figure

    analysis = analyse_front(load_sweep(workspace, name))
    silent = analysis.frame[COLLAPSE_METRIC].to_numpy(dtype=float) >= COLLAPSE_AT
    collapsed = [int(n) for n in analysis.frame["number"].to_numpy()[silent]]

    def best_of(function: Any) -> float:
        times = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        return min(times)

    def build() -> Any:
        return frontier_figure(
            analysis.curves,
            analysis.envelope,
            analysis.front_numbers,
            collapsed=collapsed,
        )

    figure = build()
    text = plotly.io.to_json(figure)
    return {
        "stamp_s": best_of(lambda: sweep_stamp(workspace, name)),
        "figure_s": best_of(build),
        "figure_json_s": best_of(lambda: plotly.io.to_json(figure)),
        "figure_json_mb": len(text) / 1e6,
        "curves_rows": float(len(analysis.curves)),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _browser_timings(workspace: Path, name: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("bao-pareto")),
            "dashboard",
            "--workspace",
            str(workspace),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                    if reply.read() == b"ok":
                        break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                headless=True,
                args=["--no-sandbox", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/?sweep={name}")
            page.wait_for_selector("[data-testid='stDataFrame']", timeout=600_000)

            def visit(title: str, chart: bool) -> float:
                started = time.perf_counter()
                nav = page.locator("[data-testid='stSidebarNav']")
                nav.get_by_role("link", name=title, exact=True).click()
                if chart:
                    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=600_000)
                else:
                    page.wait_for_selector("[data-testid='stDataFrame']", timeout=600_000)
                page.wait_for_function(
                    "!document.querySelector(\"[data-testid='stStatusWidget']\")",
                    timeout=600_000,
                )
                return time.perf_counter() - started

            cold = visit("Frontier", True)
            warm = []
            for _ in range(REPEATS):
                visit("Sweeps", False)
                warm.append(visit("Frontier", True))
            browser.close()
        return {"cold_s": cold, "warm_s": statistics.median(warm), "warm_all_s": warm}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--workspace", help="reuse or build the synthetic workspace here")
    parser.add_argument("--browser", action="store_true", help="also time a real browser")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from workspace import WorkspaceExistsError, build_workspace

    folder = Path(args.workspace or tempfile.mkdtemp(prefix="bench-dashboard-"))
    name = "synthetic"
    started = time.perf_counter()
    try:
        build_workspace(folder, args.trials, name=name)
        built = time.perf_counter() - started
    except WorkspaceExistsError:
        built = None  # reused
    results: dict[str, Any] = {
        "trials": args.trials,
        "workspace": str(folder),
        "build_s": built,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
    }
    results["apptest"] = _app_test_timings(folder, name)
    results["pieces"] = _piece_timings(folder, name)
    if args.browser and not Path("/usr/bin/chromium").is_file():
        print("no /usr/bin/chromium: the browser timing is skipped (apt-get install chromium)")
    elif args.browser:
        results["browser"] = _browser_timings(folder, name)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))

    app, pieces = results["apptest"], results["pieces"]
    rows = [
        ("frontier page, first view (load + analyse)", app["cold_s"]),
        ("frontier page, rerun of the session", app["rerun_s"]),
        ("frontier page, new session", app["new_session_s"]),
        ("  change check (sweep_stamp)", pieces["stamp_s"]),
        ("  frontier figure build", pieces["figure_s"]),
        (f"  figure to JSON ({pieces['figure_json_mb']:.2f} MB)", pieces["figure_json_s"]),
    ]
    if "browser" in results:
        rows += [
            ("browser: click to chart drawn, first", results["browser"]["cold_s"]),
            ("browser: click to chart drawn, warm", results["browser"]["warm_s"]),
        ]
    print(f"dashboard frontier page, {args.trials} trials ({results['machine']})")
    for label, seconds in rows:
        print(f"{label:<52} {seconds:8.3f} s")
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
