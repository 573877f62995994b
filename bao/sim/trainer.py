"""GRPO training of the simulator's behaviour policy, top to bottom in one file.

One call of :func:`train` is one BAO trial in miniature:

1. tasks: generated from the UserRL grammar or loaded from UserRL files; held-out tasks for
   evaluation share no rule with training;
2. the hypothesis library (what the reasoner can think of) and each task's test-case values;
3. an evaluation of the untrained policy (greedy, one episode per held-out task);
4. ``iterations`` times: sample ``tasks_per_iteration`` tasks, play ``group_size`` episodes of
   each through Function-Gym's text protocol, shape the raw turn rewards (``bao.shaping``), turn
   them into turn-level advantages within each group (``bao.advantage``), and take PPO-clipped
   gradient steps over the turns (each turn is one "token"), with optional entropy and KL terms;
5. a final greedy evaluation, summarised by ``bao.metrics``.

The function logs through an optional ``log(metrics, step)`` callback and returns everything
(metrics, curves, trajectories, the policy); it never talks to MLflow itself.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import torch
from torch.nn import functional

from bao.advantage import turn_advantages
from bao.envs.function_gym import FunctionGymEnv, format_action
from bao.metrics import summarize
from bao.shaping import shape_trajectory, shape_turn_rewards
from bao.sim.config import SimConfig
from bao.sim.policy import ACTIONS, PolicyNet, features
from bao.sim.reasoner import HypothesisLibrary, Reasoner, test_value_codes
from bao.tasks import FunctionTask, load_task_splits
from bao.trajectory import Trajectory, Turn

log = logging.getLogger(__name__)

MetricSink = Callable[[dict[str, float], int], None]
_ANSWER: Final = ACTIONS.index("answer")


@dataclass
class TrainResult:
    """What one training run produced.

    Attributes:
        metrics: final evaluation metrics (``bao.metrics.summarize`` keys).
        initial_metrics: the untrained policy's evaluation, for comparison.
        history: ``(iteration, train metrics)`` per iteration.
        eval_history: ``(iteration, evaluation metrics)`` for every evaluation.
        trajectories: the final evaluation's episodes, one per held-out task.
        policy: the trained policy.
        seconds: wall time of the whole run.
    """

    metrics: dict[str, float]
    initial_metrics: dict[str, float]
    history: list[tuple[int, dict[str, float]]]
    eval_history: list[tuple[int, dict[str, float]]]
    trajectories: list[Trajectory]
    policy: PolicyNet
    seconds: float


# ---------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class TestCaseValues:
    """Every hypothesis's value at one task's test case: exact (``nan`` on error), and as
    codes of the values Function-Gym's rounding tells apart (kept per task: every episode of
    the task needs them)."""

    exact: np.ndarray
    codes: np.ndarray


@dataclass
class _Episode:
    """One episode in flight: the environment, the reasoner, and what the policy saw and did."""

    task: FunctionTask
    group: int
    env: FunctionGymEnv
    reasoner: Reasoner
    trajectory: Trajectory
    observations: list[list[float]] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    test_known: bool = False
    wrong_answers: int = 0
    n_queries: int = 0
    last_event: str | None = None
    done: bool = False

    def feature_vector(self) -> list[float]:
        belief = self.reasoner.belief()
        return features(
            turn=self.env.turn,
            max_turns=self.env.max_turns,
            test_known=self.test_known,
            confidence=belief.confidence,
            runner_up=belief.runner_up,
            unexplored=belief.unexplored,
            has_prediction=belief.value is not None,
            pool_size=len(self.reasoner.pool),
            capacity=self.reasoner.capacity,
            wrong_answers=self.wrong_answers,
            last_was_answer=bool(self.actions) and self.actions[-1] == _ANSWER,
            n_queries=self.n_queries,
            probes_left=len(self.reasoner.library.probes) - len(self.reasoner.observed_probes),
            last_event=self.last_event,
        )

    def play(self, action: int, rng: np.random.Generator) -> None:
        """Composes the action's text, steps the environment and updates the reasoner."""
        choice = ACTIONS[action]
        probe: int | None = None
        if choice == "action":
            probe = self.reasoner.choose_query()
            content = (
                self.reasoner.library.probe_texts[probe]
                if probe is not None  # every probe used: an unplanned query
                else " ".join(str(v) for v in rng.integers(1, 11, size=4).tolist())
            )
        elif choice == "search":
            content = "test"
        elif choice == "answer":
            # Without the test case (or any hypothesis) the agent can only guess. With it, the
            # reasoner computes its best value, and may slip (a retry computes it again).
            value = self.reasoner.answer() if self.test_known else None
            content = repr(value) if value is not None else "0"
        else:
            content = ""
        observation, reward, terminated, truncated, info = self.env.step(
            format_action(choice, content)
        )
        event = info["event"]
        if event in ("query_result", "query_error"):
            self.n_queries += 1
            if probe is not None:
                self.reasoner.observe_query(
                    probe, info["value"] if event == "query_result" else None
                )
        elif event == "search_test_case":
            self.test_known = True
        elif event == "answer_wrong":
            self.wrong_answers += 1
            if self.test_known:
                self.reasoner.observe_wrong_answer(info["value"])
        self.trajectory.turns.append(Turn.from_step(content, observation, reward, info))
        self.last_event = event
        self.done = terminated or truncated


