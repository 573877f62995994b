"""How the analysis and the dashboard scale: synthetic sweeps of 1,000, 5,000 and 20,000 trials.

    .venv/bin/python benchmarks/bench_scale.py [--quick] [--sizes 1000 5000 20000]
                                               [--workspace DIR] [--keep] [--out DIR]

For each size, builds a synthetic workspace (``benchmarks/workspace.py``: bulk SQLite writes of
the Optuna study and the MLflow runs), then times, each part in a fresh interpreter so that no
cache of an earlier step or size is warm:

* the analysis (``analysis/``): loading the sweep cold (no ``.analysis/`` cache: MLflow is
  read and the cache written), with the disk cache (what a new ``front`` process pays after
  its imports), and with the in-process cache (the change check: every Optuna trial is read
  to compute the signature); the Pareto mask and ranks; the hypervolume at the sweep's
  reference point, its per-trial contributions and its history; the per-task outcomes (the
  paired task bootstrap's input, read from every run's trajectories up to
  ``analysis.loader.MAX_TRIALS`` trials); the 1000 uncertainty draws, P(non-dominated)
  over them and the hypervolume of every draw (what ``compare_sweeps`` computes per sweep);
  ``analyse_front`` as a whole (what ``front`` and the dashboard run); the frontier figure
  (``dashboard.figures.frontier_figure``), its JSON and its size; the process's peak RSS;
* the dashboard (Streamlit ``AppTest``, the server side of a page view, via
  ``bench_dashboard._app_test_timings``): the app's first run (the Sweeps page, which loads
  the sweep, cold), the frontier page's first view (analysis and figure), a rerun of the
  session, a new session; the process's peak RSS.

``--quick`` runs 1,000 and 5,000 trials with fewer repeats. Workspaces are built in a
temporary folder and deleted afterwards, unless ``--workspace DIR`` (built or reused as
``DIR/trials-N``) or ``--keep`` is given. Prints one table and writes
``benchmarks/results/bench_scale[.quick].json`` (``--out`` for another folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))  # common, workspace, bench_dashboard

from common import machine_line, median, print_table, timed, write_results

HERE = Path(__file__).resolve().parent
NAME = "synthetic"
FULL_SIZES = (1000, 5000, 20000)
QUICK_SIZES = (1000, 5000)
DRAWS = 1000
"""Uncertainty draws, as the CLI's and the dashboard's default."""
WORKER_TIMEOUT_S = 1800

# (key, label) of the table's rows, in order; the seconds unless the label says otherwise.
ROWS: tuple[tuple[str, str], ...] = (
    ("build_s", "build (bulk SQLite)"),
    ("workspace_mb", "workspace on disk (MB)"),
    ("imports_s", "imports (pandas, MLflow, Optuna, ...)"),
    ("load_cold_s", "load, cold (MLflow read)"),
    ("load_disk_s", "load, disk cache hit"),
    ("load_memory_s", "load, memory cache hit"),
    ("pareto_s", "Pareto mask"),
    ("ranks_s", "Pareto ranks"),
    ("hypervolume_s", "hypervolume"),
    ("contributions_s", "hypervolume contributions"),
    ("history_s", "hypervolume history"),
    ("outcomes_s", "per-task outcomes (trajectories)"),
    ("draws_s", "uncertainty draws"),
    ("p_nondominated_s", "P(non-dominated) over the draws"),
    ("hypervolume_draws_s", "hypervolume of every draw"),
    ("analyse_front_s", "analyse_front (the whole front)"),
    ("figure_s", "frontier figure"),
    ("figure_json_s", "frontier figure to JSON"),
    ("figure_json_mb", "frontier figure JSON (MB)"),
    ("analysis_rss_mb", "peak RSS, analysis (MB)"),
    ("app_start_s", "dashboard: app start (loads)"),
    ("app_cold_s", "dashboard: frontier first view"),
    ("app_rerun_s", "dashboard: frontier rerun"),
    ("app_new_session_s", "dashboard: frontier new session"),
    ("dashboard_rss_mb", "peak RSS, dashboard (MB)"),
)


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clear_analysis_cache(workspace: Path, name: str) -> None:
    """Deletes the sweep's ``.analysis/`` folder (the loader's and the outcomes' disk cache)."""
    from analysis.loader import CACHE_FOLDER
    from sweep.storage import sweep_dir

    shutil.rmtree(sweep_dir(workspace, name) / CACHE_FOLDER, ignore_errors=True)


