"""The ``bao_turn`` advantage estimator for verl 0.9.1 (docs/concepts.md, docs/verl.md).

verl calls a registered estimator with ``token_level_rewards``, ``response_mask``, ``index``
(the group uid of each row) and ``config`` (the ``algorithm`` section) and nothing else: no turn
boundaries, no per-turn rewards. So both are read back from the tensors:

* a turn is a maximal run of ``response_mask == 1`` (assistant tokens); the zeros between runs
  are tool or environment observations, the zeros after the last run are padding;
* the agent loop writes each turn's shaped reward on that turn's last token. To stay correct if
  a reward lands elsewhere (another token of the turn, or the observation after it), every
  position belongs to the turn whose run started most recently at or before it (positions before
  the first run belong to the first turn) and a turn's reward is the sum over its positions.

The per-turn rewards and token counts then go through :func:`bao.advantage.turn_advantages`, so
the verl backend and the simulator share one definition of the advantage. Every assistant token
of a turn gets that turn's advantage; every mask-0 position gets 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Final, cast

import torch
from verl.trainer.ppo.core_algos import register_adv_est

from bao.advantage import CREDITS, ESTIMATORS, SCORES, Credit, Estimator, Score, turn_advantages
from bao.verl.launch import ESTIMATOR as ESTIMATOR_NAME

# verl's AlgoConfig defaults gamma to 1.0; BAO's launcher sets 0.8 explicitly.
DEFAULT_GAMMA: Final = 1.0
# Defaults of the BAO knobs: the BAO paper's recipe.
DEFAULT_KNOBS: Final[Mapping[str, str]] = {"credit": "r2g", "score": "sum", "estimator": "bao"}
_CHOICES: Final[Mapping[str, Sequence[str]]] = {
    "credit": CREDITS,
    "score": SCORES,
    "estimator": ESTIMATORS,
}


def turn_spans(response_mask_row: torch.Tensor) -> list[tuple[int, int]]:
    """``[start, end)`` of every maximal run of non-zero entries of a 1-D mask, in order."""
    mask = (response_mask_row != 0).to(torch.int8)
    # Padding with a zero on both sides makes every run begin with +1 and end with -1.
    steps = torch.diff(mask, prepend=mask.new_zeros(1), append=mask.new_zeros(1))
    starts = torch.nonzero(steps == 1).flatten().tolist()
    ends = torch.nonzero(steps == -1).flatten().tolist()
    return list(zip(starts, ends, strict=True))


def split_turns(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor
) -> tuple[torch.Tensor, list[list[float]], list[list[int]]]:
    """Turn index of every position, and each row's per-turn rewards and token counts.

    Returns ``(turn_ids, turn_rewards, token_counts)``: ``turn_ids`` is a ``(bs, L)`` int64
    tensor (the turn each position is attributed to; 0 in rows without turns), the lists hold
    one entry per turn of each row (empty for a row without turns).
    """
    mask = response_mask != 0
    starts = mask.clone()
    starts[:, 1:] &= ~mask[:, :-1]
    # A cumulative count of run starts numbers the turns 1..T along the row; clamping sends the
    # positions before the first run to the first turn.
    turn_ids = (starts.to(torch.int64).cumsum(dim=1) - 1).clamp(min=0)
    turns_per_row = starts.sum(dim=1)
    width = max(int(turns_per_row.max().item()) if turns_per_row.numel() else 0, 1)
    rewards = torch.zeros(mask.shape[0], width, dtype=torch.float64, device=mask.device)
    rewards.scatter_add_(1, turn_ids, token_level_rewards.to(torch.float64))
    counts = torch.zeros(mask.shape[0], width, dtype=torch.int64, device=mask.device)
    counts.scatter_add_(1, turn_ids, mask.to(torch.int64))
    # Only bs x T numbers cross to Python: the per-row loop below never touches tokens.
    rewards_rows = rewards.cpu().tolist()
    counts_rows = counts.cpu().tolist()
    turn_rewards: list[list[float]] = []
    token_counts: list[list[int]] = []
    for row, n_turns in enumerate(turns_per_row.cpu().tolist()):
        turn_rewards.append(rewards_rows[row][:n_turns])
        token_counts.append(counts_rows[row][:n_turns])
    return turn_ids, turn_rewards, token_counts


def bao_knobs(config: Any) -> tuple[float, Credit, Score, Estimator]:
    """``gamma`` and the ``algorithm.bao`` knobs from verl's algorithm config, validated."""
    gamma = _lookup(config, "gamma")
    gamma = DEFAULT_GAMMA if gamma is None else float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"algorithm.gamma must be in [0, 1]; got {gamma!r}")
    section = _lookup(config, "bao")
    knobs: dict[str, str] = {}
    for key, default in DEFAULT_KNOBS.items():
        value = _lookup(section, key)
        value = default if value is None else value
        if value not in _CHOICES[key]:
            raise ValueError(
                f"algorithm.bao.{key} must be one of {', '.join(_CHOICES[key])}; got {value!r}"
            )
        knobs[key] = value
    return (
        gamma,
        cast(Credit, knobs["credit"]),
        cast(Score, knobs["score"]),
        cast(Estimator, knobs["estimator"]),
    )


def compute_bao_turn_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    config: Any = None,
    index: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's ``bao_turn`` estimator: ``(advantages, returns)``, both ``(bs, L)`` float32.

    ``returns`` equals ``advantages``, as in verl's GRPO (no critic reads it). ``index`` holds
    the group uid of each row; without it every row is its own group. Other keyword arguments
    verl may pass (``reward_baselines``, ...) are ignored.
    """
    del kwargs
    gamma, credit, score, estimator = bao_knobs(config)
    turn_ids, turn_rewards, token_counts = split_turns(token_level_rewards, response_mask)
    group_ids: Sequence[Hashable] = range(len(turn_rewards)) if index is None else list(index)
    per_turn = turn_advantages(
        turn_rewards,
        group_ids,
        gamma=gamma,
        credit=credit,
        score=score,
        estimator=estimator,
        token_counts=token_counts,
    )
    # A (bs, T) table of turn advantages, zero-padded like split_turns' turn tables, is spread
    # over the tokens by the same turn ids; the mask then zeroes observations and padding.
    width = max(max(map(len, per_turn), default=0), 1)
    table = torch.tensor(
        [values + [0.0] * (width - len(values)) for values in per_turn], dtype=torch.float64
    ).reshape(len(per_turn), width)
    table = table.to(token_level_rewards.device)
    # where() rather than a product, so observations and padding hold +0.0, never -0.0.
    advantages = torch.where(response_mask != 0, torch.gather(table, 1, turn_ids), 0.0)
    advantages = advantages.to(torch.float32)
    return advantages, advantages


# A call rather than a decorator: verl's decorator is untyped, which mypy --strict rejects.
# verl refuses a second, different function under one name (importlib.reload would trip it).
register_adv_est(ESTIMATOR_NAME)(compute_bao_turn_advantage)


def _lookup(section: Any, key: str) -> Any:
    """``section[key]`` for an OmegaConf node, verl's AlgoConfig or a dict; None when absent."""
    if section is None:
        return None
    if hasattr(section, "get"):
        return section.get(key)
    return getattr(section, key, None)
