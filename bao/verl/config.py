"""Settings of one BAO GRPO training run on verl 0.9.1 (paired with ``bao.verl.launch``).

The defaults are the BAO/UserRL recipe (gamma 0.8, 128 prompts per batch, 8 rollouts per
prompt, 16 assistant turns, learning rate 1e-6, PPO mini-batch 16 and micro-batch 8 per GPU,
no entropy bonus, SGLang rollout, 8 GPUs), written in verl 0.9.1's keys by
:func:`bao.verl.launch.hydra_overrides`; ``configs/verl/function_gym.yaml`` documents every key.
The shaping, advantage and task sections are the simulator's, so a sweep's search space means
the same thing on both backends. Telepathy-Gym and Turtle-Gym runs also name their simulated
user and judge (``user_simulator``: any OpenAI-compatible endpoint, see docs/gyms.md).

Importing this module does not import verl: configs validate on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bao.envs.user_simulator import UserSimulatorSettings
from bao.sim.config import (
    AdvantageSettings,
    EnvSettings,
    EvalSettings,
    ShapingSettings,
    check_min_turns,
)

Gym = Literal["function_gym", "telepathy_gym", "turtle_gym"]
USER_GYMS: tuple[str, ...] = ("telepathy_gym", "turtle_gym")
"""The gyms whose user is a language model (``bao.envs.user_gyms``)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerlTaskSettings(_Section):
    """Where training and validation tasks come from."""

    train_path: Path | None = None
    """Function-Gym: UserRL functions JSON, JSONL, or a UserRL/verl parquet; ``None``
    generates ``n_train``. Telepathy/Turtle (required): UserRL's entities/stories JSON, JSONL,
    or a UserRL parquet. A parquet file is handed to verl as it is; its rows name tasks by id
    (Function-Gym, ``functions_path``) or by title (the others, ``records_path``)."""
    eval_path: Path | None = None
    """Validation tasks, same formats; ``None``: Function-Gym generates ``n_eval`` disjoint
    from training, Telepathy/Turtle hold ``n_eval`` of the training file out."""
    functions_path: Path | None = None
    """The functions JSON that Function-Gym parquet rows refer to by id (default: the one
    beside them)."""
    records_path: Path | None = None
    """The entities/stories JSON that Telepathy/Turtle parquet rows refer to by title
    (default: the one beside them)."""
    n_train: int = Field(400, ge=1)
    """Generated training tasks (Function-Gym, ignored with ``train_path``)."""
    n_eval: int = Field(200, ge=1)
    """Generated (Function-Gym) or held-out (Telepathy/Turtle) validation tasks; ignored with
    ``eval_path``."""
    generator_seed: int = 2026
    """Seed of generated tasks and of the held-out split, apart from the run seed so that runs
    share tasks."""


class VerlEnvSettings(EnvSettings):
    """The episode: the simulator's turn budget, and Turtle-Gym's success threshold."""

    success_threshold: float = Field(1.0, gt=0.0, le=1.0)
    """Turtle-Gym: the story score (rubric-weighted, 0..1) that solves a puzzle and ends the
    episode (UserRL trains and evaluates with 1.0)."""


class ModelSettings(_Section):
    path: str = Field(min_length=1)
    """Hugging Face model folder (or hub id, if the nodes can download) to start from."""
    tokenizer_path: str | None = None
    """Tokenizer folder when it differs from ``path``."""
    tool_format: str = "hermes"
    """verl tool-call parser of the model's chat template (hermes for Qwen2.5/Qwen3)."""
    trust_remote_code: bool = False
    """Allow the model folder's own Python code (only for models you trust)."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: less memory, ~30% more time."""


