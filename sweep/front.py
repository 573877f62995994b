"""The Pareto primitive: which rows no other row dominates.

The one dominance rule of the project, used by the runner's progress front and by the
analysis (:func:`analysis.pareto.pareto_mask` checks its input and calls this): rows with a
non-finite value, or flagged infeasible, are never on a front; duplicates of a front point
are all kept, as Optuna's ``best_trials`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import moocore
import numpy as np
from numpy.typing import ArrayLike, NDArray

from bao.records import SYSTEM_CONSTRAINTS

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


def usable_rows(values: ArrayLike, feasible: ArrayLike | None = None) -> NDArray[np.bool_]:
    """Rows that may be on a front: every value finite, and feasible when that is given."""
    matrix = np.asarray(values, dtype=float)
    mask = np.isfinite(matrix).all(axis=1) if matrix.size else np.zeros(len(matrix), bool)
    if feasible is not None:
        mask &= np.asarray(feasible, dtype=bool)
    return mask


def nondominated(
    values: ArrayLike, maximise: Sequence[bool], feasible: ArrayLike | None = None
) -> NDArray[np.bool_]:
    """True for the usable rows of ``values`` (n, m) that no other usable row dominates;
    ``maximise[j]`` says whether more of column ``j`` is better."""
    matrix = np.asarray(values, dtype=float)
    usable = usable_rows(matrix, feasible)
    mask = np.zeros(len(matrix), dtype=bool)
    if usable.any():
        mask[usable] = moocore.is_nondominated(
            matrix[usable], maximise=list(maximise), keep_weakly=True
        )
    return mask


def pareto_front_trials(
    trials: Sequence[FrozenTrial], directions: Sequence[str]
) -> list[FrozenTrial]:
    """Optuna's ``best_trials`` of complete ``trials``, by trial number: the non-dominated
    feasible ones (a trial is feasible when every constraint value is <= 0), duplicates of a
    front point all kept. ``best_trials`` itself deep-copies every trial of the study, which
    made the runner's progress reports its largest cost per trial (docs/benchmarks.md)."""
    feasible = [all(v <= 0 for v in t.system_attrs.get(SYSTEM_CONSTRAINTS, ())) for t in trials]
    if not any(feasible):
        return []
    values = np.array([t.values for t in trials], dtype=float)
    keep = nondominated(values, [d == "maximize" for d in directions], feasible)
    return sorted((t for t, kept in zip(trials, keep, strict=True) if kept), key=_number)


def _number(trial: FrozenTrial) -> int:
    return trial.number