def play_episodes(
    policy: PolicyNet,
    tasks: Sequence[FunctionTask],
    groups: Sequence[int],
    *,
    library: HypothesisLibrary,
    test_values: dict[str, TestCaseValues],
    config: SimConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
    greedy: bool,
) -> list[_Episode]:
    """Plays one episode per entry of ``tasks`` in lockstep: one policy forward per turn."""
    episodes = []
    for task, group in zip(tasks, groups, strict=True):
        env = FunctionGymEnv(task, max_turns=config.env.max_turns)
        env.reset()
        values = test_values[task.id]
        reasoner = Reasoner(
            library,
            values.exact,
            capacity=config.reasoner.capacity,
            rng=rng,
            max_turns=config.env.max_turns,
            test_case=task.test_case,
            test_codes=values.codes,
            fallibility=config.reasoner.fallibility(),
        )
        episodes.append(_Episode(task, group, env, reasoner, Trajectory(task.id)))
    active = episodes
    while active:
        for episode in active:
            episode.reasoner.think()
        observations = [episode.feature_vector() for episode in active]
        with torch.no_grad():
            logits = policy(torch.from_numpy(np.array(observations, dtype=np.float32)))
            log_probs = functional.log_softmax(logits, dim=-1)
            if greedy:
                actions = torch.argmax(logits, dim=-1)
            else:
                actions = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
            chosen = log_probs.gather(-1, actions[:, None]).squeeze(-1)
        for episode, observation, action, log_prob in zip(
            active, observations, actions.tolist(), chosen.tolist(), strict=True
        ):
            episode.observations.append(observation)
            episode.actions.append(action)
            episode.log_probs.append(log_prob)
            episode.play(action, rng)
        active = [episode for episode in active if not episode.done]
    return episodes


