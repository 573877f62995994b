"""Sweep efficiency on the simulator: how close each driver gets to the reference front.

    .venv/bin/python benchmarks/bench_sweep_efficiency.py [--quick] [--jobs 2]

The problem is the quickstart sweep (configs/quickstart.yaml): BAO's lambda, alpha and beta
over their default ranges, objectives ``eval/score`` (maximised) and
``eval/user_involvement_rate`` (minimised), hypervolume reference point at the objectives'
thresholds (score 0, involvement 1). Each trial is one simulator training run, in process
(the trainer itself; no MLflow, whose cost bench_overhead.py measures), shortened to
``--iterations`` GRPO iterations so that the ~1,100 runs fit in half an hour on two cores.

Every run trains with the same seed (``TRAINING_SEED``): the simulator is deterministic, so
the objectives are a fixed function of the parameters, and every driver is scored on that
same function. What varies between a driver's repetitions is its own seed (its proposals).

1. Reference front: a Latin hypercube of ``--dense`` configurations, each trained with the
   training seed and with a second seed. The reference front is the non-dominated set of
   every run made with the training seed (the dense design and all drivers' trials).
   The second seed measures how much of the front is training luck: the reference front's
   configurations re-trained with another seed, as a fraction of that seed's own front.
2. Drivers, each run to the largest budget with ``--repeats`` driver seeds; the hypervolume
   after 10, 20 and 40 trials is that of the first 10, 20 and 40 trials (what a sweep with
   that budget would have, as every driver here proposes one trial at a time):
   Optuna TPE (the project's default: multivariate, 8 random start-up trials), Optuna
   NSGA-II and GP, pymoo NSGA-II (population 8), random search, all through the project's
   own drivers (sweep.drivers) on an in-memory Optuna study; and the paper's way, a
   lambda-only grid of as many evenly spaced lambdas as the budget (alpha and beta at
   configs/sim.yaml's 0.1 and 0.02), which has no seed.
3. Reported: hypervolume as a fraction of the reference front's, mean and 95% t-interval
   over driver seeds, and the trials each run needed to reach 0.9 of it.

Results: results/bench_sweep_efficiency.json (every run's parameters and metrics included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import machine_line, print_table, write_results  # noqa: E402

SWEEP_CONFIG = HERE.parent / "configs" / "quickstart.yaml"
TRAINING_SEED = 0
NOISE_SEED = 1
THRESHOLD = 0.9
DRIVERS: dict[str, tuple[str, str]] = {
    "Optuna TPE (default)": ("optuna", "tpe"),
    "Optuna NSGA-II": ("optuna", "nsga2"),
    "Optuna GP": ("optuna", "gp"),
    "pymoo NSGA-II": ("pymoo", "nsga2"),
    "random search": ("optuna", "random"),
}
GRID = "lambda-only grid"
LAMBDA = "shaping.user_lambda"
TIGHT_INVOLVEMENT = 0.2


@dataclass(frozen=True)
class Settings:
    iterations: int
    budgets: tuple[int, ...]
    repeats: int
    dense: int
    noise_subset: int | None  # None: every dense configuration gets the second seed too


FULL = Settings(iterations=40, budgets=(10, 20, 40), repeats=3, dense=200, noise_subset=None)
QUICK = Settings(iterations=40, budgets=(10,), repeats=1, dense=24, noise_subset=8)


# ------------------------------------------------------------------------- one training


def _loaded(overrides: Sequence[str] = ()) -> Any:
    from sweep.loading import load_sweep_config

    return load_sweep_config(SWEEP_CONFIG, overrides)


def train_once(params: dict[str, Any], seed: int, iterations: int) -> dict[str, float]:
    """One simulator training of the quickstart problem; its evaluation metrics."""
    from bao.configuration import apply_overrides
    from bao.sim.config import SimConfig
    from bao.sim.trainer import train

    loaded = _loaded()
    raw = apply_overrides(
        loaded.train_config,
        [
            f"seed={seed}",
            f"trainer.iterations={iterations}",
            *(f"{path}={json.dumps(value)}" for path, value in params.items()),
        ],
    )
    started = time.perf_counter()
    result = train(SimConfig.model_validate(raw))
    metrics = {f"eval/{key}": float(value) for key, value in result.metrics.items()}
    return {**metrics, "seconds": time.perf_counter() - started}


def _record(params: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    keep = ("eval/score", "eval/user_involvement_rate", "eval/pass_at_u_1", "eval/no_answer_rate")
    return {"params": params, **{key: metrics[key] for key in keep}, "seconds": metrics["seconds"]}


def run_driver(
    library: str, algorithm: str, driver_seed: int, budget: int, iterations: int
) -> list[dict[str, Any]]:
    """A sweep of ``budget`` trials proposed by the project's driver, one at a time."""
    import optuna

    from sweep.drivers import make_driver
    from sweep.storage import SweepStudy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    loaded = _loaded(
        [
            f"driver.library={library}",
            f"driver.algorithm={algorithm}",
            f"driver.n_trials={budget}",
            f"driver.seed={driver_seed}",
        ]
    )
    config = loaded.config
    driver = make_driver(config)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        study_name=config.name,
        storage=storage,
        sampler=driver.sampler(),
        directions=[objective.direction for objective in config.objectives],
    )
    sweep_study = SweepStudy(study=study, storage=storage, url="in-memory")
    records: list[dict[str, Any]] = []
    while len(records) < budget:
        trial = driver.propose(sweep_study, budget - len(records), leader=True)
        if trial is None:
            raise RuntimeError(
                f"{library} {algorithm} proposed nothing after {len(records)} trials"
            )
        params = dict(trial.params)
        metrics = train_once(params, TRAINING_SEED, iterations)
        study.tell(trial, [metrics[objective.metric] for objective in config.objectives])
        records.append(_record(params, metrics))
    return records


