"""What a run, a trial and a sweep cost: an allocation held for a time.

A launcher reports each run's :class:`Usage` (nodes, CPUs and GPUs allocated, seconds held);
the runner sums a trial's runs into the trial's ``cost`` attribute and its MLflow metrics
(``cost/<key>``, the keys of :data:`bao.records.COST_KEYS`), and a sweep's trials, failed
attempts included, into the sweep's (:func:`sweep_cost`). GPU-hours and CPU-seconds are
allocation x time, what a cluster bills, not what the processes used. The simulated user's
calls and tokens are metrics the user-simulated gyms' runs log themselves
(:data:`USER_COST_METRICS`); the runner adds them to the trial's cost where a run logs them
(:func:`user_cost`), so trials and sweeps sum them like the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bao.envs.user_simulator import CallStats
from bao.records import ATTR_COST, COST_CPU_SECONDS, COST_GPU_HOURS, COST_KEYS, COST_WALL_S

USER_COST_METRICS: tuple[str, ...] = tuple(
    f"eval/{key}"
    for key in CallStats().as_dict()
    if key in ("user_calls", "user_prompt_tokens", "user_completion_tokens")
)
"""The simulated user's calls and tokens as a run's evaluation logs them (``bao.verl.run``)."""


@dataclass(frozen=True)
class Usage:
    """One run's allocation and how long it held it."""

    wall_s: float
    nodes: int = 1
    cpus: int = 1
    gpus: int = 0

    def as_cost(self) -> dict[str, float]:
        """The run's cost under the keys of :data:`bao.records.COST_KEYS`."""
        return {
            COST_WALL_S: self.wall_s,
            COST_GPU_HOURS: self.gpus * self.wall_s / 3600.0,
            COST_CPU_SECONDS: self.cpus * self.wall_s,
        }


def user_cost(metrics: Mapping[str, float]) -> dict[str, float]:
    """The simulated user's calls and tokens among a run's metrics, keyed without ``eval/``
    (none for the Function-Gym and the simulator, which have no simulated user)."""
    return {
        name.removeprefix("eval/"): float(metrics[name])
        for name in USER_COST_METRICS
        if name in metrics
    }


def total(costs: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The sums of ``costs`` key by key: every key of :data:`COST_KEYS` (0 when none), and
    the simulated user's where any cost has them."""
    summed = dict.fromkeys(COST_KEYS, 0.0)
    for cost in costs:
        for key, value in cost.items():
            summed[key] = summed.get(key, 0.0) + float(value)
    return summed


def trial_cost(user_attrs: Mapping[str, object]) -> dict[str, float] | None:
    """A trial's recorded cost, or None (a trial from before costs were recorded, or one
    still running)."""
    cost = user_attrs.get(ATTR_COST)
    if not isinstance(cost, Mapping):
        return None
    return total([{str(key): float(value) for key, value in cost.items()}])


def compute_seconds(user_attrs: Mapping[str, object]) -> float:
    """The training time a trial's runs held (``wall_s`` of its cost, every seed; 0 while
    none is recorded): what ``status --json`` reports as ``compute_seconds``, the measure
    of what a pruner saves (docs/sweeps.md, "Early stopping")."""
    cost = trial_cost(user_attrs)
    return 0.0 if cost is None else cost[COST_WALL_S]


def sweep_cost(trials: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """The cost of every attempt of a sweep, from the trials' user attributes."""
    return total(cost for attrs in trials if (cost := trial_cost(attrs)) is not None)


def summary_line(cost: Mapping[str, float]) -> str:
    """A cost in one line for people: wall time, GPU-hours, CPU-seconds, and the simulated
    user's calls and tokens where there are any."""
    parts = [
        f"{cost.get(COST_WALL_S, 0.0):.0f} s wall",
        f"{cost.get(COST_GPU_HOURS, 0.0):.2f} GPU-h",
        f"{cost.get(COST_CPU_SECONDS, 0.0):.0f} CPU-s",
    ]
    parts += [f"{cost[key]:.0f} {key}" for key in sorted(cost) if key not in COST_KEYS]
    return ", ".join(parts)
