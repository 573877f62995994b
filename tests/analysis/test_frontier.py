"""The Pass@U-k envelope and budget selection on constructed sweeps."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.frontier import envelope, pass_curves
from analysis.pareto import AnalysisError
from analysis.selection import knee_index, select_budgets, select_knee
from tests.analysis.builders import made_sweep, trial_row

UR = "eval/user_involvement_rate"


def curve(p: list[float], ur: float) -> dict[str, float]:
    metrics = {f"eval/pass_at_u_{k}": value for k, value in enumerate(p, start=1)}
    metrics[UR] = ur
    return metrics


def constructed():
    """Trial 0: cautious (best at k=1); trial 1: asks often (best at k=3); trial 2: equal to
    trial 0 at k=1 but more burdensome; trial 3: failed; trial 4: infeasible."""
    rows = [
        trial_row(0, curve([0.50, 0.52, 0.53], 0.05)),
        trial_row(1, curve([0.45, 0.60, 0.70], 0.30)),
        trial_row(2, curve([0.50, 0.51, 0.52], 0.08)),
        trial_row(3, curve([np.nan] * 3, np.nan), state="FAIL"),
        {**trial_row(4, curve([0.90, 0.95, 0.99], 0.9)), "feasible": False},
    ]
    return made_sweep(rows)


def test_envelope_picks_the_best_trial_per_k_and_its_attainers() -> None:
    table = envelope(constructed()).set_index("k")
    assert table.loc[1, "trial"] == 0  # tie 0.50 with trial 2: lower involvement wins
    assert table.loc[2, "trial"] == 1
    assert table.loc[3, "trial"] == 1
    assert table.loc[3, "pass_rate"] == pytest.approx(0.70)
    # At k = 1 trials 0, 2 tie and trial 1 (0.45, n=200) reaches 0.50 within its interval.
    assert table.loc[1, "attainers"] == [0, 2, 1]
    # At k = 3, 0.70 is out of reach of the others' intervals.
    assert table.loc[3, "attainers"] == [1]
    assert 4 not in pass_curves(constructed())["number"].tolist()  # infeasible left out


def test_budget_selection_reports_runner_up_margin_and_reason() -> None:
    one, three = select_budgets(constructed(), [1, 3], n_draws=300, seed=0)
    assert (one.alias, one.number, one.runner_up, one.margin) == ("budget-1", 0, 2, 0.0)
    assert "lower user involvement (0.050 vs 0.080)" in one.reason
    assert (three.alias, three.number, three.runner_up) == ("budget-3", 1, 0)
    assert three.margin == pytest.approx(0.17)
    assert "margin +0.170 over trial 0" in three.reason
    assert three.p_chosen is not None
    assert three.p_chosen > 0.95
    # Draws are seeded: the same call gives the same probabilities.
    again = select_budgets(constructed(), [1, 3], n_draws=300, seed=0)
    assert [v.p_chosen for v in again] == [one.p_chosen, three.p_chosen]


def test_budget_outside_the_logged_ks_is_one_line() -> None:
    with pytest.raises(AnalysisError, match="budget 7 has no Pass@U-7"):
        select_budgets(constructed(), [7])


def test_knee_of_a_bent_front() -> None:
    # A front with a clear bend at (0.8, 0.2): beyond it pass rate barely improves.
    values = np.array([[0.2, 0.0], [0.8, 0.2], [0.85, 0.6], [0.9, 1.0]])
    directions = ["maximize", "minimize"]
    assert knee_index(values, directions) == 1
    # Asking for a high pass rate moves the knee along the front.
    assert knee_index(values, directions, aspiration=[0.9, 0.6]) == 2
    assert knee_index(values, directions, weights=[1.0, 100.0]) == 0
    assert knee_index(values, directions, method="high_tradeoff") == 1


def test_select_knee_uses_the_sweep_front() -> None:
    rows = [
        trial_row(0, {"eval/pass_at_u_1": 0.2, UR: 0.0}),
        trial_row(1, {"eval/pass_at_u_1": 0.8, UR: 0.2}),
        trial_row(2, {"eval/pass_at_u_1": 0.9, UR: 1.0}),
        trial_row(3, {"eval/pass_at_u_1": 0.5, UR: 0.5}),  # dominated
    ]
    knee = select_knee(made_sweep(rows))
    assert (knee.alias, knee.number) == ("knee", 1)
    assert "3-point front" in knee.reason


def test_float_noise_of_seed_means_is_a_tie() -> None:
    seed_mean = (119 / 200 + 119 / 200 + 107 / 200) / 3  # 0.5750000000000001
    rows = [
        trial_row(0, curve([seed_mean, 0.6, 0.6], 0.30), seeds=3),
        trial_row(1, curve([0.575, 0.6, 0.6], 0.10)),
    ]
    (one,) = select_budgets(made_sweep(rows), [1], n_draws=50)
    assert one.number == 1
    assert one.margin == 0.0
    assert "lower user involvement (0.100 vs 0.300)" in one.reason
    assert envelope(made_sweep(rows)).set_index("k").loc[1, "trial"] == 1


def test_without_a_noise_model_no_probability_is_claimed() -> None:
    rows = [trial_row(0, curve([0.5, 0.5, 0.5], 0.1)), trial_row(1, curve([0.4, 0.4, 0.4], 0.1))]
    for row in rows:
        del row["eval/n_trajectories"]
    (one,) = select_budgets(made_sweep(rows), [1], n_draws=50)
    assert one.number == 0
    assert one.p_chosen is None
    assert "no noise model" in one.reason
    assert one.criterion["interval"] == [None, None]  # JSON null, never NaN


def test_hypervolume_subset_never_picks_a_point_at_the_reference() -> None:
    from analysis.selection import select_hypervolume_subset

    rows = [
        trial_row(0, {"eval/pass_at_u_1": 0.515, UR: 0.034}),
        trial_row(1, {"eval/pass_at_u_1": 0.0, UR: 0.0}),  # collapsed: adds no hypervolume
    ]
    variants = select_hypervolume_subset(made_sweep(rows), 2)
    assert [v.number for v in variants] == [0]
