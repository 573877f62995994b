"""``front`` and ``select`` on a real simulator sweep, through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from analysis.pareto import hypervolume
from sweep.cli import main
from tests.sweep.conftest import REPO_ROOT, TINY_TRAIN

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-trial simulator sweep (random proposals, tiny training runs)."""
    folder = tmp_path_factory.mktemp("analysis-cli")
    config = {
        "name": "tinyfront",
        "backend": {"kind": "sim", "train_config": str(REPO_ROOT / "configs" / "sim.yaml")},
        "train": TINY_TRAIN,
        "objectives": [
            {"metric": "eval/pass_at_u_1", "direction": "maximize", "threshold": 0.0},
            {"metric": "eval/user_involvement_rate", "direction": "minimize"},
        ],
        "driver": {"algorithm": "random", "n_trials": 4},
        "jobs": 2,
        "trial_timeout": 300,
    }
    path = folder / "tinyfront.yaml"
    path.write_text(yaml.safe_dump(config))
    workspace = folder / "ws"
    assert main(["sweep", str(path), "--workspace", str(workspace), "--json"]) == 0
    return workspace


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_front_json_has_every_trial_and_the_governed_hypervolume(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = run_json(capsys, "front", "tinyfront", "--workspace", str(swept), "--json")
    assert document["sweep"] == "tinyfront"
    assert document["objectives"] == [
        {"metric": "eval/pass_at_u_1", "direction": "maximize"},
        {"metric": "eval/user_involvement_rate", "direction": "minimize"},
    ]
    assert document["reference_point"] == [0.0, 1.0]
    assert document["reference_point_sources"] == ["threshold", "bound"]
    trials = document["trials"]
    assert len(trials) == 4
    for trial in trials:
        assert set(trial) >= {
            "number",
            "state",
            "params",
            "values",
            "pareto",
            "p_nondominated",
            "mlflow_run_id",
        }
        assert set(trial["params"]) == {
            "shaping.user_lambda",
            "shaping.info_seeking",
            "shaping.over_thinking",
        }
        assert 0.0 <= trial["p_nondominated"] <= 1.0
        # Every sim trial logs its trajectories: intervals come from the paired task bootstrap.
        assert trial["uncertainty"] == ["task-bootstrap", "task-bootstrap"]
    values = [t["values"] for t in trials]
    expected = hypervolume(values, ["maximize", "minimize"], [0.0, 1.0])
    assert document["hypervolume"] == pytest.approx(expected)
    assert {t["number"] for t in trials if t["pareto"]} == set(document["front"])
    assert [row["k"] for row in document["pass_at_u_envelope"]] == list(range(1, 10))
    # The rich table renders too (what a user reads first).
    capsys.readouterr()
    assert main(["front", "tinyfront", "--workspace", str(swept)]) == 0
    assert "hypervolume" in capsys.readouterr().out


def test_select_registers_loadable_models_and_moves_nothing_on_rerun(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "select",
        "tinyfront",
        "--budget",
        "1",
        "--budget",
        "3",
        "--register",
        "--workspace",
        str(swept),
    ]
    first = run_json(capsys, *argv, "--json")
    aliases = {entry["alias"]: entry for entry in first["registered"]}
    assert set(aliases) == {"budget-1", "budget-3", "knee"}
    for variant in first["variants"]:
        assert variant["reason"]
    again = run_json(capsys, *argv, "--json")
    assert not any(entry["created"] for entry in again["registered"])
    assert [e["version"] for e in again["registered"]] == [
        e["version"] for e in first["registered"]
    ]

    import mlflow
    import numpy as np
    import torch

    from bao.sim.policy import N_FEATURES
    from bao.tracking import fluent_tracking

    with fluent_tracking(f"sqlite:///{swept / 'mlflow.db'}"):
        policy = mlflow.pytorch.load_model("models:/bao-pareto-tinyfront@budget-1")
    with torch.no_grad():
        logits = policy(torch.zeros((2, N_FEATURES)))
    assert np.isfinite(logits.numpy()).all()

    capsys.readouterr()
    assert main([*argv[:-2], "--workspace", str(swept)]) == 0  # the human-readable form
    out = capsys.readouterr().out
    assert "budget-1: trial" in out
    assert "highest Pass@U-1" in out
    assert "kept version" in out


def test_bad_budget_and_unknown_sweep_are_one_line(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["select", "tinyfront", "--budget", "12", "--workspace", str(swept)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "budget 12 has no Pass@U-12" in err
    assert main(["front", "nope", "--workspace", str(swept)]) == 2
    assert "no sweep named 'nope'" in capsys.readouterr().err


def test_front_sets_published_results_beside_the_envelope(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = REPO_ROOT.parent / "shared" / "reference" / "bao_paper_table1.csv"
    if not table.is_file():
        pytest.skip(f"the paper's table is not at {table}")
    argv = ["front", "tinyfront", "--workspace", str(swept), "--reference-table", str(table)]
    document = run_json(capsys, *argv, "--json")
    points = document["reference_points"]
    assert {p["k"] for p in points} == {1, 2}
    assert any(p["model"] == "BAO (ours)-4B" for p in points)
    capsys.readouterr()
    assert main(argv) == 0
    assert "Published results on function_gym" in capsys.readouterr().out


def test_front_and_status_show_what_the_trials_cost(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    front = run_json(capsys, "front", "tinyfront", "--workspace", str(swept), "--json")
    status = run_json(capsys, "status", "tinyfront", "--workspace", str(swept), "--json")
    costs = {t["number"]: t["cost"] for t in status["trials"]}
    assert status["launcher"] == "local"
    # A local run holds one CPU (launcher.cpus_per_node) and no GPU for its wall time.
    for cost in costs.values():
        assert cost["wall_s"] > 0
        assert cost["cpu_seconds"] == pytest.approx(cost["wall_s"])
        assert cost["gpu_hours"] == 0
    assert {t["number"]: t["cost"] for t in front["trials"]} == costs
    on_front = front["front"]
    assert on_front
    expected = sum(costs[n]["wall_s"] for n in on_front)
    assert front["front_cost"]["wall_s"] == pytest.approx(expected)
    assert front["cost"] == status["cost"]
    assert status["cost"]["wall_s"] == pytest.approx(sum(c["wall_s"] for c in costs.values()))
    capsys.readouterr()
    assert main(["front", "tinyfront", "--workspace", str(swept)]) == 0
    assert f"cost of the front's trials: {expected:.0f} s wall" in capsys.readouterr().out
    assert main(["status", "tinyfront", "--workspace", str(swept)]) == 0
    assert "cost of every attempt (local):" in capsys.readouterr().out
