"""The smoke run's pieces (bao.verl.cpu): verl's max_tokens rule, the smoke config, the tiny
model, the CLI flag. The whole run on CPU is tests/e2e/test_verl_cpu_sweep.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("verl")

from bao.configuration import read_yaml
from bao.verl.config import VerlConfig
from bao.verl.cpu.chat_tokenizer import build_chat_tokenizer
from bao.verl.cpu.rollout import max_new_tokens
from bao.verl.cpu.smoke import build_tiny_model, scripted_replies, smoke_config
from bao.verl.launch import hydra_value
from tests.bao.verl.test_launch import CONFIG, ROOT, cli

LENGTHS = {"prompt_length": 100, "response_length": 50, "max_model_len": 150}


def test_max_tokens_follows_verls_rule() -> None:
    # No limit asked: what is left of prompt + response, at most the response budget.
    assert max_new_tokens({}, 40, **LENGTHS) == 50
    assert max_new_tokens({}, 120, **LENGTHS) == 30
    # An explicit limit wins (and is consumed), clamped to the context and to at least 1.
    params = {"max_tokens": 7, "temperature": 1.0}
    assert max_new_tokens(params, 40, **LENGTHS) == 7
    assert params == {"temperature": 1.0}
    assert max_new_tokens({"max_new_tokens": 500}, 140, **LENGTHS) == 10
    assert max_new_tokens({"max_tokens": 0}, 10, **LENGTHS) == 1
    with pytest.raises(ValueError, match="no room to generate"):
        max_new_tokens({}, 150, **LENGTHS)


def shipped(**smoke: object) -> VerlConfig:
    raw = read_yaml(CONFIG)
    raw["smoke"] = {"enabled": True, **smoke}
    return VerlConfig.model_validate(raw)


def test_the_smoke_config_shrinks_the_run_and_keeps_the_algorithm(tmp_path: Path) -> None:
    config = shipped(steps=2)
    small = smoke_config(config, tmp_path / "model")
    assert small.model.path == str(tmp_path / "model")
    assert (small.optim.train_batch_size, small.rollout.n, small.env.max_turns) == (2, 2, 2)
    assert small.schedule.total_training_steps == small.schedule.test_freq == 2
    assert small.schedule.n_gpus_per_node == 1
    assert small.schedule.save_freq == -1
    assert small.tasks.n_train == 4
    assert small.tasks.n_eval == 2
    assert small.shaping.min_turns == 3  # at most max_turns + 1, or every failure is "short"
    assert small.shaping.user_lambda == config.shaping.user_lambda
    assert small.advantage == config.advantage
    assert small.optim.learning_rate == config.optim.learning_rate


def test_scripted_replies_are_hermes_tool_calls_of_the_gym() -> None:
    expected = {
        "function_gym": {"search", "answer", "action", "finish"},
        "telepathy_gym": {"action", "answer", "finish"},
    }
    for gym, choices in expected.items():
        replies = scripted_replies(gym)
        assert all(r.startswith("<tool_call>\n") and r.endswith("\n</tool_call>") for r in replies)
        calls = [json.loads(r.split("\n")[1]) for r in replies]
        assert {call["name"] for call in calls} == {"interact_with_env"}
        assert {call["arguments"]["choice"] for call in calls} == choices
    raw = read_yaml(CONFIG)
    raw["smoke"] = {"scripted_policy": True}
    raw["model"]["tool_format"] = "gpt-oss"
    with pytest.raises(ValueError, match=r"smoke\.scripted_policy writes hermes tool calls"):
        VerlConfig.model_validate(raw)


def test_without_the_model_on_this_machine_the_tiny_model_is_a_local_qwen2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    note = build_tiny_model(shipped(), tmp_path / "model")  # Qwen/Qwen3-4B: not downloaded
    assert note.startswith("a random qwen2 (Qwen/Qwen3-4B's config is not on this machine)")
    assert "locally built ChatML tokenizer" in note
    written = json.loads((tmp_path / "model" / "config.json").read_text())
    assert written["model_type"] == "qwen2"
    assert written["num_hidden_layers"] == 2
    assert (tmp_path / "model" / "tokenizer.json").is_file()


def test_a_model_family_on_this_machine_is_kept(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, Qwen3Config

    family = build_chat_tokenizer(tmp_path / "qwen3")  # stands in for a real Qwen3 folder
    Qwen3Config(num_hidden_layers=36, hidden_size=2560, vocab_size=1000).save_pretrained(family)
    raw = read_yaml(CONFIG)
    raw["model"]["path"] = str(family)
    raw["smoke"] = {"enabled": True}
    note = build_tiny_model(VerlConfig.model_validate(raw), tmp_path / "model")
    assert note.startswith("a random qwen3 (the family of")
    assert f"the tokenizer of {family}" in note
    written = json.loads((tmp_path / "model" / "config.json").read_text())
    assert (written["model_type"], written["num_hidden_layers"], written["hidden_size"]) == (
        "qwen3",
        2,
        64,
    )
    assert written["vocab_size"] == len(AutoTokenizer.from_pretrained(family))


def test_smoke_on_a_sim_config_is_one_line() -> None:
    done = cli("train", str(ROOT / "configs" / "sim.yaml"), "--smoke")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"bao-pareto train: error: {ROOT / 'configs' / 'sim.yaml'}: --smoke runs a verl config "
        "on CPU; this is a sim config, which runs on CPU as it is; drop --smoke"
    ]


def test_a_smoke_dry_run_is_the_cpu_command(tmp_path: Path) -> None:
    done = cli("train", str(CONFIG), "--smoke", "--dry-run", "--json", "--workspace", str(tmp_path))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    argv = document["argv"]
    for override in (
        "actor_rollout_ref.rollout.name=hf",
        "trainer.device=cpu",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "trainer.n_gpus_per_node=1",
        "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu",
        "+ray_kwargs.ray_init.address=local",
    ):
        assert override in argv, override
    assert document["env"]["VERL_PLATFORM"] == "cpu"
    assert not tmp_path.joinpath("verl").exists()  # a dry run writes nothing


def test_environment_values_stay_strings_for_hydra() -> None:
    assert hydra_value("1") == "'1'"
    assert hydra_value("0.5") == "'0.5'"
    assert hydra_value("cpu") == "cpu"
    assert hydra_value(1) == "1"
