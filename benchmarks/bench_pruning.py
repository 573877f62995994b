"""Early stopping on the simulator: what each pruner saves, and what it costs the front.

    .venv/bin/python benchmarks/bench_pruning.py [--quick] [--seeds 5] [--trials 40]
        [--iterations 40] [--rules none rungs collapse rungs+collapse] [--jobs 1]
        [--min-step 10] [--reduction-factor 3]

The problem is bench_sweep_efficiency.py's: the quickstart sweep (configs/quickstart.yaml),
its objectives, reference point and collapse constraint, every run trained with the same
training seed (``TRAINING_SEED``), so the objectives are a fixed function of the parameters.
For each rule (``none`` and each ``pruner.kind``) and each of ``--seeds`` driver seeds, one
sweep of ``--trials`` trials (complete and pruned together, as a sweep's ``n_trials``
counts them) is proposed one trial at a time by the quickstart's driver (TPE) through the
project's drivers on an in-memory Optuna study. Each trial is a simulator training in this
process; with a pruner it evaluates every ``--min-step`` iterations (the sweep's
``eval.every``, sweep/backends.py) and at each rung the project's own rule
(:func:`sweep.pruning.decide`) is asked, against the points of the earlier trials at that
rung, exactly as the runner asks it; a pruned trial stops there and is told PRUNED.

Reported per rule, mean and 95% t-interval over driver seeds: training compute (seconds of
training and GRPO iterations, all trials), hypervolume of the complete trials as a fraction
of the reference front's, per-budget regret (bench_sweep_efficiency.py's: the best
Pass@U-k of the reference front's runs and every complete run here, minus the best the
sweep found, mean over k = 1, 2, 3, 5), and trials
pruned. The reference front is the non-dominated set of every complete run made here (all
rules, all seeds): a front stored by another benchmark may come from another version of the
simulator, and nothing in its file says which. ``--reanalyse JSON`` prints a results file's
tables again, recomputed from its stored trials.

Results: results/bench_pruning.json (every trial's parameters, metrics and fate included).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_sweep_efficiency import (  # noqa: E402
    KEPT_METRICS,
    TRAINING_SEED,
    _loaded,
    _objectives,
    best_pass_at_u,
    front_of,
    hypervolume_of,
    in_memory_sweep,
    interval,
    regret,
)
from common import machine_line, print_table, write_results  # noqa: E402

RULES = ("none", "rungs", "collapse", "rungs+collapse")


@dataclass(frozen=True)
class Settings:
    seeds: int = 5
    trials: int = 40
    iterations: int = 40
    min_step: int = 10
    reduction_factor: int = 3
    collapse_from_rung: int = 0
    rules: tuple[str, ...] = RULES


QUICK = Settings(seeds=1, trials=8)


class _PrunedError(Exception):
    """Raised from the trainer's metric callback: the pruner stopped this training."""

    def __init__(self, step: int, rule: str | None) -> None:
        super().__init__(step, rule)
        self.step = step
        self.rule = rule


def _pruner_config(rule: str, settings: Settings) -> Any:
    overrides = [
        f"pruner.kind={rule}",
        f"pruner.min_step={settings.min_step}",
        f"pruner.reduction_factor={settings.reduction_factor}",
        f"pruner.collapse_from_rung={settings.collapse_from_rung}",
    ]
    return _loaded(overrides).config


