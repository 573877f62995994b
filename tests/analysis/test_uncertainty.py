"""Draws, intervals, the probability of being non-dominated, and sweep comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.pareto import AnalysisError
from analysis.uncertainty import (
    BETA,
    FIXED,
    SEED_BOOTSTRAP,
    attainment_surfaces,
    compare_sweeps,
    draw_metrics,
    p_nondominated,
    seed_bootstrap,
    wilson_pass_intervals,
)
from tests.analysis.builders import made_sweep, sweep_config, trial_row

METRICS = ["eval/pass_at_u_1", "eval/user_involvement_rate"]
DIRECTIONS = ["maximize", "minimize"]


def three_trials(n_eval: int = 200):
    return made_sweep(
        [
            trial_row(0, {METRICS[0]: 0.60, METRICS[1]: 0.10}, n_eval=n_eval),
            trial_row(1, {METRICS[0]: 0.20, METRICS[1]: 0.50}, n_eval=n_eval),
            trial_row(2, {METRICS[0]: 0.59, METRICS[1]: 0.11}, n_eval=n_eval),
        ]
    )


def test_draws_are_seeded_and_reproducible() -> None:
    data = three_trials()
    first = draw_metrics(data, data.trials, METRICS, n_draws=300, seed=5)
    again = draw_metrics(data, data.trials, METRICS, n_draws=300, seed=5)
    other = draw_metrics(data, data.trials, METRICS, n_draws=300, seed=6)
    assert np.array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, other.samples)
    assert first.methods[0] == (BETA, BETA)
    # Beta draws centre on the observed share and stay inside [0, 1].
    assert first.samples.min() >= 0
    assert first.samples.max() <= 1
    assert first.samples[:, 0, 0].mean() == pytest.approx(0.60, abs=0.01)


def test_seed_bootstrap_resamples_seeds_jointly() -> None:
    rows = [trial_row(0, {METRICS[0]: 0.5, METRICS[1]: 0.2}, seeds=3)]
    seeds = [
        {"number": 0, "seed": s, "run_id": f"s{s}", METRICS[0]: p, METRICS[1]: u}
        for s, (p, u) in enumerate([(0.4, 0.1), (0.5, 0.2), (0.6, 0.3)])
    ]
    data = made_sweep(rows, seeds)
    draws = draw_metrics(data, data.trials, METRICS, n_draws=500, seed=1)
    assert draws.methods[0] == (SEED_BOOTSTRAP, SEED_BOOTSTRAP)
    sample = draws.samples[:, 0, :]
    # Every draw is a mean of three resampled seeds: on a grid of 1/3 steps of 0.1 ...
    assert np.allclose((sample[:, 0] - 0.4) * 30, np.round((sample[:, 0] - 0.4) * 30))
    # ... and the two metrics move together, because seeds are resampled jointly.
    assert np.allclose(sample[:, 1] - sample[:, 0], -0.3)
    mean, low, high = seed_bootstrap([0.4, 0.5, 0.6], n_boot=2000, seed=3)
    assert mean == pytest.approx(0.5)
    assert low < mean < high
    assert seed_bootstrap([0.4, 0.5, 0.6], n_boot=2000, seed=3) == (mean, low, high)
    with pytest.raises(AnalysisError):
        seed_bootstrap([])


def test_metrics_without_a_noise_model_are_held_fixed() -> None:
    data = made_sweep([trial_row(0, {METRICS[0]: 0.5, "train/seconds": 12.0})])
    draws = draw_metrics(data, data.trials, [METRICS[0], "train/seconds"], n_draws=50)
    assert draws.methods[0] == (BETA, FIXED)
    assert (draws.samples[:, 0, 1] == 12.0).all()


def test_p_nondominated_separates_clear_from_close_calls() -> None:
    data = three_trials()
    draws = draw_metrics(data, data.trials, METRICS, n_draws=400, seed=0)
    p = p_nondominated(draws, DIRECTIONS)
    assert p[1] < 0.01  # far behind on both objectives
    assert 0.2 < p[0] < 1
    assert 0.2 < p[2] < 1
    # With huge evaluations the noise vanishes and the observed front is certain.
    big = three_trials(n_eval=10**9)
    sure = p_nondominated(draw_metrics(big, big.trials, METRICS, 200, seed=0), DIRECTIONS)
    assert sure.tolist() == [1.0, 0.0, 0.0]


def test_wilson_intervals_pool_the_seeds() -> None:
    rows = [
        trial_row(0, {METRICS[0]: 0.5}, n_eval=100, seeds=1),
        trial_row(1, {METRICS[0]: 0.5}, n_eval=100, seeds=4),
    ]
    table = wilson_pass_intervals(made_sweep(rows).trials, [1]).set_index("number")
    assert table.loc[0, "n"] == 100
    assert table.loc[1, "n"] == 400
    width = table["hi"] - table["lo"]
    assert width[1] == pytest.approx(width[0] / 2, rel=0.05)


def test_comparison_of_two_sweeps() -> None:
    a = three_trials()
    same = draw_metrics  # noqa: F841 (readability: the same sweep twice)
    result = compare_sweeps(a, a, n_draws=300, seed=2)
    assert result.difference == 0.0
    assert result.low <= 0.0 <= result.high
    better = made_sweep(
        [trial_row(0, {METRICS[0]: 0.9, METRICS[1]: 0.05})], loaded=sweep_config(name="better")
    )
    ahead = compare_sweeps(better, a, n_draws=300, seed=2)
    assert ahead.difference > 0
    assert ahead.low > 0
    assert ahead.p_a_better == 1.0
    assert compare_sweeps(better, a, n_draws=300, seed=2) == ahead  # seeded
    other = made_sweep(
        [trial_row(0, {"eval/score": 0.5, METRICS[1]: 0.1})],
        loaded=sweep_config(
            objectives=[
                {"metric": "eval/score", "direction": "maximize"},
                {"metric": METRICS[1], "direction": "minimize"},
            ]
        ),
    )
    with pytest.raises(AnalysisError, match="different objectives"):
        compare_sweeps(a, other)


def test_attainment_surfaces_bracket_the_front() -> None:
    data = three_trials()
    draws = draw_metrics(data, data.trials, METRICS, n_draws=200, seed=0)
    surfaces = attainment_surfaces(draws, DIRECTIONS, percentiles=(10, 50, 90))
    assert set(surfaces["percentile"]) == {10, 50, 90}
    best_pass = {
        p: surfaces.loc[surfaces["percentile"] == p, METRICS[0]].max() for p in (10, 50, 90)
    }
    # Reached by more draws means a weaker point: 90% surface is below the 10% surface.
    assert best_pass[90] <= best_pass[50] <= best_pass[10]
    assert best_pass[50] == pytest.approx(0.60, abs=0.04)


def test_paired_task_bootstrap_keeps_shared_outcomes_tied() -> None:
    from analysis.outcomes import TaskOutcomes
    from analysis.uncertainty import TASK_BOOTSTRAP

    rng = np.random.default_rng(0)
    solved = (rng.random(100) < 0.5).astype(float)
    involvement_a = rng.random(100) * 0.1
    outcomes = TaskOutcomes(
        numbers=np.array([0, 1]),
        tasks=tuple(f"t{i}" for i in range(100)),
        values={
            METRICS[0]: np.vstack([solved, solved]),  # the same tasks solved
            METRICS[1]: np.vstack([involvement_a, involvement_a + 0.01]),  # 1 asks a bit more
        },
    )
    data = made_sweep(
        [
            trial_row(0, {METRICS[0]: solved.mean(), METRICS[1]: involvement_a.mean()}, n_eval=100),
            trial_row(
                1, {METRICS[0]: solved.mean(), METRICS[1]: involvement_a.mean() + 0.01}, n_eval=100
            ),
        ]
    )
    draws = draw_metrics(data, data.trials, METRICS, n_draws=300, seed=0, outcomes=outcomes)
    assert draws.methods == ((TASK_BOOTSTRAP,) * 2,) * 2
    assert np.array_equal(draws.samples[:, 0, 0], draws.samples[:, 1, 0])  # tied every draw
    assert draws.samples[:, 1, 1] - draws.samples[:, 0, 1] == pytest.approx(0.01)
    p = p_nondominated(draws, DIRECTIONS)
    assert p.tolist() == [1.0, 0.0]  # paired: 1 is dominated in every draw
    # Independent draws of the same numbers cannot see that.
    loose = p_nondominated(
        draw_metrics(data, data.trials, METRICS, 300, seed=0, outcomes=None), DIRECTIONS
    )
    assert loose[1] > 0.1


def test_data_derived_reference_does_not_depend_on_argument_order() -> None:
    objectives = [
        {"metric": METRICS[0], "direction": "maximize"},
        {"metric": "train/seconds", "direction": "minimize"},
    ]
    slow = made_sweep(
        [
            trial_row(0, {METRICS[0]: 0.5, "train/seconds": 400.0}),
            trial_row(1, {METRICS[0]: 0.6, "train/seconds": 500.0}),
        ],
        loaded=sweep_config(name="slow", objectives=objectives),
    )
    fast = made_sweep(
        [
            trial_row(0, {METRICS[0]: 0.5, "train/seconds": 90.0}),
            trial_row(1, {METRICS[0]: 0.55, "train/seconds": 100.0}),
        ],
        loaded=sweep_config(name="fast", objectives=objectives),
    )
    one = compare_sweeps(fast, slow, n_draws=50)
    other = compare_sweeps(slow, fast, n_draws=50)
    assert one.reference == other.reference
    assert one.difference == pytest.approx(-other.difference)
    assert one.difference > 0


def test_attainment_surfaces_refuse_three_objectives() -> None:
    data = three_trials()
    draws = draw_metrics(data, data.trials, [*METRICS, "eval/n_trajectories"], n_draws=5)
    with pytest.raises(AnalysisError, match="two objectives"):
        attainment_surfaces(draws, [*DIRECTIONS, "minimize"])
