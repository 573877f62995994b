"""Turn-level advantages: worked examples written out by hand, and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from bao.advantage import group_z_scores, turn_advantages

# Two rollouts of one task, shaped rewards (gamma 0.8):
A = [0.0, -0.1, 0.9]  # solved on turn 3 after one wrong answer, lambda 0.1
B = [0.0, -0.2, -0.3]
# score "sum": S_A = 0.8, S_B = -0.5; mean 0.15; sample std = 1.3 / sqrt(2) = 0.9192388155
STD = 1.3 / math.sqrt(2)
Z = 0.65 / (STD + 1e-6)  # z_A = +Z, z_B = -Z
# r2g credits: A: G3 = 0.9, G2 = -0.1 + 0.8 * 0.9 = 0.62, G1 = 0.8 * 0.62 = 0.496 (C = 2.016)
#              B: G3 = -0.3, G2 = -0.2 + 0.8 * -0.3 = -0.44, G1 = 0.8 * -0.44 = -0.352 (C = -1.092)


def test_bao_recipe_worked_example() -> None:
    advantages = turn_advantages([A, B], ["task", "task"])
    assert pytest.approx(0.707106011956615, abs=1e-12) == Z
    expected_a = [0.496 * Z * 3 / 2.016, 0.62 * Z * 3 / 2.016, 0.9 * Z * 3 / 2.016]
    expected_b = [-0.352 * -Z * 3 / -1.092, -0.44 * -Z * 3 / -1.092, -0.3 * -Z * 3 / -1.092]
    assert advantages[0] == pytest.approx(expected_a, abs=1e-12)
    assert advantages[1] == pytest.approx(expected_b, abs=1e-12)
    assert advantages[0] == pytest.approx([0.5219116, 0.6523895, 0.9470170], abs=1e-6)
    assert advantages[1] == pytest.approx([-0.6837948, -0.8547435, -0.5827797], abs=1e-6)


def test_token_counts_weight_turns() -> None:
    # A's turns have 3, 1 and 2 tokens: N = 6, C = 0.496 * 3 + 0.62 * 1 + 0.9 * 2 = 3.908.
    advantages = turn_advantages([A, B], [0, 0], token_counts=[[3, 1, 2], [1, 1, 1]])
    assert advantages[0] == pytest.approx(
        [c * Z * 6 / 3.908 for c in (0.496, 0.62, 0.9)], abs=1e-12
    )
    tokens_mean = (3 * advantages[0][0] + advantages[0][1] + 2 * advantages[0][2]) / 6
    assert tokens_mean == pytest.approx(Z, abs=1e-12)


def test_userrl_default_equalized_mean() -> None:
    # score "mean": S_A = round(0.8 / 3, 4) = 0.2667, S_B = round(-0.5 / 3, 4) = -0.1667;
    # z = 0.2167 / (0.4334 / sqrt(2) + 1e-6); equalized credits: every turn gets z.
    z = 0.2167 / (0.4334 / math.sqrt(2) + 1e-6)
    advantages = turn_advantages([A, B], [1, 1], credit="equalized", score="mean")
    assert advantages[0] == pytest.approx([z] * 3, abs=1e-12)
    assert advantages[1] == pytest.approx([-z] * 3, abs=1e-12)


def test_em_credits_are_rounded_and_normalised() -> None:
    # em credit 0.5 + 0.5 (1 - e^(-2r)) / (1 - e^(-2)), to 4 decimals:
    # r = 0 -> 0.5, r = -0.1 -> 0.372, r = 0.9 -> 0.9827; C = 1.8547, N = 3.
    advantages = turn_advantages([A, B], [1, 1], credit="em", score="sum")
    assert advantages[0] == pytest.approx(
        [c * Z * 3 / 1.8547 for c in (0.5, 0.372, 0.9827)], abs=1e-12
    )


def test_r2g_score() -> None:
    # score "r2g": S_A = G1 = 0.496, S_B = -0.352: z = 0.424 / (0.848 / sqrt(2) + 1e-6).
    z = 0.424 / (0.848 / math.sqrt(2) + 1e-6)
    advantages = turn_advantages([A, B], [1, 1], credit="equalized", score="r2g")
    assert advantages[0] == pytest.approx([z] * 3, abs=1e-12)


def test_r2g_score_is_not_rounded_but_sum_and_mean_are() -> None:
    # One-turn trajectories 0.00004 and 0: the r2g score keeps 4e-5 (z = +-2e-5 / (std + 1e-6)
    # with std = 4e-5 / sqrt(2)); rounded to 4 decimals, as sum and mean are, both scores are
    # 0 and so are the advantages.
    z = 2e-5 / (4e-5 / math.sqrt(2) + 1e-6)
    r2g = turn_advantages([[0.00004], [0.0]], [0, 0], credit="equalized", score="r2g")
    assert r2g == [pytest.approx([z], abs=1e-9), pytest.approx([-z], abs=1e-9)]
    for score in ("sum", "mean"):
        rounded = turn_advantages([[0.00004], [0.0]], [0, 0], credit="equalized", score=score)
        assert rounded == [[0.0], [0.0]]


def test_scores_are_summed_left_to_right_before_rounding() -> None:
    # 0.9221 + 0.70906 + 0.12639 is 1.75755 summed left to right (rounds to 1.7575) but
    # 1.7575500000000002 summed exactly (rounds to 1.7576). Upstream sums left to right, so
    # against a one-turn trajectory of 1.7576 the two scores differ and the z-scores are
    # +-1 / sqrt(2) (up to the 1e-6 in the denominator), not 0.
    z = 0.00005 / (0.0001 / math.sqrt(2) + 1e-6)
    advantages = turn_advantages(
        [[0.9221, 0.70906, 0.12639], [1.7576]], [0, 0], credit="equalized", score="sum"
    )
    assert advantages[0] == pytest.approx([-z] * 3, abs=1e-9)
    assert advantages[1] == pytest.approx([z], abs=1e-9)


def test_r2g_norm_estimator() -> None:
    # Pool all six reward-to-go values: mean 0.154, sample std 0.5840589011.
    pooled = [0.496, 0.62, 0.9, -0.352, -0.44, -0.3]
    std = math.sqrt(sum((g - 0.154) ** 2 for g in pooled) / 5)
    assert std == pytest.approx(0.5840589011392601, abs=1e-12)
    advantages = turn_advantages([A, B], [1, 1], estimator="r2g_norm", credit="em")
    flat = advantages[0] + advantages[1]
    assert flat == pytest.approx([(g - 0.154) / (std + 1e-6) for g in pooled], abs=1e-12)
    # A group with a single turn in all has nothing to normalise against.
    assert turn_advantages([[1.0]], [0], estimator="r2g_norm") == [[0.0]]


def test_group_of_one_uses_mean_zero_std_one() -> None:
    (advantages,) = turn_advantages([[0.0, 0.8]], ["solo"], credit="equalized")
    assert advantages == pytest.approx([0.8 / (1 + 1e-6)] * 2)


def test_zero_credit_mass_gives_zero_advantages() -> None:
    # All-zero shaped rewards: r2g credits are all 0, C = 0.
    advantages = turn_advantages([[0.0, 0.0], [0.0, 1.0]], [1, 1])
    assert advantages[0] == [0.0, 0.0]
    # Credits that cancel exactly (r2g 1.0 and -1.0 with gamma 0): C = 0 too.
    assert turn_advantages([[1.0, -1.0], [0.5, 0.5]], [1, 1], gamma=0.0)[0] == [0.0, 0.0]


def test_credits_cancelling_up_to_round_off_count_as_zero() -> None:
    # gamma 0: r2g credits are the rewards; 0.1 + 0.2 - 0.3 is 5.6e-17 in floats, not 0.
    assert math.fsum([0.1, 0.2, -0.3]) != 0.0
    advantages = turn_advantages([[0.1, 0.2, -0.3], [1.0, 0.0, 0.0]], [1, 1], gamma=0.0)
    assert advantages[0] == [0.0, 0.0, 0.0]


def test_em_credit_stays_finite_for_very_negative_rewards() -> None:
    advantages = turn_advantages([[-400.0, 1.0], [0.0, 0.0]], [1, 1], credit="em")
    assert all(math.isfinite(a) for a in advantages[0])


def test_groups_are_independent() -> None:
    together = turn_advantages([A, B, B, A], ["x", "x", "y", "y"])
    assert together[0] == turn_advantages([A, B], [0, 0])[0]
    assert together[3] == together[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"credit": "gae"}, "credit must be one of"),
        ({"score": "max"}, "score must be one of"),
        ({"estimator": "ppo"}, "estimator must be one of"),
        ({"gamma": 1.5}, "gamma must be in"),
        ({"token_counts": [[1, 1, 1]]}, "one list per trajectory"),
        ({"token_counts": [[1, 1], [1, 1, 1]]}, "3 turns but 2 token counts"),
        ({"token_counts": [[1, 0, 1], [1, 1, 1]]}, "positive integers"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        turn_advantages([A, B], [0, 0], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one group id per trajectory"):
        turn_advantages([A, B], [0])


# ----------------------------------------------------------------------------- properties

rewards = st.floats(-2, 2, allow_nan=False).map(lambda v: round(v, 3))
trajectory = st.lists(rewards, min_size=1, max_size=8)
batch = st.lists(st.tuples(trajectory, st.integers(0, 2)), min_size=1, max_size=10)


def reference_score(rewards: list[float], score: str, gamma: float) -> float:
    """The trajectory score from its definition (module docstring), written apart from the
    module: ``sum`` and ``mean`` of a left-to-right sum rounded to 4 decimals, ``r2g`` the
    discounted return from turn 1 (not rounded)."""
    if score == "r2g":
        return reference_credits(rewards, "r2g", gamma)[0]
    total = 0.0
    for r in rewards:
        total += r
    return round(total if score == "sum" else total / len(rewards), 4)


def reference_credits(rewards: list[float], credit: str, gamma: float) -> list[float]:
    """Per-turn credits from their definitions: the reward-to-go ``G_t = r_t + gamma G_t+1``
    (from the last turn back), 1 for every turn, or the rounded em transform."""
    if credit == "r2g":
        returns, later = [], 0.0
        for r in reversed(rewards):
            later = r + gamma * later
            returns.append(later)
        return returns[::-1]
    if credit == "equalized":
        return [1.0] * len(rewards)
    return [round(0.5 * (1 - math.exp(-2 * r)) / (1 - math.exp(-2)) + 0.5, 4) for r in rewards]


def reference_z(scores: list[float], groups: list[int]) -> list[float]:
    """Group z-scores with torch's sample standard deviation (a lone member: mean 0, std 1)."""
    z = []
    for score, group in zip(scores, groups, strict=True):
        members = torch.tensor(
            [s for s, g in zip(scores, groups, strict=True) if g == group], dtype=torch.float64
        )
        if len(members) == 1:
            z.append(score / (1.0 + 1e-6))
        else:
            z.append(float((score - members.mean()) / (members.std() + 1e-6)))
    return z


