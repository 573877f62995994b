"""A sweep as tables: its Optuna storage and its MLflow runs joined into pandas frames.

:func:`load_sweep` returns a :class:`SweepData` with

* ``trials``: one row per Optuna trial (every attempt, every state): ``number``, ``state``,
  ``attempt``, ``retry_of``, ``failure_reason``, times, ``params.<path>`` per searched
  parameter, one column per metric (the objectives as the driver recorded them, every other
  metric of the trial's MLflow run: ``eval/...``, ``train/seconds``, ``..._stderr``),
  ``n_seeds``, ``feasible`` and ``mlflow_run_id``;
* ``seeds``: one row per training seed of each complete trial: ``number``,
  ``seed``, ``run_id`` and the same metric columns, the input of seed-level bootstraps.

The MLflow part is the slow part (one query per few thousand runs), so it is cached on disk
under ``sweeps/<name>/.analysis/`` keyed by a signature of the trials' states and values, and
in memory per process: the CLI and the dashboard reload only when the sweep has changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from analysis.pareto import AnalysisError, ReferencePoint, reference_point
from bao import records
from sweep.cost import trial_cost

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from optuna.trial import FrozenTrial

    from sweep.config import LoadedSweep

log = logging.getLogger(__name__)

MAX_TRIALS: Final = 2000
"""Above this many trials the trajectories are not read (minutes of I/O) nor paired; intervals
then use the per-trial model of :mod:`analysis.uncertainty`."""
COST_COLUMN_PREFIX: Final = "cost."
"""The trials frame's cost columns: ``cost.<key>`` for each of :data:`bao.records.COST_KEYS`
(NaN for a trial without a recorded cost: sweep.cost)."""
CACHE_FOLDER: Final = records.ANALYSIS_CACHE
CACHE_VERSION: Final = 1
"""Bumped whenever the cached frames' layout changes, so old caches are ignored."""
_MEMORY: dict[tuple[str, str], SweepData] = {}


@dataclass
class SweepData:
    """One sweep's trials and seeds, with its config; what every analysis function reads."""

    loaded: LoadedSweep
    trials: pd.DataFrame
    seeds: pd.DataFrame
    storage_url: str
    tracking_uri: str
    signature: str
    parent_run_id: str | None = None
    workspace: Path | None = None
    """Where it was loaded from (``None`` for sweeps built in memory)."""
    written_at: Path | None = None
    """The workspace folder the sweep was written in, when its records tell (a moved
    workspace's local artifacts are found relative to it)."""
    target_trials: int | None = None
    """The ``n_trials`` the sweep was last run to (``--n-trials`` included), from its study."""
    task_table: pd.DataFrame | None = field(default=None, repr=False)
    """Per-task outcomes of the trials (:func:`read_task_table`), read with the sweep."""
    _reference: ReferencePoint | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.loaded.config.name

    @property
    def metrics(self) -> list[str]:
        """The objective metrics, in the config's order."""
        return [objective.metric for objective in self.loaded.config.objectives]

    @property
    def directions(self) -> list[str]:
        return [objective.direction for objective in self.loaded.config.objectives]

    @property
    def complete(self) -> pd.DataFrame:
        """Complete trials with every objective finite: the ones fronts are made of."""
        frame = self.trials[self.trials["state"] == "COMPLETE"]
        finite = np.isfinite(frame[self.metrics].to_numpy(dtype=float)).all(axis=1)
        return frame[finite]

    def values(self, frame: pd.DataFrame | None = None) -> np.ndarray:
        """Objective values of ``frame`` (default: :attr:`complete`) as an (n, m) array."""
        chosen = self.complete if frame is None else frame
        return np.asarray(chosen[self.metrics].to_numpy(dtype=float), dtype=float)

    @property
    def reference(self) -> ReferencePoint:
        """The sweep's hypervolume reference point (thresholds, bounds, else nadir)."""
        if self._reference is None:
            thresholds = [o.threshold for o in self.loaded.config.objectives]
            complete = self.complete
            feasible = complete[complete["feasible"].astype(bool)]
            self._reference = reference_point(
                self.metrics, self.directions, thresholds, self.values(feasible)
            )
        return self._reference

    def k_values(self) -> list[int]:
        """The k of every ``eval/pass_at_u_k`` column, ascending."""
        found = []
        for column in self.trials.columns:
            name = str(column)
            if name.startswith("eval/pass_at_u_") and name[15:].isdigit():
                found.append(int(name[15:]))
        return sorted(found)


