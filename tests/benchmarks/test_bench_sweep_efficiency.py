"""benchmarks/bench_sweep_efficiency.py: drivers run in memory, and the scoring is right."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_sweep_efficiency as bench

SCORE, INVOLVEMENT = "eval/score", "eval/user_involvement_rate"


def record(lam: float, score: float, involvement: float) -> dict[str, Any]:
    return {
        "params": {bench.LAMBDA: lam},
        SCORE: score,
        INVOLVEMENT: involvement,
        "eval/pass_at_u_1": score,
        "eval/no_answer_rate": 1.0 if score == 0 else 0.4,
        "seconds": 1.0,
    }


COLLAPSED = record(0.5, 0.0, 0.0)
BEST_SCORE = record(0.01, 0.52, 0.10)
LEAST_BURDEN = record(0.02, 0.50, 0.03)


def runs(settings: bench.Settings) -> dict[str, Any]:
    """Random search finds the whole front by its 2nd trial; every other driver collapses."""
    drivers = {
        (name, repeat): [COLLAPSED] * max(settings.budgets)
        for name in bench.DRIVERS
        for repeat in range(settings.repeats)
    }
    for repeat in range(settings.repeats):
        found = [BEST_SCORE, LEAST_BURDEN, *[COLLAPSED] * (max(settings.budgets) - 2)]
        drivers[("random search", repeat)] = found
    return {
        "drivers": drivers,
        "grids": {budget: [LEAST_BURDEN] * budget for budget in settings.budgets},
        "dense_records": [COLLAPSED, BEST_SCORE],
        "noise_records": [record(0.01, 0.0, 0.0), record(0.3, 0.45, 0.01)],
        "retrained_records": [record(0.02, 0.5, 0.05)],
    }


def test_fractions_of_the_reference_front() -> None:
    settings = bench.Settings(iterations=1, budgets=(2, 4), repeats=2, dense=2, noise_subset=None)
    data = runs(settings)
    results = bench.analyse(
        settings,
        data["drivers"],
        data["grids"],
        dense_records=data["dense_records"],
        noise_records=data["noise_records"],
        retrained_records=data["retrained_records"],
    )
    front = results["reference_front"]
    assert [r["params"][bench.LAMBDA] for r in front] == [0.5, 0.02, 0.01]
    tight = results["by_reference_point"]["score 0, involvement 0.2"]
    # The front's hypervolume at (score 0, involvement 0.2), as a staircase.
    assert tight["reference_hypervolume"] == pytest.approx(0.5 * 0.17 + 0.02 * 0.10)
    table = tight["fractions"]
    assert table["random search"]["2"]["mean"] == pytest.approx(1.0)
    assert table["random search"]["trials_to_0.9"] == [2, 2]
    assert table["Optuna TPE (default)"]["4"]["mean"] == 0.0
    assert table["Optuna TPE (default)"]["trials_to_0.9"] == [None, None]
    grid = table[bench.GRID]["2"]["mean"]
    assert grid == pytest.approx(0.5 * 0.17 / tight["reference_hypervolume"])
    assert table[bench.GRID]["trials_to_0.9"] == [2]  # 0.976 of the front
    assert tight["dense_design_fraction"] == pytest.approx(0.052 / 0.087)
    # Re-trained with the second seed, the least-burden configuration does worse.
    retrained = tight["retrained_front"]
    assert retrained["configurations"] == 2  # the collapsed corner was not re-trained
    assert retrained["fraction_of_that_seeds_front"] == pytest.approx(0.075 / 0.093)
    assert results["collapsed_share"] == {"training_seed": 0.5, "second_seed": 0.5}


def test_interval_is_a_t_interval_clipped_to_fractions() -> None:
    assert bench.interval([0.5]) == (0.5, None, None)
    mean, low, high = bench.interval([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9)
    assert low == pytest.approx(0.9 - 4.302653 * 0.1 / 3**0.5, rel=1e-5)
    assert high == 1.0


def test_designs_cover_the_search_space() -> None:
    grid = bench.grid_design(5)
    assert [point[bench.LAMBDA] for point in grid] == [0.0, 0.125, 0.25, 0.375, 0.5]
    dense = bench.dense_design(20)
    assert dense == bench.dense_design(20)  # seeded
    lambdas = sorted(point[bench.LAMBDA] for point in dense)
    # A Latin hypercube: one point in each twentieth of every range.
    assert [int(value / 0.5 * 20) for value in lambdas] == list(range(20))
    assert all(0 <= point["shaping.over_thinking"] <= 0.1 for point in dense)


@pytest.mark.parametrize(("library", "algorithm"), [("optuna", "tpe"), ("pymoo", "nsga2")])
def test_the_project_drivers_run_in_memory(library: str, algorithm: str) -> None:
    trials = bench.run_driver(library, algorithm, driver_seed=1, budget=3, iterations=1)
    assert len(trials) == 3
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 3
    for trial in trials:
        assert set(trial["params"]) == {
            "shaping.user_lambda",
            "shaping.info_seeking",
            "shaping.over_thinking",
        }
        assert 0 <= trial[SCORE] <= 1
        assert 0 <= trial[INVOLVEMENT] <= 1


def test_reanalyse_prints_the_tables_of_a_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = bench.Settings(iterations=1, budgets=(2,), repeats=1, dense=2, noise_subset=None)
    data = runs(settings)
    saved = {
        "settings": {**settings.__dict__, "budgets": list(settings.budgets)},
        "driver_runs": {f"{name}/seed{r}": v for (name, r), v in data["drivers"].items()},
        "grid_runs": {str(b): v for b, v in data["grids"].items()},
        "dense_runs": data["dense_records"],
        "noise_runs": data["noise_records"],
        "retrained_runs": data["retrained_records"],
        "wall_s": 12.0,
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(saved))
    assert bench.main(["--reanalyse", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "random search" in printed
    assert "1.000" in printed