def train_point(params: dict[str, Any], seed: int, iterations: int) -> dict[str, Any]:
    return _record(params, train_once(params, seed, iterations))


# ---------------------------------------------------------------------------- designs


def dense_design(size: int) -> list[dict[str, Any]]:
    """A Latin hypercube over the search space (seeded: the same design every time)."""
    from scipy.stats import qmc

    from sweep.space import decode

    space = _loaded().config.search_space
    unit = qmc.LatinHypercube(d=len(space), seed=2026).random(size)
    return [decode(space, row) for row in unit]


def grid_design(budget: int) -> list[dict[str, Any]]:
    """The lambda-only grid: ``budget`` evenly spaced lambdas over the sweep's range."""
    from sweep.space import grid_values

    spec = _loaded().config.search_space[LAMBDA]
    return [{LAMBDA: value} for value in grid_values(spec, budget)]


# --------------------------------------------------------------------------- analysis


def _objectives() -> tuple[list[str], list[str], list[float]]:
    config = _loaded().config
    metrics = [objective.metric for objective in config.objectives]
    directions = [objective.direction for objective in config.objectives]
    reference = [float(objective.threshold) for objective in config.objectives]  # type: ignore[arg-type]
    return metrics, directions, reference


def reference_points() -> dict[str, list[float]]:
    """The quickstart's thresholds (score 0, involvement 1), and a tighter involvement
    bound: every agent that answers at all asks the user on under 15% of its turns here, so
    at involvement 1 the burden differences between agents weigh little against the box."""
    _, _, thresholds = _objectives()
    return {
        f"score {thresholds[0]:g}, involvement {TIGHT_INVOLVEMENT:g}": [
            thresholds[0],
            TIGHT_INVOLVEMENT,
        ],
        f"score {thresholds[0]:g}, involvement {thresholds[1]:g} (quickstart)": thresholds,
    }


def hypervolume_of(records: Sequence[dict[str, Any]], reference: list[float]) -> float:
    from analysis.pareto import hypervolume

    metrics, directions, _ = _objectives()
    if not records:
        return 0.0
    values = np.array([[record[metric] for metric in metrics] for record in records], dtype=float)
    return hypervolume(values, directions, reference)


