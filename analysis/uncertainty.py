"""How sure a front is: intervals, the chance each trial is non-dominated, sweep comparisons.

Every trial's metrics are noisy twice over: the evaluation sees a finite task set, and the
training run itself depends on its seed. :func:`draw_metrics` turns what is known about a
trial into plausible values of its metrics, one set per draw, and everything else here is a
statistic over those draws:

* a trial with two or more training seeds: **seed-level bootstrap** (resample its seeds with
  replacement and average); each seed's value carries its own evaluation noise, so this
  reflects both kinds, but with 2 or 3 seeds the percentile interval is coarse and too narrow
  (3 seeds give at most 10 distinct means; identical seeds give a zero-width interval);
* a single seed, when the trials logged their evaluation trajectories on a common task
  set (:mod:`analysis.outcomes`): **paired task bootstrap**: one resample of the tasks,
  shared by all trials, reweights each trial's per-task values. Trials that solve the same
  tasks stay tied in every draw; differences are judged on the tasks where they differ;
* otherwise, a single seed, for a metric that is a share in [0, 1] (pass rates, score, user
  involvement, no-answer and invalid rates) over ``n`` evaluation trajectories: a
  Beta(v n + 1/2, (1 - v) n + 1/2) draw. For pass rates this is the Jeffreys posterior of a
  binomial share;
  for means of per-trajectory values in [0, 1] (user involvement) its variance is about the
  largest such a mean can have, v (1 - v) / n, so the interval is conservative. Training-seed
  noise is *not* covered: run ``seeds_per_trial >= 3`` when it matters;
* anything else with one seed: held fixed (no noise model), and reported as such.

Draws are seeded (``numpy.random.default_rng(seed)``): the same inputs and seed give the
same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.pareto import AnalysisError, hypervolume, pareto_mask
from bao.metrics import natural_bounds

if TYPE_CHECKING:
    import pandas as pd

    from analysis.loader import SweepData
    from analysis.outcomes import TaskOutcomes

DEFAULT_DRAWS: Final = 1000
DEFAULT_LEVEL: Final = 0.95

SEED_BOOTSTRAP: Final = "seed-bootstrap"
TASK_BOOTSTRAP: Final = "task-bootstrap"
BETA: Final = "beta"
FIXED: Final = "fixed"


@dataclass(frozen=True)
class Draws:
    """Plausible metric values: ``samples[d, i, j]`` is draw ``d`` of trial ``numbers[i]``'s
    metric ``metrics[j]``; ``methods[i][j]`` says how it was drawn."""

    numbers: NDArray[np.int64]
    metrics: tuple[str, ...]
    observed: NDArray[np.float64]
    samples: NDArray[np.float64]
    methods: tuple[tuple[str, ...], ...]

    def interval(self, level: float = DEFAULT_LEVEL) -> tuple[NDArray[np.float64], ...]:
        """Percentile interval ``(low, high)``, each (n, m)."""
        tail = 100 * (1 - level) / 2
        if self.samples.shape[1] == 0:
            empty = np.empty((0, len(self.metrics)))
            return empty, empty
        low, high = np.percentile(self.samples, [tail, 100 - tail], axis=0)
        return low, high


def draw_metrics(
    data: SweepData,
    frame: pd.DataFrame,
    metrics: Sequence[str],
    n_draws: int = DEFAULT_DRAWS,
    *,
    seed: int = 0,
    outcomes: TaskOutcomes | Literal["auto"] | None = "auto",
) -> Draws:
    """Draws of ``metrics`` for the trials in ``frame`` (rows of ``data.trials``).

    ``outcomes``: per-task values for the paired task bootstrap; ``"auto"`` takes them from
    the task table the reader loaded with the sweep (no I/O here).
    """
    if n_draws < 1:
        raise AnalysisError("the number of draws must be at least 1", value=n_draws)
    rng = np.random.default_rng(seed)
    n, m = len(frame), len(metrics)
    observed = frame[list(metrics)].to_numpy(dtype=float) if n else np.empty((0, m))
    samples = np.repeat(observed[None, :, :], n_draws, axis=0)
    methods = [[FIXED] * m for _ in range(n)]
    n_eval = _column(frame, "eval/n_trajectories")
    n_seeds = _column(frame, "n_seeds")
    seeds_by_trial = (
        {number: group for number, group in data.seeds.groupby("number")}
        if not data.seeds.empty
        else {}
    )

    # Shares in [0, 1]: one vectorised Beta draw per metric (over the seeds' pooled
    # trajectories); trials with several seeds are then redrawn by the seed bootstrap.
    for j, metric in enumerate(metrics):
        if natural_bounds(metric) != (0.0, 1.0):
            continue
        count = n_eval * np.maximum(n_seeds, 1)
        value = observed[:, j]
        ok = np.isfinite(value) & np.isfinite(count) & (count > 0)
        if ok.any():
            v = np.clip(value[ok], 0.0, 1.0)
            a, b = v * count[ok] + 0.5, (1 - v) * count[ok] + 0.5
            samples[:, ok, j] = rng.beta(a, b, size=(n_draws, int(ok.sum())))
            for index in np.flatnonzero(ok):
                methods[int(index)][j] = BETA

    # One seed and per-task outcomes: a task resample shared by every trial (multinomial
    # weights, so all trials cost one matrix product per metric).
    if isinstance(outcomes, str):
        from analysis.outcomes import task_outcomes

        outcomes = task_outcomes(data, frame) if n else None
    if outcomes is not None:
        n_tasks = len(outcomes.tasks)
        counts = rng.multinomial(n_tasks, np.full(n_tasks, 1.0 / n_tasks), size=n_draws)
        weights = counts / n_tasks
        rows = [outcomes.row(int(number)) for number in frame["number"].to_numpy()]
        for j, metric in enumerate(metrics):
            matrix = outcomes.values.get(metric)
            if matrix is None:
                continue
            drawn = weights @ np.nan_to_num(matrix).T  # (draws, outcome rows)
            for i, row in enumerate(rows):
                if row is None or n_seeds[i] > 1 or not np.isfinite(matrix[row]).all():
                    continue
                samples[:, i, j] = drawn[:, row]
                methods[i][j] = TASK_BOOTSTRAP

    # Several seeds: resample seeds jointly for all metrics of a trial (they are correlated).
    for i, number in enumerate(frame["number"].to_numpy()):
        group = seeds_by_trial.get(number)
        if group is None or len(group) < 2:
            continue
        present = [j for j, metric in enumerate(metrics) if metric in group]
        if not present:
            continue
        per_seed = group[[metrics[j] for j in present]].to_numpy(dtype=float)
        if not np.isfinite(per_seed).all():
            continue
        picks = rng.integers(0, len(per_seed), size=(n_draws, len(per_seed)))
        samples[:, i, present] = per_seed[picks].mean(axis=1)
        for j in present:
            methods[i][j] = SEED_BOOTSTRAP

    return Draws(
        numbers=frame["number"].to_numpy(dtype=np.int64),
        metrics=tuple(metrics),
        observed=observed,
        samples=samples,
        methods=tuple(tuple(row) for row in methods),
    )


def _column(frame: pd.DataFrame, name: str) -> NDArray[np.float64]:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return np.asarray(frame[name].to_numpy(dtype=float), dtype=float)


def seed_bootstrap(
    values: ArrayLike, n_boot: int = DEFAULT_DRAWS, seed: int = 0, level: float = DEFAULT_LEVEL
) -> tuple[float, float, float]:
    """Mean of per-seed values and its percentile bootstrap interval ``(mean, low, high)``."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise AnalysisError("the seed bootstrap needs a non-empty list of finite values")
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, array.size, size=(n_boot, array.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(array.mean()), float(low), float(high)


def p_nondominated(
    draws: Draws, directions: Sequence[str], feasible: ArrayLike | None = None
) -> NDArray[np.float64]:
    """For each trial, the share of draws in which no other trial dominates it.

    Feasibility is held at what was observed: constraints decide who competes, the draws
    decide who wins.
    """
    n = draws.samples.shape[1]
    if n == 0:
        return np.zeros(0)
    hits = np.zeros(n)
    for sample in draws.samples:
        hits += pareto_mask(sample, directions, feasible)
    return np.asarray(hits / len(draws.samples), dtype=float)


def wilson_pass_intervals(frame: pd.DataFrame, ks: Sequence[int]) -> pd.DataFrame:
    """Long table ``number, k, pass_rate, lo, hi, n`` with Wilson 95% intervals.

    With several seeds the seeds' trajectories are pooled (``n = n_trajectories * seeds``):
    the interval then covers the evaluation's sampling noise of the seed-averaged rate.
    """
    import pandas as pd

    from bao.metrics import wilson_interval

    rows = []
    n_eval = _column(frame, "eval/n_trajectories")
    n_seeds = np.maximum(_column(frame, "n_seeds"), 1)
    numbers = frame["number"].to_numpy()
    for k in ks:
        rates = _column(frame, f"eval/pass_at_u_{k}")
        for number, rate, count, seeds in zip(numbers, rates, n_eval, n_seeds, strict=True):
            if not math.isfinite(rate):
                continue
            low = high = math.nan
            total = round(count * seeds) if math.isfinite(count) else 0
            if total > 0:
                low, high = wilson_interval(round(rate * total), total)
            rows.append(
                {
                    "number": int(number),
                    "k": k,
                    "pass_rate": rate,
                    "lo": low,
                    "hi": high,
                    "n": total,
                }
            )
    return pd.DataFrame(rows, columns=["number", "k", "pass_rate", "lo", "hi", "n"])


# ------------------------------------------------------------------------- two sweeps


@dataclass(frozen=True)
class SweepComparison:
    """Hypervolume of sweep A minus sweep B on one reference point, with its interval."""

    sweep_a: str
    sweep_b: str
    reference: tuple[float, ...]
    hypervolume_a: float
    hypervolume_b: float
    difference: float
    low: float
    high: float
    p_a_better: float
    """Share of draws in which A's hypervolume exceeds B's."""
    n_draws: int

    def to_dict(self) -> dict[str, object]:
        return {
            "sweep_a": self.sweep_a,
            "sweep_b": self.sweep_b,
            "reference_point": list(self.reference),
            "hypervolume_a": self.hypervolume_a,
            "hypervolume_b": self.hypervolume_b,
            "difference": self.difference,
            "interval": [self.low, self.high],
            "p_a_better": self.p_a_better,
            "n_draws": self.n_draws,
        }


def compare_sweeps(
    a: SweepData,
    b: SweepData,
    *,
    reference: Sequence[float] | None = None,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> SweepComparison:
    """Hypervolume difference A - B with a bootstrap interval over the trials' draws.

    Both sweeps must optimise the same metrics in the same directions. The reference point
    is ``reference``, else A's governed point (which must equal B's when B's is governed).
    """
    if a.metrics != b.metrics or a.directions != b.directions:
        raise AnalysisError(
            f"sweeps {a.name!r} and {b.name!r} have different objectives "
            f"({a.metrics} vs {b.metrics})",
            fix="compare sweeps that optimise the same metrics in the same directions",
        )
    if reference is None:
        if a.reference.governed and b.reference.governed:
            if a.reference.point != b.reference.point:
                raise AnalysisError(
                    f"sweeps {a.name!r} and {b.name!r} have different reference points "
                    f"({list(a.reference.point)} vs {list(b.reference.point)})",
                    fix="pass one reference point for both",
                )
            reference = a.reference.point
        else:
            # A data-derived point must come from both sweeps, or the order of the arguments
            # would decide the answer.
            from analysis.pareto import reference_point

            thresholds = [o.threshold for o in a.loaded.config.objectives]
            both = np.vstack([a.values(), b.values()])
            reference = reference_point(a.metrics, a.directions, thresholds, both).point
    point = tuple(float(x) for x in reference)
    directions = a.directions

    def volumes(data: SweepData, offset: int) -> tuple[float, NDArray[np.float64]]:
        frame = data.complete
        feasible = frame["feasible"].to_numpy(dtype=bool)
        observed = hypervolume(data.values(frame), directions, point, feasible)
        draws = draw_metrics(data, frame, data.metrics, n_draws, seed=seed + offset)
        sampled = np.array([hypervolume(s, directions, point, feasible) for s in draws.samples])
        return observed, sampled

    hv_a, draws_a = volumes(a, 0)
    hv_b, draws_b = volumes(b, 1)
    difference = draws_a - draws_b
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(difference, [tail, 100 - tail])
    return SweepComparison(
        sweep_a=a.name,
        sweep_b=b.name,
        reference=point,
        hypervolume_a=hv_a,
        hypervolume_b=hv_b,
        difference=hv_a - hv_b,
        low=float(low),
        high=float(high),
        p_a_better=float((difference > 0).mean()),
        n_draws=n_draws,
    )


def attainment_surfaces(
    draws: Draws,
    directions: Sequence[str],
    feasible: ArrayLike | None = None,
    percentiles: Sequence[float] = (25.0, 50.0, 75.0),
) -> pd.DataFrame:
    """Empirical attainment surfaces of a sweep's front over its draws (moocore's EAF).

    The p% surface bounds the region that the front reaches in p% of the draws: the 50%
    surface is the median front, and the band between 25% and 75% is how much the front
    moves under the trials' noise. Columns: the metrics, then ``percentile``.
    """
    import moocore
    import pandas as pd

    if len(directions) != 2:
        # moocore's exact EAF in three dimensions takes minutes for hundreds of draws.
        raise AnalysisError(
            "attainment surfaces are computed for two objectives",
            value=len(directions),
            fix="pass the draws of two of the objectives",
        )
    signs = np.where([d == "maximize" for d in directions], -1.0, 1.0)
    blocks, sets = [], []
    for index, sample in enumerate(draws.samples):
        front = sample[pareto_mask(sample, directions, feasible)]
        blocks.append(front * signs)
        sets.append(np.full(len(front), index + 1))
    if not blocks or sum(len(b) for b in blocks) == 0:
        return pd.DataFrame(columns=[*draws.metrics, "percentile"])
    surfaces = moocore.eaf(np.vstack(blocks), np.concatenate(sets), percentiles=list(percentiles))
    frame = pd.DataFrame(surfaces[:, :-1] * signs, columns=list(draws.metrics))
    frame["percentile"] = surfaces[:, -1]
    return frame