class RolloutSettings(_Section):
    """Generation with the inference engine."""

    engine: Literal["sglang", "vllm"] = "sglang"
    """Inference engine (the BAO and UserRL recipes use SGLang)."""
    n: int = Field(8, ge=1)
    """Rollouts per prompt: the GRPO group size."""
    temperature: float = Field(1.0, ge=0.0)
    """Sampling temperature of training rollouts."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling of training rollouts."""
    eval_temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature of validation rollouts (0: greedy, one trajectory per task)."""
    max_prompt_length: int = Field(1152, ge=64)
    """Tokens of the opening prompt (system prompt, tool schema, task)."""
    max_response_length: int = Field(8192, ge=64)
    """Tokens of the whole multi-turn response (assistant turns and observations)."""
    max_observation_length: int = Field(256, ge=16)
    """Characters of one environment observation passed back to the model."""
    gpu_memory_utilization: float = Field(0.5, gt=0.0, lt=1.0)
    """Share of GPU memory the inference engine may take (the rest trains)."""
    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs per inference replica."""
    agent_workers: int = Field(8, ge=1)
    """Agent-loop worker processes driving episodes concurrently."""


class OptimSettings(_Section):
    """The PPO/GRPO update."""

    train_batch_size: int = Field(128, ge=1)
    """Prompts per training step (each with ``rollout.n`` rollouts)."""
    learning_rate: float = Field(1e-6, gt=0.0)
    """Actor learning rate."""
    ppo_mini_batch_size: int = Field(16, ge=1)
    """Prompts per PPO mini-batch (verl multiplies by ``rollout.n``)."""
    ppo_micro_batch_size_per_gpu: int = Field(8, ge=1)
    """Sequences per forward/backward pass on one GPU (gradient accumulation)."""
    log_prob_micro_batch_size_per_gpu: int = Field(8, ge=1)
    """Sequences per log-probability pass on one GPU."""
    entropy_coeff: float = Field(0.0, ge=0.0)
    """Entropy bonus (0 in the BAO recipe)."""
    use_kl_loss: bool = False
    """KL loss to the reference policy (off in the BAO recipe: no reference model is kept)."""
    kl_loss_coef: float = Field(0.001, ge=0.0)
    """Weight of that KL loss when on."""
    clip_ratio: float = Field(0.2, gt=0.0, lt=1.0)
    """PPO clip range."""


class ScheduleSettings(_Section):
    """How long to train, where it runs, when to validate and save."""

    total_epochs: int = Field(15, ge=1)
    """Passes over the training tasks."""
    total_training_steps: int | None = Field(None, ge=1)
    """Stop after this many steps instead (smoke tests, budget-capped sweeps)."""
    test_freq: int = Field(5, ge=1)
    """Validate every this many steps; the last step is always validated."""
    save_freq: int = Field(0, ge=-1)
    """0: save only the final checkpoint (what ``select --register`` registers); N: also
    every N steps; -1: save none."""
    val_before_train: bool = False
    """Also validate the untrained model (costs one validation pass)."""
    n_gpus_per_node: int = Field(8, ge=1)
    """GPUs per node used by this run."""
    nnodes: int = Field(1, ge=1)
    """Nodes (a Ray cluster reached through ``RAY_ADDRESS`` when more than one)."""


class SmokeSettings(_Section):
    """A smoke run (``bao-pareto train CONFIG --smoke``): the real verl pipeline for a step or
    two on this machine's CPU, with a tiny randomly initialised model of ``model.path``'s
    family, to check a config end to end before paying for GPUs (docs/verl.md)."""

    enabled: bool = False
    """Run this config as a smoke run instead of on GPUs."""
    steps: int = Field(1, ge=1, le=4)
    """Training steps; the run validates after the last one."""
    batch_size: int = Field(2, ge=1, le=8)
    """Prompts per step (``optim.train_batch_size`` and the PPO mini-batch)."""
    group_size: int = Field(2, ge=2, le=8)
    """Rollouts per prompt (``rollout.n``); GRPO needs at least 2."""
    max_turns: int = Field(2, ge=1)
    """Turn budget per episode (the config's ``env.max_turns`` if that is smaller)."""
    max_response_length: int = Field(192, ge=64)
    """Tokens of all turns together: a random model rarely stops on its own, so every turn
    runs to this budget (the config's ``rollout.max_response_length`` if that is smaller)."""
    eval_tasks: int = Field(2, ge=1)
    """Validation tasks (``tasks.n_eval`` for generated or held-out tasks)."""
    scripted_policy: bool = False
    """Every other generation is a scripted tool call of the gym (a search, a wrong answer,
    an action, a finish) instead of the random model's text, so episodes differ in reward and
    the update has non-zero advantages; the model still scores those tokens. For tests that
    need rewards; hermes tool format only."""


