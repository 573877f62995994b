"""Pass@U-k, Score, user involvement and the rest, on worked examples and properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bao.metrics import metric_names, pass_at_u, summarize, wilson_interval
from bao.trajectory import Trajectory, Turn


def turn(choice: str, event: str = "", reward: float = 0.0) -> Turn:
    return Turn(choice=choice, content="", event=event or f"{choice}_event", reward=reward)


WRONG = turn("answer", "answer_wrong")
RIGHT = turn("answer", "answer_correct", 1.0)
QUERY = turn("action", "query_result")
SEARCH = turn("search", "search_test_case")

T1 = Trajectory("t1", [QUERY, SEARCH, WRONG, RIGHT])  # solved with the 2nd answer
T2 = Trajectory("t2", [SEARCH, RIGHT])  # solved with the 1st answer
T3 = Trajectory("t3", [QUERY, QUERY, turn("finish", "finish")])  # never answers
T4 = Trajectory("t4", [SEARCH, WRONG, WRONG, WRONG, RIGHT])  # solved with the 4th answer
T5 = Trajectory("t5", [turn("invalid", "invalid_action"), WRONG])  # fails after 1 answer


def test_pass_at_u_worked_example() -> None:
    assert pass_at_u([T1, T2, T3, T4, T5], k_max=4) == [0.2, 0.4, 0.4, 0.6]


def test_summarize_worked_example() -> None:
    m = summarize([T1, T2, T3, T4, T5], k_max=4)
    assert m["score"] == pytest.approx(3 / 5)
    # answers / turns: 2/4, 1/2, 0/3, 4/5, 1/2
    assert m["user_involvement_rate"] == pytest.approx((0.5 + 0.5 + 0 + 0.8 + 0.5) / 5)
    # (actions + searches) / max(1, answers): 2/2, 1/1, 2/1, 1/4, 0/1
    assert m["exploration_ratio"] == pytest.approx((1 + 1 + 2 + 0.25 + 0) / 5)
    assert m["mean_turns"] == pytest.approx((4 + 2 + 3 + 5 + 2) / 5)
    assert m["invalid_rate"] == pytest.approx((0 + 0 + 0 + 0 + 0.5) / 5)
    assert m["mean_user_actions"] == pytest.approx((2 + 1 + 0 + 4 + 1) / 5)
    assert m["no_answer_rate"] == pytest.approx(1 / 5)
    assert m["user_error_rate"] == 0.0  # Function-Gym has no simulated user
    assert m["n_trajectories"] == 5
    assert m["pass_at_u_4"] == 0.6
    low, high = wilson_interval(3, 5)
    assert (m["pass_at_u_4_lo"], m["pass_at_u_4_hi"]) == (low, high)
    assert set(m) == {
        *(f"pass_at_u_{k}{s}" for k in range(1, 5) for s in ("", "_lo", "_hi")),
        "score",
        "user_involvement_rate",
        "exploration_ratio",
        "mean_turns",
        "invalid_rate",
        "mean_user_actions",
        "no_answer_rate",
        "user_error_rate",
        "n_trajectories",
    }


def test_default_k_max_is_nine() -> None:
    assert len(pass_at_u([T1])) == 9
    keys = summarize([T1]).keys()
    assert "pass_at_u_9" in keys
    assert "pass_at_u_10" not in keys


def test_wilson_interval_known_values() -> None:
    # Textbook values for 5 of 10 and the edges.
    assert wilson_interval(5, 10) == pytest.approx((0.2365931, 0.7634069), abs=1e-6)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775328, abs=1e-6)
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(0, 0)


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="no trajectories"):
        summarize([])
    with pytest.raises(ValueError, match="k_max"):
        pass_at_u([T1], k_max=0)


turns = st.lists(
    st.sampled_from([WRONG, RIGHT, QUERY, SEARCH, turn("finish", "finish")]), max_size=16
)
trajectories = st.lists(st.builds(Trajectory, st.just("t"), turns), min_size=1, max_size=30)


@given(trajectories, st.integers(1, 12))
def test_pass_at_u_properties(batch: list[Trajectory], k_max: int) -> None:
    curve = pass_at_u(batch, k_max)
    assert len(curve) == k_max
    assert all(a <= b for a, b in itertools.pairwise(curve))
    within_budget = sum(
        1 for t in batch if (needed := t.answers_to_solve) is not None and needed <= k_max
    )
    assert curve[-1] == within_budget / len(batch)
    # Every solve needs at least one answer, and no curve point exceeds the score.
    m = summarize(batch, k_max)
    assert curve[-1] <= m["score"] + 1e-12
    for k in range(1, k_max + 1):
        assert m[f"pass_at_u_{k}_lo"] <= m[f"pass_at_u_{k}"] <= m[f"pass_at_u_{k}_hi"]
    assert 0.0 <= m["user_involvement_rate"] <= 1.0


def test_metric_names_are_exactly_the_keys_summarize_returns() -> None:
    assert list(summarize([T1, T2, T3, T4, T5], k_max=4)) == metric_names(4)


def test_user_errors_and_turtle_successes() -> None:
    turns = [
        Turn("action", "q", "user_unavailable", 0.0),
        Turn("answer", "story", "answer_unjudged", 0.0),
        Turn("answer", "story", "answer_scored", 0.6),
        Turn("answer", "story", "answer_correct", 0.4),  # the threshold reached: a success
    ]
    m = summarize([Trajectory("t", turns)], k_max=3)
    assert m["user_error_rate"] == 0.5
    assert (m["pass_at_u_2"], m["pass_at_u_3"]) == (0.0, 1.0)
    assert m["score"] == pytest.approx(1.0)