def train_pruned(
    params: dict[str, Any],
    settings: Settings,
    rule: str,
    field: dict[int, list[list[float]]],
) -> dict[str, Any]:
    """One training of ``params``; with a pruner, stopped at the first rung where
    :func:`sweep.pruning.decide` says so against ``field`` (rung step -> earlier points).
    Returns the trial's record: its fate, compute and metrics (final, or at its last rung),
    and its points at the rungs it reached (added to ``field`` by the caller)."""
    from bao.configuration import apply_overrides
    from bao.sim.config import SimConfig
    from bao.sim.trainer import train
    from sweep import pruning

    config = _pruner_config(rule, settings)
    pruner = config.pruner
    metrics_names, directions, _ = _objectives()
    rungs = pruning.rung_steps(pruner.min_step, pruner.reduction_factor, settings.iterations)
    decider = pruner.settings()
    overrides = [
        f"seed={TRAINING_SEED}",
        f"trainer.iterations={settings.iterations}",
        *(f"{path}={json.dumps(value)}" for path, value in params.items()),
    ]
    if pruner.enabled:  # what the sweep's sim backend adds (SimTrainBackend.pruner_overrides)
        overrides.append(f"eval.every={pruner.min_step}")
    raw = apply_overrides(_loaded().train_config, overrides)
    points: dict[int, list[float]] = {}
    last: dict[str, float] = {}

    def watch(metrics: dict[str, float], step: int) -> None:
        if not any(key.startswith("eval/") for key in metrics) or step not in rungs:
            return
        point = [float(metrics[name]) for name in metrics_names]
        points[step] = point
        last.update(metrics)
        decision = pruning.decide(
            decider,
            rungs.index(step),
            point=point,
            no_answer_rate=metrics.get(pruning.NO_ANSWER_METRIC),
            others=field.get(step, []),
            directions=directions,
        )
        if decision.prune:
            raise _PrunedError(step, decision.rule)

    started = time.perf_counter()
    record: dict[str, Any] = {"params": params}
    try:
        result = train(SimConfig.model_validate(raw), watch if pruner.enabled else None)
    except _PrunedError as stopped:
        record.update(
            state="PRUNED",
            rule=stopped.rule,
            iterations=stopped.step,
            **{key: last[key] for key in KEPT_METRICS if key in last},
        )
    else:
        final = {f"eval/{key}": float(value) for key, value in result.metrics.items()}
        record.update(
            state="COMPLETE",
            iterations=settings.iterations,
            **{key: final[key] for key in KEPT_METRICS},
        )
    record["seconds"] = time.perf_counter() - started
    record["points"] = {str(step): point for step, point in points.items()}
    return record


def run_sweep(rule: str, driver_seed: int, settings: Settings) -> list[dict[str, Any]]:
    """``settings.trials`` trials of the quickstart driver under ``rule``, one at a time."""
    import optuna
    from optuna.trial import TrialState

    from sweep.drivers import record_constraints

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = _loaded([f"driver.n_trials={settings.trials}", f"driver.seed={driver_seed}"]).config
    driver, sweep_study = in_memory_sweep(config)
    field: dict[int, list[list[float]]] = {}
    records: list[dict[str, Any]] = []
    while len(records) < settings.trials:
        trial = driver.propose(sweep_study, settings.trials - len(records), leader=True)
        if trial is None:
            raise RuntimeError(f"the driver proposed nothing after {len(records)} trials")
        record = train_pruned(dict(trial.params), settings, rule, field)
        for step, point in record["points"].items():
            field.setdefault(int(step), []).append(point)
        if record["state"] == "PRUNED":
            sweep_study.study.tell(trial, state=TrialState.PRUNED)
        else:
            record_constraints(trial, config, record)
            sweep_study.study.tell(
                trial, [record[objective.metric] for objective in config.objectives]
            )
        records.append(record)
    return records


# --------------------------------------------------------------------------- analysis


def analyse(
    settings: Settings, sweeps: dict[tuple[str, int], list[dict[str, Any]]]
) -> dict[str, Any]:
    _, _, reference_point = _objectives()
    complete = [r for runs in sweeps.values() for r in runs if r["state"] == "COMPLETE"]
    reference = front_of(complete)
    reference_hv = hypervolume_of(reference, reference_point)
    best = best_pass_at_u([r for r in complete if all(k in r for k in KEPT_METRICS)])
    summary: dict[str, Any] = {}
    for rule in settings.rules:
        per_seed = [sweeps[rule, seed] for seed in range(settings.seeds)]
        finished = [[r for r in runs if r["state"] == "COMPLETE"] for runs in per_seed]
        fractions = [
            hypervolume_of(runs, reference_point) / reference_hv if reference_hv else 0.0
            for runs in finished
        ]
        seconds = [sum(r["seconds"] for r in runs) for runs in per_seed]
        iterations = [float(sum(r["iterations"] for r in runs)) for runs in per_seed]
        pruned = [float(sum(r["state"] == "PRUNED" for r in runs)) for runs in per_seed]
        regrets = [regret(runs, best) if runs else float("nan") for runs in finished]
        summary[rule] = {
            "hv_fraction": interval(fractions),
            "seconds": interval(seconds, bounds=None),
            "iterations": interval(iterations, bounds=None),
            "pruned": interval(pruned, bounds=None),
            # nan where a sweep pruned every trial: it found nothing to measure regret on
            "regret": interval(regrets)
            if all(math.isfinite(r) for r in regrets)
            else (None, None, None),
            "per_seed": {
                "hv_fraction": fractions,
                "seconds": seconds,
                "iterations": iterations,
                "pruned": pruned,
                "regret": regrets,
            },
        }
    return {
        "settings": settings.__dict__ | {"rules": list(settings.rules)},
        "reference": {
            "source": "every complete trial of this run",
            "front": reference,
            "hypervolume": reference_hv,
            "point": reference_point,
        },
        "summary": summary,
        "sweeps": {f"{rule}/seed{seed}": runs for (rule, seed), runs in sweeps.items()},
    }


