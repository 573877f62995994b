"""The verl backend for real on CPU: a 2-trial ``bao-pareto sweep`` whose trials are verl runs.

Each trial is ``bao-pareto train`` on ``configs/verl/function_gym.yaml`` in smoke mode, set by
the sweep's ``train:`` overrides (``smoke.enabled``): verl 0.9.1's ``main_ppo`` with Ray, the v1
trainer, the ``bao_agent`` loop, the ``bao_turn`` estimator, an FSDP2 update of a tiny random
Qwen2 on CPU, the trained weights pushed to the transformers rollout server, a validation pass,
and verl's MLflow tracker logging into the trial's run. Nothing of verl is faked.

A random model almost never writes a tool call, so every episode would score the same and
every advantage would be 0. The sweep therefore sets ``smoke.scripted_policy``: every other
generation is a scripted tool call (a search, a wrong answer, an action, a finish), scored by
the model like its own tokens. That is the only scripted part, and it is there so that the
update has non-zero advantages and a gradient to check.

The Telepathy-Gym smoke run (``test_a_telepathy_smoke_run``) talks to the fake OpenAI-compatible
user server of the gym tests.

Where verl is installed these tests run; CI sets BAO_PARETO_REQUIRE_VERL, so they fail there
instead of skipping when it is missing (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("verl")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 2
# verl's own per-step metrics: present only if a training step ran through verl's trainer.
VERL_STEP_METRICS = ("actor/pg_loss", "actor/grad_norm", "critic/score/mean", "timing_s/step")


def cli(*argv: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "sweep.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def verl_logs(workdir: Path) -> str:
    return "\n".join(path.read_text()[-3000:] for path in workdir.glob("*/verl.log"))


def test_a_two_trial_verl_sweep_trains_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, workdir = tmp_path / "ws", tmp_path / "verl"
    sweep = {
        "name": "verl-cpu-smoke",
        "seed": 0,
        "backend": {
            "kind": "verl",
            "train_config": str(ROOT / "configs" / "verl" / "function_gym.yaml"),
        },
        "train": {
            "smoke": {"enabled": True, "scripted_policy": True},
            "workdir": str(workdir),
        },
        "search_space": {"shaping.user_lambda": {"type": "float", "low": 0.0, "high": 0.5}},
        "objectives": [
            {"metric": "eval/pass_at_u_1", "direction": "maximize", "threshold": 0.0},
            {"metric": "eval/user_involvement_rate", "direction": "minimize", "threshold": 1.0},
        ],
        "driver": {"library": "optuna", "algorithm": "random", "n_trials": TRIALS},
        "max_retries": 0,
        "trial_timeout": 900,
        "jobs": 1,
    }
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(sweep, sort_keys=False))

    done = cli("sweep", str(config), "--workspace", str(workspace))
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:], verl_logs(workdir))

    status = cli("status", "verl-cpu-smoke", "--workspace", str(workspace), "--json")
    assert status.returncode == 0, status.stderr
    trials = json.loads(status.stdout)["trials"]
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert len(complete) == TRIALS, trials

    from bao.tracking import mlflow_client

    client = mlflow_client(workspace)
    lambdas = set()
    for trial in complete:
        run = client.get_run(trial["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        metrics = run.data.metrics
        # verl's tracker logged a real training step into the trial's run ...
        for name in VERL_STEP_METRICS:
            assert name in metrics, (name, sorted(metrics))
        history = client.get_metric_history(trial["mlflow_run_id"], "actor/grad_norm")
        assert [point.step for point in history] == [1]
        # ... with a gradient: the scripted episodes' rewards differ within their groups.
        assert metrics["actor/grad_norm"] > 0.0, metrics
        assert metrics["critic/advantages/max"] > metrics["critic/advantages/min"], metrics
        # The rollout server generated with the weights the trainer pushed to it: it stamps
        # each reply with the step of the last push, which verl turns into staleness.
        assert metrics["training/off_policy/trajectory_staleness/max"] == 0
        # The evaluation comes from verl's validation dump of that step.
        folder = Path(run.data.tags["bao.verl_folder"])
        assert (folder / "validation" / "1.jsonl").is_file()
        assert metrics["eval/n_trajectories"] == 2
        assert 0.0 <= metrics["eval/user_involvement_rate"] <= 1.0
        # The sweep's objective values are the run's evaluation.
        objectives = [metrics["eval/pass_at_u_1"], metrics["eval/user_involvement_rate"]]
        assert trial["values"] == objectives
        assert "a random qwen2" in run.data.tags["bao.smoke_model"]
        lambdas.add(run.data.params["shaping.user_lambda"])
        assert run.data.params["shaping.user_lambda"] == str(trial["params"]["shaping.user_lambda"])
    assert len(lambdas) == TRIALS  # each trial ran with its own parameters

    front = cli("front", "verl-cpu-smoke", "--workspace", str(workspace), "--json", "--draws", "50")
    assert front.returncode == 0, front.stderr
    document: dict[str, Any] = json.loads(front.stdout)
    assert document["sweep"] == "verl-cpu-smoke"
    by_run = {trial["mlflow_run_id"]: trial for trial in document["trials"]}
    for trial in complete:  # the front reads the same values from the same runs
        assert by_run[trial["mlflow_run_id"]]["values"] == trial["values"]
    assert any(trial["pareto"] for trial in document["trials"])

    # The dashboard's trial page reads a verl trial like a simulator one: its evaluation and
    # its episodes turn by turn.
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BAO_PARETO_HOME", str(workspace))
    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=180)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    app.switch_page("views/trial.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert any("eval/pass_at_u_1" in set(frame.value.get("metric", [])) for frame in app.dataframe)
    turns = app.dataframe[-1].value
    assert "choice" in turns.columns
    assert len(turns) >= 1


def test_a_telepathy_smoke_run_asks_the_simulated_user(tmp_path: Path) -> None:
    from tests.bao.envs.fake_openai import fake_openai, rule_based_user

    workspace = tmp_path / "ws"
    with fake_openai(rule_based_user) as server:
        done = cli(
            "train",
            str(ROOT / "configs" / "verl" / "telepathy_gym.yaml"),
            "--smoke",
            "--set",
            "smoke.scripted_policy=true",
            "--set",
            f"user_simulator.simulator.base_url={server.base_url}",
            "--set",
            "user_simulator.simulator.model=user-model",
            "--set",
            "user_simulator.simulator.backoff_s=0",
            "--set",
            f"workdir={tmp_path / 'verl'}",
            "--workspace",
            str(workspace),
            "--json",
        )
        requests = list(server.requests)
    assert done.returncode == 0, (done.stderr[-3000:], verl_logs(tmp_path / "verl"))
    document = json.loads(done.stdout.strip().splitlines()[-1])

    from bao.tracking import mlflow_client

    run = mlflow_client(workspace).get_run(document["run_id"])
    for name in VERL_STEP_METRICS:
        assert name in run.data.metrics, (name, sorted(run.data.metrics))
    assert run.data.metrics["actor/grad_norm"] > 0.0
    # The scripted question and guess reached the simulated user and the judge over HTTP,
    # from verl's agent-loop worker (the preflight's own request aside).
    assert len(requests) > 1, requests
    assert "eval/user_calls" in run.data.metrics
    assert run.data.metrics["eval/n_trajectories"] == 2