# ------------------------------------------------------------------------------- workers


def analysis_timings(workspace: Path, name: str, *, draws: int, repeat: int) -> dict[str, Any]:
    """Every analysis step on the sweep, cold first; run it in a fresh interpreter."""
    started = time.perf_counter()
    import mlflow.tracking  # noqa: F401 - the loader imports these lazily: timed apart
    import numpy as np
    import optuna  # noqa: F401
    import pandas  # noqa: F401
    import plotly.io
    import pyarrow.parquet  # noqa: F401

    import analysis.loader
    from analysis.loader import load_sweep, read_task_table
    from analysis.outcomes import task_outcomes
    from analysis.pareto import (
        hypervolume,
        hypervolume_contributions,
        hypervolume_history,
        pareto_mask,
        pareto_ranks,
    )
    from analysis.report import analyse_front, collapsed_numbers
    from analysis.uncertainty import draw_metrics, p_nondominated
    from dashboard.figures import frontier_figure

    results: dict[str, Any] = {"imports_s": time.perf_counter() - started}

    def once(key: str, work: Callable[[], Any]) -> Any:
        times, value = timed(work)
        results[key] = times[0]
        return value

    def best(key: str, work: Callable[[], Any]) -> Any:
        times, value = timed(work, repeat)
        results[key] = median(times)
        return value

    # The task outcomes are timed on their own (outcomes_s), as before they were read with
    # the sweep.
    clear_analysis_cache(workspace, name)
    once("load_cold_s", lambda: load_sweep(workspace, name, outcomes=False))
    analysis.loader._MEMORY.clear()  # a new process: only the disk cache is left
    once("load_disk_s", lambda: load_sweep(workspace, name, outcomes=False))
    data = best("load_memory_s", lambda: load_sweep(workspace, name, outcomes=False))

    frame = data.complete.reset_index(drop=True)
    values = data.values(frame)
    feasible = frame["feasible"].to_numpy(dtype=bool)
    directions = data.directions
    point = data.reference.point
    order = frame.sort_values(["datetime_complete", "number"], kind="stable").index.to_numpy()
    mask = best("pareto_s", lambda: pareto_mask(values, directions, feasible))
    best("ranks_s", lambda: pareto_ranks(values, directions, feasible))
    volume = best("hypervolume_s", lambda: hypervolume(values, directions, point, feasible))
    best("contributions_s", lambda: hypervolume_contributions(values, directions, point, feasible))
    once(
        "history_s",
        lambda: hypervolume_history(values[order], directions, point, feasible[order]),
    )

    def read_outcomes() -> Any:
        data.task_table = read_task_table(data)
        return task_outcomes(data, frame)

    outcomes = once("outcomes_s", read_outcomes)

    def uncertainty() -> Any:
        # In a function, so that its draws (draws x trials x objectives floats) are freed
        # before analyse_front draws its own.
        sample = once(
            "draws_s", lambda: draw_metrics(data, frame, data.metrics, draws, outcomes=outcomes)
        )
        once("p_nondominated_s", lambda: p_nondominated(sample, directions, feasible))
        return once(
            "hypervolume_draws_s",
            lambda: np.array([hypervolume(s, directions, point, feasible) for s in sample.samples]),
        )

    volumes = uncertainty()
    front = once("analyse_front_s", lambda: analyse_front(data, n_draws=draws))

    collapsed = collapsed_numbers(front.frame)
    figure = best(
        "figure_s",
        lambda: frontier_figure(
            front.curves, front.envelope, front.front_numbers, collapsed=collapsed
        ),
    )
    text = best("figure_json_s", lambda: plotly.io.to_json(figure))
    results.update(
        {
            "figure_json_mb": len(text) / 1e6,
            "trials": len(data.trials),
            "complete": len(frame),
            "front_size": int(mask.sum()),
            "hypervolume": volume,
            "hypervolume_draws_interval": [float(x) for x in np.percentile(volumes, [2.5, 97.5])],
            "reference_point": list(point),
            "task_bootstrap": outcomes is not None,
            "curves_rows": len(front.curves),
            "analysis_rss_mb": peak_rss_mb(),
        }
    )
    return results


