"""Settings of one simulator training run (paired with ``bao.sim.trainer.train``).

Every field is documented here and in ``configs/sim.yaml``. Models forbid unknown keys, so a
misspelt key is an error before training starts, never a silent default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bao.advantage import Credit, Estimator, Score
from bao.shaping import ShapingCoefficients
from bao.sim.reasoner import Fallibility


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSettings(_Section):
    """Where training and evaluation tasks come from."""

    train_path: Path | None = None
    """UserRL functions JSON, JSONL or parquet for training; ``None`` generates ``n_train``."""
    eval_path: Path | None = None
    """Held-out tasks; ``None`` generates ``n_eval`` from a seed disjoint from training's."""
    n_train: int = Field(400, ge=1)
    """Generated training tasks (ignored with ``train_path``)."""
    n_eval: int = Field(200, ge=1)
    """Generated evaluation tasks (ignored with ``eval_path``)."""
    generator_seed: int = 2026
    """Seed of generated tasks. Kept apart from the run seed, so that runs with different
    seeds are evaluated on the same held-out tasks."""


class EnvSettings(_Section):
    max_turns: int = Field(16, ge=1, le=64)
    """Turn budget per episode (16 in the BAO paper)."""


class ShapingSettings(_Section):
    """BAO shaping (``bao.shaping``); 0 switches a term off."""

    user_lambda: float = Field(0.0, ge=0.0)
    """Penalty per answer turn: the user-involvement weight."""
    info_seeking: float = Field(0.0, ge=0.0)
    """alpha: penalty per back-to-back answer in a failed trajectory."""
    over_thinking: float = Field(0.0, ge=0.0)
    """beta: early-stop penalty scale in a failed trajectory."""
    min_turns: int = Field(15, ge=1)
    """Failed trajectories shorter than this get the over-thinking penalty."""

    def coefficients(self) -> ShapingCoefficients:
        return ShapingCoefficients(
            user_lambda=self.user_lambda,
            info_seeking=self.info_seeking,
            over_thinking=self.over_thinking,
            min_turns=self.min_turns,
        )


class AdvantageSettings(_Section):
    """Turn-level GRPO advantages (``bao.advantage``); BAO's recipe is r2g credit, sum score."""

    gamma: float = Field(0.8, ge=0.0, le=1.0)
    """Discount of the reward-to-go."""
    credit: Credit = "r2g"
    """Per-turn credit: r2g, equalized (UserRL default) or em."""
    score: Score = "sum"
    """Trajectory score: sum, mean (UserRL default) or r2g."""
    estimator: Estimator = "bao"
    """bao (credit-weighted group z-score) or r2g_norm (the paper's Eq. 5 wording)."""


class ReasonerSettings(_Section):
    """The bounded-capacity hypothesis reasoner: capacity stands in for model size."""

    capacity: int = Field(48, ge=1, le=4096)
    """Candidate rules examined per turn, and the most kept in the pool at once."""
    library_size: int = Field(20000, ge=100, le=500_000)
    """Rules drawn from the task grammar that the reasoner can think of (deduplicated)."""
    n_probes: int = Field(24, ge=4, le=256)
    """Fixed query points (integers 1..10) whose values are precomputed for the library."""
    library_seed: int = 12345
    """Seed of the library; fixed so that runs with different seeds share one library."""
    # The reasoner's fallibility (docs/sim.md, "How the agent works"). The defaults make a
    # capacity-48 reasoner need several queries before it trusts a hypothesis, and slip on
    # about a third of its answers after a few queries (half before any): chosen for the
    # mechanism's range (evidence that sharpens within the 16-turn budget, slips a retry can
    # catch), not fitted to any published number. Both rates act as
    # min(0.9, value * sqrt(48 / capacity)).
    mismatch_likelihood: float = Field(0.6, ge=0.0, lt=1.0)
    """Weight factor of a hypothesis per query result that contradicts it, at capacity 48
    (0 rules it out at once, like an infallible reader; larger values need more queries
    before the reasoner trusts a hypothesis). Scales with sqrt(48 / capacity), capped at 0.9."""
    answer_slip: float = Field(0.5, ge=0.0, lt=1.0)
    """Chance of a slip when computing the answer at the test case, before any query result,
    at capacity 48 (same scaling); a retry computes again, so it can catch a slip."""
    slip_halving_queries: float = Field(6.0, gt=0.0)
    """Query results seen of the function that halve the slip chance."""

    def fallibility(self) -> Fallibility:
        return Fallibility(
            mismatch_likelihood=self.mismatch_likelihood,
            answer_slip=self.answer_slip,
            slip_halving_queries=self.slip_halving_queries,
        )


