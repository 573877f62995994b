"""benchmarks/bench_sweep_efficiency.py: drivers run in memory, and the scoring is right."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_sweep_efficiency as bench

SCORE, INVOLVEMENT = "eval/score", "eval/user_involvement_rate"
# The quickstart's reference point (its thresholds): score 0.1, involvement 0.0625.


def record(
    lam: float, score: float, involvement: float, passes: tuple[float, ...]
) -> dict[str, Any]:
    return {
        "params": {bench.LAMBDA: lam},
        SCORE: score,
        INVOLVEMENT: involvement,
        **{f"eval/pass_at_u_{k}": p for k, p in zip(bench.REGRET_KS, passes, strict=True)},
        "eval/no_answer_rate": 1.0 if score == 0 else 0.4,
        "seconds": 1.0,
    }


NEVER = (0.0, 0.0, 0.0, 0.0)
COLLAPSED = record(0.5, 0.0, 0.0, NEVER)
BEST_SCORE = record(0.01, 0.52, 0.05, (0.30, 0.40, 0.50, 0.52))
LEAST_BURDEN = record(0.02, 0.40, 0.02, (0.35, 0.38, 0.40, 0.40))
# Their boxes up to the reference point, and the overlap counted once.
FRONT_HV = 0.3 * 0.0425 + 0.42 * 0.0125 - 0.3 * 0.0125


def runs(settings: bench.Settings) -> dict[str, Any]:
    """Random search finds the whole front by its 2nd trial; TPE only collapses."""
    largest = max(settings.budgets)
    drivers = {("tpe", seed): [COLLAPSED] * largest for seed in range(settings.seeds)}
    for seed in range(settings.seeds):
        found = [BEST_SCORE, LEAST_BURDEN, *[COLLAPSED] * (largest - 2)]
        drivers[("random", seed)] = found
    return {
        "drivers": drivers,
        "grids": {budget: [LEAST_BURDEN] * budget for budget in settings.budgets},
        "dense_records": [COLLAPSED, BEST_SCORE],
        "noise_records": [record(0.01, 0.0, 0.0, NEVER), record(0.3, 0.45, 0.01, NEVER)],
        "retrained_records": [record(0.02, 0.5, 0.05, NEVER)],
    }


SETTINGS = bench.Settings(
    iterations=1,
    budgets=(2, 4),
    seeds=2,
    dense=2,
    noise_subset=None,
    drivers=("tpe", "random", bench.GRID),
)


def test_fractions_regret_and_trials_to_reach() -> None:
    data = runs(SETTINGS)
    results = bench.analyse(
        SETTINGS,
        data["drivers"],
        data["grids"],
        dense_records=data["dense_records"],
        noise_records=data["noise_records"],
        retrained_records=data["retrained_records"],
    )
    assert results["problem"]["reference_point"] == [0.1, 0.0625]
    front = results["reference_front"]
    assert [r["params"][bench.LAMBDA] for r in front] == [0.5, 0.02, 0.01]
    assert results["reference_hypervolume"] == pytest.approx(FRONT_HV)
    # The least-burden agent alone holds its own box of the front.
    assert results["best_single_agent_share"] == pytest.approx(0.3 * 0.0425 / FRONT_HV)
    table = results["drivers"]
    assert table["random"]["hypervolume"]["2"]["mean"] == pytest.approx(1.0)
    assert table["tpe"]["hypervolume"]["4"]["mean"] == 0.0
    # Regret: best Pass@U-k (0.35, 0.40, 0.50, 0.52) minus the best found, mean over k.
    assert table["random"]["regret"]["2"]["mean"] == pytest.approx(0.0)
    assert table["tpe"]["regret"]["4"]["mean"] == pytest.approx((0.35 + 0.40 + 0.50 + 0.52) / 4)
    assert bench.regret([LEAST_BURDEN], bench.best_pass_at_u(front)) == pytest.approx(
        (0.0 + 0.02 + 0.10 + 0.12) / 4
    )
    reach = table["random"]["trials_to"]["0.9"]
    assert (reach["mean"], reach["reached"], reach["runs"]) == (2.0, 2, [2, 2])
    never = table["tpe"]["trials_to"]["0.95"]
    assert (never["mean"], never["reached"]) == (5.0, 0)  # counted as the budget + 1
    grid = table[bench.GRID]
    assert grid["hypervolume"]["2"]["mean"] == pytest.approx(0.3 * 0.0425 / FRONT_HV)
    assert grid["trials_to"]["0.9"]["budget"] is None  # 0.895 of the front
    assert results["dense_design_fraction"] == pytest.approx(0.42 * 0.0125 / FRONT_HV)
    # Re-trained with the second seed, the least-burden configuration does worse.
    retrained = results["retrained_front"]
    assert retrained["configurations"] == 2  # the collapsed corner was not re-trained
    second_front = 0.35 * 0.0525 + 0.4 * 0.0125 - 0.35 * 0.0125
    assert retrained["fraction_of_that_seeds_front"] == pytest.approx(0.4 * 0.0125 / second_front)
    assert results["collapsed_share"] == {"training_seed": 0.5, "second_seed": 0.5}


def test_reach_counts_runs_that_never_got_there_as_the_budget_plus_one() -> None:
    summary = bench.reach_summary([3, None, 5], budget=10)
    assert summary["mean"] == pytest.approx((3 + 11 + 5) / 3)
    assert summary["reached"] == 2
    # The interval of (3, 11, 5) is wider than [1, 11]: clipped to what a count can be.
    assert summary["low"] == 1.0
    assert summary["high"] == 11.0


def test_budgets_up_to_the_trials() -> None:
    assert bench.budgets_up_to(40) == (10, 20, 40)
    assert bench.budgets_up_to(20) == (10, 20)
    assert bench.budgets_up_to(15) == (10, 15)
    assert bench.budgets_up_to(3) == (3,)


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


@pytest.mark.parametrize("name", ["tpe", "pymoo-nsga2"])
def test_the_project_drivers_run_in_memory(name: str) -> None:
    trials = bench.run_driver(name, driver_seed=1, budget=3, iterations=1)
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
        assert set(bench.KEPT_METRICS) <= set(trial)


def test_reanalyse_prints_the_tables_of_a_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = runs(SETTINGS)
    saved = {
        "settings": {
            **SETTINGS.__dict__,
            "budgets": list(SETTINGS.budgets),
            "drivers": list(SETTINGS.drivers),
        },
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
    assert "random: random search" in printed
    assert "1.000" in printed
    assert "counts as 5" in printed


def landscape(params: dict[str, Any], seed: int, iterations: int) -> dict[str, float]:
    """A stand-in for the simulator's training (its cost is not what this test is about):
    lambda above 0.3 collapses; below it, more lambda buys less burden for less score."""
    lam = params[bench.LAMBDA]
    score = 0.0 if lam > 0.3 else 0.5 - lam
    metrics = {
        SCORE: score,
        INVOLVEMENT: 0.0 if score == 0 else 0.06 - 0.15 * lam,
        "eval/no_answer_rate": 1.0 if score == 0 else 0.5,
        **{f"eval/pass_at_u_{k}": score * (0.6 + 0.05 * k) for k in bench.REGRET_KS},
    }
    return {**metrics, "seconds": 0.0}


def test_a_reduced_run_writes_every_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "train_once", landscape)  # the pool's workers are forked
    argv = ["--drivers", "random", "botorch", "pymoo-nsga2", "lambda-grid", "--seeds", "2"]
    argv += ["--trials", "3", "--iterations", "1", "--dense", "4", "--jobs", "1"]
    assert bench.main([*argv, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "bench_sweep_efficiency.json").read_text())
    assert results["settings"]["budgets"] == [3]
    assert results["settings"]["drivers"] == ["random", "botorch", "pymoo-nsga2", "lambda-grid"]
    assert set(results["drivers"]) == {"random", "botorch", "pymoo-nsga2", "lambda-grid"}
    every = [r for runs in results["driver_runs"].values() for r in runs]
    assert len(every) == 3 * 2 * 3
    for run in every:  # what each trial was scored on is what it trained
        assert run[SCORE] == landscape(run["params"], 0, 1)[SCORE]
    best = max(r["eval/pass_at_u_5"] for r in [*every, *results["dense_runs"]])
    best = max([best, *(r["eval/pass_at_u_5"] for g in results["grid_runs"].values() for r in g)])
    assert results["best_pass_at_u"]["5"] == pytest.approx(best)
    for name in ("random", "botorch", "pymoo-nsga2"):
        row = results["drivers"][name]
        assert 0.0 <= row["hypervolume"]["3"]["mean"] <= 1.0
        assert row["regret"]["3"]["mean"] >= 0.0
        assert row["trials_to"]["0.9"]["runs"] != []
    assert 0.0 < results["best_single_agent_share"] <= 1.0
    printed = capsys.readouterr().out
    assert "Per-budget regret" in printed
    assert "botorch: BoTorch qLogNEHVI" in printed


def test_an_old_results_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"settings": {"repeats": 3, "budgets": [10]}}))
    assert bench.main(["--reanalyse", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "re-run the benchmark" in error


# A proposal's parameters at full precision: the lookup must survive the JSON round trip.
PROPOSED = {bench.LAMBDA: 0.27440675196366238, "shaping.info_seeking": 0.21455680991172586}
PROPOSED_RUN = {**BEST_SCORE, "params": PROPOSED}


def saved_results(tmp_path: Path, **extra: Any) -> Path:
    """A results file holding one driver run and one second-seed run (60 iterations)."""
    path = tmp_path / "earlier.json"
    path.write_text(
        json.dumps(
            {
                "settings": {"iterations": 60},
                "driver_runs": {"random/seed0": [PROPOSED_RUN]},
                "grid_runs": {},
                "dense_runs": [],
                "noise_runs": [LEAST_BURDEN],
                **extra,
            }
        )
    )
    return path


class TrainedAgainError(Exception):
    """Raised by the simulator's trainer where the benchmark should have reused a run."""


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import bao.sim.trainer

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise TrainedAgainError

    monkeypatch.setattr(bao.sim.trainer, "train", refuse)
    monkeypatch.setattr(bench, "_reused", {})


