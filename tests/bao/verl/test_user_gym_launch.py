"""The verl launcher on Telepathy-Gym and Turtle-Gym: configs, dry runs, data plans, whole runs.

Whole runs go through ``fake_main_ppo.py`` (verl's own Hydra config, ``validate_config``,
Tracking into MLflow, ``RLHFDataset``, the registered agent loop and the v1 validation writer),
with the simulated user an OpenAI-compatible fake server on localhost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("verl")

from bao.gym_tasks import load_telepathy_entities, load_turtle_stories
from bao.metrics import summarize
from bao.trajectory import read_trajectories
from bao.verl import run as verl_run
from bao.verl.config import VerlConfig
from bao.verl.launch import RunFolder, VerlUnavailableError, check_user_simulator, plan_data
from sweep.cli import main
from tests.bao.envs.fake_openai import FakeOpenAI, fake_openai, rule_based_user
from tests.bao.verl.test_launch import ROOT, cli, fake_verl, small_config  # noqa: F401
from tests.conftest import USERRL_DIR

CONFIGS = {
    gym: ROOT / "configs" / "verl" / f"{gym}.yaml" for gym in ("telepathy_gym", "turtle_gym")
}
SWEEPS = {gym: ROOT / "configs" / "verl" / f"sweep_{gym}.yaml" for gym in CONFIGS}
EXAMPLES = {
    "telepathy_gym": ROOT / "configs" / "data" / "telepathy_entities.json",
    "turtle_gym": ROOT / "configs" / "data" / "turtle_stories.json",
}


@pytest.fixture
def user_server() -> Iterator[FakeOpenAI]:
    with fake_openai(rule_based_user) as server:
        yield server


def gym_config(tmp_path: Path, gym: str, server_url: str, **tasks: Any) -> VerlConfig:
    """The launcher tests' small run on ``gym``'s example tasks, its user at ``server_url``."""
    raw = small_config(tmp_path).model_dump(mode="json")
    endpoint = {"base_url": server_url, "model": "user-model", "max_attempts": 2, "backoff_s": 0}
    raw["gym"] = gym
    raw["tasks"] = {
        "train_path": str(EXAMPLES[gym]),
        "n_eval": 6 if gym == "telepathy_gym" else 3,
        **tasks,
    }
    raw["user_simulator"] = {"simulator": endpoint, "judge": {**endpoint, "model": "judge-model"}}
    return VerlConfig.model_validate(raw)


@pytest.mark.parametrize("gym", list(CONFIGS))
def test_the_shipped_config_validates_with_a_dry_run(gym: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    done = cli("train", str(CONFIGS[gym]), "--dry-run", "--json", "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["valid"] is True
    assert document["gym"] == gym
    argv = document["argv"]
    assert "actor_rollout_ref.rollout.agent.default_agent_loop=bao_agent" in argv
    assert any(
        a.startswith("actor_rollout_ref.rollout.agent.agent_loop_config_path=") for a in argv
    )
    # The example set is far smaller than the recipe's batch: said, not hidden.
    assert any("fewer than optim.train_batch_size (128)" in note for note in document["notes"])
    assert any("Qwen/Qwen3-8B at http://127.0.0.1:30000/v1" in note for note in document["notes"])
    assert not workspace.exists()


@pytest.mark.parametrize("gym", ["function_gym", *CONFIGS])
def test_a_dumped_config_validates_again(gym: str) -> None:
    from bao.configuration import read_yaml

    path = ROOT / "configs" / "verl" / f"{gym}.yaml"
    config = VerlConfig.model_validate(read_yaml(path))
    assert VerlConfig.model_validate(config.model_dump(mode="json")) == config


@pytest.mark.parametrize("gym", list(SWEEPS))
def test_the_shipped_sweep_validates_with_a_dry_run(gym: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    done = cli("sweep", str(SWEEPS[gym]), "--dry-run", "--json", "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["valid"] is True
    assert len(document["commands"]) == 6  # both ends of lambda, alpha and beta
    assert any("+algorithm.bao.user_lambda=0.5" in c["argv"] for c in document["commands"])
    assert not (workspace / "sweeps").exists()


@pytest.mark.parametrize(
    ("config", "setting", "message"),
    [
        (
            "telepathy_gym",
            "tasks.train_path=null",
            "tasks.train_path is required for telepathy_gym",
        ),
        ("telepathy_gym", "env.success_threshold=0.5", "env.success_threshold is Turtle-Gym's"),
        ("turtle_gym", "env.success_threshold=0", "env.success_threshold"),
        ("turtle_gym", "tasks.functions_path=x.json", "tasks.functions_path is Function-Gym's"),
        ("turtle_gym", "tasks.n_eval=8", "cannot hold out 8 of the 8 tasks"),
        ("turtle_gym", "tasks.train_path=configs/data/telepathy_entities.json", "'evaluation'"),
        ("telepathy_gym", "user_simulator.simulator.timeout_s=0", "timeout_s"),
        ("telepathy_gym", "user_simulator.simulator.moddel=x", "moddel"),
        ("function_gym", "user_simulator.cache=false", "user_simulator is for telepathy_gym"),
        ("function_gym", "env.success_threshold=0.5", "env.success_threshold is Turtle-Gym's"),
        ("function_gym", "tasks.records_path=x.json", "tasks.records_path is for"),
        ("function_gym", "gym=chess_gym", "gym"),
    ],
)
def test_bad_gym_settings_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, setting: str, message: str
) -> None:
    path = ROOT / "configs" / "verl" / f"{config}.yaml"
    workspace = tmp_path / "ws"
    code = main(["train", str(path), "--dry-run", "--set", setting, "--workspace", str(workspace)])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert message in lines[0]
    assert not workspace.exists()


def test_a_missing_simulator_server_fails_before_any_gpu_or_run(tmp_path: Path) -> None:
    config = VerlConfig.model_validate(
        {
            "model": {"path": "m"},
            "gym": "telepathy_gym",
            "tasks": {"train_path": str(EXAMPLES["telepathy_gym"])},
            "user_simulator": {"simulator": {"base_url": "http://127.0.0.1:9/v1", "timeout_s": 1}},
        }
    )
    with pytest.raises(VerlUnavailableError, match="cannot be reached") as caught:
        check_user_simulator(config)
    assert "\n" not in str(caught.value)
    with fake_openai(rule_based_user) as server:
        served = config.model_copy(
            update={
                "user_simulator": config.user_simulator.model_copy(
                    update={
                        "simulator": config.user_simulator.simulator.model_copy(
                            update={"base_url": server.base_url}
                        )
                    }
                )
            }
        )
        with pytest.raises(VerlUnavailableError, match="does not serve model 'Qwen/Qwen3-8B'"):
            check_user_simulator(served)


def test_a_held_out_split_is_written_as_our_rows_with_a_gym_file(tmp_path: Path) -> None:
    config = gym_config(tmp_path, "turtle_gym", "http://127.0.0.1:1/v1")
    folder = RunFolder(tmp_path / "run" / "r1")
    plan = plan_data(config, folder, tmp_path / "ws")
    assert (len(plan.train_tasks), len(plan.eval_tasks)) == (5, 3)
    assert plan.train_file == folder.train_file
    assert plan.gym_file == folder.gym_file
    plan.write(config.env.max_turns)
    import pyarrow.parquet as pq

    rows = pq.read_table(folder.val_file).to_pylist()
    assert [json.loads(r["extra_info"]["bao_task"])["id"] for r in rows] == [
        s.id for s in plan.eval_tasks
    ]
    assert all(r["extra_info"]["bao_gym"] == "turtle_gym" for r in rows)
    assert "Surface:" in rows[0]["prompt"][1]["content"]
    document = json.loads(folder.gym_file.read_text())
    assert document["gym"] == "turtle_gym"
    assert document["success_threshold"] == 1.0
    assert document["user_simulator"]["cache_path"] == str(tmp_path / "ws" / "user-cache.sqlite")
    assert document["user_simulator"]["judge"]["model"] == "judge-model"
    assert document["records"] == []  # our rows carry their story


@pytest.mark.skipif(not (USERRL_DIR / "telepathy_gym").is_dir(), reason="no UserRL data here")
def test_userrl_parquet_splits_are_used_as_they_are(tmp_path: Path) -> None:
    train = USERRL_DIR / "telepathy_gym" / "train.parquet"
    config = gym_config(
        tmp_path,
        "telepathy_gym",
        "http://127.0.0.1:1/v1",
        train_path=str(train),
        eval_path=str(train),
    )
    folder = RunFolder(tmp_path / "run")
    plan = plan_data(config, folder)
    # Training rows as they are; validation rows copied, each marked for the eval user.
    assert plan.train_file == train.resolve()
    assert plan.val_file == folder.val_file
    assert len(plan.train_tasks) == 360
    plan.write(config.env.max_turns)
    records = json.loads(folder.gym_file.read_text())["records"]
    assert len(records) == 360  # what the rows' titles are looked up in
    assert load_telepathy_entities(train)[0].to_dict() in records
    import pyarrow.parquet as pq

    original = pq.read_table(train).to_pylist()
    copied = pq.read_table(folder.val_file).to_pylist()
    assert [r["prompt"] for r in copied] == [r["prompt"] for r in original]  # UserRL's prompt
    assert all(r["extra_info"]["bao_eval"] is True for r in copied)
    assert all(r["extra_info"]["split"] == "train" for r in copied)  # what the file said


@pytest.mark.slow
@pytest.mark.usefixtures("fake_verl")
@pytest.mark.parametrize("gym", ["telepathy_gym", "turtle_gym"])
def test_a_run_is_evaluated_into_mlflow_with_the_users_cost(
    gym: str, tmp_path: Path, user_server: FakeOpenAI
) -> None:
    from bao.tracking import mlflow_client

    config = gym_config(tmp_path, gym, user_server.base_url)
    workspace = tmp_path / "ws"
    result = verl_run.train(config, workspace, config.model_dump(mode="json"))
    client = mlflow_client(workspace)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    path = client.download_artifacts(result.run_id, "trajectories.jsonl", str(tmp_path))
    trajectories = read_trajectories(path)
    expected = summarize(trajectories)
    assert result.metrics == pytest.approx(expected)
    metrics = run.data.metrics
    for key in ("pass_at_u_1", "score", "user_involvement_rate", "user_error_rate"):
        assert metrics[f"eval/{key}"] == pytest.approx(expected[key]), key
    n = len(trajectories)
    assert n == config.tasks.n_eval
    # Oracle, guesser and silent policies in turn: a third solved, each on its first answer.
    solved = sum(t.answers_to_solve is not None for t in trajectories)
    assert solved == (n + 2) // 3
    assert metrics["eval/user_error_rate"] == 0.0
    # Every evaluation turn asked the user or the judge once; the cost is logged.
    turns = sum(len(t.turns) for t in trajectories)
    assert metrics["eval/user_calls"] == turns
    assert metrics["eval/user_requests"] + metrics["eval/user_cache_hits"] == turns
    assert metrics["eval/user_prompt_tokens"] > 0
    assert (workspace / "user-cache.sqlite").is_file()
    loop_file = json.loads((result.folder / "agent_loop.yaml").read_text())
    assert loop_file[0]["gym_path"] == str(result.folder / "gym.json")
    assert metrics[f"val-aux/{gym}/bao_user_calls/mean_at_1"] > 0
    stories_or_entities = (load_turtle_stories if gym == "turtle_gym" else load_telepathy_entities)(
        EXAMPLES[gym]
    )
    assert {t.task_id for t in trajectories} <= {r.id for r in stories_or_entities}
