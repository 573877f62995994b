"""BAO shaping against hand-computed worked examples (docs/concepts.md, "Shaping")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bao.shaping import ShapingCoefficients, shape_trajectory, shape_turn_rewards
from bao.trajectory import Trajectory, Turn

FULL = ShapingCoefficients(user_lambda=0.1, info_seeking=0.2, over_thinking=0.05, min_turns=15)


def test_failed_trajectory_gets_all_three_terms() -> None:
    choices = ["action", "answer", "answer", "action", "answer"]
    # T = 5, failed. lambda 0.1 on turns 2, 3, 5. alpha 0.2 on turn 3 (turns 2 and 3 both
    # answers). beta: total = 0.05 * (15 - 5) + 0.2 = 0.7, step = 0.7 / 6 on turns 2..5.
    step = 0.7 / 6
    expected = [0.0, -0.1 - step, -0.1 - 0.2 - step, -step, -0.1 - step]
    assert shape_turn_rewards(choices, [0.0] * 5, FULL) == pytest.approx(expected, abs=1e-12)


def test_successful_trajectory_only_pays_for_user_involvement() -> None:
    # sum(r) = 1 > 0: neither penalty applies; answers still cost lambda.
    shaped = shape_turn_rewards(["action", "answer", "answer"], [0.0, 0.0, 1.0], FULL)
    assert shaped == pytest.approx([0.0, -0.1, 0.9], abs=1e-12)


def test_single_turn_failure_gets_the_fixed_over_thinking_penalty() -> None:
    coefficients = ShapingCoefficients(over_thinking=0.1)
    assert shape_turn_rewards(["finish"], [0.0], coefficients) == [-0.5]
    # A one-turn wrong answer: lambda and the single-turn penalty add up.
    both = ShapingCoefficients(user_lambda=0.3, over_thinking=0.1)
    assert shape_turn_rewards(["answer"], [0.0], both) == pytest.approx([-0.8])


def test_two_turn_failure_spreads_the_penalty_from_turn_two() -> None:
    # total = 0.1 * (15 - 2) + 0.2 = 1.5, step = 1.5 / 3 = 0.5, applied to turn 2 only.
    shaped = shape_turn_rewards(
        ["action", "finish"], [0.0, 0.0], ShapingCoefficients(over_thinking=0.1)
    )
    assert shaped == pytest.approx([0.0, -0.5])


def test_over_thinking_needs_fewer_than_min_turns() -> None:
    coefficients = ShapingCoefficients(over_thinking=0.1, min_turns=4)
    assert shape_turn_rewards(["action"] * 4, [0.0] * 4, coefficients) == [0.0] * 4
    # T = 3 < 4: total = 0.1 * 1 + 0.2 = 0.3, step = 0.3 / 4 = 0.075 on turns 2 and 3.
    shaped = shape_turn_rewards(["action"] * 3, [0.0] * 3, coefficients)
    assert shaped == pytest.approx([0.0, -0.075, -0.075])


def test_info_seeking_counts_every_back_to_back_answer() -> None:
    coefficients = ShapingCoefficients(info_seeking=0.25)
    shaped = shape_turn_rewards(["answer"] * 4, [0.0] * 4, coefficients)
    assert shaped == pytest.approx([0.0, -0.25, -0.25, -0.25])


def test_zero_coefficients_leave_rewards_unchanged() -> None:
    choices = ["answer", "answer", "finish"]
    assert shape_turn_rewards(choices, [0.0, 0.0, 0.0], ShapingCoefficients()) == [0.0] * 3


def test_shape_trajectory_fills_shaped_rewards() -> None:
    trajectory = Trajectory(
        "t",
        [
            Turn("search", "test", "search_test_case", 0.0),
            Turn("answer", "3", "answer_correct", 1.0),
        ],
    )
    shape_trajectory(trajectory, ShapingCoefficients(user_lambda=0.25))
    assert [turn.shaped_reward for turn in trajectory.turns] == [0.0, 0.75]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"user_lambda": -0.1},
        {"info_seeking": float("nan")},
        {"over_thinking": "1"},
        {"min_turns": 0},
    ],
)
def test_invalid_coefficients(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ShapingCoefficients(**kwargs)  # type: ignore[arg-type]


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="one entry per turn"):
        shape_turn_rewards(["answer"], [0.0, 1.0], FULL)


choice_lists = st.lists(
    st.sampled_from(["action", "search", "answer", "finish", "invalid"]), max_size=20
)


@given(choice_lists, st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.integers(1, 20))
def test_penalties_never_reward_and_lambda_is_exact(
    choices: list[str], lam: float, alpha: float, beta: float, min_turns: int
) -> None:
    coefficients = ShapingCoefficients(lam, alpha, beta, min_turns)
    rewards = [0.0] * len(choices)
    shaped = shape_turn_rewards(choices, rewards, coefficients)
    assert all(value <= 0.0 for value in shaped)
    lambda_only = shape_turn_rewards(choices, rewards, ShapingCoefficients(user_lambda=lam))
    assert sum(lambda_only) == pytest.approx(-lam * choices.count("answer"))
