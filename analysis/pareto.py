"""Pareto fronts and hypervolume, direction-aware, on top of moocore.

Everything here takes objective values in the metrics' own units with one direction per
column (``"maximize"`` or ``"minimize"``); moocore does the dominance and hypervolume work.
Rows with a non-finite value, or flagged infeasible, are never on a front and add nothing to
a hypervolume: a crashed or constraint-violating trial must not shape what users ship.

The reference point is *governed*: it comes from the sweep config's objective thresholds
(stored with the sweep), else from a metric's natural worst bound (rates live in [0, 1]);
only metrics with neither fall back to the observed nadir, and the result says so, because a
data-derived point moves as trials arrive and makes hypervolumes incomparable over time.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Final, Literal

import moocore
import numpy as np
from numpy.typing import ArrayLike, NDArray

from bao.errors import BaoError
from bao.metrics import natural_bounds
from sweep.front import nondominated, usable_rows

Direction = Literal["maximize", "minimize"]
ReferenceSource = Literal["threshold", "bound", "nadir"]

NADIR_MARGIN: Final = 0.1
"""The nadir fallback sits this share of the observed range beyond the worst value, so that
the worst trials still add a sliver of hypervolume (the usual convention)."""


class AnalysisError(BaoError):
    """Input the analysis cannot use: no trials, unknown objectives, mismatched sweeps."""


def _maximise(directions: Sequence[str]) -> list[bool]:
    flags = []
    for direction in directions:
        if direction not in ("maximize", "minimize"):
            raise AnalysisError(
                "an objective direction must be 'maximize' or 'minimize'", value=direction
            )
        flags.append(direction == "maximize")
    return flags


def _matrix(values: ArrayLike, directions: Sequence[str]) -> NDArray[np.float64]:
    matrix = np.asarray(values, dtype=float)
    if matrix.ndim != 2 or matrix.shape[1] != len(directions):
        raise AnalysisError(
            f"objective values must be an (n, {len(directions)}) array, one column per direction",
            value=matrix.shape,
        )
    return matrix


def to_minimization(values: ArrayLike, directions: Sequence[str]) -> NDArray[np.float64]:
    """The values with maximised columns negated: every column is then minimised."""
    matrix = _matrix(values, directions)
    signs = np.where(_maximise(directions), -1.0, 1.0)
    return matrix * signs


def pareto_mask(
    values: ArrayLike, directions: Sequence[str], feasible: ArrayLike | None = None
) -> NDArray[np.bool_]:
    """True for rows that no other usable row dominates (duplicates of a front point are
    all kept, as Optuna's ``best_trials`` does): :func:`sweep.front.nondominated`, the
    project's one dominance rule, on checked input."""
    matrix = _matrix(values, directions)
    return nondominated(matrix, _maximise(directions), feasible)


def pareto_ranks(
    values: ArrayLike, directions: Sequence[str], feasible: ArrayLike | None = None
) -> NDArray[np.int64]:
    """Non-dominated sorting: 0 for the front, 1 for the front once it is removed, ...;
    -1 for rows that are not usable (a non-finite value or infeasible)."""
    matrix = _matrix(values, directions)
    usable = usable_rows(matrix, feasible)
    ranks = np.full(len(matrix), -1, dtype=np.int64)
    if usable.any():
        ranks[usable] = moocore.pareto_rank(matrix[usable], maximise=_maximise(directions))
    return ranks


# ------------------------------------------------------------------------ reference point


@dataclass(frozen=True)
class ReferencePoint:
    """The hypervolume reference point, in the metrics' own units, and where each
    coordinate came from: ``threshold`` (the sweep config), ``bound`` (the metric's
    definition) or ``nadir`` (the observed worst value plus a margin: not stable)."""

    metrics: tuple[str, ...]
    directions: tuple[Direction, ...]
    point: tuple[float, ...]
    sources: tuple[ReferenceSource, ...]

    @property
    def governed(self) -> bool:
        """False when any coordinate was derived from the data."""
        return "nadir" not in self.sources

    @property
    def version(self) -> str:
        """A short hash of the point and what it measures: equal versions, comparable
        hypervolumes."""
        text = json.dumps([self.metrics, self.directions, self.point])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, object]:
        return {
            "point": list(self.point),
            "sources": list(self.sources),
            "governed": self.governed,
            "version": self.version,
        }


