"""Sweep efficiency on the simulator: how close each driver gets to the reference front.

    .venv/bin/python benchmarks/bench_sweep_efficiency.py [--quick] [--jobs 2]
        [--drivers tpe botorch ...] [--seeds 5] [--trials 40] [--iterations 40] [--dense 200]
        [--reuse results/bench_sweep_efficiency.json]

The problem is the quickstart sweep (configs/quickstart.yaml): BAO's lambda, alpha and beta
over their default ranges, objectives ``eval/score`` (maximised) and
``eval/user_involvement_rate`` (minimised), the hypervolume's reference point at the
objectives' thresholds (what a deployment would accept: the config says why), and its
collapse constraint (``eval/no_answer_rate <= 0.9``). Each trial is one simulator training
run, in process (the trainer itself; no MLflow, whose cost bench_overhead.py measures),
shortened to ``--iterations`` GRPO iterations.

Every run trains with the same seed (``TRAINING_SEED``): the simulator is deterministic, so
the objectives are a fixed function of the parameters, and every driver is scored on that
same function. What varies between a driver's repetitions is its own seed (its proposals).

1. Reference front: a Latin hypercube of ``--dense`` configurations, each trained with the
   training seed and with a second seed. The reference front is the non-dominated set of
   every run made with the training seed (the dense design and all drivers' trials).
   The second seed measures how much of the front is training luck: the reference front's
   configurations re-trained with another seed, as a fraction of that seed's own front.
2. Drivers (``DRIVERS``; ``--drivers`` picks some), each run to ``--trials`` with
   ``--seeds`` driver seeds, one trial at a time through the project's own drivers
   (sweep.drivers) on an in-memory Optuna study, constraints recorded as the runner records
   them; the figures at 10, 20 and 40 trials are those of a run's first 10, 20 and 40
   trials. The lambda-only grid (the paper's way: as many evenly spaced lambdas as the
   budget, alpha and beta at configs/sim.yaml's 0.1 and 0.02) has no seed.
3. Reported, mean and 95% t-interval over driver seeds: hypervolume as a fraction of the
   reference front's; per-budget regret (for k = 1, 2, 3, 5, the best Pass@U-k of any run
   with the training seed minus the best the driver has found, averaged over k); and the
   trials each run needed to reach 0.9 and 0.95 of the reference hypervolume. Also the share
   of the reference hypervolume the best single agent holds (the reference point is only
   discriminating when it is well below 1).

Results: results/bench_sweep_efficiency.json (every run's parameters and metrics included).

``--reuse FILE`` takes the trainings of an earlier results file instead of training them
again: a training is a fixed function of its parameters, seed and iterations (the simulator
is deterministic), so a driver re-run with the same seed proposes the same points and gets
the same values, and only the new drivers' points are trained. The file must have been made
with the same ``--iterations`` and the same simulator sources (``SOURCES``, fingerprinted in
every results file); the reused runs keep the seconds they took when they were trained.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
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
TARGETS = (0.9, 0.95)
"""Fractions of the reference hypervolume whose trials-to-reach are reported."""
REGRET_KS = (1, 2, 3, 5)
"""Pass@U-k budgets of the regret column."""
STANDARD_BUDGETS = (10, 20, 40)


@dataclass(frozen=True)
class Candidate:
    label: str
    library: str
    algorithm: str
    constrained: bool = True
    """Told the sweep config's constraints (False: run with ``constraints: []``)."""


DRIVERS: dict[str, Candidate] = {
    "tpe": Candidate("Optuna TPE", "optuna", "tpe"),
    "optuna-nsga2": Candidate("Optuna NSGA-II", "optuna", "nsga2"),
    "gp": Candidate("Optuna GP, constraint not told", "optuna", "gp", constrained=False),
    "gp-constrained": Candidate("Optuna GP, collapse constraint", "optuna", "gp"),
    "botorch": Candidate("BoTorch qLogNEHVI", "optuna", "botorch"),
    "pymoo-nsga2": Candidate("pymoo NSGA-II", "pymoo", "nsga2"),
    "random": Candidate("random search", "optuna", "random"),
}
GRID = "lambda-grid"
GRID_LABEL = "lambda-only grid"
LAMBDA = "shaping.user_lambda"


