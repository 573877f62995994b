"""What a sweep costs per trial outside the backend, as a share of a default simulator trial.

    .venv/bin/python benchmarks/bench_overhead.py [--quick] [--trials 100] [--drivers tpe random]
                                                  [--sim-trials 3] [--out DIR] [--profile FILE]

Target (issue 9): the orchestration (driver, Optuna storage, MLflow, process handling) costs
less than 2% of a default ``sim`` trial. Measured on a fresh workspace in a temporary folder
with the default storages (Optuna and MLflow in SQLite):

1. **the backend alone**: a no-op program (``{python} -c ...``: writes the two objective
   metrics into ``{metrics_file}`` and exits) run directly with ``subprocess.run``, N times;
2. **no-op sweeps**: ``python -m sweep.cli sweep`` (the real CLI, live display included) of N
   trials of a ``command`` backend running that program, ``jobs: 1``, for each driver (the
   default ``tpe`` and ``random``). Per trial: the mean time from one trial's start to the
   next's (Optuna's ``datetime_start``), so start-up and finish are left out; they are
   reported apart (launch to the first trial's start, the last trial's end to the exit).
   **Overhead per trial = per trial - the backend alone**;
3. **where it goes**: the same no-op sweep (``tpe``) run in this process through
   ``sweep.runner.SweepRunner``, with the runner's phases timed by wrapping its methods
   (nothing in ``sweep/`` is changed): driver, MLflow calls, Optuna writes, process spawn
   and wait, progress reports, the loop. ``--profile FILE`` also writes a cProfile of it;
4. **a default sim trial**: a sweep of ``--sim-trials`` trials of the ``sim`` backend on
   ``configs/sim.yaml`` (default search space and training settings), whose Optuna trial
   durations (start to end) are the denominator. Measured live, never assumed: the simulator
   gets faster as it is optimised, and the share grows.

``--quick``: 20 no-op trials, ``tpe`` only, one sim trial. Prints the tables and writes
``benchmarks/results/bench_overhead[.quick].json`` (``--out`` for another folder).
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.append(str(Path(__file__).resolve().parent))  # common

from common import machine_line, print_table, write_results

REPO = Path(__file__).resolve().parent.parent
SIM_CONFIG = REPO / "configs" / "sim.yaml"
TARGET_SHARE = 0.02
DEFAULT_DRIVER = "tpe"
OBJECTIVES = [
    {"metric": "eval/score", "direction": "maximize"},
    {"metric": "eval/user_involvement_rate", "direction": "minimize"},
]
NOOP_PROGRAM = (
    "import json, sys\n"
    "lam, alpha, beta = map(float, sys.argv[2:5])\n"
    "metrics = dict(score=0.9 - lam - 0.2 * alpha, user_involvement_rate=0.6 - lam + 0.3 * beta)\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    json.dump(dict(('eval/' + key, value) for key, value in metrics.items()), out)\n"
)
"""The no-op backend: a conflicting pair of objectives from the parameters, nothing else
(no braces: the command backend reads ``{...}`` as placeholders)."""
NOOP_ARGV = [
    "{python}",
    "-c",
    NOOP_PROGRAM,
    "{metrics_file}",
    "{shaping.user_lambda}",
    "{shaping.info_seeking}",
    "{shaping.over_thinking}",
]
SWEEP_TIMEOUT_S = 3600


# --------------------------------------------------------------------------------- configs


def write_config(
    folder: Path,
    name: str,
    *,
    backend: dict[str, Any],
    driver: str,
    n_trials: int,
    train: dict[str, Any] | None = None,
) -> Path:
    """A sweep config with the default search space, ``jobs: 1`` and default storages."""
    config: dict[str, Any] = {
        "name": name,
        "seed": 0,
        "backend": backend,
        "objectives": OBJECTIVES,
        "driver": {"algorithm": driver, "n_trials": n_trials},
        "jobs": 1,
        "trial_timeout": 3600,
    }
    if train:
        config["train"] = train
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def noop_backend() -> dict[str, Any]:
    return {
        "kind": "command",
        "argv": NOOP_ARGV,
        "metrics": [objective["metric"] for objective in OBJECTIVES],
    }


def nested(overrides: Sequence[str]) -> dict[str, Any]:
    """``a.b=value`` strings (YAML values) as a nested dict, for the sweep's ``train`` key."""
    tree: dict[str, Any] = {}
    for item in overrides:
        path, _, text = item.partition("=")
        *parents, leaf = path.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(text)
    return tree