def dashboard_timings(workspace: Path, name: str, *, repeat: int) -> dict[str, Any]:
    """The frontier page with ``AppTest`` on a cold server; run it in a fresh interpreter."""
    from bench_dashboard import _app_test_timings

    clear_analysis_cache(workspace, name)  # a first view as on a fresh workspace
    app = _app_test_timings(workspace, name, repeats=repeat)
    return {
        "app_start_s": app["start_s"],
        "app_cold_s": app["cold_s"],
        "app_rerun_s": app["rerun_s"],
        "app_new_session_s": app["new_session_s"],
        "app_rerun_all_s": app["rerun_all_s"],
        "app_new_session_all_s": app["new_session_all_s"],
        "dashboard_rss_mb": peak_rss_mb(),
    }


def run_worker(kind: str, workspace: Path, *, draws: int, repeat: int) -> dict[str, Any]:
    """Runs one worker of this script in a fresh interpreter; returns what it measured."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        answer = Path(folder) / "result.json"
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            kind,
            "--workspace",
            str(workspace),
            "--draws",
            str(draws),
            "--repeat",
            str(repeat),
            "--answer",
            str(answer),
        ]
        env = {**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING"}
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, check=False
        )
        if done.returncode != 0 or not answer.is_file():
            raise RuntimeError(
                f"the {kind} worker failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
            )
        result: dict[str, Any] = json.loads(answer.read_text())
        return result


def _worker_main(args: argparse.Namespace) -> int:
    workspace = Path(args.workspace)
    if args.worker == "analysis":
        result = analysis_timings(workspace, NAME, draws=args.draws, repeat=args.repeat)
    else:
        result = dashboard_timings(workspace, NAME, repeat=args.repeat)
    Path(args.answer).write_text(json.dumps(result, default=float))
    return 0


# ---------------------------------------------------------------------------------- sizes


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def measure_size(folder: Path, n_trials: int, *, draws: int, repeat: int) -> dict[str, Any]:
    """Builds (or reuses) the workspace of ``n_trials`` in ``folder`` and times everything."""
    from workspace import WorkspaceExistsError, build_workspace

    result: dict[str, Any] = {"trials_built": n_trials, "workspace": str(folder)}
    try:
        times, _ = timed(lambda: build_workspace(folder, n_trials, name=NAME))
        result["build_s"] = times[0]
    except WorkspaceExistsError:
        result["build_s"] = None  # reused (--workspace)
    result["workspace_mb"] = folder_mb(folder)
    print(f"  {n_trials} trials: analysis ...", flush=True)
    result.update(run_worker("analysis", folder, draws=draws, repeat=repeat))
    print(f"  {n_trials} trials: dashboard ...", flush=True)
    result.update(run_worker("dashboard", folder, draws=draws, repeat=repeat))
    return result


def _label(n_trials: int) -> str:
    return f"{n_trials // 1000}k" if n_trials % 1000 == 0 else str(n_trials)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 and 5,000 trials, fewer repeats"
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="trials per workspace")
    parser.add_argument("--workspace", help="build or reuse the workspaces here (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspaces")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--draws", type=int, default=DRAWS, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("analysis", "dashboard"), help=argparse.SUPPRESS)
    parser.add_argument("--answer", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    sizes = list(args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES))
    repeat = args.repeat or (2 if args.quick else 3)
    root = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    keep = args.keep or args.workspace is not None
    print(f"bench_scale: {sizes} trials, workspaces in {root} ({machine_line()})", flush=True)
    started = time.perf_counter()
    import mlflow.tracking  # noqa: F401 - imported before the first build is timed
    import optuna  # noqa: F401
    import workspace  # noqa: F401

    imports = time.perf_counter() - started
    by_size: dict[str, dict[str, Any]] = {}
    try:
        for n_trials in sizes:
            folder = root / f"trials-{n_trials}"
            by_size[str(n_trials)] = measure_size(folder, n_trials, draws=args.draws, repeat=repeat)
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started

    columns = ["step", *(f"{_label(n)} trials" for n in sizes)]
    rows = [
        [label, *(by_size[str(n)].get(key) for n in sizes)]
        for key, label in ROWS
        if any(by_size[str(n)].get(key) is not None for n in sizes)
    ]
    print_table("analysis and dashboard at scale: seconds unless noted", columns, rows)
    path = write_results(
        "bench_scale",
        {
            "sizes": sizes,
            "draws": args.draws,
            "repeat": repeat,
            "elapsed_s": elapsed,
            "imports_before_build_s": imports,
            "by_size": by_size,
        },
        quick=args.quick,
        results_dir=args.out,
    )
    print(f"{elapsed:.0f} s in all; results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
