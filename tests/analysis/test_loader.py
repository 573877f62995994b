"""The loader against a real workspace: Optuna SQLite storage plus MLflow SQLite database."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis.loader import _MEMORY, load_sweep
from tests.analysis.builders import real_workspace, sweep_config

P1, UR = "eval/pass_at_u_1", "eval/user_involvement_rate"


def metrics(p1: float, ur: float, **extra: float) -> dict[str, float]:
    return {P1: p1, UR: ur, "eval/n_trajectories": 200.0, "eval/no_answer_rate": 0.0, **extra}


def test_trials_and_seeds_are_one_tidy_frame(tmp_path: Path) -> None:
    data = real_workspace(
        tmp_path / "ws",
        [
            {"metrics": metrics(0.5, 0.1, **{"eval/score": 0.55})},
            {
                "metrics": metrics(0.6, 0.2),
                "seeds": [metrics(0.55, 0.18), metrics(0.65, 0.22)],
            },
            {"metrics": {}, "state": "FAIL"},
            {"metrics": {}, "state": "RUNNING"},
        ],
    )
    trials = data.trials.set_index("number")
    assert trials["state"].tolist() == ["COMPLETE", "COMPLETE", "FAIL", "RUNNING"]
    assert trials.loc[0, P1] == 0.5
    assert trials.loc[0, "eval/score"] == 0.55
    assert trials.loc[1, "params.shaping.user_lambda"] == pytest.approx(0.1)
    assert math.isnan(trials.loc[2, P1])  # a failed trial has no values, and says so
    assert trials["n_seeds"].tolist() == [1, 2, 0, 0]
    assert trials.loc[0, "eval_set_hash"] == "evalhash"
    seeds = data.seeds
    assert seeds[seeds["number"] == 1][P1].tolist() == [0.55, 0.65]
    assert seeds[seeds["number"] == 0]["run_id"].tolist() == [trials.loc[0, "mlflow_run_id"]]
    assert data.complete["number"].tolist() == [0, 1]
    assert data.k_values() == [1]
    assert data.reference.point == (0.0, 1.0)


def test_cache_is_reused_until_the_sweep_changes(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    real_workspace(workspace, [{"metrics": metrics(0.5, 0.1)}])
    cache = workspace / "sweeps" / "made" / ".analysis" / "trial_runs.parquet"
    _MEMORY.clear()
    first = load_sweep(workspace, "made")
    assert cache.is_file()
    _MEMORY.clear()
    again = load_sweep(workspace, "made")  # from the parquet cache
    assert again.signature == first.signature
    assert again.trials[P1].tolist() == first.trials[P1].tolist()
    assert load_sweep(workspace, "made") is again  # from memory
    # A new trial changes the signature: the next load reads MLflow again.
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    study = optuna.load_study(
        study_name="made", storage=f"sqlite:///{workspace / 'sweeps' / 'made' / 'optuna.db'}"
    )
    study.add_trial(
        create_trial(
            params={"shaping.user_lambda": 0.3},
            distributions={"shaping.user_lambda": FloatDistribution(0.0, 0.5)},
            values=[0.7, 0.3],
        )
    )
    grown = load_sweep(workspace, "made")
    assert grown.signature != first.signature
    assert len(grown.trials) == 2


def test_constraints_mark_trials_infeasible(tmp_path: Path) -> None:
    loaded = sweep_config(constraints=[f"{UR} <= 0.15"])
    data = real_workspace(
        tmp_path / "ws",
        [{"metrics": metrics(0.5, 0.1)}, {"metrics": metrics(0.9, 0.4)}],
        loaded=loaded,
    )
    assert data.trials["feasible"].tolist() == [True, False]


def test_unknown_sweep_is_one_line(tmp_path: Path) -> None:
    from bao.configuration import ConfigError

    real_workspace(tmp_path / "ws", [{"metrics": metrics(0.5, 0.1)}])
    with pytest.raises(ConfigError, match=r"no sweep named 'other'.*known sweeps: made"):
        load_sweep(tmp_path / "ws", "other")


@pytest.mark.parametrize(
    "specs",
    [[], [{"metrics": {}, "state": "RUNNING"}], [{"metrics": {}, "state": "FAIL"}]],
    ids=["no trials", "only running", "only failed"],
)
def test_sweeps_without_results_analyse_to_an_empty_front(tmp_path: Path, specs) -> None:
    from analysis.report import analyse_front, front_document

    data = real_workspace(tmp_path / "ws", specs)
    document = front_document(analyse_front(data, n_draws=10))
    assert document["front"] == []
    assert document["hypervolume"] == 0.0
    assert document["reference_point"] == [0.0, 1.0]
    assert len(document["trials"]) == len(specs)