def load_sweep(
    workspace: Path, name: str, *, use_cache: bool = True, outcomes: bool = True
) -> SweepData:
    """The sweep called ``name`` in ``workspace``, from its storage and MLflow runs, with its
    per-task outcomes (``outcomes``: :func:`read_task_table`)."""
    from bao.tracking import tracking_uri
    from sweep.records import open_sweep

    opened = open_sweep(workspace, name)
    loaded, study = opened.loaded, opened.study
    frozen = study.trials()
    uri = loaded.config.tracking_uri or tracking_uri(workspace)
    signature = _signature(frozen, uri, loaded)
    key = (str(workspace), name)
    cached = _MEMORY.get(key)
    if use_cache and cached is not None and cached.signature == signature:
        if outcomes and cached.task_table is None:
            cached.task_table = read_task_table(cached)
        return cached
    base = _trial_frame(loaded, frozen)
    runs = _read_cache(workspace, name, signature) if use_cache else None
    if runs is None:
        runs = _read_mlflow(workspace, uri, loaded.config.name)
        _write_cache(workspace, name, signature, runs)
    trials, seeds = _join(loaded, base, *runs)
    data = SweepData(
        loaded=loaded,
        trials=trials,
        seeds=seeds,
        storage_url=study.url,
        tracking_uri=uri,
        signature=signature,
        parent_run_id=study.study.user_attrs.get(records.STUDY_PARENT_RUN),
        workspace=workspace,
        written_at=opened.written_at,
        target_trials=_int(str(study.study.user_attrs.get(records.STUDY_N_TRIALS, ""))),
    )
    if outcomes:
        data.task_table = read_task_table(data)
    _MEMORY[key] = data
    return data


def _signature(frozen: Sequence[FrozenTrial], uri: str, loaded: LoadedSweep) -> str:
    """Changes whenever a trial changes state or values, or the config (a new threshold
    moves the reference point): the cache key."""
    config = json.dumps(loaded.config.model_dump(mode="json"), sort_keys=True)
    digest = hashlib.sha256(f"{CACHE_VERSION}|{uri}|{config}".encode())
    for trial in frozen:
        stamp = trial.datetime_complete.isoformat() if trial.datetime_complete else ""
        values = trial.values or []
        digest.update(f"|{trial.number}:{trial.state.name}:{stamp}:{values}".encode())
    return digest.hexdigest()[:20]


