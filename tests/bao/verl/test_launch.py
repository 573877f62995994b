"""The launcher: the generated command composes and validates, bad input is one line, a machine
without GPUs fails fast, and a whole run (a fake ``main_ppo`` that does everything but the GPU
work, with verl's own pieces) is evaluated into a local MLflow database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("verl")

from bao.errors import BaoError
from bao.metrics import summarize
from bao.tasks import generate_function_tasks
from bao.trajectory import read_trajectories
from bao.verl import launch
from bao.verl import run as verl_run
from bao.verl.config import VerlConfig
from bao.verl.cpu.chat_tokenizer import build_chat_tokenizer
from bao.verl.data import task_from_row, write_task_parquet
from bao.verl.launch import (
    RunFolder,
    VerlRunError,
    VerlUnavailableError,
    check_gpus,
    hydra_overrides,
    hydra_value,
    plan_data,
    validate_overrides,
)
from sweep.cli import main

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "verl" / "function_gym.yaml"
SWEEP = ROOT / "configs" / "verl" / "sweep_function_gym.yaml"
FAKE_MAIN = Path(__file__).with_name("fake_main_ppo.py")
NO_GPU_LINE = (
    "bao-pareto {command}: error: the verl backend needs 8 GPU(s) (schedule.n_gpus_per_node x "
    "schedule.nnodes) and this machine has 0; run on a GPU node (docs/verl.md), check the "
    "config on CPU with `train --smoke`, or use the sim backend on a CPU machine"
)


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweep.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def small_config(tmp_path: Path, **sections: dict[str, Any]) -> VerlConfig:
    raw: dict[str, Any] = {
        "model": {"path": str(tmp_path / "model")},
        "env": {"max_turns": 6},
        "shaping": {"user_lambda": 0.1, "info_seeking": 0.1, "min_turns": 6},
        "tasks": {"n_train": 6, "n_eval": 9},
        "schedule": {"n_gpus_per_node": 1, "total_training_steps": 2, "test_freq": 1},
        "optim": {"train_batch_size": 4, "ppo_mini_batch_size": 2},
        "rollout": {"n": 2, "max_response_length": 2048},
        "workdir": str(tmp_path / "run"),
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return VerlConfig.model_validate(raw)


# ----------------------------------------------------------------------- the command itself


def test_dry_run_prints_a_command_verl_composes_and_writes_nothing(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    done = cli("train", str(CONFIG), "--dry-run", "--json", "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["valid"] is True
    assert document["argv"][1:3] == ["-m", "verl.trainer.main_ppo"]
    assert document["env"]["VERL_USE_EXTERNAL_MODULES"] == "bao.verl.register"
    assert "algorithm.adv_estimator=bao_turn" in document["argv"]
    assert "+algorithm.bao.user_lambda=0.1" in document["argv"]
    assert not workspace.exists()

    text = cli("train", str(CONFIG), "--dry-run", "--workspace", str(workspace))
    assert text.returncode == 0, text.stderr
    assert "python" in text.stdout
    assert "verl.trainer.main_ppo" in text.stdout
    assert "valid: composed with Hydra and checked by verl's validate_config" in text.stdout


def test_the_paper_recipe_reaches_verl_under_its_0_9_1_keys(tmp_path: Path) -> None:
    config = VerlConfig.model_validate(
        {"model": {"path": "Qwen/Qwen3-4B"}, "workdir": str(tmp_path)}
    )
    folder = RunFolder(tmp_path)
    overrides = hydra_overrides(
        config, plan_data(config, folder), folder, experiment="e", run_name="r", environment={}
    )
    composed = validate_overrides(overrides)
    actor = composed.actor_rollout_ref.actor
    rollout = composed.actor_rollout_ref.rollout
    assert composed.algorithm.gamma == 0.8
    assert composed.algorithm.adv_estimator == "bao_turn"
    assert dict(composed.algorithm.bao) == {
        "user_lambda": 0.0,
        "info_seeking": 0.0,
        "over_thinking": 0.0,
        "min_turns": 15,
        "credit": "r2g",
        "score": "sum",
        "estimator": "bao",
        "k_max": 9,
    }
    assert composed.data.train_batch_size == 128
    assert rollout.n == 8
    assert rollout.multi_turn.max_assistant_turns == 16
    assert rollout.multi_turn.enable is True
    assert rollout.name == "sglang"
    assert rollout.agent.default_agent_loop == "bao_agent"
    assert actor.optim.lr == 1e-6
    assert actor.ppo_mini_batch_size == 16
    assert actor.ppo_micro_batch_size_per_gpu == 8
    assert actor.entropy_coeff == 0
    assert list(composed.trainer.logger) == ["console", "file", "mlflow"]
    assert composed.trainer.use_v1 is True
    assert composed.trainer.validation_data_dir == str(tmp_path / "validation")


@pytest.mark.parametrize(
    "text",
    ["plain", "with space", "a:b,c", "quote's", 'double"quote', "[bracket]", "true", "x=y", "\\"],
)
def test_hydra_values_survive_composition(text: str) -> None:
    composed = validate_overrides(
        [
            f"trainer.project_name={hydra_value(text)}",
            "actor_rollout_ref.rollout.n=2",
            "trainer.n_gpus_per_node=1",
            "data.train_batch_size=4",
            "actor_rollout_ref.actor.ppo_mini_batch_size=2",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1",
            "algorithm.adv_estimator=bao_turn",
            "actor_rollout_ref.rollout.multi_turn.enable=true",
            "actor_rollout_ref.rollout.agent.default_agent_loop=bao_agent",
            "trainer.test_freq=1",
        ]
    )
    assert composed.trainer.project_name == text


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("verl_overrides=[trainer.nonexistent=1]", "Could not override 'trainer.nonexistent'"),
        ("verl_overrides=[trainer.use_v1=false]", "the BAO run needs True"),
        ("verl_overrides=['algorithm.adv_estimator=grpo']", "algorithm.adv_estimator"),
        ("verl_overrides=[not an override]", "verl rejects the generated command"),
        ("schedule.n_gpus_per_node=3", "validate_config rejects the run"),
        ("optim.ppo_mini_batch_size=500", "exceeds optim.train_batch_size"),
        ("model.path=null", "model.path"),
        ("rollout.engine=trt", "rollout.engine"),
        ("tasks.train_path=/nowhere/tasks.json", "does not exist"),
        ("shaping.min_turns=40", "exceeds env.max_turns + 1"),
        ("model.tool_format=yaml", "is not a verl tool-call parser"),
        ("verl_overrides=[trainer.test_freq=-1]", "would never validate"),
        ("verl_overrides=[trainer.validation_data_dir=/tmp/x]", "trainer.validation_data_dir"),
        ("eval.every=5", "verl validates every schedule.test_freq steps"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, message: str
) -> None:
    workspace = tmp_path / "ws"
    code = main(
        ["train", str(CONFIG), "--dry-run", "--set", setting, "--workspace", str(workspace)]
    )
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert message in lines[0]
    assert captured.out == ""
    assert not workspace.exists()


def test_dry_run_of_a_sim_config_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(ROOT / "configs" / "sim.yaml"), "--dry-run"]) == 2
    assert "--dry-run checks a verl launch" in capsys.readouterr().err


# ------------------------------------------------------------------------------ GPUs, Ray


def test_without_gpus_training_fails_fast_and_opens_no_run(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    done = cli("train", str(CONFIG), "--workspace", str(workspace))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [NO_GPU_LINE.format(command="train")]
    assert not (workspace / "mlflow.db").exists()


def test_gpu_check_counts_the_ray_cluster_when_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small_config(tmp_path, schedule={"n_gpus_per_node": 4, "nnodes": 2})
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(VerlUnavailableError, match="RAY_ADDRESS is not set"):
        check_gpus(config)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setattr(launch, "_ray_cluster_gpus", lambda address: 6)
    with pytest.raises(
        VerlUnavailableError, match=r"needs 8 GPU.*the Ray cluster at 10\.0\.0\.1:6379 has 6"
    ):
        check_gpus(config)
    monkeypatch.setattr(launch, "_ray_cluster_gpus", lambda address: 8)
    check_gpus(config)


def test_verl_imports_the_registration_module_named_in_its_environment() -> None:
    code = (
        "import verl\n"
        "from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY as A\n"
        "from verl.experimental.agent_loop.agent_loop import _agent_loop_registry as L\n"
        "print('bao_turn' in A, L.get('bao_agent'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VERL_USE_EXTERNAL_MODULES": "bao.verl.register"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == (
        "True {'_target_': 'bao.verl.agent_loop.BaoAgentLoop'}"
    )


# ------------------------------------------------------------------------------------ data


def test_rows_are_what_verls_dataset_reads(tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    tasks = generate_function_tasks(5, seed=3)
    path = write_task_parquet(tasks, tmp_path / "val.parquet", split="val", max_turns=16)
    tokenizer = AutoTokenizer.from_pretrained(build_chat_tokenizer(tmp_path / "tok"))
    data_config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 1024})
    dataset = RLHFDataset(str(path), tokenizer, data_config)
    assert len(dataset) == len(tasks)
    for index, task in enumerate(tasks):
        row = dataset[index]
        assert row["agent_name"] == "bao_agent"
        assert row["raw_prompt"][0]["role"] == "system"
        assert "16 turns" in row["raw_prompt"][0]["content"]
        assert row["index"] == index
        assert task_from_row(row) == task


def test_userrl_rows_are_read_as_they_are(
    tmp_path: Path, userrl_parquet_path: Path, userrl_functions_path: Path
) -> None:
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from bao.tasks import load_function_tasks

    tokenizer = AutoTokenizer.from_pretrained(build_chat_tokenizer(tmp_path / "tok"))
    data_config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 4096})
    dataset = RLHFDataset(str(userrl_parquet_path), tokenizer, data_config)
    functions = {t.id: t for t in load_function_tasks(userrl_functions_path)}
    for index in (0, 1, len(dataset) - 1):
        row = dataset[index]
        task = task_from_row(row, functions)
        assert task.id == row["reward_model"]["id"]
        assert abs(task.expected_result - float(row["reward_model"]["ground_truth"])) < 1e-6
    with pytest.raises(BaoError, match="no functions file was given"):
        task_from_row(dataset[0])

    config = small_config(tmp_path, tasks={"train_path": str(userrl_parquet_path), "n_eval": 4})
    plan = plan_data(config, RunFolder(tmp_path / "run"))
    assert plan.train_file == userrl_parquet_path.resolve()
    assert plan.functions_path == tmp_path / "run" / "data" / "functions.json"
    assert [path for path, _, _ in plan.to_write] == [tmp_path / "run" / "data" / "val.parquet"]
    assert {task.id for task in plan.by_id} == {task.id for task in plan.train_tasks}


# --------------------------------------------------------------------- a whole (fake) run


@pytest.fixture
def fake_verl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """verl's entry point replaced by fake_main_ppo.py, one GPU 'present', a model folder
    holding the locally built tokenizer."""
    monkeypatch.setattr(verl_run, "command", lambda o: [sys.executable, str(FAKE_MAIN), *o])
    monkeypatch.setattr(launch, "_local_gpus", lambda: 1)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return build_chat_tokenizer(tmp_path / "model")


def test_a_run_is_evaluated_into_mlflow(tmp_path: Path, fake_verl: Path) -> None:
    from bao.tracking import mlflow_client

    config = small_config(tmp_path)
    workspace = tmp_path / "ws"
    result = verl_run.train(config, workspace, config.model_dump(mode="json"))

    client = mlflow_client(workspace)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    # The evaluation: exact metrics from the trajectories of the last validation pass.
    folder = client.download_artifacts(result.run_id, "trajectories.jsonl", str(tmp_path))
    trajectories = read_trajectories(folder)
    assert len(trajectories) == 9
    expected = summarize(trajectories)
    for key, value in expected.items():
        assert metrics[f"eval/{key}"] == pytest.approx(value), key
    assert result.metrics == pytest.approx(expected)
    assert 0 < metrics["eval/pass_at_u_1"] < 1  # oracle, guesser and never-answer mixed
    assert result.step == 2
    assert client.get_metric_history(result.run_id, "eval/score")[0].step == 2
    # verl's own tracker attached to the same run (MLFLOW_RUN_ID), "@" made MLflow-safe.
    assert "critic/score/mean" in metrics
    assert metrics["val-aux/function_gym/bao_pass_at_u_1/mean_at_1"] == pytest.approx(
        metrics["eval/pass_at_u_1"]
    )
    assert run.data.params["shaping.user_lambda"] == "0.1"
    assert run.data.params["algorithm/bao/user_lambda"] == "0.1"
    run_folder = tmp_path / "run" / result.run_id  # workdir/<run id>: never shared
    assert result.folder == run_folder
    assert run.data.tags["bao.verl_folder"] == str(run_folder)
    checkpoint = run_folder / "checkpoints" / "global_step_2"
    assert run.data.tags["bao.checkpoint_uri"] == str(checkpoint)
    artifacts = {item.path for item in client.list_artifacts(result.run_id)}
    assert {"trajectories.jsonl", "config.yaml", "verl"} <= artifacts
    logged = {item.path for item in client.list_artifacts(result.run_id, "verl")}
    assert logged == {"verl/verl.log", "verl/verl_metrics.jsonl"}
    # The run folder: the parquet files verl read, the dump it wrote, the command.
    assert (run_folder / "data" / "train.parquet").is_file()
    assert (run_folder / "validation" / "2.jsonl").is_file()
    command_line = (run_folder / "command.txt").read_text()
    assert str(FAKE_MAIN) in command_line
    assert "algorithm.adv_estimator=bao_turn" in command_line
    assert "trainer.resume_mode=disable" in command_line


def test_userrl_style_rows_run_through_the_agent_loop_config_file(
    tmp_path: Path, fake_verl: Path
) -> None:
    tasks = generate_function_tasks(6, seed=5)
    functions = tmp_path / "data" / "functions_eval.json"
    functions.parent.mkdir()
    functions.write_text(json.dumps([task.to_dict() for task in tasks]))
    rows = []
    for index, task in enumerate(tasks):
        rows.append(
            {
                "data_source": "interact_function",
                "prompt": [
                    {"role": "system", "content": "rules"},
                    {"role": "user", "content": "go"},
                ],
                "ability": "interaction",
                "reward_model": {
                    "style": "rule",
                    "ground_truth": repr(task.expected_result),
                    "id": task.id,
                },
                "extra_info": {"index": index, "split": "test"},
            }
        )
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "test.parquet")
    config = small_config(tmp_path, tasks={"eval_path": str(tmp_path / "data" / "test.parquet")})
    result = verl_run.train(config, tmp_path / "ws", config.model_dump(mode="json"))
    loop_file = json.loads((result.folder / "agent_loop.yaml").read_text())
    assert loop_file[0]["functions_path"] == str(result.folder / "data" / "functions.json")
    written = json.loads((result.folder / "data" / "functions.json").read_text())
    assert sorted(record["id"] for record in written) == sorted(task.id for task in tasks)
    assert result.metrics["n_trajectories"] == 6
    assert result.metrics["pass_at_u_1"] == pytest.approx(2 / 6)  # rows 0 and 3: the oracle


def test_parquet_splits_from_two_functions_files_share_one_merged_file(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def userrl_split(name: str, tasks: list[Any]) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"functions_{name}.json").write_text(json.dumps([t.to_dict() for t in tasks]))
        rows = [
            {"prompt": [], "reward_model": {"id": t.id, "ground_truth": repr(t.expected_result)}}
            for t in tasks
        ]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{name}.parquet")
        return folder / f"{name}.parquet"

    train = generate_function_tasks(4, seed=1)
    test = generate_function_tasks(3, seed=2)
    config = small_config(
        tmp_path,
        tasks={
            "train_path": str(userrl_split("train", train)),
            "eval_path": str(userrl_split("test", test)),
        },
    )
    plan = plan_data(config, RunFolder(tmp_path / "run"))
    assert plan.to_write == []
    assert sorted(t.id for t in plan.by_id) == sorted(t.id for t in train + test)

    clash = [generate_function_tasks(1, seed=9)[0]]
    clash = [
        type(clash[0])(train[0].id, clash[0].rule, clash[0].test_case, clash[0].expected_result)
    ]
    config = small_config(
        tmp_path,
        tasks={
            "train_path": str(tmp_path / "train" / "train.parquet"),
            "eval_path": str(userrl_split("clash", clash)),
        },
    )
    with pytest.raises(BaoError, match="names different tasks"):
        plan_data(config, RunFolder(tmp_path / "run"))


def test_a_failed_run_is_one_line_and_a_failed_mlflow_run(
    tmp_path: Path, fake_verl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bao.tracking import mlflow_client

    monkeypatch.setenv("FAKE_VERL_FAIL", "1")
    config = small_config(tmp_path)
    workspace = tmp_path / "ws"
    with pytest.raises(VerlRunError) as raised:
        verl_run.train(config, workspace, config.model_dump(mode="json"))
    message = str(raised.value)
    assert message.startswith(
        "verl exited with status 1: torch.OutOfMemoryError: CUDA out of memory"
    )
    assert str(tmp_path / "run") in message
    assert "verl.log" in message
    client = mlflow_client(workspace)
    (run,) = client.search_runs([client.get_experiment_by_name(config.name).experiment_id])
    assert run.info.status == "FAILED"


def test_a_run_without_validation_is_a_clear_error(
    tmp_path: Path, fake_verl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bao.verl.evaluation import EvaluationMissingError

    monkeypatch.setattr(verl_run, "command", lambda o: [sys.executable, "-c", "pass"])
    config = small_config(tmp_path)
    with pytest.raises(EvaluationMissingError, match="wrote no validation rollouts"):
        verl_run.train(config, tmp_path / "ws", config.model_dump(mode="json"))


# ----------------------------------------------------------------------------------- sweep


def test_a_verl_sweep_validates_and_fails_fast_without_gpus(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    dry = cli("sweep", str(SWEEP), "--dry-run", "--json", "--workspace", str(workspace))
    assert dry.returncode == 0, dry.stderr
    document = json.loads(dry.stdout)
    assert document["valid"] is True
    assert len(document["commands"]) == 6  # both ends of lambda, alpha and beta
    assert all("verl.trainer.main_ppo" in c["argv"] for c in document["commands"])
    assert any("+algorithm.bao.user_lambda=0.5" in c["argv"] for c in document["commands"])

    done = cli("sweep", str(SWEEP), "--workspace", str(workspace))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [NO_GPU_LINE.format(command="sweep")]
    assert not (workspace / "sweeps").exists()


def test_a_verl_sweep_checks_its_search_space_against_the_verl_config(tmp_path: Path) -> None:
    done = cli(
        "sweep",
        str(SWEEP),
        "--dry-run",
        "--set",
        "search_space={optim.learning_rate: {type: float, low: -1.0, high: 0.1}}",
    )
    assert done.returncode == 2
    assert "search_space.optim.learning_rate" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