def iteration_rollouts(
    policy: PolicyNet,
    train_tasks: Sequence[FunctionTask],
    *,
    library: HypothesisLibrary,
    test_values: dict[str, TestCaseValues],
    config: SimConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[list[_Episode], list[int]]:
    """One iteration's sampled episodes: ``tasks_per_iteration`` distinct tasks, a group of
    ``group_size`` episodes each; returns the episodes and each one's group (its task)."""
    settings = config.trainer
    picked = rng.choice(len(train_tasks), size=settings.tasks_per_iteration, replace=False)
    batch = [train_tasks[i] for i in picked for _ in range(settings.group_size)]
    groups = [int(i) for i in picked for _ in range(settings.group_size)]
    episodes = play_episodes(
        policy,
        batch,
        groups,
        library=library,
        test_values=test_values,
        config=config,
        rng=rng,
        generator=generator,
        greedy=False,
    )
    return episodes, groups


def shaped_advantages(
    episodes: Sequence[_Episode], groups: Sequence[int], config: SimConfig
) -> tuple[list[list[float]], list[list[float]]]:
    """The episodes' BAO-shaped turn rewards and their turn-level advantages."""
    coefficients = config.shaping.coefficients()
    shaped = [
        shape_turn_rewards(e.trajectory.choices, e.trajectory.rewards, coefficients)
        for e in episodes
    ]
    advantages = turn_advantages(
        shaped,
        groups,
        gamma=config.advantage.gamma,
        credit=config.advantage.credit,
        score=config.advantage.score,
        estimator=config.advantage.estimator,
    )
    return shaped, advantages


# ------------------------------------------------------------------------------ update


def grpo_update(
    policy: PolicyNet,
    reference: PolicyNet | None,
    optimizer: torch.optim.Optimizer,
    *,
    episodes: Sequence[_Episode],
    advantages: Sequence[Sequence[float]],
    config: SimConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """PPO-clipped policy-gradient steps over all turns of the iteration's episodes."""
    settings = config.trainer
    x = torch.from_numpy(np.array([o for e in episodes for o in e.observations], dtype=np.float32))
    actions = torch.tensor([a for e in episodes for a in e.actions])
    old_log_probs = torch.tensor([p for e in episodes for p in e.log_probs])
    advantage = torch.tensor([a for adv in advantages for a in adv], dtype=torch.float32)
    with torch.no_grad():
        reference_log_probs = (
            functional.log_softmax(reference(x), dim=-1).gather(-1, actions[:, None]).squeeze(-1)
            if reference is not None
            else None
        )
    totals = {"pg_loss": 0.0, "entropy": 0.0, "kl": 0.0, "clip_frac": 0.0, "grad_norm": 0.0}
    steps = 0
    for _ in range(settings.ppo_epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), settings.minibatch_size):
            batch = order[start : start + settings.minibatch_size]
            log_probs_all = functional.log_softmax(policy(x[batch]), dim=-1)
            log_probs = log_probs_all.gather(-1, actions[batch, None]).squeeze(-1)
            ratio = torch.exp(log_probs - old_log_probs[batch])
            unclipped = ratio * advantage[batch]
            clipped = (
                torch.clamp(ratio, 1 - settings.clip_ratio, 1 + settings.clip_ratio)
                * advantage[batch]
            )
            pg_loss = -torch.min(unclipped, clipped).mean()
            entropy = -(log_probs_all.exp() * log_probs_all).sum(-1).mean()
            loss = pg_loss - settings.entropy_coef * entropy
            kl = torch.zeros(())
            if reference_log_probs is not None:
                # k3 estimator of KL(policy || reference), as GRPO uses it.
                delta = reference_log_probs[batch] - log_probs
                kl = (torch.exp(delta) - delta - 1).mean()
                loss = loss + settings.kl_coef * kl
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), settings.max_grad_norm)
            optimizer.step()
            totals["pg_loss"] += pg_loss.item()
            totals["entropy"] += entropy.item()
            totals["kl"] += kl.item()
            totals["clip_frac"] += float(((ratio - 1).abs() > settings.clip_ratio).float().mean())
            totals["grad_norm"] += float(grad_norm)
            steps += 1
    return {key: value / max(steps, 1) for key, value in totals.items()}


# ------------------------------------------------------------------------------- train


def load_tasks(config: SimConfig) -> tuple[list[FunctionTask], list[FunctionTask]]:
    """Training and held-out tasks; generated held-out tasks never repeat a training rule."""
    settings = config.tasks
    return load_task_splits(
        train_path=settings.train_path,
        eval_path=settings.eval_path,
        n_train=settings.n_train,
        n_eval=settings.n_eval,
        generator_seed=settings.generator_seed,
    )


def evaluate_policy(
    policy: PolicyNet,
    tasks: Sequence[FunctionTask],
    *,
    library: HypothesisLibrary,
    test_values: dict[str, TestCaseValues],
    config: SimConfig,
    seed: int,
) -> tuple[dict[str, float], list[Trajectory]]:
    """Greedy episodes, one per task; the reasoner's draws are seeded so evaluations repeat."""
    episodes = play_episodes(
        policy,
        tasks,
        list(range(len(tasks))),
        library=library,
        test_values=test_values,
        config=config,
        rng=np.random.default_rng(seed),
        generator=torch.Generator().manual_seed(seed),
        greedy=True,
    )
    coefficients = config.shaping.coefficients()
    trajectories = [shape_trajectory(episode.trajectory, coefficients) for episode in episodes]
    return summarize(trajectories, k_max=config.eval.k_max), trajectories


def _test_value_table(
    library: HypothesisLibrary, tasks: Sequence[FunctionTask]
) -> dict[str, TestCaseValues]:
    values, errors = library.test_values(np.array([task.test_case for task in tasks], dtype=float))
    values = np.where(errors, np.nan, values)
    return {
        task.id: TestCaseValues(values[:, column].copy(), test_value_codes(values[:, column]))
        for column, task in enumerate(tasks)
    }


