"""A verl run's validation passes become lines of the sweep's progress file while it trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bao.trajectory import Trajectory, Turn
from bao.verl.data import TRAJECTORY_KEY
from bao.verl.run import ValidationWatcher


def _turn(choice: str, event: str, reward: float = 0.0) -> Turn:
    return Turn(choice=choice, content="", event=event, reward=reward)


SOLVED = Trajectory(
    "a", [_turn("search", "search_test_case"), _turn("answer", "answer_correct", 1.0)]
)
SILENT = Trajectory("b", [_turn("action", "query_result"), _turn("finish", "finish")])


def _dump(path: Path, episodes: list[Trajectory], *, partial: bool = False) -> None:
    text = "".join(json.dumps({TRAJECTORY_KEY: t.to_json()}) + "\n" for t in episodes)
    path.write_text(text[:-10] if partial else text)


def test_complete_dumps_become_progress_lines_once(tmp_path: Path) -> None:
    folder, target = tmp_path / "validation", tmp_path / "progress.jsonl"
    folder.mkdir()
    watcher = ValidationWatcher(folder, target, expected=2, k_max=1)
    try:
        _dump(folder / "5.jsonl", [SOLVED, SILENT])  # one of two solved, one never answers
        _dump(folder / "10.jsonl", [SOLVED])  # still being written: one of two episodes
        _dump(folder / "15.jsonl", [SOLVED, SOLVED], partial=True)  # a line cut short
        watcher.poll()
        watcher.poll()  # a dump is written once
    finally:
        watcher.close()
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["step"] for line in lines] == [5]
    assert lines[0]["metrics"]["eval/score"] == pytest.approx(0.5)
    assert lines[0]["metrics"]["eval/no_answer_rate"] == pytest.approx(0.5)


def test_without_a_sweep_there_is_no_watcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BAO_PROGRESS_FILE", raising=False)
    assert ValidationWatcher.from_environment(tmp_path, 1, 1) is None
