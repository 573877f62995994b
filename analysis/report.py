"""Everything ``front`` shows, computed once: the CLI and the dashboard both read this.

:func:`analyse_front` takes a loaded sweep and returns a :class:`FrontAnalysis` (Pareto mask
and ranks, hypervolume, contributions and history, per-trial intervals and the probability
of being non-dominated, the knee, the Pass@U-k envelope); :func:`front_document` renders it as
the ``front --json`` document (docs/analysis.md).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from analysis.frontier import envelope, pass_curves
from analysis.jsonable import finite_or_none, json_value
from analysis.loader import COST_COLUMN_PREFIX
from analysis.pareto import (
    ReferencePoint,
    hypervolume,
    hypervolume_contributions,
    hypervolume_history,
    pareto_mask,
    pareto_ranks,
)
from analysis.selection import select_knee
from analysis.uncertainty import DEFAULT_DRAWS, Draws, draw_metrics, p_nondominated
from bao.records import COST_KEYS
from sweep.cost import total

if TYPE_CHECKING:
    import pandas as pd

    from analysis.loader import SweepData

COLLAPSE_METRIC = "eval/no_answer_rate"
COLLAPSE_AT = 0.999
"""A trial whose agent never answers on (almost) every task has collapsed (docs/analysis.md,
"The front"): it costs the user nothing and helps nobody, and the front must say so."""


def collapsed_numbers(frame: pd.DataFrame) -> list[int]:
    """The trials of ``frame`` that have collapsed: the one place the rule is written (the
    front document, the dashboard and the benchmarks ask here)."""
    if COLLAPSE_METRIC not in frame:
        return []
    rates = frame[COLLAPSE_METRIC].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        silent = np.isfinite(rates) & (rates >= COLLAPSE_AT)
    return [int(n) for n in frame["number"].to_numpy()[silent]]


@dataclass
class FrontAnalysis:
    data: SweepData
    frame: pd.DataFrame
    """Complete trials with finite objective values, the rows of every array below."""
    values: NDArray[np.float64]
    feasible: NDArray[np.bool_]
    pareto: NDArray[np.bool_]
    ranks: NDArray[np.int64]
    p_nondominated: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    draws: Draws
    reference: ReferencePoint
    hypervolume: float
    contributions: NDArray[np.float64]
    history: pd.DataFrame
    """``number``, ``hypervolume`` after each trial in completion order."""
    knee: int | None
    envelope: pd.DataFrame
    curves: pd.DataFrame

    @property
    def front_numbers(self) -> list[int]:
        return [int(n) for n in self.frame["number"].to_numpy()[self.pareto]]

    def front_hash(self) -> str:
        """Identifies the front a choice was made from: its trials, values and reference."""
        rows = sorted(
            (int(n), [round(float(v), 12) for v in self.values[i]])
            for i, n in enumerate(self.frame["number"])
            if self.pareto[i]
        )
        text = json.dumps({"front": rows, "reference": self.reference.version})
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def analyse_front(data: SweepData, *, n_draws: int = DEFAULT_DRAWS, seed: int = 0) -> FrontAnalysis:
    import pandas as pd

    frame = data.complete.reset_index(drop=True)
    values = data.values(frame)
    feasible = frame["feasible"].to_numpy(dtype=bool)
    directions = data.directions
    mask = pareto_mask(values, directions, feasible)
    draws = draw_metrics(data, frame, data.metrics, n_draws, seed=seed)
    low, high = draws.interval()
    reference = data.reference if len(frame) else _empty_reference(data)
    point = reference.point
    order = frame.sort_values(["datetime_complete", "number"], kind="stable").index.to_numpy()
    history = pd.DataFrame(
        {
            "number": frame["number"].to_numpy()[order],
            "hypervolume": hypervolume_history(values[order], directions, point, feasible[order]),
        }
    )
    knee = select_knee(data).number if mask.any() else None
    curves = pass_curves(data, frame[feasible])
    return FrontAnalysis(
        data=data,
        frame=frame,
        values=values,
        feasible=feasible,
        pareto=mask,
        ranks=pareto_ranks(values, directions, feasible),
        p_nondominated=p_nondominated(draws, directions, feasible),
        low=low,
        high=high,
        draws=draws,
        reference=reference,
        hypervolume=hypervolume(values, directions, point, feasible),
        contributions=hypervolume_contributions(values, directions, point, feasible),
        history=history,
        knee=knee,
        envelope=envelope(data, curves) if not curves.empty else curves.iloc[0:0],
        curves=curves,
    )


def _empty_reference(data: SweepData) -> ReferencePoint:
    """A sweep without complete trials still has a reference point when it is governed."""
    from analysis.pareto import AnalysisError, reference_point

    thresholds = [o.threshold for o in data.loaded.config.objectives]
    try:
        return reference_point(data.metrics, data.directions, thresholds)
    except AnalysisError:
        return ReferencePoint(
            metrics=tuple(data.metrics),
            directions=tuple(data.directions),  # type: ignore[arg-type]
            point=tuple(math.nan for _ in data.metrics),
            sources=tuple("nadir" for _ in data.metrics),
        )


def front_document(analysis: FrontAnalysis) -> dict[str, Any]:
    """The ``front --json`` document: every trial, complete or not."""
    data = analysis.data
    by_number = {int(n): i for i, n in enumerate(analysis.frame["number"])}
    collapsed = set(collapsed_numbers(data.trials))
    trials = []
    for record in data.trials.to_dict("records"):
        number = int(record["number"])
        index = by_number.get(number)
        params = {
            path: json_value(record.get(f"params.{path}"))
            for path in data.loaded.config.search_space
        }
        entry: dict[str, Any] = {
            "number": number,
            "state": record["state"],
            "params": params,
            "values": None,
            "pareto": False,
            "p_nondominated": 0.0,
            "mlflow_run_id": json_value(record.get("mlflow_run_id")),
        }
        if index is not None:
            entry["values"] = [finite_or_none(v) for v in analysis.values[index]]
            entry["pareto"] = bool(analysis.pareto[index])
            entry["p_nondominated"] = float(analysis.p_nondominated[index])
            entry["intervals"] = [
                [finite_or_none(lo), finite_or_none(hi)]
                for lo, hi in zip(analysis.low[index], analysis.high[index], strict=True)
            ]
            entry["uncertainty"] = list(analysis.draws.methods[index])
            entry["rank"] = int(analysis.ranks[index])
            entry["feasible"] = bool(analysis.feasible[index])
            entry["hypervolume_contribution"] = float(analysis.contributions[index])
            entry["collapsed"] = number in collapsed
        elif record["state"] == "COMPLETE":
            values = [finite_or_none(record.get(m)) for m in data.metrics]
            entry["values"] = values
        trials.append(entry)
    document = {
        "sweep": data.name,
        "objectives": [
            {"metric": m, "direction": d}
            for m, d in zip(data.metrics, data.directions, strict=True)
        ],
        "reference_point": [finite_or_none(x) for x in analysis.reference.point],
        "reference_point_sources": list(analysis.reference.sources),
        "reference_point_version": analysis.reference.version,
        "hypervolume": analysis.hypervolume,
        "front": analysis.front_numbers,
        "front_hash": analysis.front_hash(),
        "knee": analysis.knee,
        "pass_at_u_envelope": [
            {
                "k": int(row["k"]),
                "pass_rate": float(row["pass_rate"]),
                "trial": int(row["trial"]),
                "interval": [finite_or_none(row["lo"]), finite_or_none(row["hi"])],
                "attainers": list(row["attainers"]),
            }
            for _, row in analysis.envelope.iterrows()
        ],
        "n_draws": int(analysis.draws.samples.shape[0]),
        "trials": trials,
        # Pruned trials stopped before their end: never on the front, counted here.
        "pruned": int((data.trials["state"] == "PRUNED").sum()),
    }
    costs = trial_costs(data.trials)
    if costs:  # only sweeps that recorded costs: older documents read as they did
        front = set(analysis.front_numbers)
        document["front_cost"] = total(cost for n, cost in costs.items() if n in front)
        document["cost"] = total(costs.values())
        for entry in trials:
            entry["cost"] = costs.get(entry["number"])
    return document


def trial_costs(trials: pd.DataFrame) -> dict[int, dict[str, float]]:
    """Trial number -> its recorded cost (the ``cost.*`` columns of the trials frame), for the
    trials that have one."""
    columns = {key: f"{COST_COLUMN_PREFIX}{key}" for key in COST_KEYS}
    costs: dict[int, dict[str, float]] = {}
    for record in trials.to_dict("records"):
        values = {key: record.get(column) for key, column in columns.items()}
        if all(isinstance(v, float) and math.isfinite(v) for v in values.values()):
            costs[int(record["number"])] = {key: float(v) for key, v in values.items()}
    return costs