def _trial_frame(loaded: LoadedSweep, frozen: Sequence[FrozenTrial]) -> pd.DataFrame:
    import pandas as pd

    config = loaded.config
    rows: list[dict[str, Any]] = []
    for trial in frozen:
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name,
            "attempt": int(trial.user_attrs.get(records.ATTR_ATTEMPT, 1)),
            "retry_of": trial.user_attrs.get(records.ATTR_RETRY_OF),
            "failure_reason": trial.user_attrs.get(records.ATTR_REASON),
            "datetime_start": trial.datetime_start,
            "datetime_complete": trial.datetime_complete,
            "mlflow_run_id": trial.user_attrs.get(records.ATTR_RUN_ID),
            **_pruned_columns(trial.user_attrs.get(records.ATTR_PRUNED)),
        }
        for path in config.search_space:
            row[f"params.{path}"] = trial.params.get(path)
        values = trial.values or [math.nan] * len(config.objectives)
        for objective, value in zip(config.objectives, values, strict=True):
            row[objective.metric] = float(value)
        violations = trial.user_attrs.get(records.ATTR_VIOLATIONS)
        row["violation"] = (
            float(sum(max(0.0, v) for v in violations)) if violations is not None else math.nan
        )
        cost = trial_cost(trial.user_attrs) or {}
        for key in records.COST_KEYS:
            row[f"{COST_COLUMN_PREFIX}{key}"] = cost.get(key, math.nan)
        rows.append(row)
    columns = [
        "number", "state", "attempt", "retry_of", "failure_reason", "datetime_start",
        "datetime_complete", "mlflow_run_id", "pruned_rung", "pruned_rule",
        *(f"params.{path}" for path in config.search_space),
        *(objective.metric for objective in config.objectives),
        "violation",
        *(f"{COST_COLUMN_PREFIX}{key}" for key in records.COST_KEYS),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    # Fixed dtypes, so that a sweep with no trial, or none finished yet, still joins and sorts.
    frame["number"] = frame["number"].astype("int64")
    frame["mlflow_run_id"] = frame["mlflow_run_id"].astype(object)
    for column in ("datetime_start", "datetime_complete"):
        frame[column] = pd.to_datetime(frame[column])
    for objective in config.objectives:
        frame[objective.metric] = frame[objective.metric].astype(float)
    frame["violation"] = frame["violation"].astype(float)
    frame["duration_s"] = (frame["datetime_complete"] - frame["datetime_start"]).dt.total_seconds()
    return frame


RunTable = tuple["pd.DataFrame", "pd.DataFrame"]


def _read_mlflow(workspace: Path, uri: str, experiment: str) -> RunTable:
    """Trial runs and seed runs of the sweep's experiment: run id, tags and latest metrics."""
    import pandas as pd

    from bao.tracking import mlflow_client
    from sweep.records import role_filter

    client = mlflow_client(workspace, uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        log.warning("no MLflow experiment %r at %s: trials have no run metrics", experiment, uri)
        return _no_runs(), _no_runs()

    def table(role: str) -> pd.DataFrame:
        rows = []
        token = None
        while True:
            page = client.search_runs(
                [found.experiment_id],
                filter_string=role_filter(role),
                max_results=10_000,
                page_token=token,
            )
            for run in page:
                tags = run.data.tags
                rows.append(
                    {
                        "run_id": run.info.run_id,
                        "artifact_uri": run.info.artifact_uri,
                        "parent_run_id": tags.get(records.TAG_PARENT),
                        "seed": _int(tags.get(records.TAG_SEED)),
                        "eval_set_hash": tags.get(records.TAG_EVAL_SET_HASH),
                        "code_version": tags.get(records.TAG_CODE_VERSION),
                        "checkpoint_uri": tags.get(records.TAG_CHECKPOINT_URI),
                        **run.data.metrics,
                    }
                )
            token = page.token
            if not token:
                break
        return pd.DataFrame(rows) if rows else _no_runs()

    return table(records.ROLE_TRIAL), table(records.ROLE_SEED)


def _no_runs() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {name: pd.Series([], dtype=object) for name in ("run_id", "parent_run_id", "seed")}
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _join(
    loaded: LoadedSweep, base: pd.DataFrame, trial_runs: pd.DataFrame, seed_runs: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    import pandas as pd

    config = loaded.config
    objective_metrics = [o.metric for o in config.objectives]
    run_columns = [c for c in trial_runs.columns if c not in ("parent_run_id", "seed")]
    # The driver's values are authoritative for the objectives (they are what it was told);
    # MLflow supplies every other metric.
    extra = trial_runs[[c for c in run_columns if c not in objective_metrics]]
    trials = base.merge(extra, how="left", left_on="mlflow_run_id", right_on="run_id")
    trials = trials.drop(columns=["run_id"])

    # Seeds of complete trials (the others measured nothing to resample): nested runs where
    # a trial has several, else the trial's own run is its only seed.
    complete = trials[trials["state"] == "COMPLETE"]
    by_run = dict(zip(complete["mlflow_run_id"], complete["number"], strict=True))
    seed_frames = []
    if not seed_runs.empty:
        nested = seed_runs[seed_runs["parent_run_id"].isin(by_run)].copy()
        nested.insert(0, "number", nested["parent_run_id"].map(by_run))
        seed_frames.append(nested.drop(columns=["parent_run_id"]))
    with_nested = set(seed_frames[0]["number"]) if seed_frames else set()
    single = complete[~complete["number"].isin(with_nested) & complete["mlflow_run_id"].notna()]
    if not single.empty and not trial_runs.empty:
        own = trial_runs[trial_runs["run_id"].isin(single["mlflow_run_id"])].copy()
        own.insert(0, "number", own["run_id"].map(by_run))
        own["seed"] = config.seed
        seed_frames.append(own.drop(columns=["parent_run_id"]))
    seeds = (
        pd.concat(seed_frames, ignore_index=True)
        if seed_frames
        else pd.DataFrame(columns=["number", "seed", "run_id"])
    )
    seeds = seeds.sort_values(["number", "seed"], kind="stable").reset_index(drop=True)
    if not seeds.empty:
        # A seed run's tags are the provenance of a multi-seed trial (the trial run has none).
        provenance = seeds.groupby("number")[["eval_set_hash", "code_version"]].first()
        for column in ("eval_set_hash", "code_version"):
            if column not in trials:
                trials[column] = None
            trials[column] = trials[column].fillna(trials["number"].map(provenance[column]))
    counts = seeds.groupby("number").size() if not seeds.empty else pd.Series(dtype=int)
    trials["n_seeds"] = trials["number"].map(counts).fillna(0).astype(int)
    trials["feasible"] = _feasible(loaded, trials)
    return trials.reset_index(drop=True), seeds


def _feasible(loaded: LoadedSweep, trials: pd.DataFrame) -> pd.Series:
    """Constraints as the runner recorded them, else re-evaluated from the metric columns."""
    constraints = loaded.config.constraints
    if not constraints or trials.empty:
        return trials["number"].map(lambda _: True).astype(bool)

    def check(row: pd.Series) -> bool:
        if not math.isnan(row["violation"]):
            return bool(row["violation"] <= 0)
        for constraint in constraints:
            value = row.get(constraint.metric)
            if value is None or not math.isfinite(float(value)):
                return False
            if constraint.violation(float(value)) > 0:
                return False
        return True

    return trials.apply(check, axis=1).astype(bool)


# ------------------------------------------------------------------------------- caching


def _cache_paths(workspace: Path, name: str) -> tuple[Path, Path, Path]:
    from sweep.storage import sweep_dir

    folder = sweep_dir(workspace, name) / CACHE_FOLDER
    return folder / "trial_runs.parquet", folder / "seed_runs.parquet", folder / "signature.json"


def _read_cache(workspace: Path, name: str, signature: str) -> RunTable | None:
    import pandas as pd

    trial_path, seed_path, stamp = _cache_paths(workspace, name)
    try:
        if json.loads(stamp.read_text(encoding="utf-8")).get("signature") != signature:
            return None
        return pd.read_parquet(trial_path), pd.read_parquet(seed_path)
    except (OSError, ValueError) as error:
        log.debug("analysis cache of %s not used: %s", name, error)
        return None


def _write_cache(workspace: Path, name: str, signature: str, runs: RunTable) -> None:
    """Best effort: a read-only workspace still analyses, it just reloads every time."""
    from sweep.storage import write_atomically

    trial_path, seed_path, stamp = _cache_paths(workspace, name)
    try:
        trial_path.parent.mkdir(parents=True, exist_ok=True)
        for frame, path in zip(runs, (trial_path, seed_path), strict=True):
            temporary = path.with_name(f".{path.name}.tmp")
            _parquet_safe(frame).to_parquet(temporary, index=False)
            temporary.replace(path)
        write_atomically(stamp, json.dumps({"signature": signature, "version": CACHE_VERSION}))
    except OSError as error:
        log.warning("could not cache the analysis of %s: %s", name, error)


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns that are all None have no parquet type; store them as strings."""
    fixed = frame.copy()
    for column in fixed.columns:
        if fixed[column].dtype == object:
            fixed[column] = fixed[column].astype("string")
    return fixed


# ---------------------------------------------------------------------------- task outcomes


def read_task_table(data: SweepData) -> pd.DataFrame | None:
    """The per-task outcomes of the sweep's seed runs (one row per trial, seed run and task,
    the per-trajectory metric values), read from their ``trajectories.jsonl`` artifacts and
    cached on disk under the sweep's signature; ``None`` for a sweep held only in memory,
    without seed runs, or with more than :data:`MAX_TRIALS` complete trials (minutes of
    I/O: those are not paired)."""
    if data.workspace is None or data.seeds.empty or len(data.complete) > MAX_TRIALS:
        return None
    cache = _task_cache_path(data)
    table = _read_task_cache(cache, data.signature)
    if table is None:
        table = _read_trajectories(data)
        _write_task_cache(cache, data.signature, table)
    return table


def _read_trajectories(data: SweepData) -> pd.DataFrame:
    """One row per (trial, seed run, task) with the per-trajectory metric values."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from bao.metrics import trajectory_values
    from bao.tracking import mlflow_client
    from bao.trajectory import read_trajectories

    k_max = max(data.k_values(), default=9)
    assert data.workspace is not None
    client = mlflow_client(data.workspace, data.tracking_uri)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in data.seeds.itertuples(index=False):
            run_id = str(seed.run_id)
            in_place = _local_artifact(data, getattr(seed, "artifact_uri", None))
            if in_place is not None:
                if not in_place.is_file():
                    continue  # a backend that logs no trajectories: this trial is not paired
                trajectories = read_trajectories(in_place)
            else:
                try:
                    local = client.download_artifacts(run_id, records.ARTIFACT_TRAJECTORIES, folder)
                except (MlflowException, OSError):
                    continue
                trajectories = read_trajectories(local)
                Path(local).unlink()
            counts: dict[str, int] = {}
            for trajectory in trajectories:
                # Several trajectories per task (repeated evaluation) stay apart.
                repeat = counts.get(trajectory.task_id, 0)
                counts[trajectory.task_id] = repeat + 1
                task = trajectory.task_id if repeat == 0 else f"{trajectory.task_id}#{repeat}"
                values = trajectory_values(trajectory, k_max)
                rows.append(
                    {
                        "number": int(seed.number),
                        "run_id": run_id,
                        "task": task,
                        **{f"eval/{key}": value for key, value in values.items()},
                    }
                )
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["number", "run_id", "task"])


def _local_artifact(data: SweepData, artifact_uri: object) -> Path | None:
    """The trajectories file of a run whose artifacts are on this machine's disk (the
    workspace's default store), to be read in place: through the client, every run costs a
    tracking-store query, even when it has no such file (14 s for 1,000 trials; see
    docs/benchmarks.md). ``None`` for remote stores, which go through the client."""
    from sweep.records import local_artifact_dir

    folder = local_artifact_dir(artifact_uri, data.workspace, data.written_at)
    return None if folder is None else folder / records.ARTIFACT_TRAJECTORIES


def _task_cache_path(data: SweepData) -> Path | None:
    from sweep.storage import sweep_dir

    if data.workspace is None:
        return None
    return sweep_dir(data.workspace, data.name) / CACHE_FOLDER / "task_outcomes.parquet"


def _read_task_cache(path: Path | None, signature: str) -> pd.DataFrame | None:
    import pandas as pd

    if path is None or not path.is_file():
        return None
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError):
        return None
    stamp = path.with_suffix(".signature")
    if not stamp.is_file() or stamp.read_text(encoding="utf-8").strip() != signature:
        return None
    return table


