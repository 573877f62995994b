"""Decision support: the knee of a front, and the variants to ship per user-involvement budget.

* :func:`select_budgets`: for each budget k (the user-involved actions a deployment allows),
  the trial with the highest Pass@U-k; equal pass rates go to the lower user involvement,
  then to the earlier trial. Each choice carries its runner-up, the margin, and the share of
  draws (see :mod:`analysis.uncertainty`) in which it would still have been chosen.
* :func:`knee_index`: the front point with the best achievement scalarising function
  (pymoo's ASF) on the front normalised to [0, 1] by its ideal and nadir points, with
  aspiration levels (default: the ideal point) and weights; or pymoo's high trade-off points.
* :func:`select_hypervolume_subset`: the K front points with the largest joint hypervolume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from analysis.frontier import INVOLVEMENT, TIE_DECIMALS, candidate_trials, pass_curves, rank_at_k
from analysis.jsonable import finite_or_none
from analysis.pareto import (
    AnalysisError,
    _maximise,
    hypervolume_subset,
    pareto_mask,
)
from analysis.uncertainty import DEFAULT_DRAWS, draw_metrics

if TYPE_CHECKING:
    import pandas as pd

    from analysis.loader import SweepData

KneeMethod = Literal["asf", "high_tradeoff"]
CLEAR_WIN = 0.95
"""A choice made in fewer resampled evaluations than this is reported as not a clear win."""


@dataclass
class Variant:
    """One deployment choice: which trial, under which alias, and why."""

    alias: str
    number: int
    reason: str
    criterion: dict[str, Any] = field(default_factory=dict)
    """What was compared: metric, the chosen value and interval, the runner-up's."""
    runner_up: int | None = None
    margin: float | None = None
    """Chosen minus runner-up on the deciding metric, in its own units (>= 0)."""
    p_chosen: float | None = None
    """Share of draws in which the same rule picks the same trial."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "trial": self.number,
            "reason": self.reason,
            "criterion": self.criterion,
            "runner_up": self.runner_up,
            "margin": self.margin,
            "p_chosen": self.p_chosen,
        }


def budget_alias(k: int) -> str:
    return f"budget-{k}"


def select_budgets(
    data: SweepData,
    budgets: Sequence[int],
    *,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> list[Variant]:
    """One variant per budget k: the trial that maximises Pass@U-k (module docstring)."""
    known = data.k_values()
    candidates = candidate_trials(data)
    if candidates.empty:
        raise AnalysisError(
            f"sweep {data.name!r} has no complete feasible trial to select from",
            fix="wait for trials to finish or relax the constraints "
            f"(bao-pareto status {data.name})",
        )
    curves = pass_curves(data, candidates)
    variants = []
    for k in budgets:
        if k not in known:
            raise AnalysisError(
                f"budget {k} has no Pass@U-{k} metric in sweep {data.name!r}",
                value=k,
                fix=f"choose budgets among {known[0]}..{known[-1]}"
                if known
                else "the trials logged no eval/pass_at_u_k metrics",
            )
        ranked = rank_at_k(curves, k)
        if ranked.empty:
            raise AnalysisError(f"no trial of sweep {data.name!r} has Pass@U-{k} yet")
        best = ranked.iloc[0]
        metric = f"eval/pass_at_u_{k}"
        criterion: dict[str, Any] = {
            "metric": metric,
            "value": float(best["pass_rate"]),
            "interval": [finite_or_none(best["lo"]), finite_or_none(best["hi"])],
            "user_involvement_rate": finite_or_none(best.get("user_involvement_rate")),
        }
        variant = Variant(
            alias=budget_alias(k), number=int(best["number"]), reason="", criterion=criterion
        )
        if len(ranked) > 1:
            second = ranked.iloc[1]
            variant.runner_up = int(second["number"])
            variant.margin = round(float(best["pass_rate"] - second["pass_rate"]), TIE_DECIMALS)
            criterion["runner_up"] = {
                "value": float(second["pass_rate"]),
                "interval": [finite_or_none(second["lo"]), finite_or_none(second["hi"])],
                "user_involvement_rate": finite_or_none(second.get("user_involvement_rate")),
            }
        variant.p_chosen = _p_chosen(
            data, candidates, k, variant.number, n_draws=n_draws, seed=seed
        )
        variant.reason = _budget_reason(k, variant, criterion)
        variants.append(variant)
    return variants


def _p_chosen(
    data: SweepData, frame: pd.DataFrame, k: int, chosen: int, *, n_draws: int, seed: int
) -> float | None:
    metrics = [f"eval/pass_at_u_{k}"] + ([INVOLVEMENT] if INVOLVEMENT in frame else [])
    usable = frame[np.isfinite(frame[metrics[0]].to_numpy(dtype=float))]
    if usable.empty:
        return None
    draws = draw_metrics(data, usable, metrics, n_draws, seed=seed + k)
    from analysis.uncertainty import FIXED

    if all(method[0] == FIXED for method in draws.methods):
        return None  # nothing was resampled: a share of 100% would claim certainty
    numbers = draws.numbers
    wins = 0
    for sample in draws.samples:
        # A trial without a logged involvement loses ties, as in rank_at_k.
        involvement = (
            np.nan_to_num(sample[:, 1], nan=np.inf)
            if sample.shape[1] > 1
            else np.zeros(len(sample))
        )
        rates = np.round(sample[:, 0], TIE_DECIMALS)
        # lexsort: last key first; pass rate descending, involvement ascending, number.
        order = np.lexsort((numbers, involvement, -rates))
        wins += int(numbers[order[0]] == chosen)
    return wins / len(draws.samples)


def _budget_reason(k: int, variant: Variant, criterion: dict[str, Any]) -> str:
    value, (low, high) = criterion["value"], criterion["interval"]
    shown = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    text = f"highest Pass@U-{k}: {value:.3f}{shown}"
    other = criterion.get("runner_up")
    if other is None or variant.runner_up is None:
        return text + "; the only candidate"
    assert variant.margin is not None
    if variant.margin == 0:
        mine, theirs = criterion["user_involvement_rate"], other["user_involvement_rate"]
        if mine is not None and theirs is not None and mine < theirs:
            text += (
                f"; tied with trial {variant.runner_up} on Pass@U-{k}, chosen for lower user "
                f"involvement ({mine:.3f} vs {theirs:.3f})"
            )
        else:
            text += f"; tied with trial {variant.runner_up}, chosen as the earlier trial"
    else:
        text += (
            f"; margin {variant.margin:+.3f} over trial {variant.runner_up} ({other['value']:.3f})"
        )
    # The resampled share is the judge when there is one: paired over shared tasks it can be
    # decisive where two unpaired intervals overlap.
    if variant.p_chosen is not None:
        text += f"; chosen in {variant.p_chosen:.0%} of resampled evaluations"
        if variant.p_chosen < CLEAR_WIN:
            text += ": not a clear win"
        return text
    text += "; no noise model for these trials (log eval/n_trajectories or trajectories)"
    if variant.margin and other["interval"][1] is not None and other["interval"][1] >= value:
        text += ", and the margin is within the runner-up's 95% interval"
    return text


# ------------------------------------------------------------------------------- knee


def knee_index(
    values: ArrayLike,
    directions: Sequence[str],
    *,
    method: KneeMethod = "asf",
    aspiration: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
) -> int:
    """Index (into ``values``, a front) of the knee; ties go to the better first objective,
    then to the earlier row. ``aspiration`` is in the metrics' own units; ``weights`` are
    importances (larger: that objective's shortfall counts more; pymoo's ASF divides by its
    weights, so it receives their reciprocals)."""
    from pymoo.decomposition.asf import ASF

    matrix = np.asarray(values, dtype=float)
    if matrix.ndim != 2 or len(matrix) == 0:
        raise AnalysisError("the knee needs a non-empty front")
    signs = np.where(_maximise(directions), -1.0, 1.0)
    minimised = matrix * signs
    ideal, nadir = minimised.min(axis=0), minimised.max(axis=0)
    span = np.where(nadir - ideal > 0, nadir - ideal, 1.0)
    normalised = (minimised - ideal) / span
    target = (
        np.zeros(matrix.shape[1])
        if aspiration is None
        else (np.asarray(aspiration, dtype=float) * signs - ideal) / span
    )
    weight = np.ones(matrix.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    if weight.shape != (matrix.shape[1],) or (weight <= 0).any():
        raise AnalysisError(
            "knee weights must be one positive number per objective", value=list(weight)
        )
    scores = np.asarray(
        ASF().do(normalised, 1.0 / weight, _type="many_to_one", utopian_point=target), dtype=float
    ).reshape(len(matrix))
    pool = np.arange(len(matrix))
    if method == "high_tradeoff" and len(matrix) >= 3:
        import warnings

        with warnings.catch_warnings():  # pymoo imports a deprecated scipy path
            warnings.simplefilter("ignore", DeprecationWarning)
            from pymoo.mcdm.high_tradeoff import HighTradeoffPoints

        found = HighTradeoffPoints().do(normalised)
        if found is not None and len(found):
            pool = np.asarray(found, dtype=int)
    elif method not in ("asf", "high_tradeoff"):
        raise AnalysisError("unknown knee method", value=method, fix="use asf or high_tradeoff")
    order = np.lexsort((pool, minimised[pool, 0], scores[pool]))
    return int(pool[order[0]])


def select_knee(
    data: SweepData,
    *,
    method: KneeMethod = "asf",
    aspiration: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
) -> Variant:
    """The knee of the sweep's front of complete feasible trials, as a variant."""
    frame = candidate_trials(data)
    values = data.values(frame)
    usable = np.isfinite(values).all(axis=1)
    frame, values = frame[usable], values[usable]
    if frame.empty:
        raise AnalysisError(f"sweep {data.name!r} has no complete feasible trial for a knee")
    mask = pareto_mask(values, data.directions)
    front, front_values = frame[mask], values[mask]
    index = knee_index(
        front_values, data.directions, method=method, aspiration=aspiration, weights=weights
    )
    row = front.iloc[index]
    shown = ", ".join(
        f"{metric} {value:.3f}"
        for metric, value in zip(data.metrics, front_values[index], strict=True)
    )
    size = len(front)
    reason = (
        f"knee of the {size}-point front ({method}"
        + (f", aspiration {list(aspiration)}" if aspiration is not None else ", aspiration = ideal")
        + f"): {shown}"
    )
    if size == 1:
        reason = f"the only point of the front: {shown}"
    return Variant(
        alias="knee",
        number=int(row["number"]),
        reason=reason,
        criterion={
            "method": method,
            "values": dict(zip(data.metrics, map(float, front_values[index]), strict=True)),
        },
    )