def front_of(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    from analysis.pareto import pareto_mask

    metrics, directions, _ = _objectives()
    values = np.array([[record[metric] for metric in metrics] for record in records], dtype=float)
    mask = pareto_mask(values, directions)
    unique: dict[tuple[float, ...], dict[str, Any]] = {}  # one configuration per point
    for record, keep in zip(records, mask, strict=True):
        if keep:
            unique.setdefault(tuple(record[metric] for metric in metrics), record)
    return sorted(unique.values(), key=lambda record: record[metrics[1]])


def interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean and 95% t-interval (None with a single value)."""
    from scipy import stats

    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.975, len(values) - 1) * stats.sem(values))
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def trials_to_reach(
    records: Sequence[dict[str, Any]], target: float, reference: list[float]
) -> int | None:
    from analysis.pareto import hypervolume_history

    metrics, directions, _ = _objectives()
    values = np.array([[record[metric] for metric in metrics] for record in records], dtype=float)
    history = hypervolume_history(values, directions, reference)
    reached = np.nonzero(history >= target)[0]
    return int(reached[0]) + 1 if len(reached) else None


# ------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="one repeat, budget 10, 24 dense points"
    )
    parser.add_argument("--jobs", type=int, default=2, help="training runs at once (one core each)")
    parser.add_argument("--iterations", type=int, help="GRPO iterations per run (default 40)")
    parser.add_argument("--budgets", type=int, nargs="+", help="trial budgets (default 10 20 40)")
    parser.add_argument("--repeats", type=int, help="driver seeds (default 3)")
    parser.add_argument("--dense", type=int, help="dense-design configurations (default 200)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--reanalyse", type=Path, metavar="JSON", help="print the tables of a results file again"
    )
    args = parser.parse_args(argv)
    if args.reanalyse:
        return reanalyse(args.reanalyse)
    base = QUICK if args.quick else FULL
    settings = Settings(
        iterations=args.iterations or base.iterations,
        budgets=tuple(args.budgets or base.budgets),
        repeats=args.repeats or base.repeats,
        dense=args.dense or base.dense,
        noise_subset=base.noise_subset if args.dense is None else None,
    )
    largest = max(settings.budgets)
    started = time.perf_counter()

    dense = dense_design(settings.dense)
    noise_points = dense if settings.noise_subset is None else dense[: settings.noise_subset]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        # Long sequential driver runs first, short independent trainings fill in around them.
        driver_runs: dict[tuple[str, int], Future[list[dict[str, Any]]]] = {
            (name, repeat): pool.submit(
                run_driver, library, algorithm, repeat, largest, settings.iterations
            )
            for repeat in range(settings.repeats)
            for name, (library, algorithm) in DRIVERS.items()
        }
        grid_runs = {
            budget: [
                pool.submit(train_point, p, TRAINING_SEED, settings.iterations)
                for p in grid_design(budget)
            ]
            for budget in settings.budgets
        }
        dense_runs = [
            pool.submit(train_point, p, TRAINING_SEED, settings.iterations) for p in dense
        ]
        noise_runs = [
            pool.submit(train_point, p, NOISE_SEED, settings.iterations) for p in noise_points
        ]
        drivers = {key: future.result() for key, future in driver_runs.items()}
        grids = {budget: [f.result() for f in futures] for budget, futures in grid_runs.items()}
        dense_records = [future.result() for future in dense_runs]
        noise_records = [future.result() for future in noise_runs]
        # The reference front's configurations that the dense design did not re-train.
        front = front_of(_all_runs(drivers, grids, dense_records))
        done = {_key(record) for record in noise_records}
        retrain = [
            pool.submit(train_point, record["params"], NOISE_SEED, settings.iterations)
            for record in front
            if _key(record) not in done
        ]
        retrained = [future.result() for future in retrain]

    results = analyse(
        settings,
        drivers,
        grids,
        dense_records=dense_records,
        noise_records=noise_records,
        retrained_records=retrained,
    )
    results["wall_s"] = time.perf_counter() - started
    path = write_results("bench_sweep_efficiency", results, quick=args.quick, results_dir=args.out)
    _print(settings, results)
    print(f"results: {path}")
    return 0


def analyse(
    settings: Settings,
    drivers: dict[tuple[str, int], list[dict[str, Any]]],
    grids: dict[int, list[dict[str, Any]]],
    *,
    dense_records: list[dict[str, Any]],
    noise_records: list[dict[str, Any]],
    retrained_records: list[dict[str, Any]],
) -> dict[str, Any]:
    """Fractions of the reference front's hypervolume at each reference point."""
    everything = _all_runs(drivers, grids, dense_records)
    reference_front = front_of(everything)
    second_seed = [*noise_records, *retrained_records]
    by_reference: dict[str, Any] = {}
    for label, point in reference_points().items():
        reference_hv = hypervolume_of(reference_front, point)
        if reference_hv <= 0:
            raise SystemExit("every run collapsed (hypervolume 0): raise --iterations")

        def fraction(records: Sequence[dict[str, Any]], point: list[float] = point) -> float:
            return hypervolume_of(records, point) / reference_hv  # noqa: B023

        table: dict[str, dict[str, Any]] = {}
        for name in DRIVERS:
            runs = [drivers[(name, repeat)] for repeat in range(settings.repeats)]
            table[name] = {
                str(b): _summary([fraction(run[:b]) for run in runs]) for b in settings.budgets
            }
            table[name]["trials_to_0.9"] = [
                trials_to_reach(run, THRESHOLD * reference_hv, point) for run in runs
            ]
        table[GRID] = {str(b): _summary([fraction(grids[b])]) for b in settings.budgets}
        table[GRID]["trials_to_0.9"] = [
            min((b for b in settings.budgets if fraction(grids[b]) >= THRESHOLD), default=None)
        ]
        # Training luck: the reference front's configurations re-trained with another seed,
        # against the front that seed's own dense design reaches.
        by_params = {_key(r): r for r in second_seed}
        retrained = [by_params[_key(r)] for r in reference_front if _key(r) in by_params]
        noise_front_hv = hypervolume_of(front_of(second_seed), point)
        by_reference[label] = {
            "point": point,
            "reference_hypervolume": reference_hv,
            "fractions": table,
            "dense_design_fraction": fraction(dense_records),
            "retrained_front": {
                "configurations": len(retrained),
                "fraction_of_that_seeds_front": hypervolume_of(retrained, point) / noise_front_hv
                if retrained and noise_front_hv
                else None,
            },
        }
    run_seconds = [r["seconds"] for r in [*everything, *second_seed]]
    metrics, directions, _ = _objectives()
    return {
        "settings": settings.__dict__,
        "problem": {
            "sweep_config": str(SWEEP_CONFIG.relative_to(HERE.parent)),
            "objectives": dict(zip(metrics, directions, strict=True)),
            "training_seed": TRAINING_SEED,
            "second_seed": NOISE_SEED,
        },
        "reference_front": reference_front,
        "by_reference_point": by_reference,
        "collapsed_share": {
            "training_seed": _collapsed_share(dense_records),
            "second_seed": _collapsed_share(noise_records),
        },
        "runs": len(run_seconds),
        "run_seconds_median": float(np.median(run_seconds)),
        "driver_runs": {f"{name}/seed{repeat}": runs for (name, repeat), runs in drivers.items()},
        "grid_runs": {str(b): g for b, g in grids.items()},
        "dense_runs": dense_records,
        "noise_runs": noise_records,
        "retrained_runs": retrained_records,
    }


def _all_runs(
    drivers: dict[tuple[str, int], list[dict[str, Any]]],
    grids: dict[int, list[dict[str, Any]]],
    dense_records: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every run made with the training seed."""
    return [
        *dense_records,
        *(r for runs in drivers.values() for r in runs),
        *(r for g in grids.values() for r in g),
    ]


def reanalyse(path: Path) -> int:
    """Recomputes every table from the runs stored in a results file (no training)."""
    saved = json.loads(path.read_text())
    settings = Settings(**{**saved["settings"], "budgets": tuple(saved["settings"]["budgets"])})
    drivers: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for key, runs in saved["driver_runs"].items():
        name, _, seed = key.rpartition("/seed")
        drivers[(name, int(seed))] = runs
    grids = {int(budget): runs for budget, runs in saved["grid_runs"].items()}
    results = analyse(
        settings,
        drivers,
        grids,
        dense_records=saved["dense_runs"],
        noise_records=saved["noise_runs"],
        retrained_records=saved.get("retrained_runs", []),
    )
    results["wall_s"] = saved["wall_s"]
    _print(settings, results)
    return 0


def _key(record: dict[str, Any]) -> str:
    return json.dumps(record["params"], sort_keys=True)


def _collapsed_share(records: Sequence[dict[str, Any]]) -> float:
    """Share of runs whose agent never answers (score 0, no user involvement)."""
    return float(np.mean([r["eval/no_answer_rate"] >= 0.99 for r in records]))


def _summary(fractions: list[float]) -> dict[str, Any]:
    mean, low, high = interval(fractions)
    return {"mean": mean, "low": low, "high": high, "runs": fractions}


def _cell(summary: dict[str, Any]) -> str:
    if summary["low"] is None:
        return f"{summary['mean']:.3f}"
    return f"{summary['mean']:.3f} [{summary['low']:.3f}, {summary['high']:.3f}]"


def _reached(counts: list[int | None]) -> str:
    hits = sorted(count for count in counts if count is not None)
    if not hits:
        return f"not within the budget (0/{len(counts)})"
    return f"median {int(np.median(hits))} ({len(hits)}/{len(counts)} runs)"


def _print(settings: Settings, results: dict[str, Any]) -> None:
    budgets = [str(b) for b in settings.budgets]
    for label, part in results["by_reference_point"].items():
        table = part["fractions"]
        print_table(
            f"Hypervolume / reference front's at {label}: mean [95% interval] over "
            f"{settings.repeats} driver seeds ({settings.iterations}-iteration sim trainings; "
            f"{machine_line()})",
            ["driver", *(f"{b} trials" for b in budgets), f"trials to {THRESHOLD}"],
            [
                (name, *(_cell(row[b]) for b in budgets), _reached(row["trials_to_0.9"]))
                for name, row in table.items()
            ]
            + [
                (
                    f"dense design ({settings.dense} configurations)",
                    *([f"{part['dense_design_fraction']:.3f}"] * len(budgets)),
                    "-",
                )
            ],
        )
    print_table(
        "Reference front (every run with the training seed)",
        ["lambda", "alpha", "beta", "score", "involvement", "Pass@U-1"],
        [
            (
                f"{r['params']['shaping.user_lambda']:.3f}",
                f"{r['params'].get('shaping.info_seeking', 0.1):.3f}",
                f"{r['params'].get('shaping.over_thinking', 0.02):.3f}",
                r["eval/score"],
                r["eval/user_involvement_rate"],
                r["eval/pass_at_u_1"],
            )
            for r in results["reference_front"]
        ],
    )
    collapsed = results["collapsed_share"]
    rows: list[tuple[str, Any]] = [
        (
            f"front configurations re-trained, hypervolume / that seed's front at {label}",
            part["retrained_front"]["fraction_of_that_seeds_front"],
        )
        for label, part in results["by_reference_point"].items()
    ]
    rows += [
        ("dense runs that never answer, training seed", collapsed["training_seed"]),
        ("dense runs that never answer, second seed", collapsed["second_seed"]),
        (
            "runs / median seconds per run",
            f"{results['runs']} / {results['run_seconds_median']:.1f}",
        ),
        ("wall time, s", results["wall_s"]),
    ]
    print_table("Training luck (a second training seed)", ["measure", "value"], rows)


if __name__ == "__main__":
    raise SystemExit(main())
