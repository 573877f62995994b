"""Per-task outcomes of each trial's evaluation: the input of the paired task bootstrap.

Every sim trial logs its evaluation trajectories (``trajectories.jsonl``), and trials of a
sweep are evaluated on the same held-out tasks. Resampling *tasks* jointly for all trials
keeps what the trials share: two agents that solve exactly the same tasks stay tied in every
draw, instead of being pulled apart by independent noise. :func:`load_task_outcomes` reads
the trajectories of the trials that have them into one matrix per metric
(trials x tasks, the per-trajectory values of :func:`bao.metrics.trajectory_values`), cached
on disk next to the loader's cache.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from bao.records import ARTIFACT_TRAJECTORIES

if TYPE_CHECKING:
    import pandas as pd

    from analysis.loader import SweepData

log = logging.getLogger(__name__)

TRAJECTORIES: Final = ARTIFACT_TRAJECTORIES
MAX_TRIALS: Final = 2000
"""Above this many trials the trajectories are not read (minutes of I/O); intervals then use
the per-trial model of :mod:`analysis.uncertainty`."""


@dataclass(frozen=True)
class TaskOutcomes:
    """``values[metric][i, t]``: trial ``numbers[i]``'s value on task ``tasks[t]`` (the mean
    over its seeds when it has several)."""

    numbers: NDArray[np.int64]
    tasks: tuple[str, ...]
    values: dict[str, NDArray[np.float64]]

    def row(self, number: int) -> int | None:
        found = np.flatnonzero(self.numbers == number)
        return int(found[0]) if found.size else None


def load_task_outcomes(data: SweepData, frame: pd.DataFrame) -> TaskOutcomes | None:
    """Outcomes of the trials in ``frame`` that logged trajectories on one common task set;
    ``None`` when fewer than two trials qualify (nothing to pair)."""
    import pandas as pd

    if len(frame) > MAX_TRIALS or data.seeds.empty or data.workspace is None:
        return None
    if data.task_table is None:  # a front and each budget's choice share one read
        cache = _cache_path(data)
        data.task_table = _read(cache, data.signature)
        if data.task_table is None:
            data.task_table = _read_trajectories(data)
            _write(cache, data.signature, data.task_table)
    table = data.task_table[data.task_table["number"].isin(frame["number"])]
    if table.empty:
        return None
    # One common task set: keep the tasks every remaining trial was evaluated on.
    per_trial = table.groupby("number")["task"].apply(frozenset)
    common = frozenset.intersection(*per_trial) if len(per_trial) else frozenset()
    if len(per_trial) < 2 or not common:
        return None
    if any(len(tasks) != len(common) for tasks in per_trial):
        log.info("trials were evaluated on different task sets; task bootstrap not used")
        return None
    metrics = [c for c in table.columns if c.startswith("eval/")]
    grouped = table.groupby(["number", "task"])[metrics].mean()  # seeds averaged per task
    numbers = np.array(sorted(per_trial.index), dtype=np.int64)
    tasks = tuple(sorted(common))
    index = pd.MultiIndex.from_product([numbers, tasks], names=["number", "task"])
    grouped = grouped.reindex(index)
    values = {
        metric: grouped[metric].to_numpy(dtype=float).reshape(len(numbers), len(tasks))
        for metric in metrics
    }
    return TaskOutcomes(numbers=numbers, tasks=tasks, values=values)


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
                    local = client.download_artifacts(run_id, TRAJECTORIES, folder)
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
    return None if folder is None else folder / TRAJECTORIES


def _cache_path(data: SweepData) -> Path | None:
    from analysis.loader import CACHE_FOLDER
    from sweep.storage import sweep_dir

    if data.workspace is None:
        return None
    return sweep_dir(data.workspace, data.name) / CACHE_FOLDER / "task_outcomes.parquet"


def _read(path: Path | None, signature: str) -> pd.DataFrame | None:
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


def _write(path: Path | None, signature: str, table: pd.DataFrame) -> None:
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
