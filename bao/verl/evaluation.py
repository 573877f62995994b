"""Evaluation of a verl run: Pass@U-k, score and user involvement from its validation rollouts.

verl writes each validation pass to ``trainer.validation_data_dir/<step>.jsonl``, one line per
episode, with the ``reward_extra_info`` the ``bao_agent`` loop attached. That includes each
episode's whole trajectory as JSON, so the metrics here are computed exactly as the simulator
computes them (``bao.metrics.summarize``), not from verl's averaged per-sample numbers.
"""

from __future__ import annotations

from pathlib import Path

from bao.dumps import json_lines, step_files, step_of
from bao.envs.user_simulator import CallStats
from bao.errors import BaoError, TaskDataError
from bao.trajectory import Trajectory
from bao.verl.data import METRIC_PREFIX, TRAJECTORY_KEY

# What an evaluation sums of its episodes' user costs: everything but their wall time
# (episodes overlap, so their seconds do not add up to anything).
USER_COST_KEYS = tuple(key for key in CallStats().as_dict() if key != "user_seconds")


class EvaluationMissingError(BaoError):
    """A run that left no usable validation rollouts."""


def last_validation_dump(folder: Path) -> tuple[int, Path]:
    """The step and path of the newest ``<step>.jsonl`` in ``folder``."""
    dumps = [(step, path) for path in step_files(folder) if (step := step_of(path)) is not None]
    if not dumps:
        raise EvaluationMissingError(
            f"the verl run wrote no validation rollouts to {folder}",
            fix="keep schedule.test_freq >= 1 (the last step is then always validated)",
        )
    return max(dumps)


def read_validation_dump(path: Path) -> tuple[list[Trajectory], dict[str, float]]:
    """The episodes of one validation dump, in the order verl wrote them, and what their
    simulated user and judge cost: the sums of the episodes' ``bao_user_*`` values (empty
    for Function-Gym, which has no simulated user). The file is read by :mod:`bao.dumps`."""
    trajectories: list[Trajectory] = []
    costs = dict.fromkeys(USER_COST_KEYS, 0.0)
    priced = False
    try:
        for number, record in json_lines(path):
            try:
                trajectories.append(Trajectory.from_json(record[TRAJECTORY_KEY]))
            except (ValueError, KeyError, TypeError) as error:
                raise EvaluationMissingError(
                    f"{path}: line {number} has no readable {TRAJECTORY_KEY} ({error})",
                    fix="validate with the bao_agent agent loop (the default of the verl backend)",
                ) from None
            for key in USER_COST_KEYS:
                value = record.get(f"{METRIC_PREFIX}{key}")
                if isinstance(value, int | float):
                    costs[key] += float(value)
                    priced = True
    except TaskDataError as error:
        raise EvaluationMissingError(error.what, value=error.value, fix=error.fix) from None
    if not trajectories:
        raise EvaluationMissingError(f"{path} holds no episodes", fix="check data.val_files")
    return trajectories, costs if priced else {}
