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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import pandas as pd

    from analysis.loader import SweepData

log = logging.getLogger(__name__)


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


def task_outcomes(data: SweepData, frame: pd.DataFrame) -> TaskOutcomes | None:
    """Outcomes of the trials in ``frame`` that logged trajectories on one common task set,
    from the task table the reader loaded with the sweep (no I/O here); ``None`` when there
    is none, or fewer than two trials qualify (nothing to pair)."""
    import pandas as pd

    from analysis.loader import MAX_TRIALS

    if len(frame) > MAX_TRIALS or data.task_table is None:
        return None
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