def _cell(stats: Sequence[float | None], digits: int = 3) -> str:
    mean, low, high = stats
    if mean is None:
        return "-"
    if low is None or high is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _print(settings: Settings, results: dict[str, Any]) -> None:
    base = results["summary"].get("none")
    rows = []
    for rule, stats in results["summary"].items():
        share = (
            f"{stats['seconds'][0] / base['seconds'][0]:.2f}"
            if base and base["seconds"][0]
            else "-"
        )
        rows.append(
            [
                rule,
                _cell(stats["seconds"], 0),
                share,
                _cell(stats["iterations"], 0),
                _cell(stats["pruned"], 1),
                _cell(stats["hv_fraction"]),
                _cell(stats["regret"]),
            ]
        )
    print(machine_line())
    print(
        f"{settings.seeds} driver seeds x {settings.trials} trials x {settings.iterations} "
        f"iterations; rungs every {settings.min_step} x {settings.reduction_factor}^k; "
        f"reference front: {results['reference']['source']}"
    )
    print_table(
        "Pruning on the quickstart problem (mean [95% t-interval] over driver seeds)",
        [
            "rule",
            "training s",
            "vs none",
            "iterations",
            "pruned",
            "HV fraction",
            "regret",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one driver seed, 8 trials")
    parser.add_argument("--seeds", type=int, help="driver seeds (default 5)")
    parser.add_argument("--trials", type=int, help="trials per sweep, pruned ones included (40)")
    parser.add_argument("--iterations", type=int, help="GRPO iterations per trial (default 40)")
    parser.add_argument("--rules", nargs="+", choices=RULES, help="which rules (default: all)")
    parser.add_argument("--min-step", type=int, help="the first rung (default 10)")
    parser.add_argument("--reduction-factor", type=int, help="eta (default 3)")
    parser.add_argument(
        "--collapse-from-rung", type=int, help="the first rung of the collapse rule (default 0)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="sweeps at once (one core each)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--reanalyse", type=Path, metavar="JSON", help="recompute a results file's tables"
    )
    args = parser.parse_args(argv)
    if args.reanalyse:
        return reanalyse(args.reanalyse)
    base = QUICK if args.quick else Settings()
    rules = tuple(dict.fromkeys(args.rules)) if args.rules else base.rules
    settings = Settings(
        seeds=args.seeds or base.seeds,
        trials=args.trials or base.trials,
        iterations=args.iterations or base.iterations,
        min_step=args.min_step or base.min_step,
        reduction_factor=args.reduction_factor or base.reduction_factor,
        collapse_from_rung=args.collapse_from_rung or base.collapse_from_rung,
        rules=rules if "none" in rules else ("none", *rules),  # the baseline is always run
    )
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            (rule, seed): pool.submit(run_sweep, rule, seed, settings)
            for seed in range(settings.seeds)
            for rule in settings.rules
        }
        sweeps = {key: future.result() for key, future in futures.items()}
    results = analyse(settings, sweeps)
    results["wall_s"] = time.perf_counter() - started
    path = write_results("bench_pruning", results, quick=args.quick, results_dir=args.out)
    _print(settings, results)
    print(f"results: {path}")
    return 0


def reanalyse(path: Path) -> int:
    """Recomputes and prints the tables of a results file from its stored trials."""
    stored = json.loads(path.read_text())
    raw = dict(stored["settings"])
    settings = Settings(**{**raw, "rules": tuple(raw["rules"])})
    sweeps: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for key, runs in stored["sweeps"].items():
        rule, _, seed = key.rpartition("/seed")
        sweeps[rule, int(seed)] = runs
    results = analyse(settings, sweeps)
    _print(settings, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