@dataclass(frozen=True)
class Settings:
    iterations: int
    budgets: tuple[int, ...]
    seeds: int
    dense: int
    noise_subset: int | None  # None: every dense configuration gets the second seed too
    drivers: tuple[str, ...] = field(default=(*DRIVERS, GRID))


FULL = Settings(iterations=40, budgets=STANDARD_BUDGETS, seeds=5, dense=200, noise_subset=None)
QUICK = Settings(iterations=40, budgets=(10,), seeds=1, dense=24, noise_subset=8)


def budgets_up_to(trials: int) -> tuple[int, ...]:
    """The standard budgets below ``trials``, then ``trials`` itself."""
    return (*(b for b in STANDARD_BUDGETS if b < trials), trials)


# ------------------------------------------------------------------------- one training

SOURCES = (
    "bao",
    "configs/quickstart.yaml",
    "configs/sim.yaml",
    "sweep/config.py",
    "sweep/loading.py",
    "sweep/space.py",
)
"""What a training's metrics depend on: its results are reusable while these are unchanged."""

_reused: dict[str, dict[str, float]] = {}
"""Earlier trainings by (parameters, seed, iterations); set in each worker by --reuse."""


def sources_fingerprint() -> str:
    """A digest of ``SOURCES`` (every Python file under a folder, each named file) and this
    benchmark's own source (``train_once`` builds the training's overrides): path and
    content."""
    root = HERE.parent
    digest = hashlib.sha256()
    for entry in SOURCES:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def _training_key(params: dict[str, Any], seed: int, iterations: int) -> str:
    return json.dumps([params, seed, iterations], sort_keys=True)


def reusable_trainings(
    path: Path, iterations: int, fingerprint: str
) -> tuple[dict[str, dict[str, float]], bool]:
    """The trainings stored in an earlier results file, keyed as ``train_once`` looks them
    up, and whether they are verified (the file's sources fingerprint is ``fingerprint``;
    a file from before the fingerprint is taken on trust, with a warning).

    Refused (SystemExit, one line) when the file is not this benchmark's, was made with
    other iterations or with other simulator sources: its values would not be this run's."""
    try:
        saved = json.loads(path.read_text())
        stored = saved["settings"]["iterations"]
        by_seed = {
            TRAINING_SEED: [
                *(r for runs in saved["driver_runs"].values() for r in runs),
                *(r for runs in saved["grid_runs"].values() for r in runs),
                *saved["dense_runs"],
            ],
            NOISE_SEED: [*saved["noise_runs"], *saved.get("retrained_runs", [])],
        }
        trainings = {
            _training_key(record["params"], seed, iterations): {
                key: float(record[key]) for key in (*KEPT_METRICS, "seconds")
            }
            for seed, records in by_seed.items()
            for record in records
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SystemExit(
            f"--reuse {path}: not a results file of this benchmark "
            f"({type(error).__name__}: {error}); re-run without --reuse"
        ) from None
    if stored != iterations:
        raise SystemExit(
            f"--reuse {path}: trained with {stored} iterations, this run uses "
            f"{iterations}; pass --iterations {stored} or drop --reuse"
        )
    made_with = saved.get("sources_fingerprint")
    if made_with is None:
        print(
            f"--reuse {path}: the file has no sources fingerprint (made before it, or from "
            "unverified trainings); reusing it on trust that bao/ and the configs are as they "
            "were when it was made (the new results file gets no fingerprint either)",
            file=sys.stderr,
        )
        return trainings, False
    if made_with != fingerprint:
        raise SystemExit(
            f"--reuse {path}: made with other simulator sources ({', '.join(SOURCES)} changed "
            "since); re-run without --reuse"
        )
    return trainings, True


def _use_reused(trainings: dict[str, dict[str, float]]) -> None:
    """Pool initializer: the trainings every worker may take instead of training."""
    _reused.update(trainings)


def _loaded(overrides: Sequence[str] = ()) -> Any:
    from sweep.loading import load_sweep_config

    return load_sweep_config(SWEEP_CONFIG, overrides)


def in_memory_sweep(config: Any) -> tuple[Any, Any]:
    """The project's driver for ``config`` and an in-memory Optuna study it proposes into,
    as the runner would make them (``sweep.drivers.make_driver``, ``sweep.storage``)."""
    import optuna

    from sweep.drivers import make_driver
    from sweep.storage import SweepStudy

    driver = make_driver(config)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        study_name=config.name,
        storage=storage,
        sampler=driver.sampler(),
        directions=[objective.direction for objective in config.objectives],
    )
    return driver, SweepStudy(study=study, storage=storage, url="in-memory")


