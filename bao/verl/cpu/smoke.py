"""The smoke run's shape: a verl config made small, its CPU overrides, and its tiny model.

:func:`smoke_config` keeps everything a config says about the algorithm (shaping, advantage,
gym, tasks, tool format, learning rate) and shrinks what costs time: a step or two of a couple
of prompts with a couple of rollouts each, short episodes, one rank. :func:`cpu_overrides` are
the verl settings a CPU needs; :func:`build_tiny_model` writes a randomly initialised model of
the config's model family next to the run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Final

from bao.verl.config import VerlConfig

log = logging.getLogger(__name__)

# A few hundred thousand parameters: a step's forward and backward passes take seconds on CPU.
TINY_SHAPE: Final[dict[str, int]] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
}
LOGICAL_CPUS: Final = 8
"""CPUs Ray is told it has: the trainer, a training rank, the agent-loop worker, the load
balancer and TransferQueue's controller each hold one while they live, whatever the machine."""


def smoke_config(config: VerlConfig, model_folder: Path) -> VerlConfig:
    """``config`` as a smoke run of ``config.smoke.steps`` steps with the model in
    ``model_folder`` (validated again, so the result is a config like any other)."""
    smoke = config.smoke
    raw: dict[str, Any] = config.model_dump(mode="json")
    raw["model"].update(path=str(model_folder), tokenizer_path=None, gradient_checkpointing=False)
    max_turns = min(config.env.max_turns, smoke.max_turns)
    raw["env"]["max_turns"] = max_turns
    raw["shaping"]["min_turns"] = min(config.shaping.min_turns, max_turns + 1)
    raw["tasks"]["n_train"] = smoke.batch_size * smoke.steps
    raw["tasks"]["n_eval"] = smoke.eval_tasks
    raw["rollout"].update(
        n=smoke.group_size,
        max_response_length=min(config.rollout.max_response_length, smoke.max_response_length),
        tensor_parallel_size=1,
        agent_workers=1,
    )
    sequences = smoke.batch_size * smoke.group_size
    raw["optim"].update(
        train_batch_size=smoke.batch_size,
        ppo_mini_batch_size=smoke.batch_size,
        ppo_micro_batch_size_per_gpu=sequences,
        log_prob_micro_batch_size_per_gpu=sequences,
    )
    raw["schedule"].update(
        total_training_steps=smoke.steps,
        test_freq=smoke.steps,
        save_freq=-1,  # a checkpoint of a random model is worth nothing
        val_before_train=False,
        n_gpus_per_node=1,
        nnodes=1,
    )
    return VerlConfig.model_validate(raw)


SCRIPT_VARIABLE: Final = "BAO_VERL_SCRIPTED_POLICY"
"""Names the gym whose :func:`scripted_replies` the rollout server plays (its environment is
all a Ray actor shares with the launcher; the replies themselves would not survive Hydra's
quoting of environment values)."""


def scripted_replies(gym: str) -> list[str]:
    """The assistant messages of ``smoke.scripted_policy``: one Hermes tool call per choice
    the gym plays, so scripted episodes earn different rewards from each other and from the
    random model's (which rarely calls a tool)."""
    from bao.envs.user_gyms import USER_GYM_CHOICES
    from bao.verl.data import TOOL_NAME

    if gym == "function_gym":
        calls = [("search", "1"), ("answer", "0"), ("action", "1 2"), ("finish", "")]
    else:
        assert "action" in USER_GYM_CHOICES
        calls = [("action", "Is it a place?"), ("answer", "the moon"), ("finish", "")]
    return [
        "<tool_call>\n"
        + json.dumps({"name": TOOL_NAME, "arguments": {"choice": choice, "content": content}})
        + "\n</tool_call>"
        for choice, content in calls
    ]


def smoke_environment(config: VerlConfig) -> dict[str, str]:
    """Environment of a smoke run's processes beyond :data:`bao.verl.cpu.ENVIRONMENT`."""
    if not config.smoke.scripted_policy:
        return {}
    return {SCRIPT_VARIABLE: config.gym}


