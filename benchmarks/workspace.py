"""A synthetic sweep workspace of N trials, for benchmarking the analysis and the dashboard.

    .venv/bin/python benchmarks/workspace.py DIR --trials 5000 [--seed 0] [--objectives 2|3]

:func:`build_workspace` leaves in ``DIR`` what ``bao-pareto sweep`` would leave after N
trials of a three-parameter BAO sweep on the simulator, without training anything:

* ``sweeps/<name>/sweep.yaml`` (:func:`sweep.storage.write_manifest`) and the sweep's SQLite
  Optuna study (:func:`sweep.storage.open_study`): one trial per attempt, with the parameters,
  the objective values and the runner's user attributes (MLflow run id, attempt, retry_of,
  failure reason, per-seed values); about 2% of attempts FAIL and are retried once with the
  same parameters, as the runner does with ``max_retries: 1``;
* the workspace's MLflow database: the sweep's parent run (``bao.role=sweep``, its id in
  the study attribute ``bao.records.STUDY_PARENT_RUN``) and one run per trial
  (``bao.role=trial``, child of the parent, ``bao.trial_number``, ``bao.eval_set_hash``,
  ``bao.code_version``, the parameters as ``trial.<path>``), with every metric of
  docs/concepts.md (``eval/pass_at_u_1..9`` with their Wilson bounds, ``eval/score``,
  ``eval/user_involvement_rate``, ..., ``eval/n_trajectories``, which the Beta draws of
  :mod:`analysis.uncertainty` take their sample size from) and
  ``train/seconds``. No trajectories artifact: the analysis falls back to Beta draws.

The metrics are *simulated evaluations*, not formulas: each trial gets a policy (share of
tasks its reasoner can solve, accuracy of each answer, exploration turns, guessing on tasks it
cannot solve, chance of collapsing to never answering) from its parameters plus seeded training
noise, and is then played out on 138 held-out tasks with the Function-Gym turn budget of 16;
every metric is the mean of per-trajectory values, so they agree with each other exactly as
:func:`bao.metrics.summarize`'s do (Pass@U-k non-decreasing in k, score >= Pass@U-9, ...).
Higher lambda means fewer answers and more exploration: lower user involvement, lower score
and Pass@U-9, more collapsed trials (the trade-off of docs/concepts.md); Pass@U-1 first rises
(fewer wild guesses), then falls as exploration eats the turn budget.

Writing goes straight into the two SQLite databases in one transaction each (``bulk=True``,
the default): the MLflow and Optuna clients commit several times per run and per trial, 35 to
130 ms a trial on two cores, minutes for thousands (5,000 trials: about 10 s in bulk). The
rows are those the clients write (the table layouts are read from the databases themselves);
``bulk=False`` writes through the public clients instead (``MlflowClient.log_batch``,
``Study.add_trials``), and the test suite checks that both give the same sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from bao.errors import BaoError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from sweep.config import LoadedSweep
    from sweep.storage import SweepStudy

DEFAULT_NAME: Final = "synthetic"
N_TASKS: Final = 138
"""Held-out tasks per evaluation."""
K_MAX: Final = 9
MAX_TURNS: Final = 16
FAIL_RATE: Final = 0.02
JOBS: Final = 2
"""Trials run at once: sets how the trials' start and end times overlap."""
EVAL_SET_HASH: Final = "synthetic-eval-138"
CODE_VERSION: Final = "0.1.0+gsynthetic"
STARTED: Final = datetime(2026, 11, 1, 9, 0, 0)
"""When the synthetic sweep starts (naive local time, as Optuna stores it)."""

SEARCH_SPACE: Final[dict[str, dict[str, Any]]] = {
    "shaping.user_lambda": {"type": "float", "low": 0.0, "high": 0.5},
    "shaping.info_seeking": {"type": "float", "low": 0.0, "high": 1.0},
    "shaping.over_thinking": {"type": "float", "low": 0.0, "high": 1.0},
}
OBJECTIVES: Final[list[dict[str, Any]]] = [
    {"metric": "eval/score", "direction": "maximize", "threshold": 0.0},
    {"metric": "eval/user_involvement_rate", "direction": "minimize", "threshold": 1.0},
    {"metric": "eval/mean_turns", "direction": "minimize", "threshold": float(MAX_TURNS)},
]
FAILURES: Final = (
    ("exit_code", "exit status 1: RuntimeError: simulator diverged (NaN in policy logits)"),
    ("timeout", "the run exceeded trial_timeout (600 s) and was stopped"),
    ("killed", "the run was killed by SIGKILL"),
    ("missing_metrics", "the run ended without logging eval/score"),
)
CHUNK: Final = 1000
"""Trials simulated at once (memory: about 15 arrays of CHUNK x N_TASKS numbers)."""


