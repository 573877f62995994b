"""Trajectory records: what every backend logs and every metric is computed from.

A :class:`Trajectory` is one episode on one task: its turns in order, each with the action
type (``choice``), the text content, the environment's ``event``, the raw reward and, once
shaping has run, the shaped reward. Both types round-trip through JSON, and a list of
trajectories is stored as JSON Lines (one trajectory per line) so every metric can be
recomputed from a run's artifact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bao.errors import TaskDataError

# An answer whose raw reward reaches this counts as a success (Function-Gym and Telepathy-Gym
# pay exactly 1.0). Turtle-Gym pays the improvement of its story score, so its success is the
# event: the answer that brings the score to the gym's threshold is ``answer_correct``.
SUCCESS_REWARD = 1.0
SUCCESS_EVENT = "answer_correct"


@dataclass
class Turn:
    """One turn.

    Attributes:
        choice: the action type: ``action``, ``search``, ``answer``, ``finish`` or ``invalid``.
        content: the action's content (the query numbers, the answer, ...).
        event: the environment's classification of the turn (``info["event"]``).
        reward: the raw reward from the environment.
        shaped_reward: the reward after BAO shaping, once computed.
        observation: what the environment answered.
    """

    choice: str
    content: str
    event: str
    reward: float
    shaped_reward: float | None = None
    observation: str = ""

    @property
    def is_success(self) -> bool:
        return self.choice == "answer" and (
            self.event == SUCCESS_EVENT or self.reward >= SUCCESS_REWARD - 1e-9
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "choice": self.choice,
            "content": self.content,
            "event": self.event,
            "reward": _json_number(self.reward),
            "shaped_reward": None
            if self.shaped_reward is None
            else _json_number(self.shaped_reward),
            "observation": self.observation,
        }

    @classmethod
    def from_step(
        cls, content: str, observation: str, reward: float, info: Mapping[str, Any]
    ) -> Turn:
        """The turn one environment ``step`` played: its choice and event come from ``info``."""
        return cls(
            choice=info["choice"],
            content=content,
            event=info["event"],
            reward=reward,
            observation=observation,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Turn:
        return cls(
            choice=str(data["choice"]),
            content=str(data.get("content", "")),
            event=str(data["event"]),
            reward=float(data["reward"]),
            shaped_reward=None
            if data.get("shaped_reward") is None
            else float(data["shaped_reward"]),
            observation=str(data.get("observation", "")),
        )


def _json_number(value: float) -> float | str:
    # JSON has no inf/nan; keep them as strings that float() reads back.
    return value if math.isfinite(value) else repr(value)


@dataclass
class Trajectory:
    """One episode: the task's id and its turns in order."""

    task_id: str
    turns: list[Turn] = field(default_factory=list)

    @property
    def choices(self) -> list[str]:
        return [turn.choice for turn in self.turns]

    @property
    def rewards(self) -> list[float]:
        return [turn.reward for turn in self.turns]

    @property
    def n_answers(self) -> int:
        """User-involved actions: every ``answer`` turn, right or wrong."""
        return sum(turn.choice == "answer" for turn in self.turns)

    @property
    def answers_to_solve(self) -> int | None:
        """How many answers the user checked up to and including the first correct one.

        ``None`` if no answer succeeded.
        """
        answers = 0
        for turn in self.turns:
            if turn.choice == "answer":
                answers += 1
                if turn.is_success:
                    return answers
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "turns": [turn.to_dict() for turn in self.turns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trajectory:
        return cls(
            task_id=str(data["task_id"]), turns=[Turn.from_dict(turn) for turn in data["turns"]]
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Trajectory:
        return cls.from_dict(json.loads(text))


def write_trajectories(trajectories: Iterable[Trajectory], path: str | Path) -> None:
    """Writes trajectories as JSON Lines."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for trajectory in trajectories:
            handle.write(trajectory.to_json() + "\n")


def read_trajectories(path: str | Path) -> list[Trajectory]:
    """Reads a JSON Lines file written by :func:`write_trajectories`."""
    source = Path(path)
    trajectories: list[Trajectory] = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            trajectories.append(Trajectory.from_json(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise TaskDataError(
                f"{source}: line {number} is not a trajectory record ({error!r})",
                fix="each line must be an object with task_id and turns",
            ) from None
    return trajectories
