"""benchmarks/sim_calibration.py: the binning, and the scripted episodes it bins."""

from __future__ import annotations

import pytest

from bao.sim.config import SimConfig
from benchmarks import sim_calibration


def test_each_episode_falls_in_one_bin_and_the_top_bin_holds_certainty() -> None:
    recorded = {
        8: [(0.0, False), (0.01, True), (0.06, True), (0.25, False), (1.0, True)],
    }
    row = sim_calibration.table(recorded)["8"]
    assert row["episodes"] == 5
    assert row["right"] == pytest.approx(3 / 5)
    by_low = {tuple(b["confidence"]): b for b in row["bins"]}
    assert by_low[(0.0, 0.05)]["share"] == pytest.approx(2 / 5)
    assert by_low[(0.0, 0.05)]["right"] == pytest.approx(0.5)
    assert by_low[(0.05, 0.1)]["right"] == 1.0
    assert by_low[(0.2, 0.3)]["right"] == 0.0
    assert by_low[(0.9, 1.0)]["share"] == pytest.approx(1 / 5)  # confidence 1.0 counted
    assert by_low[(0.5, 0.7)] == {"confidence": [0.5, 0.7], "share": 0.0, "right": None}
    assert sum(b["share"] for b in row["bins"]) == pytest.approx(1.0)


def test_scripted_episodes_record_every_task_at_every_turn() -> None:
    config = SimConfig.model_validate(
        {"tasks": {"n_train": 20, "n_eval": 12}, "reasoner": {"library_size": 2000}}
    )
    recorded = sim_calibration.scripted_beliefs(config, [2, 6], repeats=2, seed=0)
    assert sorted(recorded) == [2, 6]
    for points in recorded.values():
        assert len(points) == 12 * 2
        assert all(0.0 <= confidence <= 1.0 for confidence, _ in points)
