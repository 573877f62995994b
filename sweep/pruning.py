"""Early stopping of multi-objective trials on the evidence of their own evaluations.

A training run appends its intermediate evaluations to a progress file (one JSON line per
evaluation, :data:`bao.records.PROGRESS_FILE`; :func:`read_progress` is its one reader). At
each *rung* (a training step of :func:`rung_steps`) the sweep's pruner decides whether the
trial goes on (docs/sweeps.md, "Early stopping"):

- ``collapse``: stop a trial whose ``eval/no_answer_rate`` is at or above
  ``collapse_threshold`` at a rung (from ``collapse_from_rung`` on): a policy that has
  stopped answering is not coming back on the simulator's evidence (docs/sim.md);
- ``rungs`` (MO-ASHA-like successive halving): a trial goes on only if its objective point
  is in the top ``1 / reduction_factor`` of the points of every attempt that reached the
  rung, ordered by non-dominated rank (moocore), ties broken by crowding distance (pymoo);
- ``rungs+collapse``: both, collapse first.

Everything here but :func:`read_progress` is a pure function of numbers, tested without a
study or a process (tests/sweep/test_pruning.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PrunerKind = Literal["none", "rungs", "collapse", "rungs+collapse"]
"""The values of the sweep config's ``pruner.kind`` (sweep.config.PrunerConfig)."""
NO_ANSWER_METRIC = "eval/no_answer_rate"
"""The metric the collapse rule reads (the share of held-out tasks never answered)."""
CONTINUE = "continue"
PRUNE = "prune"
RULE_COLLAPSE = "collapse"
RULE_RUNGS = "rungs"
MAX_RUNGS = 32
"""Rungs listed at most when a run's length is not known (a command backend's)."""


@dataclass(frozen=True)
class Evaluation:
    """One intermediate evaluation of a run: its step and metrics."""

    step: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Decision:
    """What the pruner says at a rung: ``continue`` or ``prune``, and by which rule."""

    action: str
    rule: str | None = None

    @property
    def prune(self) -> bool:
        return self.action == PRUNE

    def __str__(self) -> str:
        """``continue`` or ``prune:<rule>``: how a decision is kept in the trial's ``rungs``."""
        return self.action if self.rule is None else f"{self.action}:{self.rule}"

    @classmethod
    def parse(cls, text: str) -> Decision:
        action, _, rule = text.partition(":")
        return cls(action, rule or None)


def rung_steps(min_step: int, reduction_factor: int, max_step: int | None) -> list[int]:
    """``min_step * reduction_factor ** k`` for k = 0, 1, ... below ``max_step`` (the run's
    last step, where it ends anyway: no decision there saves anything); without a
    ``max_step``, the first :data:`MAX_RUNGS`."""
    steps: list[int] = []
    step = min_step
    while (max_step is None or step < max_step) and len(steps) < MAX_RUNGS:
        steps.append(step)
        step *= reduction_factor
    return steps


def uses_rungs(kind: str) -> bool:
    return kind in ("rungs", "rungs+collapse")


def uses_collapse(kind: str) -> bool:
    return kind in ("collapse", "rungs+collapse")


def collapsed(no_answer_rate: float | None, threshold: float) -> bool:
    """Whether a run has collapsed to not answering (a missing rate is no evidence)."""
    return no_answer_rate is not None and no_answer_rate >= threshold


