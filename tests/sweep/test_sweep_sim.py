"""Whole sweeps on the simulator backend: every driver, kill and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sweep.algorithms import ALGORITHMS
from sweep.cli import main
from tests.sweep.conftest import OBJECTIVES, REPO_ROOT, WriteConfig, mlflow_runs, status_json

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

# Conformance: every registered algorithm (sweep/algorithms.py) runs a real sweep.
DRIVERS = list(ALGORITHMS)


def assert_status_matches_mlflow(status: dict[str, Any], workspace: Path) -> None:
    """Every trial has exactly one MLflow run, and the two records say the same thing."""
    runs = mlflow_runs(workspace, status["sweep"])
    trial_runs = [r for r in runs.values() if r.data.tags.get("bao.role") == "trial"]
    with_runs = [t for t in status["trials"] if t["mlflow_run_id"]]
    assert sorted(r.info.run_id for r in trial_runs) == sorted(
        t["mlflow_run_id"] for t in with_runs
    )
    for trial in with_runs:
        run = runs[trial["mlflow_run_id"]]
        assert run.data.tags["bao.trial_number"] == str(trial["number"])
        if trial["state"] == "COMPLETE":
            assert run.info.status == "FINISHED"
            metrics = [
                run.data.metrics["eval/score"],
                run.data.metrics["eval/user_involvement_rate"],
            ]
            assert metrics == trial["values"]
            for path, value in trial["params"].items():
                assert run.data.params[path] == str(value)  # what the training run used
        else:
            assert run.info.status in ("FAILED", "KILLED")
            assert run.data.tags["bao.failure_reason"]


@pytest.mark.parametrize(("library", "algorithm"), DRIVERS)
def test_every_driver_runs_a_short_sim_sweep(
    library: str,
    algorithm: str,
    sim_sweep: WriteConfig,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    driver: dict[str, Any] = {"library": library, "algorithm": algorithm, "n_trials": 3}
    if algorithm in ("nsga2", "nsga3", "moead"):
        driver["batch_size"] = 2  # three trials span two generations
    if algorithm in ("tpe", "gp", "botorch"):
        driver["n_startup_trials"] = 2  # the third trial comes from the model
    if algorithm == "grid":
        driver["grid_points"] = 2
    extra: dict[str, Any] = {}
    if algorithm == "botorch":  # aims at the thresholds; models the collapse constraint
        extra["objectives"] = [
            {**objective, "threshold": threshold}
            for objective, threshold in zip(OBJECTIVES, (0.0, 1.0), strict=True)
        ]
        extra["constraints"] = ["eval/no_answer_rate <= 0.9"]
    config = sim_sweep(driver=driver, jobs=2, **extra)
    assert main(["sweep", str(config), "--workspace", str(workspace), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["complete"], status["failed"], status["running"]) == (3, 0, 0)
    assert_status_matches_mlflow(status, workspace)


def _popen(*argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", *argv],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def _wait_for_running_trial(workspace: Path, name: str, timeout: float = 120) -> int:
    """The number of a trial that is RUNNING with its MLflow run open."""
    from sweep.records import open_sweep

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            study = open_sweep(workspace, name).study
        except Exception:
            time.sleep(0.5)
            continue
        for trial in study.trials():
            if trial.state.name == "RUNNING" and trial.user_attrs.get("mlflow_run_id"):
                return trial.number
        time.sleep(0.3)
    raise AssertionError("no trial started in time")


def test_sigkill_mid_trial_then_resume_ends_with_exactly_n_trials(
    sim_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = sim_sweep(driver={"algorithm": "tpe", "n_trials": 3, "n_startup_trials": 2})
    sweep = _popen("sweep", str(config), "--workspace", str(workspace), "--json")
    try:
        killed = _wait_for_running_trial(workspace, "tiny")
        time.sleep(1.0)  # the training subprocess is well under way
    finally:
        sweep.kill()  # SIGKILL: no handler runs, nothing is closed
        sweep.wait()
    capsys.readouterr()
    assert main(["sweep", str(config), "--workspace", str(workspace), "--resume", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    trials = {t["number"]: t for t in status["trials"]}
    assert status["complete"] == 3
    assert trials[killed]["state"] == "FAIL"
    (retry,) = [t for t in status["trials"] if t["retry_of"] == killed]
    assert retry["state"] == "COMPLETE"
    assert retry["params"] == trials[killed]["params"]
    parameter_sets = [json.dumps(t["params"], sort_keys=True) for t in status["trials"]]
    complete_sets = [
        json.dumps(t["params"], sort_keys=True)
        for t in status["trials"]
        if t["state"] == "COMPLETE"
    ]
    assert len(set(complete_sets)) == 3  # no parameter set completed twice
    assert len(parameter_sets) == 4  # three complete plus the killed attempt
    runs = mlflow_runs(workspace, "tiny")
    killed_run = runs[trials[killed]["mlflow_run_id"]]
    assert killed_run.info.status == "FAILED"
    assert killed_run.data.tags["bao.failure_reason"].startswith("stale: its process")
    assert_status_matches_mlflow(status, workspace)
    assert status_json(capsys, "tiny", workspace) == status


def test_sigterm_stops_the_running_trial_and_closes_its_records(
    sim_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = sim_sweep(driver={"algorithm": "random", "n_trials": 2})
    sweep = _popen("sweep", str(config), "--workspace", str(workspace), "--json")
    stopped = _wait_for_running_trial(workspace, "tiny")
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=60) == 130
    status = status_json(capsys, "tiny", workspace)
    trial = next(t for t in status["trials"] if t["number"] == stopped)
    assert trial["state"] == "FAIL"
    run = mlflow_runs(workspace, "tiny")[trial["mlflow_run_id"]]
    assert run.info.status == "KILLED"
    assert run.data.tags["bao.failure_reason"] == (
        "interrupted: the sweep was stopped during this trial"
    )
    assert any(t["retry_of"] == stopped and t["state"] == "WAITING" for t in status["trials"])
    assert main(["sweep", str(config), "--workspace", str(workspace), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["complete"] == 2
    assert_status_matches_mlflow(status, workspace)


def test_the_command_example_config_runs(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = REPO_ROOT / "configs" / "command.yaml"
    argv = ["sweep", str(config), "--workspace", str(workspace), "--n-trials", "1", "--json"]
    assert main([*argv, "--set", "backend.argv.10=trainer.iterations=2"]) == 0
    status = json.loads(capsys.readouterr().out)
    (trial,) = status["trials"]
    assert trial["state"] == "COMPLETE"
    run = mlflow_runs(workspace, "command-demo")[trial["mlflow_run_id"]]
    # the wrapped train command logged into the trial's own run (MLFLOW_RUN_ID)
    assert run.data.params["shaping.user_lambda"] == str(trial["params"]["shaping.user_lambda"])
    assert run.data.metrics["eval/pass_at_u_1"] == trial["values"][0]
