"""Trajectory records serialise to JSON and JSONL and back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bao.errors import TaskDataError
from bao.trajectory import Trajectory, Turn, read_trajectories, write_trajectories


def sample() -> Trajectory:
    return Trajectory(
        "func-1",
        [
            Turn("action", "1 2 3 4", "query_result", 0.0, -0.0, "f(1, 2, 3, 4) = 7"),
            Turn("answer", "7", "answer_correct", 1.0, 0.9, "7 is correct."),
        ],
    )


def test_json_round_trip() -> None:
    trajectory = sample()
    text = trajectory.to_json()
    assert json.loads(text)["turns"][1]["shaped_reward"] == 0.9
    assert Trajectory.from_json(text) == trajectory


def test_non_finite_rewards_survive_json() -> None:
    trajectory = Trajectory("x", [Turn("answer", "1", "answer_wrong", math.inf, -math.inf)])
    restored = Trajectory.from_json(trajectory.to_json())
    assert restored.turns[0].reward == math.inf
    assert restored.turns[0].shaped_reward == -math.inf


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "trajectories.jsonl"
    write_trajectories([sample(), Trajectory("empty", [])], path)
    assert read_trajectories(path) == [sample(), Trajectory("empty", [])]


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(sample().to_json() + "\n" + '{"turns": []}\n')
    with pytest.raises(TaskDataError, match="line 2 is not a trajectory record"):
        read_trajectories(path)


def test_answers_to_solve() -> None:
    assert sample().answers_to_solve == 1
    assert sample().n_answers == 1
    assert Trajectory("x", [Turn("answer", "0", "answer_wrong", 0.0)]).answers_to_solve is None