class PolicySettings(_Section):
    hidden_size: int = Field(64, ge=4, le=1024)
    """Width of the policy MLP's two hidden layers."""
    initial_action_probs: tuple[float, float, float, float] = (0.55, 0.15, 0.25, 0.05)
    """Starting probabilities of (query, search, answer, finish) where the agent's belief in
    its best value is even: the behaviour prior of the base model that RL starts from. A
    uniform start gives up on a quarter of all turns, so episodes end before any success and
    nothing can be learned."""

    answer_confidence_logit: float = Field(4.0, ge=0.0, le=20.0)
    """How much the base model's answer logit rises from no belief to full belief in its
    best value (``initial_action_probs`` hold at belief 0.5): RL starts from a model that
    answers when it thinks it knows. 0 gives a belief-blind start."""

    @model_validator(mode="after")
    def _check_probs(self) -> PolicySettings:
        probs = self.initial_action_probs
        if min(probs) <= 0 or abs(sum(probs) - 1.0) > 1e-6:
            raise ValueError(
                f"initial_action_probs must be positive and sum to 1, got {list(probs)}"
            )
        return self


class TrainerSettings(_Section):
    """GRPO: ``tasks_per_iteration`` tasks x ``group_size`` rollouts, PPO-clipped updates."""

    iterations: int = Field(100, ge=0)
    """Training iterations (0 evaluates the untrained policy)."""
    tasks_per_iteration: int = Field(16, ge=1)
    """Tasks sampled per iteration."""
    group_size: int = Field(8, ge=1)
    """Rollouts per task; advantages are z-scores within each group."""
    learning_rate: float = Field(3e-3, gt=0.0)
    """Adam step size."""
    clip_ratio: float = Field(0.2, gt=0.0, lt=1.0)
    """PPO clip range epsilon."""
    ppo_epochs: int = Field(2, ge=1)
    """Passes over each iteration's turns."""
    minibatch_size: int = Field(512, ge=1)
    """Turns per gradient step."""
    entropy_coef: float = Field(0.01, ge=0.0)
    """Entropy bonus; keeps exploring so the policy does not collapse to never answering."""
    kl_coef: float = Field(0.0, ge=0.0)
    """Weight of the k3 KL estimate to the initial (reference) policy."""
    max_grad_norm: float = Field(1.0, gt=0.0)
    """Gradient-norm clip."""


class EvalSettings(_Section):
    k_max: int = Field(9, ge=1)
    """Largest k of Pass@U-k."""
    every: int = Field(0, ge=0)
    """Also evaluate every this many iterations (0: only before and after training)."""


class SimConfig(_Section):
    """One simulator training run."""

    name: str = Field("sim", min_length=1)
    """Run name; also the MLflow experiment of a stand-alone ``bao-pareto train``."""
    seed: int = 0
    """Seeds tasks, rollouts and initialisation: same config and seed, same metrics."""
    backend: Literal["sim"] = "sim"
    """This config's backend."""
    tasks: TaskSettings = TaskSettings()
    env: EnvSettings = EnvSettings()
    shaping: ShapingSettings = ShapingSettings()
    advantage: AdvantageSettings = AdvantageSettings()
    reasoner: ReasonerSettings = ReasonerSettings()
    policy: PolicySettings = PolicySettings()
    trainer: TrainerSettings = TrainerSettings()
    eval: EvalSettings = EvalSettings()

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        check_min_turns(self.shaping, self.env)
        if self.tasks.train_path is None:
            # Loaded task files are counted when they are read (task_count_problem).
            problem = task_count_problem(self, self.tasks.n_train, "tasks.n_train")
            if problem:
                raise ValueError(problem)
        return self


def task_count_problem(config: SimConfig, n_tasks: int, source: str) -> str | None:
    """Why ``n_tasks`` training tasks are too few for ``config`` (None when they are not):
    each iteration samples ``trainer.tasks_per_iteration`` distinct tasks, and fewer would
    fail in the middle of training, after its MLflow run was opened."""
    needed = config.trainer.tasks_per_iteration
    if config.trainer.iterations > 0 and n_tasks < needed:
        return (
            f"trainer.tasks_per_iteration ({needed}) exceeds the {n_tasks} training tasks of "
            f"{source}: each iteration samples that many distinct tasks"
        )
    return None


def check_min_turns(shaping: ShapingSettings, env: EnvSettings) -> None:
    """Rejects a ``min_turns`` no episode can reach (every training config checks it)."""
    if shaping.min_turns > env.max_turns + 1:
        raise ValueError(
            f"shaping.min_turns ({shaping.min_turns}) exceeds env.max_turns + 1 "
            f"({env.max_turns + 1}): every failed run would be penalised as too short"
        )