@pytest.mark.usefixtures("no_training")
def test_reuse_takes_an_earlier_training_instead_of_training_again(tmp_path: Path) -> None:
    fingerprint = bench.sources_fingerprint()
    path = saved_results(tmp_path, sources_fingerprint=fingerprint)
    trainings, verified = bench.reusable_trainings(path, 60, fingerprint)
    assert verified
    bench._use_reused(trainings)
    metrics = bench.train_once(dict(PROPOSED), bench.TRAINING_SEED, 60)
    assert metrics[SCORE] == 0.52
    assert metrics[INVOLVEMENT] == 0.05
    assert metrics["eval/pass_at_u_1"] == 0.30
    # Each run is kept under the seed it trained with: the second seed's is not the first's.
    assert bench.train_once(LEAST_BURDEN["params"], bench.NOISE_SEED, 60)[SCORE] == 0.40
    with pytest.raises(TrainedAgainError):
        bench.train_once(LEAST_BURDEN["params"], bench.TRAINING_SEED, 60)
    with pytest.raises(TrainedAgainError):
        bench.train_once(dict(PROPOSED), bench.TRAINING_SEED, 40)


def test_a_file_without_fingerprint_is_reused_unverified(tmp_path: Path) -> None:
    trainings, verified = bench.reusable_trainings(saved_results(tmp_path), 60, "f" * 64)
    assert not verified
    assert len(trainings) == 2