class WorkspaceExistsError(BaoError):
    """The workspace already holds a sweep of the requested name."""


@dataclass
class SyntheticTrial:
    """One attempt as the runner leaves it: ``metrics`` is empty for a failed attempt."""

    number: int
    state: str
    params: dict[str, float]
    metrics: dict[str, float]
    start: datetime
    complete: datetime
    attempt: int = 1
    retry_of: int | None = None
    reason: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


# ------------------------------------------------------------------------------ the config


def sweep_config(
    name: str = DEFAULT_NAME, n_objectives: int = 2, *, n_trials: int = 24, seed: int = 0
) -> LoadedSweep:
    """The synthetic sweep's config, built from :mod:`sweep.config`'s models."""
    from bao.metrics import metric_names
    from sweep.config import LoadedSweep, SweepConfig

    if n_objectives not in (2, 3):
        raise BaoError("a sweep has 2 or 3 objectives", value=n_objectives, fix="use 2 or 3")
    config = SweepConfig.model_validate(
        {
            "name": name,
            "seed": seed,
            "search_space": SEARCH_SPACE,
            "objectives": OBJECTIVES[:n_objectives],
            "driver": {"algorithm": "random", "n_trials": max(1, n_trials)},
            "seeds_per_trial": 1,
            "max_retries": 1,
            "jobs": JOBS,
        }
    )
    here = Path(__file__).resolve()
    return LoadedSweep(
        config=config,
        source=str(here),
        base_dir=str(here.parent),
        metric_names=[f"eval/{m}" for m in metric_names(K_MAX)] + ["train/seconds"],
    )


# ------------------------------------------------------------------------------- the trials


def synthetic_trials(n_trials: int, seed: int = 0) -> list[SyntheticTrial]:
    """``n_trials`` attempts in order: parameters drawn uniformly (a random sampler), about
    :data:`FAIL_RATE` of them failed, each failed first attempt retried by the next one."""
    if n_trials < 1:
        raise BaoError("a synthetic sweep needs at least one trial", value=n_trials)
    rng = np.random.default_rng(seed)
    lows = np.array([spec["low"] for spec in SEARCH_SPACE.values()])
    highs = np.array([spec["high"] for spec in SEARCH_SPACE.values()])
    fresh = lows + (highs - lows) * rng.random((n_trials, len(SEARCH_SPACE)))
    fails = rng.random(n_trials) < FAIL_RATE
    reasons = rng.integers(0, len(FAILURES), n_trials)

    params = np.empty_like(fresh)
    attempts = np.ones(n_trials, dtype=int)
    retry_of: list[int | None] = [None] * n_trials
    pending: int | None = None  # a failed first attempt, retried by the next trial
    for number in range(n_trials):
        if pending is not None:
            params[number] = params[pending]
            attempts[number] = 2
            retry_of[number] = pending
        else:
            params[number] = fresh[number]
        pending = number if fails[number] and attempts[number] == 1 else None

    metrics = _simulate(params, rng)
    seconds = metrics["train/seconds"]
    durations = np.where(fails, 0.0, seconds + 1.5)
    for index in np.flatnonzero(fails):
        code = FAILURES[int(reasons[index])][0]
        durations[index] = 600.0 if code == "timeout" else 0.2 * seconds[index] + 1.0
    # JOBS lanes: each trial starts when the earliest lane frees up.
    lanes = np.zeros(JOBS)
    trials = []
    paths = list(SEARCH_SPACE)
    for number in range(n_trials):
        lane = int(np.argmin(lanes))
        start = STARTED + timedelta(seconds=float(lanes[lane]))
        lanes[lane] += durations[number] + 0.05
        failed = bool(fails[number])
        code, detail = FAILURES[int(reasons[number])]
        trials.append(
            SyntheticTrial(
                number=number,
                state="FAIL" if failed else "COMPLETE",
                params={path: float(params[number, j]) for j, path in enumerate(paths)},
                metrics={} if failed else {k: float(v[number]) for k, v in metrics.items()},
                start=start,
                complete=start + timedelta(seconds=float(durations[number])),
                attempt=int(attempts[number]),
                retry_of=retry_of[number],
                reason=f"{code}: {detail}" if failed else None,
            )
        )
    return trials