def _minimised(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[list[float]]:
    """Points with every objective minimised; a non-finite value is the worst there is."""
    out = []
    for point in points:
        row = []
        for value, direction in zip(point, directions, strict=True):
            v = -value if direction == "maximize" else value
            row.append(v if math.isfinite(v) else math.inf)
        out.append(row)
    return out


def rank_order(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of ``points``, best first: by non-dominated rank (moocore's ``pareto_rank``),
    then by crowding distance within the rank (pymoo's; the larger, the better: a point in
    a sparse part of the front keeps the front's spread), then by index."""
    import moocore
    import numpy as np
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance

    if not points:
        return []
    data = np.array(_minimised(points, directions), dtype=float)
    # moocore wants finite numbers: a non-finite objective is placed past the worst one.
    finite = np.isfinite(data)
    if not finite.all():
        worst = np.where(finite, data, -np.inf).max(axis=0)
        worst = np.where(np.isfinite(worst), worst, 0.0)
        data = np.where(finite, data, worst + 1.0 + np.abs(worst))
    ranks = np.asarray(moocore.pareto_rank(data), dtype=int)
    crowding = np.zeros(len(points))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowding[members] = calc_crowding_distance(data[members])
    return sorted(range(len(points)), key=lambda i: (int(ranks[i]), -float(crowding[i]), i))


def kept_at_rung(
    point: Sequence[float],
    others: Sequence[Sequence[float]],
    directions: Sequence[str],
    reduction_factor: int,
    min_trials: int,
) -> bool:
    """Whether ``point`` is in the top ``max(1, n // reduction_factor)`` of the ``n`` points
    at a rung (itself and ``others``, the points of the attempts that reached it earlier).
    Until ``min_trials`` points are there the rung has no evidence: every trial goes on.
    A point tied with an earlier one ranks before it (``point`` comes first)."""
    n = len(others) + 1
    if n < min_trials:
        return True
    keep = max(1, n // reduction_factor)
    order = rank_order([list(point), *[list(o) for o in others]], directions)
    return order.index(0) < keep


@dataclass(frozen=True)
class PrunerSettings:
    """The pruner's settings as the decision needs them (from ``sweep.config.PrunerConfig``)."""

    kind: str
    reduction_factor: int
    min_trials: int
    collapse_threshold: float
    collapse_from_rung: int


def decide(
    settings: PrunerSettings,
    rung: int,
    *,
    point: Sequence[float],
    no_answer_rate: float | None,
    others: Sequence[Sequence[float]],
    directions: Sequence[str],
) -> Decision:
    """The pruner's decision for a trial at rung index ``rung`` with objective ``point``."""
    if (
        uses_collapse(settings.kind)
        and rung >= settings.collapse_from_rung
        and collapsed(no_answer_rate, settings.collapse_threshold)
    ):
        return Decision(PRUNE, RULE_COLLAPSE)
    if uses_rungs(settings.kind) and not kept_at_rung(
        point, others, directions, settings.reduction_factor, settings.min_trials
    ):
        return Decision(PRUNE, RULE_RUNGS)
    return Decision(CONTINUE)


def mean_evaluation(
    per_seed: Sequence[Mapping[str, float]], metrics: Sequence[str]
) -> dict[str, float] | None:
    """The mean of each of ``metrics`` over a step's seeds; None while a seed lacks one."""
    if not per_seed:
        return None
    out: dict[str, float] = {}
    for name in metrics:
        values = [seed.get(name) for seed in per_seed]
        if any(v is None for v in values):
            return None
        out[name] = sum(float(v) for v in values if v is not None) / len(values)
    return out


def parse_progress_line(line: str) -> Evaluation | None:
    """One progress line, or None when it is not one (a partly written last line, a
    line of something else): a run's progress is evidence, never a reason to fail it."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    step, metrics = data.get("step"), data.get("metrics")
    if isinstance(step, bool) or not isinstance(step, int) or not isinstance(metrics, dict):
        return None
    numbers = {
        str(key): float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return Evaluation(step, numbers)


def read_progress(path: Path, offset: int = 0) -> tuple[list[Evaluation], int]:
    """The evaluations appended to ``path`` after byte ``offset``, and the offset after the
    last complete line (a line still being written is read on the next call)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:  # not written yet
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    evaluations = []
    for raw in data[: end + 1].splitlines():
        evaluation = parse_progress_line(raw.decode("utf-8", errors="replace"))
        if evaluation is not None:
            evaluations.append(evaluation)
    return evaluations, offset + end + 1