def train_once(params: dict[str, Any], seed: int, iterations: int) -> dict[str, float]:
    """One simulator training of the quickstart problem; its evaluation metrics."""
    reused = _reused.get(_training_key(params, seed, iterations))
    if reused is not None:
        return dict(reused)
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


KEPT_METRICS = (
    "eval/score",
    "eval/user_involvement_rate",
    "eval/no_answer_rate",
    *(f"eval/pass_at_u_{k}" for k in REGRET_KS),
)


def _record(params: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    kept = {key: metrics[key] for key in KEPT_METRICS}
    return {"params": params, **kept, "seconds": metrics["seconds"]}


def run_driver(name: str, driver_seed: int, budget: int, iterations: int) -> list[dict[str, Any]]:
    """A sweep of ``budget`` trials proposed by the project's driver, one at a time."""
    import optuna

    from sweep.drivers import record_constraints

    candidate = DRIVERS[name]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    overrides = [
        f"driver.library={candidate.library}",
        f"driver.algorithm={candidate.algorithm}",
        f"driver.n_trials={budget}",
        f"driver.seed={driver_seed}",
    ]
    if not candidate.constrained:
        overrides.append("constraints=[]")
    config = _loaded(overrides).config
    driver, sweep_study = in_memory_sweep(config)
    records: list[dict[str, Any]] = []
    while len(records) < budget:
        trial = driver.propose(sweep_study, budget - len(records), leader=True)
        if trial is None:
            raise RuntimeError(f"{name} proposed nothing after {len(records)} trials")
        params = dict(trial.params)
        metrics = train_once(params, TRAINING_SEED, iterations)
        record_constraints(trial, config, metrics)
        sweep_study.study.tell(
            trial, [metrics[objective.metric] for objective in config.objectives]
        )
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


def default_driver() -> str | None:
    """The id in ``DRIVERS`` of the quickstart's own driver (None if it is not one)."""
    driver = _loaded().config.driver
    for name, candidate in DRIVERS.items():
        if (candidate.library, candidate.algorithm) == (driver.library, driver.algorithm):
            return name
    return None


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


def interval(
    values: Sequence[float], bounds: tuple[float, float] | None = (0.0, 1.0)
) -> tuple[float, float | None, float | None]:
    """Mean and 95% t-interval (None with a single value), clipped to ``bounds``."""
    from scipy import stats

    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.975, len(values) - 1) * stats.sem(values))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return mean, low, high


def trials_to_reach(
    records: Sequence[dict[str, Any]], target: float, reference: list[float]
) -> int | None:
    from analysis.pareto import hypervolume_history

    metrics, directions, _ = _objectives()
    values = np.array([[record[metric] for metric in metrics] for record in records], dtype=float)
    history = hypervolume_history(values, directions, reference)
    reached = np.nonzero(history >= target)[0]
    return int(reached[0]) + 1 if len(reached) else None


def best_pass_at_u(records: Sequence[dict[str, Any]]) -> dict[int, float]:
    """The best Pass@U-k of ``records`` for each k of the regret column."""
    return {k: max((r[f"eval/pass_at_u_{k}"] for r in records), default=0.0) for k in REGRET_KS}


def regret(records: Sequence[dict[str, Any]], best: dict[int, float]) -> float:
    """Per-budget regret: the best Pass@U-k minus the best ``records`` found, mean over k."""
    found = best_pass_at_u(records)
    return float(np.mean([best[k] - found[k] for k in REGRET_KS]))