def cpu_overrides() -> list[tuple[str, Any]]:
    """verl 0.9.1 settings of a one-rank CPU run (Hydra keys and values)."""
    return [
        ("trainer.device", "cpu"),
        ("actor_rollout_ref.rollout.name", "hf"),  # bao.verl.cpu.rollout
        # FSDP1 refuses CPU parameters with sync_module_states; FSDP2 shards them on gloo.
        ("actor_rollout_ref.actor.strategy", "fsdp2"),
        ("actor_rollout_ref.ref.strategy", "fsdp2"),
        ("critic.strategy", "fsdp2"),
        # remove_padding needs flash-attention's varlen kernels; sdpa runs anywhere.
        ("actor_rollout_ref.model.use_remove_padding", False),
        ("+actor_rollout_ref.model.override_config.attn_implementation", "sdpa"),
        # verl's ResourcePoolManager asks Ray for GPUs whatever the device: one logical GPU.
        ("+ray_kwargs.ray_init.num_gpus", 1),
        # Always a Ray of its own on this machine, even with RAY_ADDRESS set (a cluster would
        # refuse the resources above, and a smoke run must not take a real cluster's GPUs).
        ("+ray_kwargs.ray_init.address", "local"),
        ("ray_kwargs.ray_init.num_cpus", LOGICAL_CPUS),
        ("+ray_kwargs.ray_init.include_dashboard", False),
        # One TransferQueue storage unit (its default of 8 would each hold a logical CPU).
        ("transfer_queue.backend.SimpleStorage.num_data_storage_units", 1),
    ]


def build_tiny_model(config: VerlConfig, folder: Path) -> str:
    """Writes a randomly initialised model of ``model.path``'s family into ``folder``, with
    its tokenizer when that is on this machine, else the locally built chat tokenizer; returns
    what it built (one line for the log). Nothing is downloaded."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    model = config.model
    folder.mkdir(parents=True, exist_ok=True)
    source = model.tokenizer_path or model.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, local_files_only=True, trust_remote_code=model.trust_remote_code
        )
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("no chat template")
        tokenizer_note = f"the tokenizer of {source}"
    except (OSError, ValueError) as error:
        from bao.verl.cpu.chat_tokenizer import build_chat_tokenizer

        log.info("smoke run: tokenizer of %s not usable here (%s); building one", source, error)
        build_chat_tokenizer(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer_note = "a locally built ChatML tokenizer"
    tokenizer.save_pretrained(folder)
    special = {
        "vocab_size": len(tokenizer),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else tokenizer.eos_token_id,
        "tie_word_embeddings": True,
        "max_position_embeddings": 4096,
    }
    torch.manual_seed(config.seed)
    try:
        family = AutoConfig.from_pretrained(
            model.path, local_files_only=True, trust_remote_code=model.trust_remote_code
        )
        _shrink(family, special)
        network = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
            family, trust_remote_code=model.trust_remote_code
        )
        family_note = f"{family.model_type} (the family of {model.path})"
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        log.info(
            "smoke run: model config of %s not usable here (%s); using Qwen2", model.path, error
        )
        qwen = Qwen2Config(**{**TINY_SHAPE, **special})
        qwen.layer_types = ["full_attention"] * qwen.num_hidden_layers
        network = AutoModelForCausalLM.from_config(qwen)  # type: ignore[no-untyped-call]
        family_note = f"qwen2 ({model.path}'s config is not on this machine)"
    network.save_pretrained(folder)
    parameters = sum(p.numel() for p in network.parameters())
    return f"a random {family_note} of {parameters:,} parameters with {tokenizer_note}"


def _shrink(family: Any, special: dict[str, Any]) -> None:
    for key, value in {**TINY_SHAPE, **special}.items():
        if key in TINY_SHAPE and not hasattr(family, key):
            continue
        setattr(family, key, value)
    layers = family.num_hidden_layers
    # Per-layer lists (Qwen3's attention types, sliding-window layers) must match the depth.
    if isinstance(getattr(family, "layer_types", None), list):
        family.layer_types = family.layer_types[:layers]
    if hasattr(family, "max_window_layers"):
        family.max_window_layers = layers
