"""GPU smoke test of the verl backend: a real BAO GRPO run of a few steps on a tiny model.

Everything is built locally, so it runs on a node without internet access: the chat tokenizer
of the agent-loop tests and a randomly initialised 2-layer Qwen2 model (under 1 M parameters).
The run goes through the real ``bao-pareto train`` with a verl config: SGLang (or vLLM) serves
the model, the ``bao_agent`` loop plays Function-Gym, ``bao_turn`` computes the advantages, FSDP
updates the model, and the last validation pass is evaluated into MLflow. A random model rarely
solves a task; what is checked is that every stage ran and every metric arrived.

Run it on a GPU node (docs/verl.md records where it last ran):

    pytest -m gpu tests/e2e/test_verl_gpu_smoke.py -s

It is skipped where no CUDA GPU or no inference engine (sglang, vllm) is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.gpu, pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STEPS = 2


def _engine() -> str | None:
    for name in ("sglang", "vllm"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Qwen2 with the local chat tokenizer, saved as one HF folder."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from bao.verl.cpu.chat_tokenizer import build_chat_tokenizer

    folder = build_chat_tokenizer(tmp_path_factory.mktemp("tiny-qwen2"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,  # head_dim 64: the smallest the inference engines' kernels support
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


def _missing() -> str | None:
    if not _cuda():
        return "needs a CUDA GPU"
    if _engine() is None:
        return "needs an inference engine: sglang or vllm"
    return None


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_a_tiny_bao_run_trains_and_is_evaluated(tiny_model: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs" / "verl" / "function_gym.yaml").read_text())
    config.update(
        name="verl-gpu-smoke",
        model={**config["model"], "path": str(tiny_model), "gradient_checkpointing": False},
        tasks={**config["tasks"], "n_train": 8, "n_eval": 4},
        env={"max_turns": 4},
        shaping={**config["shaping"], "min_turns": 4},
        rollout={
            **config["rollout"],
            "engine": _engine(),
            "n": 2,
            "max_prompt_length": 1024,
            "max_response_length": 1024,
            "gpu_memory_utilization": 0.3,
            "agent_workers": 1,
        },
        optim={
            **config["optim"],
            "train_batch_size": 4,
            "ppo_mini_batch_size": 2,
            "ppo_micro_batch_size_per_gpu": 2,
            "log_prob_micro_batch_size_per_gpu": 2,
        },
        schedule={
            **config["schedule"],
            "n_gpus_per_node": 1,
            "total_training_steps": STEPS,
            "test_freq": 1,
            "save_freq": -1,
        },
        workdir=str(tmp_path / "run"),
    )
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    workspace = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweep.cli",
            "train",
            str(path),
            "--json",
            "--workspace",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    log = tmp_path / "run" / "verl.log"
    assert done.returncode == 0, (
        done.stderr[-3000:],
        log.read_text()[-5000:] if log.is_file() else "",
    )
    document = json.loads(done.stdout.strip().splitlines()[-1])
    assert document["eval/n_trajectories"] == 4
    assert 0.0 <= document["eval/user_involvement_rate"] <= 1.0

    from bao.tracking import mlflow_client

    client = mlflow_client(workspace)
    run = client.get_run(document["run_id"])
    assert run.info.status == "FINISHED"
    assert "critic/score/mean" in run.data.metrics  # verl's tracker logged the training steps
    assert client.get_metric_history(document["run_id"], "eval/score")[0].step == STEPS
    assert (tmp_path / "run" / "validation" / f"{STEPS}.jsonl").is_file()