def _write_task_cache(path: Path | None, signature: str, table: pd.DataFrame) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        table.to_parquet(temporary, index=False)
        temporary.replace(path)
        path.with_suffix(".signature").write_text(signature, encoding="utf-8")
    except OSError as error:
        log.warning("could not cache task outcomes in %s: %s", path.parent, error)


# ------------------------------------------------------------------------------ one run


def run_artifact_text(data: SweepData, run_id: str, path: str) -> str | None:
    """A text artifact of one of the sweep's runs, or ``None`` when it has none."""
    from mlflow.exceptions import MlflowException

    from bao.tracking import mlflow_client

    assert data.workspace is not None
    client = mlflow_client(data.workspace, data.tracking_uri)
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = client.download_artifacts(run_id, path, folder)
        except (MlflowException, OSError):
            return None
        return Path(local).read_text(encoding="utf-8")


def metric_histories(data: SweepData, run_ids: list[str], prefix: str) -> pd.DataFrame:
    """Long table ``run_id, metric, step, value`` of every ``prefix`` metric of the runs."""
    import pandas as pd

    from bao.tracking import mlflow_client

    assert data.workspace is not None
    client = mlflow_client(data.workspace, data.tracking_uri)
    frames = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        for key in sorted(k for k in run.data.metrics if k.startswith(prefix)):
            history = client.get_metric_history(run_id, key)
            frames.append(
                pd.DataFrame(
                    {
                        "run_id": run_id,
                        "metric": key,
                        "step": [m.step for m in history],
                        "value": [m.value for m in history],
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=["run_id", "metric", "step", "value"])
    return pd.concat(frames, ignore_index=True).sort_values(["metric", "run_id", "step"])


def study_of(data: SweepData) -> optuna.Study | None:
    """The sweep's Optuna study (read-only), for statistics that work on the study itself;
    ``None`` for a sweep held only in memory."""
    from sweep.records import open_sweep

    if data.workspace is None:
        return None
    return open_sweep(data.workspace, data.name).study.study


def require_trials(data: SweepData, states: Sequence[str] = ("COMPLETE",)) -> pd.DataFrame:
    """The trials in ``states``, or one line saying the sweep has none yet."""
    frame = data.complete if tuple(states) == ("COMPLETE",) else data.trials
    if frame.empty:
        raise AnalysisError(
            f"sweep {data.name!r} has no complete trial with finite objective values yet",
            fix=f"wait for trials to finish (bao-pareto status {data.name})",
        )
    return frame


def _pruned_columns(pruned: Any) -> dict[str, Any]:
    """A PRUNED trial's rung and rule (sweep/pruning.py); NaN and None for every other."""
    if not isinstance(pruned, dict):
        return {"pruned_rung": math.nan, "pruned_rule": None}
    rung = pruned.get("rung")
    return {
        "pruned_rung": float(rung) if isinstance(rung, int) else math.nan,
        "pruned_rule": pruned.get("rule"),
    }