# ----------------------------------------------------------------------------- measuring


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished (waited-for) children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def backend_alone(folder: Path, repeats: int) -> tuple[list[float], float]:
    """Seconds of each run of the no-op program run directly, and its mean CPU seconds."""
    metrics = folder / "metrics.json"
    values = {"python": sys.executable, "metrics_file": str(metrics)}
    values |= {"shaping.user_lambda": "0.1", "shaping.info_seeking": "0.1"}
    values |= {"shaping.over_thinking": "0.02"}
    argv = [values.get(item.strip("{}"), item) for item in NOOP_ARGV]
    times = []
    cpu = children_cpu_s()
    with (folder / "run.log").open("wb") as output:
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, check=True
            )
            times.append(time.perf_counter() - started)
    return times, (children_cpu_s() - cpu) / repeats


def run_cli_sweep(config: Path, workspace: Path) -> dict[str, Any]:
    """``python -m sweep.cli sweep CONFIG`` in a subprocess; its wall time and trial times."""
    log = config.with_suffix(".log")
    env = {**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "sweep.cli", "sweep", str(config)]
    launched = datetime.now()
    cpu = children_cpu_s()
    started = time.perf_counter()
    with log.open("wb") as output:
        code = subprocess.run(
            [*command, "--workspace", str(workspace)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=SWEEP_TIMEOUT_S,
            check=False,
        ).returncode
    wall = time.perf_counter() - started
    exited = datetime.now()
    cpu = children_cpu_s() - cpu
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the sweep {config.name} failed (exit {code}):\n{tail}")
    name = yaml.safe_load(config.read_text())["name"]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        **trial_times(workspace, name, launched=launched, exited=exited),
    }