@pytest.mark.parametrize(
    ("extra", "iterations", "message"),
    [
        ({}, 40, "trained with 60 iterations, this run uses 40"),
        ({"sources_fingerprint": "0" * 64}, 60, "made with other simulator sources"),
        ({"dense_runs": None}, 60, "not a results file of this benchmark"),
        ({"noise_runs": [{"params": {}}]}, 60, "not a results file of this benchmark"),
    ],
)
def test_reuse_refuses_a_file_made_with_other_iterations_or_sources(
    tmp_path: Path, extra: dict[str, Any], iterations: int, message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        bench.reusable_trainings(saved_results(tmp_path, **extra), iterations, "f" * 64)


def test_seed_agreement_correlates_each_objective_and_compares_collapse_with_chance() -> None:
    def run(lam: float, score: float, involvement: float, no_answer: float) -> dict[str, Any]:
        return {
            "params": {bench.LAMBDA: lam},
            SCORE: score,
            INVOLVEMENT: involvement,
            "eval/no_answer_rate": no_answer,
        }

    first = [run(0.1, 0.1, 0.01, 0.0), run(0.2, 0.2, 0.02, 0.0), run(0.3, 0.3, 0.03, 1.0)]
    # The second seed reverses the scores, keeps the involvement, and collapses one more.
    second = [run(0.3, 0.1, 0.03, 1.0), run(0.2, 0.2, 0.02, 1.0), run(0.1, 0.3, 0.01, 0.0)]
    second.append(run(0.4, 0.5, 0.05, 0.0))  # trained with the second seed only: left out
    agreement = bench.seed_agreement(first, second)
    assert agreement["configurations"] == 3
    assert agreement["correlation"][SCORE] == pytest.approx(-1.0)
    assert agreement["correlation"][INVOLVEMENT] == pytest.approx(1.0)
    # Never answering: (no, no, yes) against (no, yes, yes); by chance 1/3 * 2/3 twice.
    assert agreement["collapse_agreement"] == pytest.approx(2 / 3)
    assert agreement["collapse_agreement_by_chance"] == pytest.approx(4 / 9)
