"""The GRPO trainer on tiny budgets, reproducibility, and (slow) that training helps."""

from __future__ import annotations

import pytest

from bao.sim.config import SimConfig
from bao.sim.trainer import train

TINY = {
    "tasks": {"n_train": 20, "n_eval": 20},
    "reasoner": {"library_size": 2000, "capacity": 16},
    "trainer": {"iterations": 3, "tasks_per_iteration": 4, "group_size": 4},
    "shaping": {"user_lambda": 0.1, "info_seeking": 0.1, "over_thinking": 0.02},
}


def test_tiny_training_runs_and_reports_everything() -> None:
    logged: list[tuple[dict[str, float], int]] = []
    result = train(SimConfig.model_validate(TINY), lambda m, step: logged.append((dict(m), step)))
    assert [step for step, _ in result.history] == [1, 2, 3]
    assert {"train/score", "train/pg_loss", "train/entropy", "train/kl"} <= set(
        result.history[0][1]
    )
    assert [step for step, _ in result.eval_history] == [0, 3]
    assert result.metrics["n_trajectories"] == 20
    assert len(result.trajectories) == 20
    assert all(t.turns and t.turns[0].shaped_reward is not None for t in result.trajectories)
    assert any(step == 0 and "eval/score" in m for m, step in logged)


def test_same_config_and_seed_give_identical_metrics() -> None:
    config = SimConfig.model_validate(TINY)
    first, second = train(config), train(config)
    assert first.metrics == second.metrics

    def curves(history: list[tuple[int, dict[str, float]]]) -> list[dict[str, float]]:
        return [{k: v for k, v in m.items() if k != "train/elapsed_s"} for _, m in history]

    assert curves(first.history) == curves(second.history)
    other = train(SimConfig.model_validate({**TINY, "seed": 1}))
    assert [m["train/score"] for _, m in other.history] != [
        m["train/score"] for _, m in first.history
    ]


def test_zero_iterations_evaluates_the_untrained_policy() -> None:
    result = train(SimConfig.model_validate({**TINY, "trainer": {"iterations": 0}}))
    assert result.metrics == result.initial_metrics
    assert result.history == []


@pytest.mark.slow
def test_training_beats_the_untrained_policy() -> None:
    result = train(SimConfig.model_validate({"shaping": {"user_lambda": 0.1}}))
    # The untrained greedy policy always takes its prior's favourite action (a query): it never
    # answers. Training must teach it when to answer.
    assert result.initial_metrics["no_answer_rate"] == 1.0
    assert result.metrics["score"] >= result.initial_metrics["score"] + 0.3
    assert result.metrics["no_answer_rate"] < 0.7