def _simulate(params: NDArray[np.float64], rng: np.random.Generator) -> dict[str, NDArray[Any]]:
    """Every metric of every trial, from a simulated evaluation on :data:`N_TASKS` tasks."""
    parts = [_simulate_chunk(params[i : i + CHUNK], rng) for i in range(0, len(params), CHUNK)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _simulate_chunk(params: NDArray[np.float64], rng: np.random.Generator) -> dict[str, Any]:
    n, shape = len(params), (len(params), N_TASKS)
    t = params[:, 0] / SEARCH_SPACE["shaping.user_lambda"]["high"]  # lambda in [0, 1]
    alpha, beta = params[:, 1], params[:, 2]

    # The trained policy: what its parameters and its training seed (the noise) made of it.
    silent = np.clip(
        0.005 + 0.08 * t**3 + 0.02 * beta * t + np.abs(rng.normal(0, 0.005, n)), 0, 0.5
    )
    solvable = 0.90 - 0.20 * t - 0.03 * beta + 0.02 * alpha + rng.normal(0, 0.025, n)
    solvable = np.minimum(np.clip(solvable, 0.3, 0.97), 1.0 - silent)
    accuracy = 0.60 + 0.38 * (1 - np.exp(-5 * t)) + 0.04 * alpha + rng.normal(0, 0.03, n)
    accuracy = np.clip(accuracy, 0.3, 0.995)  # chance that an answer is right, when it can be
    explore = (3.0 + 8.0 * t + 2.0 * beta) * rng.lognormal(0.0, 0.1, n)
    guesses = 5.0 * (1 - t) ** 2 + 0.3  # answers on a task it cannot solve, before finishing
    invalid = 0.15 + 0.2 * rng.random(n)
    collapsed = rng.random(n) < 0.03 * t**2  # never answers (a collapsed agent)
    silent = np.where(collapsed, 1.0, silent)

    # One trajectory per task.
    kind = rng.random(shape)
    is_silent = kind < silent[:, None]
    is_solvable = ~is_silent & (kind < (silent + solvable)[:, None])
    is_guessing = ~is_silent & ~is_solvable
    explored = np.minimum(rng.poisson(explore[:, None], shape), MAX_TURNS)
    bad = np.minimum(rng.poisson(invalid[:, None], shape), MAX_TURNS - explored)
    budget = MAX_TURNS - explored - bad  # turns left for answers
    needed = rng.geometric(accuracy[:, None], shape)  # answers to the right one
    tries = 1 + rng.poisson(guesses[:, None], shape)

    solved = is_solvable & (needed <= budget)
    answers = np.where(solved, needed, budget)  # an unsolved solvable task runs out of turns
    turns = np.where(solved, explored + bad + needed, MAX_TURNS)
    gives_up = is_guessing & (tries < budget)  # guesses, then [finish]
    answers = np.where(is_guessing, np.minimum(tries, budget), answers)
    turns = np.where(is_guessing, np.where(gives_up, explored + bad + tries + 1, MAX_TURNS), turns)
    # A silent trajectory queries until truncated, or finishes after exploring.
    loops = rng.random(shape) < 0.7
    answers = np.where(is_silent, 0, answers)
    turns = np.where(is_silent, np.where(loops, MAX_TURNS, explored + bad + 1), turns)
    turns = np.minimum(turns, MAX_TURNS)
    explored = np.where(is_silent & loops, MAX_TURNS - bad, explored)

    metrics: dict[str, Any] = {}
    for k in range(1, K_MAX + 1):
        metrics[f"eval/pass_at_u_{k}"] = (solved & (needed <= k)).mean(axis=1)
    metrics["eval/score"] = solved.mean(axis=1)
    metrics["eval/user_involvement_rate"] = (answers / turns).mean(axis=1)
    metrics["eval/exploration_ratio"] = (explored / np.maximum(1, answers)).mean(axis=1)
    metrics["eval/mean_turns"] = turns.mean(axis=1)
    metrics["eval/invalid_rate"] = (bad / turns).mean(axis=1)
    metrics["eval/mean_user_actions"] = answers.mean(axis=1)
    metrics["eval/no_answer_rate"] = (answers == 0).mean(axis=1)
    metrics["eval/n_trajectories"] = np.full(n, float(N_TASKS))
    base = 6.0 + 0.25 * metrics["eval/mean_turns"] + 1.5 * beta
    metrics["train/seconds"] = base * rng.lognormal(0.0, 0.15, n)
    return metrics


def run_metrics(trial: SyntheticTrial) -> dict[str, float]:
    """What the trial's MLflow run holds: its metrics with the Wilson bounds of the pass
    rates, as :func:`bao.metrics.summarize` logs them."""
    from bao.metrics import wilson_interval

    logged = dict(trial.metrics)
    for k in range(1, K_MAX + 1):
        key = f"eval/pass_at_u_{k}"
        if key in logged:
            low, high = wilson_interval(round(logged[key] * N_TASKS), N_TASKS)
            logged[f"{key}_lo"], logged[f"{key}_hi"] = low, high
    return logged


def trial_tags(trial: SyntheticTrial, name: str, parent: str) -> dict[str, str]:
    """The trial run's tags: the runner's, then the training command's."""
    from bao import records
    from sweep.records import trial_run_tags

    attrs: dict[str, Any] = {records.ATTR_ATTEMPT: trial.attempt}
    if trial.retry_of is not None:
        attrs[records.ATTR_RETRY_OF] = trial.retry_of
    tags = {
        "mlflow.runName": f"{name}-trial-{trial.number:04d}",
        **trial_run_tags(name, parent, trial.number, attrs, "sim"),
        records.TAG_EVAL_SET_HASH: EVAL_SET_HASH,
        records.TAG_CODE_VERSION: CODE_VERSION,
    }
    if trial.reason is not None:
        tags[records.TAG_FAILURE_REASON] = trial.reason
    return tags


def user_attrs(trial: SyntheticTrial, objectives: Sequence[str]) -> dict[str, Any]:
    """The Optuna user attributes the runner sets on the trial."""
    from bao.records import (
        ATTR_ATTEMPT,
        ATTR_REASON,
        ATTR_RETRY_OF,
        ATTR_RUN_ID,
        ATTR_SEED_VALUES,
        ATTR_STDERR,
    )

    attrs: dict[str, Any] = {ATTR_RUN_ID: trial.run_id}
    if trial.retry_of is not None:
        attrs[ATTR_ATTEMPT] = trial.attempt
        attrs[ATTR_RETRY_OF] = trial.retry_of
    if trial.reason is not None:
        attrs[ATTR_REASON] = trial.reason
    else:
        attrs[ATTR_SEED_VALUES] = {m: [trial.metrics[m]] for m in objectives}
        attrs[ATTR_STDERR] = {m: 0.0 for m in objectives}
    return attrs


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# ---------------------------------------------------------------------------- the workspace


def build_workspace(
    workspace: Path,
    n_trials: int,
    *,
    seed: int = 0,
    n_objectives: int = 2,
    name: str = DEFAULT_NAME,
    bulk: bool = True,
) -> LoadedSweep:
    """Writes a synthetic sweep of ``n_trials`` attempts into ``workspace``; returns its
    config (``.config.name`` is what :func:`analysis.loader.load_sweep` takes).

    The same ``seed`` gives the same parameters, states and metrics (not the same run ids).
    Raises :class:`WorkspaceExistsError` when ``workspace`` already holds a sweep called ``name``.
    """
    import optuna

    from bao.records import MANIFEST_FILE, STUDY_N_TRIALS, STUDY_PARENT_RUN
    from bao.tracking import experiment_id, mlflow_client, tracking_uri
    from sweep.records import sweep_run_tags
    from sweep.storage import open_study, storage_url, sweep_dir, write_manifest

    workspace = Path(workspace)
    if (sweep_dir(workspace, name) / MANIFEST_FILE).exists():
        raise WorkspaceExistsError(
            f"workspace {str(workspace)!r} already holds a sweep named {name!r}",
            fix="pass an empty DIR or another --name",
        )
    trials = synthetic_trials(n_trials, seed)
    n_complete = sum(trial.state == "COMPLETE" for trial in trials)
    loaded = sweep_config(name, n_objectives, n_trials=n_complete, seed=seed)
    config = loaded.config

    workspace.mkdir(parents=True, exist_ok=True)
    client = mlflow_client(workspace, writing=True)
    if client.get_experiment_by_name(name) is not None:
        raise WorkspaceExistsError(
            f"workspace {str(workspace)!r} already has an MLflow experiment named {name!r}",
            fix="pass an empty DIR or another --name",
        )
    url = storage_url(loaded, workspace)
    write_manifest(loaded, workspace, url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(loaded, workspace, optuna.samplers.RandomSampler(seed=seed))
    experiment = experiment_id(client, name, workspace)
    parent = client.create_run(
        experiment,
        run_name=name,
        start_time=_millis(STARTED),
        tags=sweep_run_tags(name, url, config.fingerprint()),
    ).info.run_id
    study.study.set_user_attr(STUDY_PARENT_RUN, parent)
    study.study.set_user_attr(STUDY_N_TRIALS, config.driver.n_trials)

    objectives = [objective.metric for objective in config.objectives]
    uri = tracking_uri(workspace)
    if bulk and uri.startswith("sqlite:"):
        _insert_runs(uri, client, experiment, trials, name=name, parent=parent)
    else:
        _log_runs(client, experiment, trials, name=name, parent=parent)
    if bulk and url.startswith("sqlite:"):
        _insert_trials(url, study, trials, objectives)
    else:
        _add_trials(study, trials, objectives)
    end = max(trial.complete for trial in trials)
    client.set_terminated(parent, status="FINISHED", end_time=_millis(end))
    return loaded


def _distributions() -> dict[str, Any]:
    from optuna.distributions import FloatDistribution

    return {path: FloatDistribution(s["low"], s["high"]) for path, s in SEARCH_SPACE.items()}


def _log_runs(
    client: MlflowClient,
    experiment: str,
    trials: Sequence[SyntheticTrial],
    *,
    name: str,
    parent: str,
) -> None:
    """Through the public client: one run, one ``log_batch`` and one status per trial."""
    from mlflow.entities import Metric, Param

    for trial in trials:
        tags = trial_tags(trial, name, parent)
        run_name = tags.pop("mlflow.runName")
        run = client.create_run(
            experiment, start_time=_millis(trial.start), tags=tags, run_name=run_name
        )
        stamp = _millis(trial.complete)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, stamp, 0) for k, v in run_metrics(trial).items()],
            params=[Param(f"trial.{k}", str(v)) for k, v in trial.params.items()],
        )
        status = "FINISHED" if trial.state == "COMPLETE" else "FAILED"
        client.set_terminated(run.info.run_id, status=status, end_time=stamp)
        trial.run_id = run.info.run_id


