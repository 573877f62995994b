"""BAO turn-reward shaping: the user-involvement weight and the two behaviour penalties.

For raw turn rewards ``r_1..r_T`` with action types ``choice_t``, the shaped reward is
``r'_t = r_t + p_t`` where ``p_t`` collects (docs/concepts.md, "Shaping"):

* user involvement, every trajectory: ``p_t -= lambda`` on each ``answer`` turn. This is the
  weight ``w`` of BAO's objective ``max E[R(tau) - w U(tau)]``;
* information-seeking penalty ``alpha``, failed trajectories (``sum(r) <= 0``) only: for
  ``t >= 2``, ``p_t -= alpha`` when turns ``t-1`` and ``t`` are both ``answer`` (answering
  again without gathering information in between);
* over-thinking penalty ``beta``, failed trajectories shorter than ``min_turns`` only:
  ``total = beta * (min_turns - T) + 0.2``, ``step = total / (T + 1)``, ``p_t -= step`` for
  ``t = 2..T``, and a one-turn trajectory gets ``p_1 -= 0.5`` (the constants 0.2 and 0.5 are
  those of the official BAO code). It discourages giving up early.

A coefficient of 0 switches its term off entirely: with ``over_thinking=0`` the constant parts
(0.2, 0.5) are not applied either, so ``ShapingCoefficients()`` leaves rewards unchanged and
the paper's "w/o BR" ablation is ``info_seeking=0, over_thinking=0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bao.trajectory import Trajectory

# Constants of the official BAO over-thinking penalty.
OVER_THINKING_BASE = 0.2
OVER_THINKING_SINGLE_TURN = 0.5


@dataclass(frozen=True)
class ShapingCoefficients:
    """The BAO shaping knobs.

    Attributes:
        user_lambda: penalty per ``answer`` turn (user-involvement weight ``w``), >= 0.
        info_seeking: ``alpha``, penalty per back-to-back answer in a failed trajectory, >= 0.
        over_thinking: ``beta``, scale of the early-stop penalty in a failed trajectory, >= 0.
        min_turns: failed trajectories shorter than this get the over-thinking penalty, >= 1.
    """

    user_lambda: float = 0.0
    info_seeking: float = 0.0
    over_thinking: float = 0.0
    min_turns: int = 15

    def __post_init__(self) -> None:
        for name in ("user_lambda", "info_seeking", "over_thinking"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if isinstance(self.min_turns, bool) or not isinstance(self.min_turns, int):
            raise ValueError(f"min_turns must be an integer, got {self.min_turns!r}")
        if self.min_turns < 1:
            raise ValueError(f"min_turns must be >= 1, got {self.min_turns!r}")


def shape_turn_rewards(
    choices: Sequence[str], rewards: Sequence[float], coefficients: ShapingCoefficients
) -> list[float]:
    """Returns the shaped reward of each turn (see the module docstring for the formulas)."""
    if len(choices) != len(rewards):
        raise ValueError(
            f"choices and rewards must have one entry per turn, got {len(choices)} and "
            f"{len(rewards)}"
        )
    n_turns = len(rewards)
    penalties = [0.0] * n_turns
    lam = coefficients.user_lambda
    if lam:
        for t, choice in enumerate(choices):
            if choice == "answer":
                penalties[t] -= lam

    failed = sum(rewards) <= 0
    if failed and coefficients.info_seeking:
        for t in range(1, n_turns):
            if choices[t - 1] == "answer" and choices[t] == "answer":
                penalties[t] -= coefficients.info_seeking

    beta = coefficients.over_thinking
    if failed and beta and 0 < n_turns < coefficients.min_turns:
        if n_turns == 1:
            penalties[0] -= OVER_THINKING_SINGLE_TURN
        else:
            total = beta * (coefficients.min_turns - n_turns) + OVER_THINKING_BASE
            step = total / (n_turns + 1)
            for t in range(1, n_turns):  # turns 2..T
                penalties[t] -= step

    return [reward + penalty for reward, penalty in zip(rewards, penalties, strict=True)]


def shape_trajectory(trajectory: Trajectory, coefficients: ShapingCoefficients) -> Trajectory:
    """Fills each turn's ``shaped_reward`` in place and returns the trajectory."""
    shaped = shape_turn_rewards(trajectory.choices, trajectory.rewards, coefficients)
    for turn, value in zip(trajectory.turns, shaped, strict=True):
        turn.shaped_reward = value
    return trajectory