def reach_summary(counts: Sequence[int | None], budget: int) -> dict[str, Any]:
    """Mean and interval of trials-to-target; a run that never got there counts as
    ``budget + 1`` (a lower bound on what it needs), and ``reached`` says how many did."""
    filled = [float(count if count is not None else budget + 1) for count in counts]
    mean, low, high = interval(filled, bounds=(1.0, float(budget + 1)))
    reached = sum(count is not None for count in counts)
    return {"mean": mean, "low": low, "high": high, "reached": reached, "runs": list(counts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="one driver seed, 10 trials, 24 dense points"
    )
    parser.add_argument("--jobs", type=int, default=2, help="training runs at once (one core each)")
    parser.add_argument("--iterations", type=int, help="GRPO iterations per run (default 40)")
    parser.add_argument(
        "--trials", type=int, help="trials per driver run (default 40; also reported at 10, 20)"
    )
    parser.add_argument("--seeds", type=int, help="driver seeds (default 5)")
    parser.add_argument(
        "--drivers",
        nargs="+",
        choices=[*DRIVERS, GRID],
        help="which drivers to run (default: all)",
    )
    parser.add_argument("--dense", type=int, help="dense-design configurations (default 200)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--reuse",
        type=Path,
        metavar="JSON",
        help="take the trainings of an earlier results file (same iterations and sources)",
    )
    parser.add_argument(
        "--reanalyse", type=Path, metavar="JSON", help="print the tables of a results file again"
    )
    args = parser.parse_args(argv)
    if args.reanalyse:
        return reanalyse(args.reanalyse)
    base = QUICK if args.quick else FULL
    settings = Settings(
        iterations=args.iterations or base.iterations,
        budgets=budgets_up_to(args.trials) if args.trials else base.budgets,
        seeds=args.seeds or base.seeds,
        dense=args.dense or base.dense,
        noise_subset=base.noise_subset if args.dense is None else None,
        drivers=tuple(dict.fromkeys(args.drivers)) if args.drivers else base.drivers,
    )
    largest = max(settings.budgets)
    started = time.perf_counter()

    dense = dense_design(settings.dense)
    noise_points = dense if settings.noise_subset is None else dense[: settings.noise_subset]
    # Taken before training: sources edited while the benchmark runs are not what trained.
    fingerprint = sources_fingerprint()
    reused, verified = (
        reusable_trainings(args.reuse, settings.iterations, fingerprint)
        if args.reuse
        else ({}, True)
    )
    with ProcessPoolExecutor(
        max_workers=args.jobs, initializer=_use_reused, initargs=(reused,)
    ) as pool:
        # Long sequential driver runs first, short independent trainings fill in around them.
        driver_runs: dict[tuple[str, int], Future[list[dict[str, Any]]]] = {
            (name, seed): pool.submit(run_driver, name, seed, largest, settings.iterations)
            for seed in range(settings.seeds)
            for name in settings.drivers
            if name != GRID
        }
        grid_runs = {
            budget: [
                pool.submit(train_point, p, TRAINING_SEED, settings.iterations)
                for p in grid_design(budget)
            ]
            for budget in (settings.budgets if GRID in settings.drivers else ())
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
    # None when some values were taken on trust: a later --reuse of this file warns again.
    results["sources_fingerprint"] = fingerprint if verified else None
    results["reused_from"] = str(args.reuse) if args.reuse else None
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
    """Every table, at the quickstart's reference point (its objectives' thresholds)."""
    metrics, directions, point = _objectives()
    everything = _all_runs(drivers, grids, dense_records)
    reference_front = front_of(everything)
    reference_hv = hypervolume_of(reference_front, point)
    if reference_hv <= 0:
        raise SystemExit(
            "no run beats the reference point (hypervolume 0): raise --iterations or --dense"
        )
    best = best_pass_at_u(everything)
    largest = max(settings.budgets)

    def fraction(records: Sequence[dict[str, Any]]) -> float:
        return hypervolume_of(records, point) / reference_hv

    table: dict[str, dict[str, Any]] = {}
    for name in settings.drivers:
        if name == GRID:
            continue
        runs = [drivers[(name, seed)] for seed in range(settings.seeds)]
        table[name] = {
            "hypervolume": {
                str(b): _summary([fraction(r[:b]) for r in runs]) for b in settings.budgets
            },
            "regret": {
                str(b): _summary([regret(r[:b], best) for r in runs], bounds=None)
                for b in settings.budgets
            },
            "trials_to": {
                str(target): reach_summary(
                    [trials_to_reach(r, target * reference_hv, point) for r in runs], largest
                )
                for target in TARGETS
            },
        }
    if grids:
        table[GRID] = {
            "hypervolume": {str(b): _summary([fraction(grids[b])]) for b in settings.budgets},
            "regret": {
                str(b): _summary([regret(grids[b], best)], bounds=None) for b in settings.budgets
            },
            "trials_to": {
                str(target): {
                    "budget": min(
                        (b for b in settings.budgets if fraction(grids[b]) >= target), default=None
                    )
                }
                for target in TARGETS
            },
        }
    # The best single agent's share: how much of the front one answering agent holds alone.
    shares = [hypervolume_of([r], point) / reference_hv for r in reference_front]
    # Training luck: the reference front's configurations re-trained with another seed,
    # against the front that seed's own dense design reaches.
    second_seed = [*noise_records, *retrained_records]
    by_params = {_key(r): r for r in second_seed}
    retrained = [by_params[_key(r)] for r in reference_front if _key(r) in by_params]
    noise_front_hv = hypervolume_of(front_of(second_seed), point)
    run_seconds = [r["seconds"] for r in [*everything, *second_seed]]
    return {
        "settings": {**settings.__dict__, "drivers": list(settings.drivers)},
        "problem": {
            "sweep_config": str(SWEEP_CONFIG.relative_to(HERE.parent)),
            "objectives": dict(zip(metrics, directions, strict=True)),
            "reference_point": point,
            "default_driver": default_driver(),
            "training_seed": TRAINING_SEED,
            "second_seed": NOISE_SEED,
        },
        "reference_front": reference_front,
        "reference_hypervolume": reference_hv,
        "best_single_agent_share": max(shares, default=0.0),
        "best_pass_at_u": {str(k): v for k, v in best.items()},
        "drivers": table,
        "dense_design_fraction": fraction(dense_records),
        "retrained_front": {
            "configurations": len(retrained),
            "fraction_of_that_seeds_front": hypervolume_of(retrained, point) / noise_front_hv
            if retrained and noise_front_hv
            else None,
        },
        "collapsed_share": {
            "training_seed": _collapsed_share(dense_records),
            "second_seed": _collapsed_share(noise_records),
        },
        "seed_agreement": seed_agreement(dense_records, noise_records),
        "runs": len(run_seconds),
        "run_seconds_median": float(np.median(run_seconds)),
        "driver_runs": {f"{name}/seed{seed}": runs for (name, seed), runs in drivers.items()},
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
    stored = saved["settings"]
    if "drivers" not in stored:
        print(
            f"{path}: written by the benchmark before --drivers and the regret column; "
            "re-run the benchmark to get a file this version reads",
            file=sys.stderr,
        )
        return 2
    settings = Settings(
        **{
            **stored,
            "budgets": tuple(stored["budgets"]),
            "drivers": tuple(stored["drivers"]),
        }
    )
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


def _never_answers(record: dict[str, Any]) -> bool:
    return bool(record["eval/no_answer_rate"] >= 0.99)


def _collapsed_share(records: Sequence[dict[str, Any]]) -> float:
    """Share of runs whose agent never answers (score 0, no user involvement)."""
    return float(np.mean([_never_answers(r) for r in records]))


def seed_agreement(
    first: Sequence[dict[str, Any]], second: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """How much of a run's outcome its parameters decide: the configurations trained with
    both seeds, the correlation of each objective between the two seeds across them
    (1: the parameters decide it; 0: the seed does), and how often both seeds agree on
    whether the agent never answers, against the agreement their collapse rates give by
    chance (independent coin flips at those rates)."""
    by_params = {_key(r): r for r in second}
    pairs = [(r, by_params[_key(r)]) for r in first if _key(r) in by_params]
    if len(pairs) < 3:
        return {"configurations": len(pairs)}
    metrics, _, _ = _objectives()
    correlation = {}
    for metric in metrics:
        a = np.array([x[metric] for x, _ in pairs])
        b = np.array([y[metric] for _, y in pairs])
        both_vary = a.std() > 0 and b.std() > 0
        correlation[metric] = float(np.corrcoef(a, b)[0, 1]) if both_vary else None
    collapsed = np.array([[_never_answers(x), _never_answers(y)] for x, y in pairs])
    rates = collapsed.mean(axis=0)
    return {
        "configurations": len(pairs),
        "correlation": correlation,
        "collapse_agreement": float(np.mean(collapsed[:, 0] == collapsed[:, 1])),
        "collapse_agreement_by_chance": float(
            rates[0] * rates[1] + (1 - rates[0]) * (1 - rates[1])
        ),
    }


def _summary(
    values: list[float], bounds: tuple[float, float] | None = (0.0, 1.0)
) -> dict[str, Any]:
    mean, low, high = interval(values, bounds)
    return {"mean": mean, "low": low, "high": high, "runs": values}


def _cell(summary: dict[str, Any], digits: int = 3) -> str:
    if summary["low"] is None:
        return f"{summary['mean']:.{digits}f}"
    return (
        f"{summary['mean']:.{digits}f} [{summary['low']:.{digits}f}, {summary['high']:.{digits}f}]"
    )


def _reach_cell(summary: dict[str, Any]) -> str:
    if "budget" in summary:  # the grid: the smallest budget whose grid got there
        return "-" if summary["budget"] is None else str(summary["budget"])
    runs = len(summary["runs"])
    return f"{_cell(summary, 1)} ({summary['reached']}/{runs} reached)"


def _label(name: str, default: str | None) -> str:
    if name == GRID:
        return GRID_LABEL
    suffix = " (default)" if name == default else ""
    return f"{name}: {DRIVERS[name].label}{suffix}"  # rich would read "[name]" as markup


def _print(settings: Settings, results: dict[str, Any]) -> None:
    budgets = [str(b) for b in settings.budgets]
    point = results["problem"]["reference_point"]
    default = results["problem"]["default_driver"]
    where = (
        f"{settings.seeds} driver seeds, {settings.iterations}-iteration sim trainings, "
        f"reference point {point}; {machine_line()}"
    )
    rows = results["drivers"]
    print_table(
        f"Hypervolume / reference front's: mean [95% interval] ({where})",
        ["driver", *(f"{b} trials" for b in budgets)],
        [
            (_label(name, default), *(_cell(row["hypervolume"][b]) for b in budgets))
            for name, row in rows.items()
        ]
        + [
            (
                f"dense design ({settings.dense} configurations)",
                f"{results['dense_design_fraction']:.3f}",
            )
        ],
    )
    print_table(
        f"Per-budget regret (best Pass@U-k minus the best found, mean over k = "
        f"{', '.join(map(str, REGRET_KS))}): mean [95% interval]",
        ["driver", *(f"{b} trials" for b in budgets)],
        [
            (_label(name, default), *(_cell(row["regret"][b]) for b in budgets))
            for name, row in rows.items()
        ],
    )
    print_table(
        f"Trials to reach a share of the reference hypervolume: mean [95% interval]; a run "
        f"that never got there counts as {max(settings.budgets) + 1}",
        ["driver", *(f"to {target}" for target in TARGETS)],
        [
            (_label(name, default), *(_reach_cell(row["trials_to"][str(t)]) for t in TARGETS))
            for name, row in rows.items()
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
    print_table(
        "The reference point and training luck (a second training seed)",
        ["measure", "value"],
        [
            ("reference hypervolume", results["reference_hypervolume"]),
            ("best single agent's share of it", results["best_single_agent_share"]),
            (
                "best Pass@U-k, k = " + ", ".join(map(str, REGRET_KS)),
                ", ".join(f"{v:.3f}" for v in results["best_pass_at_u"].values()),
            ),
            (
                "front configurations re-trained, hypervolume / that seed's front",
                results["retrained_front"]["fraction_of_that_seeds_front"],
            ),
            ("dense runs that never answer, training seed", collapsed["training_seed"]),
            ("dense runs that never answer, second seed", collapsed["second_seed"]),
            *_agreement_rows(results.get("seed_agreement", {})),
            (
                "runs / median seconds per run",
                f"{results['runs']} / {results['run_seconds_median']:.1f}",
            ),
            ("wall time, s", results["wall_s"]),
        ],
    )


def _agreement_rows(agreement: dict[str, Any]) -> list[tuple[str, Any]]:
    if "correlation" not in agreement:
        return []
    rows: list[tuple[str, Any]] = [
        (
            f"{metric}, correlation between the seeds ({agreement['configurations']} configs)",
            "n/a" if value is None else value,
        )
        for metric, value in agreement["correlation"].items()
    ]
    rows.append(
        (
            "both seeds agree on never answering (by chance at their rates)",
            f"{agreement['collapse_agreement']:.3f} "
            f"({agreement['collapse_agreement_by_chance']:.3f})",
        )
    )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
