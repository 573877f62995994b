"""Sweep fixtures: tiny sweep configs (simulator and command backends) and their helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_TRAIN = Path(__file__).with_name("fake_train.py")

# A simulator run of a few seconds: what matters here is the sweep machinery around it.
TINY_TRAIN = {
    "trainer": {"iterations": 2, "tasks_per_iteration": 4, "group_size": 4},
    "tasks": {"n_train": 20, "n_eval": 20},
    "reasoner": {"library_size": 2000},
}

OBJECTIVES = [
    {"metric": "eval/score", "direction": "maximize"},
    {"metric": "eval/user_involvement_rate", "direction": "minimize"},
]

WriteConfig = Callable[..., Path]

# Short heartbeats and leases, so crashed trials are taken over within seconds in tests.
FAST_RECOVERY = {"heartbeat_interval": 1, "lease": 5}


def _write(folder: Path, config: dict[str, Any], overrides: dict[str, Any]) -> Path:
    config = {**config, **FAST_RECOVERY, **overrides}
    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def sim_sweep(tmp_path: Path) -> WriteConfig:
    """Writes a sim-backend sweep config; keyword arguments override top-level keys."""

    def write(**overrides: Any) -> Path:
        config: dict[str, Any] = {
            "name": "tiny",
            "backend": {"kind": "sim", "train_config": str(REPO_ROOT / "configs" / "sim.yaml")},
            "train": TINY_TRAIN,
            "objectives": OBJECTIVES,
            "driver": {"algorithm": "random", "n_trials": 3},
            "trial_timeout": 300,
        }
        return _write(tmp_path, config, overrides)

    return write


@pytest.fixture
def command_sweep(tmp_path: Path) -> WriteConfig:
    """Writes a command-backend sweep running tests/sweep/fake_train.py (fast, scriptable)."""

    def write(mode: str = "ok", **overrides: Any) -> Path:
        config: dict[str, Any] = {
            "name": "cmd",
            "backend": {
                "kind": "command",
                "argv": [
                    sys.executable,
                    str(FAKE_TRAIN),
                    "--mode",
                    mode,
                    "--x",
                    "{x}",
                    "--y",
                    "{y}",
                    "--seed",
                    "{seed}",
                    "--trial",
                    "{trial}",
                    "--out",
                    "{metrics_file}",
                    "--state",
                    str(tmp_path / "state"),
                ],
                "metrics": ["f1", "f2", "g"],
            },
            "search_space": {
                "x": {"type": "float", "low": 0.0, "high": 1.0},
                "y": {"type": "float", "low": 0.0, "high": 1.0},
            },
            "objectives": [
                {"metric": "f1", "direction": "minimize"},
                {"metric": "f2", "direction": "minimize"},
            ],
            "driver": {"algorithm": "random", "n_trials": 4},
            "trial_timeout": 60,
        }
        return _write(tmp_path, config, overrides)

    return write


def status_json(capsys: pytest.CaptureFixture[str], name: str, workspace: Path) -> Any:
    from sweep.cli import main

    capsys.readouterr()
    assert main(["status", name, "--workspace", str(workspace), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def mlflow_runs(workspace: Path, experiment: str) -> dict[str, Any]:
    """Every run of an experiment in the workspace's MLflow database, by run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return {r.info.run_id: r for r in client.search_runs([found.experiment_id], max_results=5000)}