def trial_times(
    workspace: Path, name: str, *, launched: datetime, exited: datetime
) -> dict[str, Any]:
    """Per-trial times of a finished sweep from its Optuna storage (all attempts complete)."""
    from sweep.records import open_sweep

    study = open_sweep(workspace, name).study
    trials = sorted(study.trials(), key=lambda t: t.number)
    failed = [t.number for t in trials if t.state.name != "COMPLETE"]
    if failed:
        raise RuntimeError(f"sweep {name}: trials {failed} did not complete")
    starts = [t.datetime_start for t in trials]
    ends = [t.datetime_complete for t in trials]
    if any(s is None for s in starts) or any(e is None for e in ends):
        raise RuntimeError(f"sweep {name}: a trial has no start or end time")
    start = [s.timestamp() for s in starts if s is not None]
    end = [e.timestamp() for e in ends if e is not None]
    cycles = [b - a for a, b in itertools.pairwise(start)]
    durations = [b - a for a, b in zip(start, end, strict=True)]
    gaps = [b - a for a, b in zip(end, start[1:], strict=False)]
    tenth = max(1, len(cycles) // 10)
    return {
        "trials": len(trials),
        "startup_s": start[0] - launched.timestamp(),
        "finish_s": exited.timestamp() - end[-1],
        "per_trial_s": statistics.fmean(cycles) if cycles else None,
        "per_trial_median_s": statistics.median(cycles) if cycles else None,
        "per_trial_first_s": statistics.fmean(cycles[:tenth]) if cycles else None,
        "per_trial_last_s": statistics.fmean(cycles[-tenth:]) if cycles else None,
        "duration_median_s": statistics.median(durations),
        "duration_mean_s": statistics.fmean(durations),
        "gap_median_s": statistics.median(gaps) if gaps else None,
        "durations_s": durations,
    }


class PhaseClock:
    """Times calls of wrapped methods: seconds of every call, and whether it ran in a trial
    thread (the runner's pool) or in the sweep's loop."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, bool]]] = defaultdict(list)

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                in_trial = threading.current_thread().name.startswith("trial")
                self.calls[label].append((time.perf_counter() - started, in_trial))

        setattr(owner, attribute, timed)

    def total(self, label: str, *, in_trial: bool | None = None, first: int | None = None) -> float:
        calls = self.calls.get(label, [])
        chosen = [s for s, trial in calls if in_trial is None or trial == in_trial]
        return sum(chosen[:first] if first is not None else chosen)


class CpuClock:
    """CPU seconds of one wrapped call: this process's (every thread) and its children's."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, owner: Any, attribute: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time() + children_cpu_s()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.process_time() + children_cpu_s() - started

        setattr(owner, attribute, timed)


def breakdown(
    folder: Path,
    driver: str,
    n_trials: int,
    *,
    backend_s: float,
    backend_cpu_s: float,
    profile: Path | None,
) -> dict[str, Any]:
    """The no-op sweep in this process, its per-trial time split by phase (seconds per trial)."""
    import cProfile

    import optuna

    import sweep.execution
    import sweep.runner
    from sweep.loading import load_sweep_config
    from sweep.runner import SweepRunner

    workspace = folder / f"workspace-breakdown-{driver}"
    config = write_config(
        folder, f"breakdown-{driver}", backend=noop_backend(), driver=driver, n_trials=n_trials
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as the CLI does
    clock = PhaseClock()
    started = time.perf_counter()
    loaded = load_sweep_config(config)
    runner = SweepRunner(loaded, workspace, on_progress=lambda progress: None)
    runner.prepare()
    prepare_s = time.perf_counter() - started
    clock.wrap(runner.driver, "propose", "propose")
    clock.wrap(sweep.runner, "pop_waiting", "pop_waiting")
    clock.wrap(runner, "_ready_for_trials", "ready")
    clock.wrap(runner, "_check_failures", "check_failures")
    clock.wrap(runner, "_report", "report")
    clock.wrap(runner, "_loop", "loop")
    loop_cpu = CpuClock()
    loop_cpu.wrap(runner, "_loop")
    clock.wrap(runner, "finish", "finish")
    clock.wrap(runner, "_execute", "execute")
    clock.wrap(runner, "_trial_run", "trial_run")
    clock.wrap(runner, "_run_backend", "run_backend")
    clock.wrap(sweep.execution, "wait", "wait")
    clock.wrap(runner, "_attach_log", "attach_log")
    clock.wrap(runner.backend, "collect", "collect")
    clock.wrap(runner, "_tell", "tell")
    clock.wrap(runner.tracker, "set_terminated", "set_terminated")
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    result = runner.run()
    if profiler:
        profiler.disable()
        profiler.dump_stats(str(profile))
    run_s = time.perf_counter() - started
    if result.complete < n_trials:
        raise RuntimeError(f"the in-process sweep completed {result.complete}/{n_trials} trials")

    n = n_trials
    total = clock.total
    process = total("run_backend") - total("attach_log") - total("collect")
    spawn = process - total("wait")
    phases = {
        "driver: propose (Optuna ask, sampler)": total("propose"),
        "loop: queue, counts, failure/disk/MLflow checks": total("pop_waiting")
        + total("check_failures")
        + total("ready"),
        "progress reports (counts, Pareto front)": total("report"),
        "MLflow: create the trial's run, log params": total("trial_run"),
        "process: spawn (Popen from the sweep process)": spawn,
        "process: wait, beyond the program's own time": total("wait") - n * backend_s,
        "MLflow: attach run.log": total("attach_log"),
        "MLflow: log metrics, read the run back": total("collect"),
        "Optuna: tell values": total("tell"),
        "MLflow: close the trial's run": total("set_terminated", first=n),
    }
    trial_thread = (
        total("execute")
        - total("trial_run")
        - total("run_backend")
        - total("tell")
        - total("set_terminated", first=n)
        - total("report", in_trial=True)
    )
    phases["Optuna: owner, heartbeat, user attrs; other"] = trial_thread
    loop_rest = (
        total("loop")
        - total("execute")
        - total("propose")
        - total("pop_waiting")
        - total("check_failures")
        - total("ready")
        - total("report", in_trial=False)
    )
    phases["loop: the rest (waits, bookkeeping)"] = loop_rest
    per_trial = {label: seconds / n for label, seconds in phases.items()}
    return {
        "driver": driver,
        "trials": n,
        "prepare_s": prepare_s,
        "run_s": run_s,
        "loop_per_trial_s": total("loop") / n,
        "loop_cpu_per_trial_s": loop_cpu.seconds / n,
        "overhead_cpu_per_trial_s": loop_cpu.seconds / n - backend_cpu_s,
        "finish_s": total("finish"),
        "phases_per_trial_s": per_trial,
        "overhead_per_trial_s": sum(per_trial.values()),
        "process_per_trial_s": process / n,
        "calls": {label: len(calls) for label, calls in clock.calls.items()},
    }


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 no-op trials, tpe, 1 sim trial")
    parser.add_argument("--trials", type=int, help="no-op trials per sweep (default 100; quick 20)")
    parser.add_argument("--drivers", nargs="+", help="optuna algorithms (default tpe random)")
    parser.add_argument("--sim-trials", type=int, help="default sim trials (default 3; quick 1)")
    parser.add_argument(
        "--sim-set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override the sim training config (tests only: the share is then not the target's)",
    )
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the in-process sweep")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspaces")
    args = parser.parse_args(argv)
    n_trials = args.trials or (20 if args.quick else 100)
    if n_trials < 2:
        parser.error("--trials must be at least 2 (a trial's time is one start to the next)")
    drivers = list(args.drivers or ([DEFAULT_DRIVER] if args.quick else [DEFAULT_DRIVER, "random"]))
    sim_trials = args.sim_trials or (1 if args.quick else 3)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    folder = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    print(f"bench_overhead: {n_trials} no-op trials x {drivers}, {sim_trials} sim trial(s)")
    print(f"  {machine_line()}; workspaces in {folder}", flush=True)
    started = time.perf_counter()
    try:
        load = os.getloadavg()
        alone, backend_cpu_s = backend_alone(folder, n_trials)
        backend_s = statistics.fmean(alone)
        sweeps: dict[str, dict[str, Any]] = {}
        for driver in drivers:
            print(f"  no-op sweep, {driver} ...", flush=True)
            config = write_config(
                folder, f"noop-{driver}", backend=noop_backend(), driver=driver, n_trials=n_trials
            )
            sweeps[driver] = run_cli_sweep(config, folder / f"workspace-{driver}")
            sweeps[driver]["overhead_per_trial_s"] = sweeps[driver]["per_trial_s"] - backend_s
        main_driver = DEFAULT_DRIVER if DEFAULT_DRIVER in drivers else drivers[0]
        print(f"  no-op sweep in this process, phases timed ({main_driver}) ...", flush=True)
        phases = breakdown(
            folder,
            main_driver,
            n_trials,
            backend_s=backend_s,
            backend_cpu_s=backend_cpu_s,
            profile=args.profile,
        )
        print(f"  default sim sweep, {sim_trials} trial(s) ...", flush=True)
        train = nested(args.sim_set)
        sim_backend = {"kind": "sim", "train_config": str(SIM_CONFIG)}
        config = write_config(
            folder,
            "sim-default",
            backend=sim_backend,
            driver=DEFAULT_DRIVER,
            n_trials=sim_trials,
            train=train,
        )
        sim = run_cli_sweep(config, folder / "workspace-sim")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.perf_counter() - started
    sim_trial_s = float(sim["duration_median_s"])
    for result in sweeps.values():
        result["share"] = result["overhead_per_trial_s"] / sim_trial_s
        result["target_met"] = bool(result["share"] < TARGET_SHARE)
    phases["share"] = phases["overhead_per_trial_s"] / sim_trial_s
    phases["cpu_share"] = phases["overhead_cpu_per_trial_s"] / sim_trial_s

    rows: list[list[Any]] = []
    measures = (
        ("trials", "no-op trials", 1.0),
        ("wall_s", "sweep wall time (s)", 1.0),
        ("startup_s", "start-up: launch to first trial (s)", 1.0),
        ("finish_s", "finish: last trial to exit (s)", 1.0),
        ("per_trial_s", "per trial, start to next start (ms)", 1000.0),
        ("per_trial_first_s", "  first tenth of the trials (ms)", 1000.0),
        ("per_trial_last_s", "  last tenth of the trials (ms)", 1000.0),
        ("duration_median_s", "trial duration, start to end, median (ms)", 1000.0),
        ("gap_median_s", "between trials, median (ms)", 1000.0),
    )
    for key, label, scale in measures:
        rows.append([label, *(_scaled(sweeps[d].get(key), scale) for d in drivers)])
    rows.append(["backend alone: the no-op program (ms)", *(backend_s * 1000 for _ in drivers)])
    rows.append(
        ["overhead per trial (ms)", *(sweeps[d]["overhead_per_trial_s"] * 1000 for d in drivers)]
    )
    rows.append(["default sim trial, median (s)", *(sim_trial_s for _ in drivers)])
    rows.append(["overhead share of a sim trial (%)", *(sweeps[d]["share"] * 100 for d in drivers)])
    rows.append(
        [
            f"target < {TARGET_SHARE:.0%} met",
            *("yes" if sweeps[d]["target_met"] else "NO" for d in drivers),
        ]
    )
    print_table("overhead per trial (CLI sweeps, jobs 1)", ["measure", *drivers], rows)
    breakdown_rows: list[list[Any]] = [
        [label, seconds * 1000] for label, seconds in phases["phases_per_trial_s"].items()
    ]
    breakdown_rows += [
        ["total overhead per trial", phases["overhead_per_trial_s"] * 1000],
        ["the no-op program itself", backend_s * 1000],
        ["loop time per trial (measured)", phases["loop_per_trial_s"] * 1000],
        ["CPU time per trial (sweep + program)", phases["loop_cpu_per_trial_s"] * 1000],
        ["CPU time of the no-op program alone", backend_cpu_s * 1000],
        ["overhead per trial, CPU time", phases["overhead_cpu_per_trial_s"] * 1000],
    ]
    print_table(
        f"overhead by phase, ms per trial ({main_driver}, in-process)",
        ["phase", "ms"],
        breakdown_rows,
    )
    print_table(
        "default sim trials",
        ["trial", "seconds"],
        [[str(i), s] for i, s in enumerate(sim["durations_s"])],
    )
    path = write_results(
        "bench_overhead",
        {
            "target_share": TARGET_SHARE,
            "noop_trials": n_trials,
            "drivers": drivers,
            "backend_alone_s": backend_s,
            "backend_alone_all_s": alone,
            "backend_alone_cpu_s": backend_cpu_s,
            "load_average": {"start": list(load), "end": list(os.getloadavg())},
            "sweeps": sweeps,
            "breakdown": phases,
            "sim": {**sim, "trial_s": sim_trial_s, "train_overrides": train},
            "share": sweeps[main_driver]["share"],
            "target_met": sweeps[main_driver]["target_met"],
            "elapsed_s": elapsed,
        },
        quick=args.quick,
        results_dir=args.out,
    )
    verdict = "met" if sweeps[main_driver]["target_met"] else "NOT met"
    print(
        f"overhead {sweeps[main_driver]['overhead_per_trial_s'] * 1000:.0f} ms per trial = "
        f"{sweeps[main_driver]['share']:.2%} of a {sim_trial_s:.1f} s sim trial ({main_driver}): "
        f"target < {TARGET_SHARE:.0%} {verdict} (CPU time of the overhead, in-process: "
        f"{phases['overhead_cpu_per_trial_s'] * 1000:.0f} ms, {phases['cpu_share']:.2%})"
    )
    print(f"{elapsed:.0f} s in all; results: {path}")
    return 0


def _scaled(value: Any, scale: float) -> Any:
    return value * scale if isinstance(value, float) and scale != 1.0 else value


if __name__ == "__main__":
    raise SystemExit(main())
