"""``bao-pareto train``: JSON output, MLflow records, config errors before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweep.cli import main

REPO = Path(__file__).resolve().parents[3]
TINY = [
    "--set", "tasks.n_train=20",
    "--set", "tasks.n_eval=10",
    "--set", "reasoner.library_size=1000",
    "--set", "trainer.iterations=2",
    "--set", "trainer.tasks_per_iteration=4",
    "--set", "trainer.group_size=2",
]  # fmt: skip


def test_train_json_and_mlflow_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = tmp_path / "ws"
    status = main(
        ["train", str(REPO / "configs/sim.yaml"), *TINY, "--workspace", str(workspace), "--json"]
    )
    assert status == 0
    output = json.loads(capsys.readouterr().out)
    assert {"run_id", "eval/pass_at_u_1", "eval/score", "eval/user_involvement_rate"} <= set(output)
    assert output["eval/n_trajectories"] == 10

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    run = client.get_run(output["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["shaping.user_lambda"] == "0.1"
    assert run.data.params["trainer.iterations"] == "2"
    assert run.data.metrics["eval/score"] == output["eval/score"]
    history = client.get_metric_history(run.info.run_id, "eval/score")
    assert sorted(m.step for m in history) == [0, 2]
    assert len(client.get_metric_history(run.info.run_id, "train/score")) == 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"trajectories.jsonl", "config.yaml"} <= artifacts
    local = client.download_artifacts(run.info.run_id, "trajectories.jsonl", str(tmp_path))
    from bao.metrics import summarize
    from bao.trajectory import read_trajectories

    recomputed = summarize(read_trajectories(local))
    assert recomputed["score"] == output["eval/score"]  # every metric can be recomputed

    # The policy is an MLflow PyTorch model that loads back and takes a batch of features.
    import mlflow
    import torch

    from bao.sim.policy import N_FEATURES
    from bao.tracking import fluent_tracking

    with fluent_tracking(f"sqlite:///{workspace / 'mlflow.db'}"):  # restores the global URI
        models = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}'",
            output_format="list",
        )
        assert [model.name for model in models] == ["policy"]
        policy = mlflow.pytorch.load_model(models[0].model_uri)
    assert policy(torch.zeros((3, N_FEATURES))).shape == (3, 4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("shaping.user_lamda=0.1", "unknown key 'shaping.user_lamda'; allowed keys here: "),
        ("trainer.iterations=-1", "key 'trainer.iterations'"),
        ("advantage.credit=gae", "key 'advantage.credit'"),
        ("policy.initial_action_probs=[0.5,0.5,0.5,0.5]", "sum to 1"),
        ("shaping", "not of the form key.path=value"),
    ],
)
def test_config_errors_are_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    workspace = tmp_path / "ws"
    status = main(
        ["train", str(REPO / "configs/sim.yaml"), "--set", override, "--workspace", str(workspace)]
    )
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]
    assert not workspace.exists()


def test_unwritable_workspace_is_reported_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status = main(
        ["train", str(REPO / "configs/sim.yaml"), *TINY, "--workspace", str(blocker / "ws")]
    )
    assert status == 2
    assert "is not writable" in capsys.readouterr().err


def test_sim_yaml_documents_every_key() -> None:
    from bao.sim.config import SimConfig

    text = (REPO / "configs/sim.yaml").read_text()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and ":" in stripped:
            assert "#" in stripped or stripped.endswith(":"), f"undocumented key: {line!r}"
    import yaml

    assert SimConfig.model_validate(yaml.safe_load(text)).shaping.user_lambda == 0.1