def _insert_runs(
    uri: str,
    client: MlflowClient,
    experiment: str,
    trials: Sequence[SyntheticTrial],
    *,
    name: str,
    parent: str,
) -> None:
    """The rows ``_log_runs`` makes, inserted in one transaction."""
    import sqlalchemy as sa
    from mlflow.utils.uri import append_to_uri_path

    location = client.get_experiment(experiment).artifact_location
    runs, tags, params, metrics = [], [], [], []
    for trial in trials:
        run_id = trial.run_id
        stamp = _millis(trial.complete)
        runs.append(
            {
                "run_uuid": run_id,
                "name": f"{name}-trial-{trial.number:04d}",
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "user_id": "unknown",
                "status": "FINISHED" if trial.state == "COMPLETE" else "FAILED",
                "start_time": _millis(trial.start),
                "end_time": stamp,
                "deleted_time": None,
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": append_to_uri_path(location, run_id, "artifacts"),  # type: ignore[no-untyped-call]
                "experiment_id": int(experiment),
            }
        )
        tags += [
            {"key": k, "value": v, "run_uuid": run_id}
            for k, v in trial_tags(trial, name, parent).items()
        ]
        params += [
            {"key": f"trial.{k}", "value": str(v), "run_uuid": run_id}
            for k, v in trial.params.items()
        ]
        metrics += [
            {
                "key": k,
                "value": v,
                "timestamp": stamp,
                "step": 0,
                "is_nan": False,
                "run_uuid": run_id,
            }
            for k, v in run_metrics(trial).items()
        ]
    engine = sa.create_engine(uri)
    try:
        tables = sa.MetaData()
        tables.reflect(engine, only=["runs", "tags", "params", "metrics", "latest_metrics"])
        with engine.begin() as connection:
            connection.execute(tables.tables["runs"].insert(), runs)
            connection.execute(tables.tables["tags"].insert(), tags)
            connection.execute(tables.tables["params"].insert(), params)
            if metrics:
                connection.execute(tables.tables["metrics"].insert(), metrics)
                connection.execute(tables.tables["latest_metrics"].insert(), metrics)
    finally:
        engine.dispose()