@functools.lru_cache(maxsize=2)
def _prepared(
    size: int, seed: int, n_probes: int, tasks: tuple[FunctionTask, ...]
) -> tuple[HypothesisLibrary, dict[str, TestCaseValues]]:
    """The hypothesis library and its test-value table, kept for the next run in this
    process: runs in one process (benchmarks, ablations) share them, as they only depend on
    the reasoner's library settings and the tasks. Neither is ever modified."""
    library = HypothesisLibrary.build(size, seed, n_probes)
    return library, _test_value_table(library, tasks)


def initial_policy(config: SimConfig) -> PolicyNet:
    """The policy RL starts from: the base model's tendencies (``config.policy``)."""
    return PolicyNet(
        config.policy.hidden_size,
        config.policy.initial_action_probs,
        config.policy.answer_confidence_logit,
    )


def train(
    config: SimConfig,
    log_metrics: MetricSink | None = None,
    tasks: tuple[list[FunctionTask], list[FunctionTask]] | None = None,
) -> TrainResult:
    """Runs one training (see the module docstring) and returns its results.

    ``tasks`` (training, held-out) skips :func:`load_tasks` when the caller already loaded them.
    """
    started = time.perf_counter()
    # Tiny matrices: extra threads only add overhead, and parallel trials share the cores.
    torch.set_num_threads(1)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    train_tasks, eval_tasks = tasks if tasks is not None else load_tasks(config)
    library, test_values = _prepared(
        config.reasoner.library_size,
        config.reasoner.library_seed,
        config.reasoner.n_probes,
        (*train_tasks, *eval_tasks),
    )
    log.info(
        "%d training tasks, %d held-out tasks, %d distinct hypotheses",
        len(train_tasks),
        len(eval_tasks),
        library.size,
    )

    policy = initial_policy(config)
    reference = copy.deepcopy(policy) if config.trainer.kl_coef > 0 else None
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.trainer.learning_rate)
    eval_seed = config.seed + 10_000  # the reasoner's draws in evaluation, fixed per run

    def run_evaluation(iteration: int) -> tuple[dict[str, float], list[Trajectory]]:
        metrics, trajectories = evaluate_policy(
            policy,
            eval_tasks,
            library=library,
            test_values=test_values,
            config=config,
            seed=eval_seed,
        )
        eval_history.append((iteration, metrics))
        if log_metrics is not None:
            log_metrics({f"eval/{key}": value for key, value in metrics.items()}, iteration)
        return metrics, trajectories

    history: list[tuple[int, dict[str, float]]] = []
    eval_history: list[tuple[int, dict[str, float]]] = []
    initial_metrics, trajectories = run_evaluation(0)

    settings = config.trainer
    for iteration in range(1, settings.iterations + 1):
        episodes, groups = iteration_rollouts(
            policy,
            train_tasks,
            library=library,
            test_values=test_values,
            config=config,
            rng=rng,
            generator=generator,
        )
        shaped, advantages = shaped_advantages(episodes, groups, config)
        update = grpo_update(
            policy,
            reference,
            optimizer,
            episodes=episodes,
            advantages=advantages,
            config=config,
            generator=generator,
        )
        n_turns = sum(len(e.actions) for e in episodes)
        metrics = {
            "train/score": float(np.mean([sum(e.trajectory.rewards) for e in episodes])),
            "train/shaped_return": float(np.mean([sum(s) for s in shaped])),
            "train/answer_share": sum(e.actions.count(_ANSWER) for e in episodes) / n_turns,
            "train/no_answer_rate": float(np.mean([_ANSWER not in e.actions for e in episodes])),
            "train/mean_turns": n_turns / len(episodes),
            **{f"train/{key}": value for key, value in update.items()},
            "train/elapsed_s": time.perf_counter() - started,
        }
        history.append((iteration, metrics))
        if log_metrics is not None:
            log_metrics(metrics, iteration)
        if not all(math.isfinite(v) for v in metrics.values()):
            log.warning("non-finite training metrics at iteration %d: %s", iteration, metrics)
        if (
            config.eval.every
            and iteration % config.eval.every == 0
            and iteration < settings.iterations
        ):
            run_evaluation(iteration)

    final_metrics, trajectories = (
        run_evaluation(settings.iterations)
        if settings.iterations
        else (initial_metrics, trajectories)
    )
    return TrainResult(
        metrics=final_metrics,
        initial_metrics=initial_metrics,
        history=history,
        eval_history=eval_history,
        trajectories=trajectories,
        policy=policy,
        seconds=time.perf_counter() - started,
    )
