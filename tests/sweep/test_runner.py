"""The runner's failure model and records, on the fast command backend."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sweep.cli import main
from tests.sweep.conftest import WriteConfig, mlflow_runs, status_json


def _sweep(config: Path, workspace: Path, *extra: str) -> int:
    return main(["sweep", str(config), "--workspace", str(workspace), "--json", *extra])


def test_command_sweep_records_every_trial_in_optuna_and_mlflow(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _sweep(command_sweep("ok"), workspace) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["n_trials"], status["complete"], status["failed"]) == (4, 4, 0)
    runs = mlflow_runs(workspace, "cmd")
    parents = [r for r in runs.values() if r.data.tags.get("bao.role") == "sweep"]
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    children = [r for r in runs.values() if r.data.tags.get("bao.role") == "trial"]
    assert len(children) == 4
    for trial in status["trials"]:
        run = runs[trial["mlflow_run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["bao.trial_number"] == str(trial["number"])
        assert run.info.status == "FINISHED"
        x, y = trial["params"]["x"], trial["params"]["y"]
        assert trial["values"] == pytest.approx([x, 1 - x**0.5 + y])
        assert [run.data.metrics["f1"], run.data.metrics["f2"]] == trial["values"]
        assert run.data.params["trial.x"] == str(x)
    assert status_json(capsys, "cmd", workspace) == status


def test_flaky_trial_is_retried_with_a_link(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _sweep(command_sweep("flaky", driver={"algorithm": "random", "n_trials": 2}), workspace)
        == 0
    )
    status = json.loads(capsys.readouterr().out)
    assert status["complete"] == 2
    failed = [t for t in status["trials"] if t["state"] == "FAIL"]
    retries = [t for t in status["trials"] if t["retry_of"] is not None]
    assert len(failed) == 2
    assert sorted(t["retry_of"] for t in retries) == sorted(t["number"] for t in failed)
    by_number = {t["number"]: t for t in status["trials"]}
    for retry in retries:
        assert retry["state"] == "COMPLETE"
        assert retry["params"] == by_number[retry["retry_of"]]["params"]
    runs = mlflow_runs(workspace, "cmd")
    for trial in failed:
        run = runs[trial["mlflow_run_id"]]
        assert run.info.status == "FAILED"
        assert run.data.tags["bao.failure_reason"].startswith("exit_code: exit status 1")


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("fail", "exit_code: exit status 3: CUDA error: out of memory (simulated)"),
        ("nan", "bad_metrics: seed 0: f1=nan"),
        ("no-metrics", "missing_metrics: the command exited 0 but wrote no metrics file"),
        ("not-json", "bad_metrics:"),
    ],
)
def test_broken_runs_fail_with_a_reason_then_the_sweep_stops(
    command_sweep: WriteConfig,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    reason: str,
) -> None:
    assert _sweep(command_sweep(mode, max_retries=1), workspace) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "stopped after 4 failed trial attempts (0 complete)" in error[0]
    status = status_json(capsys, "cmd", workspace)
    assert [t["state"] for t in status["trials"]] == ["FAIL"] * 4
    # two parameter sets, each tried twice: the retry links back to the first attempt
    assert [t["retry_of"] for t in status["trials"]] == [None, 0, None, 2]
    runs = mlflow_runs(workspace, "cmd")
    for trial in status["trials"]:
        run = runs[trial["mlflow_run_id"]]
        assert run.info.status == "FAILED"
        assert run.data.tags["bao.failure_reason"].startswith(reason)
    (parent,) = [r for r in runs.values() if r.data.tags.get("bao.role") == "sweep"]
    assert parent.info.status == "FAILED"  # the aborted sweep's run is closed too


def test_a_hanging_run_is_stopped_at_the_timeout(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = command_sweep("hang", trial_timeout=1.5, max_retries=0, max_failures=1)
    assert _sweep(config, workspace) == 2
    status = status_json(capsys, "cmd", workspace)
    (trial,) = status["trials"]
    assert trial["state"] == "FAIL"
    run = mlflow_runs(workspace, "cmd")[trial["mlflow_run_id"]]
    assert run.data.tags["bao.failure_reason"] == "timeout: the trial ran past trial_timeout=1.5 s"


def test_seeds_per_trial_logs_nested_runs_mean_and_stderr(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = command_sweep("ok", seeds_per_trial=3, seed=10, driver={"n_trials": 2})
    assert _sweep(config, workspace) == 0
    status = json.loads(capsys.readouterr().out)
    runs = mlflow_runs(workspace, "cmd")
    for trial in status["trials"]:
        run = runs[trial["mlflow_run_id"]]
        seeds = [
            r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == run.info.run_id
        ]
        assert sorted(r.data.tags["bao.seed"] for r in seeds) == ["10", "11", "12"]
        x = trial["params"]["x"]
        # f1 = x + 0.01 * seed: mean over seeds 10..12 is x + 0.11, stderr 0.01 / sqrt(3) * 1
        assert trial["values"][0] == pytest.approx(x + 0.11)
        assert run.data.metrics["f1"] == pytest.approx(x + 0.11)
        assert run.data.metrics["f1_stderr"] == pytest.approx(0.01 / 3**0.5)


def test_constraints_reach_the_sampler_and_the_front(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = command_sweep(
        "ok", constraints=["g <= 0.5"], driver={"algorithm": "tpe", "n_trials": 6}
    )
    assert _sweep(config, workspace) == 0
    from sweep.records import open_sweep

    study = open_sweep(workspace, "cmd").study
    for trial in study.trials():
        (violation,) = trial.user_attrs["constraint_violations"]
        assert violation == pytest.approx(trial.params["y"] - 0.5)
    front = study.study.best_trials
    assert front
    assert all(t.params["y"] <= 0.5 for t in front)


def test_an_exhausted_grid_completes_its_last_trial(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Optuna's grid sampler calls study.stop() after the last point; outside study.optimize
    # that raises, after the values are stored. The trial is complete, not failed.
    config = command_sweep("ok", driver={"algorithm": "grid", "n_trials": 4, "grid_points": 2})
    assert _sweep(config, workspace) == 0
    status = json.loads(capsys.readouterr().out)
    assert [t["state"] for t in status["trials"]] == ["COMPLETE"] * 4
    runs = mlflow_runs(workspace, "cmd")
    for trial in status["trials"]:
        run = runs[trial["mlflow_run_id"]]
        assert run.info.status == "FINISHED"
        assert "bao.failure_reason" not in run.data.tags


@pytest.mark.parametrize("constrained", [False, True])
def test_the_runners_front_is_optunas_best_trials(constrained: bool) -> None:
    import optuna

    from sweep.front import pareto_front_trials

    directions = ["maximize", "minimize"]
    study = optuna.create_study(directions=directions)
    rng = random.Random(3)
    for index in range(300):
        trial = study.ask()
        # Few distinct values: ties and duplicated front points are common.
        values = [rng.randint(0, 12) / 12, rng.randint(0, 12) / 12]
        if constrained:
            trial.set_constraint("eval/user_involvement_rate <= 0.5", values[1] - 0.5)
        study.tell(trial, values)
        if index % 7 == 0:
            study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    expected = sorted(t.number for t in study.best_trials)
    assert [t.number for t in pareto_front_trials(complete, directions)] == expected
    assert len(expected) > 1