class VerlConfig(_Section):
    """One BAO GRPO training run on verl (``bao-pareto train configs/verl/...yaml``)."""

    name: str = Field("verl", min_length=1)
    """Run name; the MLflow experiment of a stand-alone ``bao-pareto train``."""
    seed: int = 0
    """Seeds verl's data shuffling and the rollout engine."""
    backend: Literal["verl"] = "verl"
    """This config's backend."""
    gym: Gym = "function_gym"
    """The UserRL gym trained on: function_gym, telepathy_gym or turtle_gym."""
    model: ModelSettings
    tasks: VerlTaskSettings = VerlTaskSettings()
    env: VerlEnvSettings = VerlEnvSettings()
    user_simulator: UserSimulatorSettings = UserSimulatorSettings()
    """Telepathy/Turtle: the simulated user and the judge (OpenAI-compatible endpoints)."""
    shaping: ShapingSettings = ShapingSettings()
    advantage: AdvantageSettings = AdvantageSettings()
    rollout: RolloutSettings = RolloutSettings()
    optim: OptimSettings = OptimSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    eval: EvalSettings = EvalSettings()
    smoke: SmokeSettings = SmokeSettings()
    """A CPU smoke run with a tiny model instead of the GPU run (``train --smoke`` sets it)."""
    workdir: Path | None = None
    """Parent of the run folders: each run keeps its parquet files, log, validation dumps
    and checkpoints in ``<workdir>/<MLflow run id>`` (default workdir: ``<workspace>/verl``)."""
    verl_overrides: list[str] = Field(default_factory=list)
    """Extra Hydra overrides passed to verl as they are (``key=value``, ``+key=value``); the
    dry run composes them, so a misspelt key fails before any GPU is asked for."""

    @model_validator(mode="after")
    def _check(self) -> VerlConfig:
        if self.eval.every:
            raise ValueError(
                f"eval.every ({self.eval.every}) is the simulator's; verl validates every "
                "schedule.test_freq steps, so leave eval.every at 0"
            )
        check_min_turns(self.shaping, self.env)
        if self.smoke.scripted_policy and self.model.tool_format != "hermes":
            raise ValueError(
                f"smoke.scripted_policy writes hermes tool calls; model.tool_format is "
                f"{self.model.tool_format!r}"
            )
        self._check_gym()
        gpus = self.schedule.n_gpus_per_node * self.schedule.nnodes
        if self.rollout.tensor_parallel_size > gpus:
            raise ValueError(
                f"rollout.tensor_parallel_size ({self.rollout.tensor_parallel_size}) exceeds "
                f"the {gpus} GPUs of schedule.n_gpus_per_node x schedule.nnodes"
            )
        if self.optim.ppo_mini_batch_size > self.optim.train_batch_size:
            raise ValueError(
                f"optim.ppo_mini_batch_size ({self.optim.ppo_mini_batch_size}) exceeds "
                f"optim.train_batch_size ({self.optim.train_batch_size})"
            )
        return self

    def _check_gym(self) -> None:
        if self.gym in USER_GYMS:
            if self.tasks.train_path is None:
                raise ValueError(
                    f"tasks.train_path is required for {self.gym}: its tasks are not generated "
                    "(give UserRL's entities/stories file or parquet, or configs/data's example)"
                )
            if self.tasks.functions_path is not None:
                raise ValueError(
                    f"tasks.functions_path is Function-Gym's; {self.gym} uses tasks.records_path"
                )
        else:
            # Compared with the defaults, not by presence: a dumped config validates again.
            if self.user_simulator != UserSimulatorSettings():
                raise ValueError(
                    "user_simulator is for telepathy_gym and turtle_gym; function_gym has no "
                    "simulated user"
                )
            if self.tasks.records_path is not None:
                raise ValueError(
                    "tasks.records_path is for telepathy_gym and turtle_gym; "
                    "Function-Gym parquet rows use tasks.functions_path"
                )
        if self.gym != "turtle_gym" and self.env.success_threshold != 1.0:
            raise ValueError(f"env.success_threshold is Turtle-Gym's; {self.gym} has none")
