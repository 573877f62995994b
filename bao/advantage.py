"""Turn-level GRPO advantages, in BAO's and UserRL's credit modes (docs/concepts.md).

For a group of rollouts of the same task, with shaped turn rewards ``r'_1..r'_T`` each:

* the trajectory score ``S`` (``score``): ``sum`` of ``r'``, ``mean`` (UserRL's "Sum", which
  divides by ``T``), or ``r2g`` (the discounted return from turn 1); ``sum`` and ``mean``
  rounded to 4 decimals (after a left-to-right sum), ``r2g`` not, as the UserRL/BAO code does;
* the group z-score ``z = (S - mean(S)) / (std(S) + 1e-6)``, with the sample standard
  deviation (``n - 1``, as ``torch.std``); a group of one uses mean 0 and std 1;
* the per-turn credit ``c_t`` (``credit``): ``r2g`` (reward-to-go ``sum_k gamma^(k-t) r'_k``),
  ``equalized`` (1), or ``em`` (``0.5 + 0.5 (1 - e^(-2 r'_t)) / (1 - e^(-2))``, rounded to 4
  decimals);
* the advantage of turn ``t`` is ``c_t * z * N / C``: ``N`` counts the tokens with non-zero
  credit and ``C`` sums the credits over tokens (each turn weighted by its token count; one
  token per turn when no counts are given). The mean advantage over credited tokens is then
  exactly ``z``; credits only redistribute it across turns. If ``C`` is 0 the advantages are 0.

``estimator="r2g_norm"`` instead normalises each turn's reward-to-go over all turns of all
trajectories of the group (the paper's Eq. 5 wording), ignoring ``credit`` and ``score``.

BAO's recipe is ``credit="r2g", score="sum"``; UserRL's default ``credit="equalized",
score="mean"``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Final, Literal

Credit = Literal["r2g", "equalized", "em"]
Score = Literal["sum", "mean", "r2g"]
Estimator = Literal["bao", "r2g_norm"]

CREDITS: Final = ("r2g", "equalized", "em")
SCORES: Final = ("sum", "mean", "r2g")
ESTIMATORS: Final = ("bao", "r2g_norm")
EPSILON: Final = 1e-6
# C is a sum of float credits; a relative cancellation below this counts as exactly zero,
# so round-off (e.g. 0.1 + 0.2 - 0.3) cannot blow the advantages up by 1e16.
_ZERO_CREDIT_RELATIVE: Final = 1e-12
_EM_SCALE: Final = 1.0 - math.exp(-2.0)


def reward_to_go(rewards: Sequence[float], gamma: float) -> list[float]:
    """``G_t = sum_{k>=t} gamma^(k-t) r_k`` for every turn."""
    returns = [0.0] * len(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def turn_credits(rewards: Sequence[float], credit: Credit, gamma: float) -> list[float]:
    """Per-turn credits ``c_t`` of one trajectory."""
    if credit == "r2g":
        return reward_to_go(rewards, gamma)
    if credit == "equalized":
        return [1.0] * len(rewards)
    # exp(-2 r) overflows below r = -354; clamping keeps the credit finite (and hugely negative).
    return [
        round(0.5 + 0.5 * (1.0 - math.exp(min(-2.0 * r, 700.0))) / _EM_SCALE, 4) for r in rewards
    ]


def trajectory_score(rewards: Sequence[float], score: Score, gamma: float) -> float:
    """The trajectory score ``S``: ``sum`` and ``mean`` rounded to 4 decimals, ``r2g`` not,
    as UserRL's turn-credit code does. The sums are Python's left-to-right ``sum`` (not an
    exactly rounded one), as upstream, so that a value on a rounding tie falls on the same side.
    """
    if not rewards:
        return 0.0
    if score == "sum":
        return round(sum(rewards), 4)
    if score == "mean":
        return round(sum(rewards) / len(rewards), 4)
    return reward_to_go(rewards, gamma)[0]


def group_z_scores(scores: Sequence[float], group_ids: Sequence[Hashable]) -> list[float]:
    """``(S - mean_group) / (std_group + 1e-6)`` with the sample std; a lone member uses 0, 1."""
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(group_ids):
        members.setdefault(group, []).append(index)
    z = [0.0] * len(scores)
    for indices in members.values():
        values = [scores[i] for i in indices]
        if len(values) == 1:
            mean, std = 0.0, 1.0
        else:
            mean = math.fsum(values) / len(values)
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
        for i in indices:
            z[i] = (scores[i] - mean) / (std + EPSILON)
    return z


def turn_advantages(
    turn_rewards: Sequence[Sequence[float]],
    group_ids: Sequence[Hashable],
    *,
    gamma: float = 0.8,
    credit: Credit = "r2g",
    score: Score = "sum",
    estimator: Estimator = "bao",
    token_counts: Sequence[Sequence[int]] | None = None,
) -> list[list[float]]:
    """Per-turn advantages for a batch of trajectories (see the module docstring).

    Args:
        turn_rewards: shaped rewards ``r'_t``, one list per trajectory.
        group_ids: the group (task uid) of each trajectory; z-scores are taken within groups.
        gamma: discount of the reward-to-go, in [0, 1].
        credit: ``r2g``, ``equalized`` or ``em``.
        score: ``sum``, ``mean`` or ``r2g``.
        estimator: ``bao`` (credit-weighted group z-score) or ``r2g_norm``.
        token_counts: tokens in each turn (positive ints), same shape as ``turn_rewards``;
            defaults to one token per turn. Every token of a turn gets its turn's advantage.

    Returns:
        One list of per-turn advantages per trajectory.
    """
    _check_arguments(
        turn_rewards=turn_rewards,
        group_ids=group_ids,
        gamma=gamma,
        credit=credit,
        score=score,
        estimator=estimator,
        token_counts=token_counts,
    )
    if estimator == "r2g_norm":
        return _r2g_norm(turn_rewards, group_ids, gamma)

    scores = [trajectory_score(rewards, score, gamma) for rewards in turn_rewards]
    z_scores = group_z_scores(scores, group_ids)
    advantages: list[list[float]] = []
    for index, rewards in enumerate(turn_rewards):
        credits = turn_credits(rewards, credit, gamma)
        counts = token_counts[index] if token_counts is not None else [1] * len(rewards)
        credited_tokens = sum(n for c, n in zip(credits, counts, strict=True) if c != 0.0)
        credit_mass = math.fsum(c * n for c, n in zip(credits, counts, strict=True))
        scale = math.fsum(abs(c) * n for c, n in zip(credits, counts, strict=True))
        if abs(credit_mass) <= _ZERO_CREDIT_RELATIVE * scale:
            advantages.append([0.0] * len(rewards))
            continue
        factor = z_scores[index] * credited_tokens / credit_mass
        advantages.append([c * factor for c in credits])
    return advantages


def _r2g_norm(
    turn_rewards: Sequence[Sequence[float]], group_ids: Sequence[Hashable], gamma: float
) -> list[list[float]]:
    returns = [reward_to_go(rewards, gamma) for rewards in turn_rewards]
    pooled: dict[Hashable, list[float]] = {}
    for group, values in zip(group_ids, returns, strict=True):
        pooled.setdefault(group, []).extend(values)
    stats: dict[Hashable, tuple[float, float] | None] = {}
    for group, values in pooled.items():
        if len(values) < 2:
            stats[group] = None  # one turn in the whole group: nothing to compare it with
            continue
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
        stats[group] = (mean, std)
    advantages: list[list[float]] = []
    for group, values in zip(group_ids, returns, strict=True):
        moments = stats[group]
        if moments is None:
            advantages.append([0.0] * len(values))
        else:
            mean, std = moments
            advantages.append([(g - mean) / (std + EPSILON) for g in values])
    return advantages


def _check_arguments(
    *,
    turn_rewards: Sequence[Sequence[float]],
    group_ids: Sequence[Hashable],
    gamma: float,
    credit: str,
    score: str,
    estimator: str,
    token_counts: Sequence[Sequence[int]] | None,
) -> None:
    if credit not in CREDITS:
        raise ValueError(f"credit must be one of {', '.join(CREDITS)}; got {credit!r}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1]; got {gamma!r}")
    if len(group_ids) != len(turn_rewards):
        raise ValueError(
            f"need one group id per trajectory: {len(turn_rewards)} trajectories, "
            f"{len(group_ids)} group ids"
        )
    if token_counts is None:
        return
    if len(token_counts) != len(turn_rewards):
        raise ValueError(
            f"token_counts needs one list per trajectory: {len(turn_rewards)} trajectories, "
            f"{len(token_counts)} lists"
        )
    for index, (rewards, counts) in enumerate(zip(turn_rewards, token_counts, strict=True)):
        if len(counts) != len(rewards):
            raise ValueError(
                f"trajectory {index}: {len(rewards)} turns but {len(counts)} token counts"
            )
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
            raise ValueError(
                f"trajectory {index}: token counts must be positive integers, got {list(counts)}"
            )