@given(
    batch,
    st.sampled_from(["r2g", "equalized", "em"]),
    st.sampled_from(["sum", "mean", "r2g"]),
    st.data(),
)
def test_token_mean_of_advantages_equals_group_z(
    items: list[tuple[list[float], int]], credit: str, score: str, data: st.DataObject
) -> None:
    """The mean advantage over credited tokens is the trajectory's group z-score, both
    computed here from their definitions, not by the module's helpers."""
    turn_rewards = [r for r, _ in items]
    groups = [g for _, g in items]
    counts = [
        data.draw(st.lists(st.integers(1, 5), min_size=len(r), max_size=len(r)))
        for r in turn_rewards
    ]
    advantages = turn_advantages(
        turn_rewards,
        groups,
        credit=credit,
        score=score,
        token_counts=counts,  # type: ignore[arg-type]
    )
    scores = [reference_score(r, score, 0.8) for r in turn_rewards]
    z = reference_z(scores, groups)
    for i, (adv, n) in enumerate(zip(advantages, counts, strict=True)):
        credits = reference_credits(turn_rewards[i], credit, 0.8)
        mass = sum(c * k for c, k in zip(credits, n, strict=True))
        scale = sum(abs(c) * k for c, k in zip(credits, n, strict=True))
        assume(abs(mass) > 1e-6 * max(scale, 1.0))  # away from the C == 0 special case
        credited = [(a, k) for a, c, k in zip(adv, credits, n, strict=True) if c != 0.0]
        mean = sum(a * k for a, k in credited) / sum(k for _, k in credited)
        assert mean == pytest.approx(z[i], rel=1e-9, abs=1e-9)


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=16))
def test_group_z_matches_torch_std(scores: list[float]) -> None:
    tensor = torch.tensor(scores, dtype=torch.float64)
    expected = ((tensor - tensor.mean()) / (tensor.std() + 1e-6)).tolist()
    assert group_z_scores(scores, [0] * len(scores)) == pytest.approx(expected, abs=1e-9)