def _add_trials(study: SweepStudy, trials: Sequence[SyntheticTrial], objectives: list[str]) -> None:
    """Through Optuna's API: ``Study.add_trials`` (one transaction per trial)."""
    from optuna.trial import FrozenTrial, TrialState

    distributions = _distributions()
    frozen = [
        FrozenTrial(
            number=trial.number,
            state=TrialState[trial.state],
            value=None,
            values=[trial.metrics[m] for m in objectives] if trial.metrics else None,
            datetime_start=trial.start,
            datetime_complete=trial.complete,
            params=trial.params,
            distributions=distributions,
            user_attrs=user_attrs(trial, objectives),
            system_attrs={},
            intermediate_values={},
            trial_id=trial.number,
        )
        for trial in trials
    ]
    study.study.add_trials(frozen)


def _insert_trials(
    url: str, study: SweepStudy, trials: Sequence[SyntheticTrial], objectives: list[str]
) -> None:
    """The rows ``_add_trials`` makes, inserted in one transaction."""
    import sqlalchemy as sa
    from optuna.distributions import distribution_to_json

    distributions = _distributions()
    encoded = {path: distribution_to_json(d) for path, d in distributions.items()}
    engine = sa.create_engine(url)
    try:
        tables = sa.MetaData()
        names = ["trials", "trial_params", "trial_values", "trial_user_attributes"]
        tables.reflect(engine, only=names)
        table = tables.tables
        with engine.begin() as connection:
            first = connection.execute(sa.select(sa.func.max(table["trials"].c.trial_id)))
            base = int(first.scalar() or 0) + 1
            taken = connection.execute(
                sa.select(sa.func.count()).where(table["trials"].c.study_id == study.study_id)
            ).scalar()
            if taken:
                raise BaoError(f"study {study.study.study_name!r} already has trials")
            rows, params, values, attrs = [], [], [], []
            for trial in trials:
                trial_id = base + trial.number
                rows.append(
                    {
                        "trial_id": trial_id,
                        "number": trial.number,
                        "study_id": study.study_id,
                        "state": trial.state,
                        "datetime_start": trial.start,
                        "datetime_complete": trial.complete,
                    }
                )
                params += [
                    {
                        "trial_id": trial_id,
                        "param_name": path,
                        "param_value": distributions[path].to_internal_repr(value),
                        "distribution_json": encoded[path],
                    }
                    for path, value in trial.params.items()
                ]
                if trial.metrics:
                    values += [
                        {
                            "trial_id": trial_id,
                            "objective": index,
                            "value": trial.metrics[metric],
                            "value_type": "FINITE",
                        }
                        for index, metric in enumerate(objectives)
                    ]
                attrs += [
                    {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                    for key, value in user_attrs(trial, objectives).items()
                ]
            for name, batch in zip(names, (rows, params, values, attrs), strict=True):
                if batch:
                    connection.execute(table[name].insert(), batch)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------- the CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path, metavar="DIR", help="the workspace to write")
    parser.add_argument("--trials", type=int, required=True, help="attempts, failed included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--objectives", type=int, choices=(2, 3), default=2)
    parser.add_argument("--name", default=DEFAULT_NAME, help="the sweep's name")
    parser.add_argument(
        "--via-client",
        action="store_true",
        help="write through the MLflow and Optuna clients (slow; for comparison)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        loaded = build_workspace(
            args.workspace,
            args.trials,
            seed=args.seed,
            n_objectives=args.objectives,
            name=args.name,
            bulk=not args.via_client,
        )
    except BaoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    name = loaded.config.name
    print(f"built sweep {name!r}: {args.trials} trials in {args.workspace} ({elapsed:.1f} s)")
    print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
