"""Scripted reference policies: fixed behaviours that bracket the trade-off space.

They need no training and no model, so they give every evaluation a sanity frame: a learned
policy should beat ``random`` on pass rate, and sits between ``guess_every_turn`` (most user
burden) and ``never_answer`` (no burden, no success: the collapsed policy) on involvement.
``oracle`` knows the hidden rule and shows the ceiling: Pass@U-1 of 1 at one search and one
answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from bao.envs.function_gym import FunctionGymEnv, format_action
from bao.tasks import FunctionTask
from bao.trajectory import Trajectory, Turn

# A policy maps (task, turn number from 0, rng) to a tool call (choice, content). Only the
# oracle reads the task's hidden rule; the others use the task for nothing but the turn budget.
PolicyFn = Callable[[FunctionTask, int, random.Random], tuple[str, str]]


def _oracle(task: FunctionTask, turn: int, rng: random.Random) -> tuple[str, str]:
    return ("search", "test") if turn == 0 else ("answer", repr(task.expected_result))


def _random(task: FunctionTask, turn: int, rng: random.Random) -> tuple[str, str]:
    choice = rng.choice(("action", "search", "answer", "finish"))
    if choice == "action":
        return choice, " ".join(str(rng.randint(1, 10)) for _ in range(4))
    if choice == "search":
        return choice, "test"
    if choice == "answer":
        return choice, str(rng.randint(-50, 50))
    return choice, ""


def _guess_every_turn(task: FunctionTask, turn: int, rng: random.Random) -> tuple[str, str]:
    return ("search", "test") if turn == 0 else ("answer", str(rng.randint(-50, 50)))


def _never_answer(task: FunctionTask, turn: int, rng: random.Random) -> tuple[str, str]:
    return "action", " ".join(str(rng.randint(1, 10)) for _ in range(4))


SCRIPTED_POLICIES: Final[dict[str, PolicyFn]] = {
    "oracle": _oracle,
    "random": _random,
    "guess_every_turn": _guess_every_turn,
    "never_answer": _never_answer,
}


@dataclass(frozen=True)
class EpisodeSettings:
    """How scripted episodes are played.

    Attributes:
        max_turns: turn budget per episode (16 in the BAO paper).
        seed: seeds the policies' random choices; the same seed replays the same episodes.
    """

    max_turns: int = 16
    seed: int = 0


def play_episode(
    task: FunctionTask, policy: PolicyFn, max_turns: int, rng: random.Random
) -> Trajectory:
    """Plays one episode of ``policy`` on ``task`` through the environment's text protocol."""
    env = FunctionGymEnv(task, max_turns=max_turns)
    env.reset()
    trajectory = Trajectory(task_id=task.id)
    done = False
    while not done:
        choice, content = policy(task, env.turn, rng)
        observation, reward, terminated, truncated, info = env.step(format_action(choice, content))
        trajectory.turns.append(Turn.from_step(content, observation, reward, info))
        done = terminated or truncated
    return trajectory


def evaluate_scripted(
    tasks: Sequence[FunctionTask],
    policy_name: str,
    settings: EpisodeSettings = EpisodeSettings(),
) -> list[Trajectory]:
    """One episode per task for the named scripted policy."""
    if policy_name not in SCRIPTED_POLICIES:
        raise ValueError(
            f"unknown scripted policy {policy_name!r}; choose from {', '.join(SCRIPTED_POLICIES)}"
        )
    rng = random.Random(f"{settings.seed}:{policy_name}")
    policy = SCRIPTED_POLICIES[policy_name]
    return [play_episode(task, policy, settings.max_turns, rng) for task in tasks]