def reference_point(
    metrics: Sequence[str],
    directions: Sequence[str],
    thresholds: Sequence[float | None] | None = None,
    values: ArrayLike | None = None,
) -> ReferencePoint:
    """Resolves the reference point: a threshold, else the metric's natural worst bound,
    else the observed nadir of ``values`` (finite rows) pushed out by :data:`NADIR_MARGIN`."""
    maximise = _maximise(directions)
    thresholds = list(thresholds) if thresholds is not None else [None] * len(metrics)
    point: list[float] = []
    sources: list[ReferenceSource] = []
    observed = None if values is None else _matrix(values, directions)
    for index, (metric, up) in enumerate(zip(metrics, maximise, strict=True)):
        threshold = thresholds[index]
        bounds = natural_bounds(metric)
        if threshold is not None:
            point.append(float(threshold))
            sources.append("threshold")
        elif bounds is not None:
            point.append(bounds[0] if up else bounds[1])
            sources.append("bound")
        else:
            column = np.empty(0) if observed is None else observed[:, index]
            column = column[np.isfinite(column)]
            if column.size == 0:
                raise AnalysisError(
                    f"no reference point for objective {metric!r}: it has no threshold, no "
                    "natural bound and no finite values yet",
                    fix="set a threshold for it in the sweep config's objectives",
                )
            worst, best = (column.min(), column.max()) if up else (column.max(), column.min())
            span = abs(best - worst) or max(1.0, abs(worst))
            point.append(float(worst - NADIR_MARGIN * span if up else worst + NADIR_MARGIN * span))
            sources.append("nadir")
    return ReferencePoint(
        metrics=tuple(metrics),
        directions=tuple(d for d in directions),  # type: ignore[misc]
        point=tuple(point),
        sources=tuple(sources),
    )


# ---------------------------------------------------------------------------- hypervolume


def hypervolume(
    values: ArrayLike,
    directions: Sequence[str],
    reference: Sequence[float],
    feasible: ArrayLike | None = None,
) -> float:
    """The hypervolume dominated by the usable rows and bounded by ``reference``; rows not
    strictly better than the reference in every objective add nothing."""
    matrix = _matrix(values, directions)
    rows = matrix[usable_rows(matrix, feasible)]
    if rows.size == 0:
        return 0.0
    ref = np.asarray(reference, dtype=float)
    return float(moocore.hypervolume(rows, ref=ref, maximise=_maximise(directions)))


def hypervolume_contributions(
    values: ArrayLike,
    directions: Sequence[str],
    reference: Sequence[float],
    feasible: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Each row's exclusive hypervolume: what the sweep's hypervolume loses without that
    trial (dominated trials count, since they refill part of the gap); 0 for dominated,
    duplicated and unusable rows."""
    matrix = _matrix(values, directions)
    usable = usable_rows(matrix, feasible)
    contributions = np.zeros(len(matrix))
    if usable.any():
        contributions[usable] = moocore.hv_contributions(
            matrix[usable],
            ref=np.asarray(reference, float),
            maximise=_maximise(directions),
            ignore_dominated=False,
        )
    return contributions


def hypervolume_history(
    values: ArrayLike,
    directions: Sequence[str],
    reference: Sequence[float],
    feasible: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """The hypervolume after each row, in row order (sort rows by completion time first).

    Only the running front is kept, so a long sweep costs one small hypervolume per row that
    changes the front, not one over every trial so far.
    """
    matrix = _matrix(values, directions)
    usable = usable_rows(matrix, feasible)
    maximise = _maximise(directions)
    ref = np.asarray(reference, dtype=float)
    history = np.zeros(len(matrix))
    front = np.empty((0, matrix.shape[1]))
    current = 0.0
    for index, row in enumerate(matrix):
        if usable[index]:
            candidate = np.vstack([front, row])
            keep = moocore.is_nondominated(candidate, maximise=maximise, keep_weakly=True)
            if keep[-1]:
                front = candidate[keep]
                current = float(moocore.hypervolume(front, ref=ref, maximise=maximise))
        history[index] = current
    return history


def hypervolume_subset(
    values: ArrayLike,
    directions: Sequence[str],
    reference: Sequence[float],
    size: int,
    *,
    feasible: ArrayLike | None = None,
    exact_limit: int = 20_000,
) -> list[int]:
    """Row indices of ``size`` front points whose joint hypervolume is largest.

    Exact (every subset is scored) when there are at most ``exact_limit`` subsets; otherwise
    greedy by largest hypervolume gain, which is within (1 - 1/e) of the best because the
    hypervolume is submodular. Only front points that add hypervolume are candidates, so
    fewer rows come back when there are fewer of those than ``size``.
    """
    if size < 1:
        raise AnalysisError("a hypervolume subset needs a size of at least 1", value=size)
    matrix = _matrix(values, directions)
    mask = pareto_mask(matrix, directions, feasible)
    # Points not strictly better than the reference in every objective (a collapsed agent at
    # the threshold, for instance) add no hypervolume and are never chosen.
    signs = np.where(_maximise(directions), -1.0, 1.0)
    with np.errstate(invalid="ignore"):
        inside = (matrix * signs < np.asarray(reference, dtype=float) * signs).all(axis=1)
    mask &= inside
    # One row per distinct point: duplicates add nothing to a subset.
    candidates: list[int] = []
    seen: set[tuple[float, ...]] = set()
    for index in np.flatnonzero(mask):
        key = tuple(matrix[index])
        if key not in seen:
            seen.add(key)
            candidates.append(int(index))
    if len(candidates) <= size:
        return candidates

    def volume(indices: Sequence[int]) -> float:
        return hypervolume(matrix[list(indices)], directions, reference)

    if math.comb(len(candidates), size) <= exact_limit:
        best = max(combinations(candidates, size), key=volume)
        return list(best)
    chosen: list[int] = []
    for _ in range(size):
        remaining = [i for i in candidates if i not in chosen]
        chosen.append(max(remaining, key=lambda i: volume([*chosen, i])))
    return chosen
