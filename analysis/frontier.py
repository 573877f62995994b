"""The Pass@U-k frontier: pass rate against the number of user-involved actions allowed.

Each trial's evaluation gives one operating point per k (``eval/pass_at_u_k``, the share of
tasks solved within the first k answers the user has to check). The *envelope* is, for each
k, the best pass rate any (feasible, complete) trial reaches; the trials whose Wilson interval
still reaches that best value are its *attainers*: the data cannot tell them apart from the
best at that budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import numpy as np

from analysis.uncertainty import wilson_pass_intervals

if TYPE_CHECKING:
    import pandas as pd

    from analysis.loader import SweepData

INVOLVEMENT: Final = "eval/user_involvement_rate"
"""The tie-breaker between equal pass rates: the less burdensome agent wins."""
TIE_DECIMALS: Final = 9
"""Pass rates equal to this many decimals are equal (float noise of seed means)."""


def candidate_trials(data: SweepData, include_infeasible: bool = False) -> pd.DataFrame:
    """Complete trials (and feasible, unless told otherwise): who may be chosen."""
    frame = data.trials[data.trials["state"] == "COMPLETE"]
    if not include_infeasible:
        frame = frame[frame["feasible"].astype(bool)]
    return frame


def pass_curves(data: SweepData, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long table: ``number, k, pass_rate, lo, hi, n`` plus the trial's user involvement."""
    chosen = candidate_trials(data) if frame is None else frame
    curves = wilson_pass_intervals(chosen, data.k_values())
    if INVOLVEMENT in chosen:
        involvement = dict(zip(chosen["number"], chosen[INVOLVEMENT], strict=True))
        curves["user_involvement_rate"] = curves["number"].map(involvement)
    return curves


def rank_at_k(curves: pd.DataFrame, k: int) -> pd.DataFrame:
    """The trials' rows at budget k, best first: higher pass rate, then lower user
    involvement, then the earlier trial."""
    rows = curves[curves["k"] == k].copy()
    involvement = rows.get("user_involvement_rate")
    rows["_tie"] = involvement.fillna(np.inf) if involvement is not None else 0.0
    # A seed mean such as 0.5750000000000001 ties with 0.575: compare at TIE_DECIMALS.
    rows["_rate"] = rows["pass_rate"].round(TIE_DECIMALS)
    rows = rows.sort_values(["_rate", "_tie", "number"], ascending=[False, True, True])
    return rows.drop(columns=["_tie", "_rate"])


def envelope(data: SweepData, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per k: ``pass_rate`` (the best), ``trial`` (who attains it, ties to lower
    involvement), its interval, and ``attainers`` (trials whose interval reaches it)."""
    import pandas as pd

    table = pass_curves(data) if curves is None else curves
    rows = []
    for k in sorted(table["k"].unique()) if not table.empty else []:
        ranked = rank_at_k(table, int(k))
        best = ranked.iloc[0]
        reach = ranked["hi"].fillna(ranked["pass_rate"]) >= best["pass_rate"] - 10.0**-TIE_DECIMALS
        rows.append(
            {
                "k": int(k),
                "pass_rate": float(best["pass_rate"]),
                "trial": int(best["number"]),
                "lo": float(best["lo"]),
                "hi": float(best["hi"]),
                "attainers": [int(n) for n in ranked.loc[reach, "number"]],
            }
        )
    return pd.DataFrame(rows, columns=["k", "pass_rate", "trial", "lo", "hi", "attainers"])


def operating_points(curves: pd.DataFrame, numbers: Sequence[int]) -> pd.DataFrame:
    """The Pass@U-k curve of each trial in ``numbers`` (for plots and manifests)."""
    return curves[curves["number"].isin(list(numbers))].sort_values(["number", "k"])