def select_hypervolume_subset(data: SweepData, size: int) -> list[Variant]:
    """``size`` variants that together keep the most hypervolume, aliased ``hv-1..``
    in order of the first objective (best first)."""
    frame = candidate_trials(data)
    values = data.values(frame)
    reference = data.reference.point
    chosen = hypervolume_subset(values, data.directions, reference, size)
    first_up = data.directions[0] == "maximize"
    chosen.sort(key=lambda i: -values[i, 0] if first_up else values[i, 0])
    from analysis.pareto import hypervolume

    total = hypervolume(values, data.directions, reference)
    kept = hypervolume(values[chosen], data.directions, reference) if chosen else 0.0
    share = kept / total if total > 0 else 0.0
    variants = []
    for rank, index in enumerate(chosen, start=1):
        row = frame.iloc[index]
        shown = ", ".join(f"{m} {v:.3f}" for m, v in zip(data.metrics, values[index], strict=True))
        variants.append(
            Variant(
                alias=f"hv-{rank}",
                number=int(row["number"]),
                reason=f"{rank} of {len(chosen)} front points keeping {share:.1%} of the "
                f"hypervolume: {shown}",
                criterion={"hypervolume_share": share},
            )
        )
    return variants


def select_variants(
    data: SweepData,
    budgets: Sequence[int],
    *,
    hv_subset: int | None = None,
    knee: bool = True,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> list[Variant]:
    """Every variant one selection asks for, in the order ``select`` reports them: one per
    budget, then the hypervolume subset, then the knee. The CLI and the dashboard's deploy
    page both call this, so they cannot choose differently."""
    if not budgets and hv_subset is None and not knee:
        raise AnalysisError(
            "nothing to select", fix="give a budget K, a hypervolume subset size, or keep the knee"
        )
    variants = select_budgets(data, budgets, n_draws=n_draws, seed=seed) if budgets else []
    if hv_subset is not None:
        variants += select_hypervolume_subset(data, hv_subset)
    if knee:
        variants.append(select_knee(data))
    return variants
