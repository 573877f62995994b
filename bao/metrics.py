"""Evaluation metrics over trajectories (docs/concepts.md, "Metrics").

Rates are over trajectories: with one trajectory per task (the default evaluation) that is
the share of tasks. Keys returned by :func:`summarize` are the metric names of sweep
objectives without their ``eval/`` prefix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final

from bao.trajectory import Trajectory

DEFAULT_K_MAX: Final = 9
# Two-sided 95% normal quantile, for Wilson score intervals.
Z_95: Final = 1.959963984540054
# Turns whose action could not be carried out as written: no known prefix, or content the
# environment could not read. Counted by ``invalid_rate``.
MALFORMED_EVENTS: Final = frozenset(
    {
        "invalid_action",
        "query_empty",
        "query_wrong_arity",
        "answer_unparsable",
        "search_bad_query",
        "question_empty",
        "answer_empty",
    }
)
# Turns of the LLM-user gyms that the simulated user or the judge could not answer (an
# outage, or malformed replies after every retry): counted by ``user_error_rate``.
USER_ERROR_EVENTS: Final = frozenset({"user_unavailable", "answer_unjudged"})

MEAN_METRICS: Final = (
    "score",
    "user_involvement_rate",
    "exploration_ratio",
    "mean_turns",
    "invalid_rate",
    "mean_user_actions",
    "no_answer_rate",
    "user_error_rate",
)
"""Metrics that are means of :func:`trajectory_values` over trajectories, besides Pass@U-k."""

SHARE_METRICS: Final = frozenset(
    {"score", "user_involvement_rate", "invalid_rate", "no_answer_rate", "user_error_rate"}
)
"""Metrics that are shares of trajectories or of turns, so bounded by 0 and 1, besides
Pass@U-k and its Wilson bounds (``score`` is a share too: every UserRL gym pays at most 1
per episode)."""
_PASS_AT_U: Final = re.compile(r"^pass_at_u_\d+(_lo|_hi)?$")


def natural_bounds(metric: str) -> tuple[float, float] | None:
    """``(low, high)`` when the metric's definition bounds it (with or without its ``eval/``
    prefix), else ``None``: the one place that says which metrics are bounded shares."""
    name = metric.removeprefix("eval/")
    return (0.0, 1.0) if name in SHARE_METRICS or _PASS_AT_U.match(name) else None


def _check(trajectories: Sequence[Trajectory], k_max: int) -> None:
    if not trajectories:
        raise ValueError("no trajectories to evaluate; run at least one episode")
    if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
        raise ValueError(f"k_max must be a positive integer, got {k_max!r}")


def pass_at_u(trajectories: Sequence[Trajectory], k_max: int = DEFAULT_K_MAX) -> list[float]:
    """Pass@U-k for k = 1..k_max: the share solved within the first k ``answer`` calls.

    Non-decreasing in k by construction; its last value is the share of trajectories whose
    first correct answer came within ``k_max`` answers.
    """
    _check(trajectories, k_max)
    needed = [trajectory.answers_to_solve for trajectory in trajectories]
    n = len(trajectories)
    return [sum(1 for m in needed if m is not None and m <= k) / n for k in range(1, k_max + 1)]


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default)."""
    if n <= 0:
        raise ValueError(f"need at least one trial for an interval, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..{n}, got {successes}")
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Clamp round-off so that 0 and 1 stay inside their own intervals.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def metric_names(k_max: int = DEFAULT_K_MAX) -> list[str]:
    """The keys :func:`summarize` returns, in its order: what a sweep may use as objectives."""
    names: list[str] = []
    for k in range(1, k_max + 1):
        names += [f"pass_at_u_{k}", f"pass_at_u_{k}_lo", f"pass_at_u_{k}_hi"]
    return [*names, *MEAN_METRICS, "n_trajectories"]


def trajectory_values(trajectory: Trajectory, k_max: int = DEFAULT_K_MAX) -> dict[str, float]:
    """One trajectory's contribution to each mean metric of :func:`summarize`.

    Every metric of section 7 except ``n_trajectories`` and the intervals is the mean of
    these values over trajectories; analysis resamples them task by task (a paired bootstrap
    across trials evaluated on the same tasks).
    """
    turns = trajectory.turns
    answers = trajectory.n_answers
    needed = trajectory.answers_to_solve
    values = {
        f"pass_at_u_{k}": float(needed is not None and needed <= k) for k in range(1, k_max + 1)
    }
    explore = sum(turn.choice in ("action", "search") for turn in turns)
    malformed = sum(turn.choice == "invalid" or turn.event in MALFORMED_EVENTS for turn in turns)
    values["score"] = math.fsum(trajectory.rewards)
    values["user_involvement_rate"] = answers / len(turns) if turns else 0.0
    values["exploration_ratio"] = explore / max(1, answers)
    values["mean_turns"] = float(len(turns))
    values["invalid_rate"] = malformed / len(turns) if turns else 0.0
    values["mean_user_actions"] = float(answers)
    values["no_answer_rate"] = float(answers == 0)
    user_errors = sum(turn.event in USER_ERROR_EVENTS for turn in turns)
    values["user_error_rate"] = user_errors / len(turns) if turns else 0.0
    return values


def summarize(trajectories: Sequence[Trajectory], k_max: int = DEFAULT_K_MAX) -> dict[str, float]:
    """All evaluation metrics of section 7, without the ``eval/`` prefix.

    Keys: ``pass_at_u_{k}`` with ``pass_at_u_{k}_lo``/``_hi`` (Wilson 95%) for k = 1..k_max;
    ``score`` (mean sum of raw rewards); ``user_involvement_rate`` (mean share of turns that
    are answers); ``exploration_ratio`` (mean (#action + #search) / max(1, #answer));
    ``mean_turns``; ``invalid_rate`` (mean share of malformed turns); ``mean_user_actions``
    (mean #answers); ``no_answer_rate`` (share of trajectories that never answer: a
    collapsed policy shows here); ``user_error_rate`` (mean share of turns the simulated
    user or judge of an LLM-user gym could not answer; 0 on Function-Gym); ``n_trajectories``.
    """
    _check(trajectories, k_max)
    n = len(trajectories)
    per_trajectory = [trajectory_values(t, k_max) for t in trajectories]

    def mean(key: str) -> float:
        return math.fsum(values[key] for values in per_trajectory) / n

    metrics: dict[str, float] = {}
    for k in range(1, k_max + 1):
        rate = mean(f"pass_at_u_{k}")
        low, high = wilson_interval(round(rate * n), n)
        metrics[f"pass_at_u_{k}"] = rate
        metrics[f"pass_at_u_{k}_lo"] = low
        metrics[f"pass_at_u_{k}_hi"] = high
    for key in MEAN_METRICS:
        metrics[key] = mean(key)
    metrics["n_trajectories"] = float(n)
    return metrics
