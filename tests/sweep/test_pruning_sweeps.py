"""Sweeps with a pruner: trials stopped on their own evaluations, ended PRUNED, never retried.

The command backend's fake trainer (tests/sweep/fake_train.py, mode ``progress``) evaluates
its final metrics at every step, so what the pruner must decide is computed here by hand;
the simulator sweeps check the same records on real training runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from sweep.cli import main
from tests.sweep.conftest import WriteConfig, mlflow_runs, status_json

pytestmark = [pytest.mark.slow]


def _run(config: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["sweep", str(config), "--workspace", str(workspace), "--json"]) == 0
    capsys.readouterr()
    return status_json(capsys, config.stem, workspace)


def _check_pruned_records(status: dict[str, Any], workspace: Path) -> None:
    """What every pruned trial must show, whatever the rule: PRUNED in Optuna with its rung,
    its MLflow run KILLED and tagged, not retried, its compute counted."""
    runs = mlflow_runs(workspace, status["sweep"])
    retried = {t["retry_of"] for t in status["trials"]}
    for trial in status["trials"]:
        assert trial["compute_seconds"] > 0
        if trial["state"] != "PRUNED":
            assert trial["pruned"] is None
            continue
        assert trial["number"] not in retried
        assert trial["values"] is None  # never on the front
        assert trial["pruned"]["rung"] is not None
        run = runs[trial["mlflow_run_id"]]
        assert run.info.status == "KILLED"
        assert "rule at rung" in run.data.tags["bao.pruned"]
    assert status["failed"] == 0
    assert status["complete"] + status["pruned"] == status["n_trials"]
    assert status["compute_seconds"] == pytest.approx(
        sum(t["compute_seconds"] for t in status["trials"])
    )


def test_collapse_stops_trials_that_stop_answering(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # fake_train's no-answer rate is y: a trial with y >= 0.5 is collapsed from step 1 on.
    config = command_sweep(
        "progress",
        driver={"algorithm": "random", "n_trials": 6},
        pruner={"kind": "collapse", "min_step": 1, "collapse_threshold": 0.5},
        jobs=2,
    )
    status = _run(config, workspace, capsys)
    expected = {t["number"]: t["params"]["y"] >= 0.5 for t in status["trials"]}
    assert {t["number"]: t["state"] == "PRUNED" for t in status["trials"]} == expected
    assert any(expected.values())
    assert not all(expected.values())
    _check_pruned_records(status, workspace)
    for trial in status["trials"]:
        if trial["state"] == "PRUNED":
            assert trial["pruned"]["rule"] == "collapse"
            assert trial["pruned"]["rung"] == 0
            assert trial["pruned"]["step"] == 1
            x, y = trial["params"]["x"], trial["params"]["y"]
            assert trial["pruned"]["values"] == pytest.approx([x, 1 - x**0.5 + y])
    # front leaves the pruned trials out and counts them; the analysis' trial table has
    # each one's rung and rule (what the dashboard shows).
    pruned = {t["number"] for t in status["trials"] if t["state"] == "PRUNED"}
    capsys.readouterr()
    assert main(["front", "cmd", "--workspace", str(workspace), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front["pruned"] == len(pruned)
    assert not pruned & set(front["front"])
    from analysis.loader import load_sweep

    table = load_sweep(workspace, "cmd", outcomes=False).trials
    rows = table[table["state"] == "PRUNED"]
    assert set(rows["number"]) == pruned
    assert list(rows["pruned_rung"]) == [0.0] * len(pruned)
    assert set(rows["pruned_rule"]) == {"collapse"}
    # The evaluations are step metrics of the trial's MLflow run (the runner logs them for a
    # command, which does not log them itself).
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    complete = next(t for t in status["trials"] if t["state"] == "COMPLETE")
    history = client.get_metric_history(complete["mlflow_run_id"], "f1")
    assert sorted({m.step for m in history} - {0}) == [1, 2, 3, 4, 5, 6]


def test_a_runs_final_metrics_outrank_its_intermediate_evaluations_in_mlflow(
    command_sweep: WriteConfig,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The evaluations while it trains say f1 + 0.5; the run's result says f1. MLflow reads a
    # metric at its highest step, so the result must be logged at the last step or later.
    monkeypatch.setenv("FAKE_TRAIN_PROGRESS_SHIFT", "0.5")
    config = command_sweep("progress", driver={"algorithm": "random", "n_trials": 2}, jobs=1)
    status = _run(config, workspace, capsys)
    runs = mlflow_runs(workspace, status["sweep"])
    from analysis.loader import load_sweep

    table = load_sweep(workspace, "cmd", outcomes=False).trials.set_index("number")
    for trial in status["trials"]:
        x = trial["params"]["x"]
        assert runs[trial["mlflow_run_id"]].data.metrics["f1"] == pytest.approx(x)
        assert table.loc[trial["number"], "f1"] == pytest.approx(x)


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(p <= q for p, q in zip(a, b, strict=True)) and a != b


def _kept_alone_on_top(point: list[float], others: list[list[float]]) -> bool:
    """Written out for at most three points and one to keep (what this test's sweeps give):
    the point must be non-dominated, and either its front has at most two points or it is
    an extreme of its front in some objective (crowding distance infinite; ties go to it)."""
    field = [point, *others]
    front = [p for p in field if not any(_dominates(q, p) for q in field)]
    if point not in front:
        return False
    if len(front) <= 2:
        return True
    return any(point[i] in (min(p[i] for p in front), max(p[i] for p in front)) for i in (0, 1))


def test_rungs_keep_the_top_of_each_rung(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One trial at a time: each meets the trials before it at every rung (steps 1, 2, 4).
    config = command_sweep(
        "progress",
        driver={"algorithm": "random", "n_trials": 3},
        pruner={"kind": "rungs", "min_step": 1, "reduction_factor": 2, "min_trials": 2},
        jobs=1,
        seed=2,  # a draw in which the rule prunes a trial (seeds 0, 1 and 3 prune none)
    )
    status = _run(config, workspace, capsys)
    trials = sorted(status["trials"], key=lambda t: t["number"])
    points = [[t["params"]["x"], 1 - t["params"]["x"] ** 0.5 + t["params"]["y"]] for t in trials]
    reached: dict[int, int] = {}  # trial -> last rung step it reached
    expected: dict[int, int | None] = {}
    for index, point in enumerate(points):
        expected[index] = None
        for step in (1, 2, 4):
            others = [points[j] for j in range(index) if reached[j] >= step]
            reached[index] = step
            if len(others) + 1 >= 2 and not _kept_alone_on_top(point, others):
                expected[index] = step
                break
        else:
            reached[index] = 6
    assert {t["number"]: (t["pruned"] or {}).get("step") for t in trials} == expected
    assert any(step is not None for step in expected.values()), "draw another seed"
    _check_pruned_records(status, workspace)


@pytest.mark.e2e
def test_a_sim_sweep_with_collapse_prunes_the_runs_that_never_answer(
    sim_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two iterations of the tiny simulator leave every held-out task unanswered
    # (no-answer rate 1.0, logged by the training run itself): every trial collapses at the
    # first rung, iteration 1, and none trains its second iteration's evaluation.
    config = sim_sweep(pruner={"kind": "collapse", "min_step": 1}, jobs=1)
    status = _run(config, workspace, capsys)
    runs = mlflow_runs(workspace, "tiny")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    for trial in status["trials"]:
        history = client.get_metric_history(trial["mlflow_run_id"], "eval/no_answer_rate")
        at_rung = [m.value for m in history if m.step == 1]
        assert at_rung, "the run logged its evaluation at the rung"
        assert (trial["state"] == "PRUNED") == (at_rung[0] >= 0.9)
        assert runs[trial["mlflow_run_id"]].info.status == (
            "KILLED" if trial["state"] == "PRUNED" else "FINISHED"
        )
    assert status["pruned"] >= 1
    _check_pruned_records(status, workspace)


def test_a_sweep_killed_mid_trial_resumes_with_the_same_decisions(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal
    import subprocess
    import sys

    from sweep.records import open_sweep
    from tests.sweep.conftest import REPO_ROOT

    config = command_sweep(
        "progress",
        driver={"algorithm": "random", "n_trials": 4},
        pruner={"kind": "rungs+collapse", "min_step": 1, "reduction_factor": 2},
        jobs=1,
    )
    env = {"FAKE_TRAIN_STEPS": "12", "FAKE_TRAIN_STEP_SECONDS": "0.4"}
    import os

    sweep = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "sweep", str(config), "--workspace", str(workspace)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    # Kill the sweep once a trial has a rung decision recorded and is still running.
    deadline = time.monotonic() + 120
    decided: dict[int, dict[str, str]] = {}
    try:
        while time.monotonic() < deadline and not decided:
            time.sleep(0.2)
            try:
                study = open_sweep(workspace, "cmd").study
            except Exception:
                continue
            for trial in study.trials():
                rungs = trial.user_attrs.get("rungs")
                if trial.state.name == "RUNNING" and rungs and "2" in rungs:
                    decided[trial.number] = dict(rungs)
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    assert decided, "no trial reached its second rung in time"
    before = {
        t.number: (t.state.name, t.user_attrs.get("rungs"))
        for t in open_sweep(workspace, "cmd").study.trials()
    }
    os.environ.update(env)
    try:
        status = _run(config, workspace, capsys)
    finally:
        for key in env:
            os.environ.pop(key)
    after = open_sweep(workspace, "cmd").study.trials()
    by_number = {t.number: t for t in after}
    # Trials finished before the kill keep their state and decisions.
    for number, (state, rungs) in before.items():
        if state in ("COMPLETE", "PRUNED"):
            assert by_number[number].state.name == state
            assert by_number[number].user_attrs.get("rungs") == rungs
    # The killed attempt is retried, and its retry repeats every decision it had made.
    ((killed, rungs),) = decided.items()
    (retry,) = [t for t in after if t.user_attrs.get("retry_of") == killed]
    retried = retry.user_attrs.get("rungs") or {}
    assert {step: retried[step] for step in rungs} == rungs
    assert status["complete"] + status["pruned"] == 4
