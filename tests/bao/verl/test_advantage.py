"""The ``bao_turn`` estimator, driven through verl's own ``compute_advantage``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

pytest.importorskip("verl")

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from verl.protocol import DataProto
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from verl.trainer.ppo.ray_trainer import compute_advantage

from bao.advantage import CREDITS, ESTIMATORS, SCORES, turn_advantages
from bao.verl.advantage import (
    ESTIMATOR_NAME,
    compute_bao_turn_advantage,
    split_turns,
    turn_spans,
)


@dataclass(frozen=True)
class Row:
    """One response laid out as verl sees it: observation gaps, then a turn, repeatedly."""

    gaps: list[int]  # mask-0 tokens before each turn (>= 1 after the first turn)
    lengths: list[int]  # assistant tokens of each turn
    rewards: list[float]  # shaped reward of each turn
    padding: int  # mask-0 tokens after the last turn

    def starts(self) -> list[int]:
        starts, position = [], 0
        for gap, length in zip(self.gaps, self.lengths, strict=True):
            starts.append(position + gap)
            position += gap + length
        return starts

    @property
    def size(self) -> int:
        return sum(self.gaps) + sum(self.lengths) + self.padding


# Float32-exact rewards, so the reference sees exactly what the tensor holds; the sampled values
# make ties (and all-equal groups) common.
rewards_st = st.one_of(
    st.sampled_from([0.0, 1.0, -0.5, 0.25, -1.0]),
    st.floats(-2.0, 2.0, width=32),
)


@st.composite
def rows(draw: st.DrawFn) -> Row:
    turns = draw(st.integers(0, 16))
    # The first turn may start the response; later ones follow at least one observation token.
    gaps = [draw(st.integers(0, 3)) for _ in range(min(turns, 1))]
    gaps += draw(
        st.lists(st.integers(1, 4), min_size=turns - len(gaps), max_size=turns - len(gaps))
    )
    return Row(
        gaps=gaps,
        lengths=draw(st.lists(st.integers(1, 20), min_size=turns, max_size=turns)),
        rewards=draw(st.lists(rewards_st, min_size=turns, max_size=turns)),
        padding=draw(st.integers(0, 6)) if turns else draw(st.integers(1, 6)),
    )


@st.composite
def groups(draw: st.DrawFn) -> list[Row]:
    size = draw(st.integers(1, 8))
    if draw(st.booleans()):
        return draw(st.lists(rows(), min_size=size, max_size=size))
    # The same rewards in every member: all scores tie, so z is 0 everywhere.
    first = draw(rows())
    return [first] * size


batches = st.lists(groups(), min_size=1, max_size=4)


def layout(batch: list[list[Row]], positions: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(token_level_rewards, response_mask)``; rewards on each turn's last token by default.

    ``positions(row, turn, start, stop)`` may pick another position for a turn's reward.
    """
    flat = [row for group in batch for row in group]
    width = max(row.size for row in flat)
    rewards = torch.zeros(len(flat), width)
    mask = torch.zeros(len(flat), width, dtype=torch.int64)
    for i, row in enumerate(flat):
        starts = row.starts()
        for t, (start, length, reward) in enumerate(
            zip(starts, row.lengths, row.rewards, strict=True)
        ):
            mask[i, start : start + length] = 1
            position = start + length - 1
            if positions is not None:
                # The turn owns everything up to the next turn's start (the first turn also owns
                # the leading observation tokens).
                stop = starts[t + 1] if t + 1 < len(starts) else width
                position = positions(i, t, 0 if t == 0 else start, stop)
            rewards[i, position] += reward
    return rewards, mask


def expected(batch: list[list[Row]], width: int, **knobs: Any) -> torch.Tensor:
    """Reference: bao.advantage.turn_advantages, spread over each turn's tokens by hand."""
    flat = [row for group in batch for row in group]
    groups_of = [g for g, group in enumerate(batch) for _ in group]
    per_turn = turn_advantages(
        [row.rewards for row in flat],
        groups_of,
        token_counts=[row.lengths for row in flat],
        **knobs,
    )
    out = torch.zeros(len(flat), width, dtype=torch.float64)
    for i, (row, values) in enumerate(zip(flat, per_turn, strict=True)):
        for start, length, value in zip(row.starts(), row.lengths, values, strict=True):
            out[i, start : start + length] = value
    return out


def run_verl(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    config: Any,
    uids: list[Any] | None,
    gamma: float = 1.0,
) -> torch.Tensor:
    non_tensors = {} if uids is None else {"uid": np.array(uids, dtype=object)}
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask}, non_tensors=non_tensors
    )
    # verl's trainers pass the config's string too; the enum annotation is narrower than verl.
    out = compute_advantage(
        data,
        adv_estimator=ESTIMATOR_NAME,  # type: ignore[arg-type]
        gamma=gamma,
        config=config,
    )
    advantages: torch.Tensor = out.batch["advantages"]
    assert advantages.dtype == torch.float32
    assert advantages.shape == rewards.shape
    assert torch.equal(out.batch["returns"], advantages)
    return advantages


def uids_of(batch: list[list[Row]]) -> list[str]:
    return [f"task-{g}" for g, group in enumerate(batch) for _ in group]


KNOBS = [
    {"credit": c, "score": s, "estimator": e}
    for c, s, e in itertools.product(CREDITS, SCORES, ESTIMATORS)
]


@pytest.mark.parametrize("knobs", KNOBS, ids=lambda k: "-".join(k.values()))
@settings(max_examples=40)
@given(batch=batches, gamma=st.sampled_from([0.0, 0.8, 1.0]))
def test_matches_turn_advantages(
    knobs: dict[str, str], batch: list[list[Row]], gamma: float
) -> None:
    rewards, mask = layout(batch)
    config = OmegaConf.create({"gamma": gamma, "bao": knobs})
    advantages = run_verl(rewards, mask, config, uids_of(batch))
    reference = expected(batch, rewards.shape[1], gamma=gamma, **knobs)
    torch.testing.assert_close(advantages.double(), reference, rtol=1e-5, atol=1e-6)
    assert torch.all(advantages[mask == 0] == 0)


@given(batch=batches, data=st.data())
def test_reward_anywhere_in_a_turns_span_counts_for_that_turn(
    batch: list[list[Row]], data: st.DataObject
) -> None:
    config = OmegaConf.create({"gamma": 0.8, "bao": {"credit": "r2g", "score": "r2g"}})
    uids = uids_of(batch)
    on_last = run_verl(*layout(batch), config, uids)

    def anywhere(row: int, turn: int, start: int, stop: int) -> int:
        return data.draw(st.integers(start, stop - 1), label=f"row {row} turn {turn}")

    torch.testing.assert_close(run_verl(*layout(batch, anywhere), config, uids), on_last)


def test_rewards_off_the_last_token_worked_example() -> None:
    # Observation, turn 1 (3 tokens), observation, turn 2 (2 tokens), padding.
    mask = torch.tensor([[0, 1, 1, 1, 0, 0, 1, 1, 0, 0]] * 2)
    on_last = torch.zeros(2, 10)
    on_last[0, 3], on_last[0, 7] = 0.5, 1.0
    on_last[1, 3], on_last[1, 7] = -0.5, 0.25
    moved = torch.zeros(2, 10)
    moved[0, 0], moved[0, 9] = 0.5, 1.0  # leading observation -> turn 1; padding -> turn 2
    moved[1, 2], moved[1, 6], moved[1, 8] = -0.5, 0.125, 0.125  # split over turn and padding
    config = OmegaConf.create({"gamma": 0.8})
    reference = run_verl(on_last, mask, config, ["a", "a"])
    torch.testing.assert_close(run_verl(moved, mask, config, ["a", "a"]), reference)
    assert torch.all(reference[mask == 0] == 0)
    assert torch.all(reference[mask == 1] != 0)


def test_mask_zero_positions_and_rows_without_turns_are_zero() -> None:
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]])
    rewards = torch.tensor(
        [[0.0, 0.7, 0.3, 0.9, 0.2], [1.0, -1.0, 2.0, 0.0, 3.0], [0.0, -0.4, 0.0, 0.0, 0.0]]
    )
    advantages = run_verl(rewards, mask, OmegaConf.create({"gamma": 0.8}), ["t", "t", "t"])
    assert torch.equal(advantages[1], torch.zeros(5))
    assert torch.equal(advantages[mask == 0], torch.zeros(int((mask == 0).sum())))
    # Not a single -0.0 either: observations and padding are plain zeros.
    assert not torch.signbit(advantages[mask == 0]).any()
    assert torch.all(advantages[mask == 1] != 0)


@pytest.mark.parametrize("key", ["credit", "score", "estimator"])
def test_bad_knob_names_its_config_key(key: str) -> None:
    rewards, mask = torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.int64)
    config = OmegaConf.create({"gamma": 0.8, "bao": {key: "bogus"}})
    with pytest.raises(ValueError, match=rf"algorithm\.bao\.{key} must be one of .*'bogus'"):
        run_verl(rewards, mask, config, ["a"])


def test_bad_gamma_names_its_config_key() -> None:
    with pytest.raises(ValueError, match=r"algorithm\.gamma must be in \[0, 1\]"):
        run_verl(torch.zeros(1, 3), torch.ones(1, 3), OmegaConf.create({"gamma": 1.5}), ["a"])


def test_gamma_comes_from_config_not_compute_advantage_argument() -> None:
    # verl hands custom estimators only the config: its gamma argument never reaches them.
    batch = [
        [
            Row(gaps=[0, 2, 2], lengths=[2, 3, 1], rewards=[0.0, -0.25, 1.0], padding=1),
            Row(gaps=[1, 1], lengths=[4, 2], rewards=[-0.5, -0.25], padding=3),
        ]
    ]
    rewards, mask = layout(batch)
    for gamma in (0.5, 0.8):
        config = OmegaConf.create({"gamma": gamma})
        advantages = run_verl(rewards, mask, config, uids_of(batch), gamma=0.1)
        reference = expected(batch, rewards.shape[1], gamma=gamma)
        torch.testing.assert_close(advantages.double(), reference, rtol=1e-5, atol=1e-6)
    # Absent gamma: verl's default, 1.0.
    advantages = run_verl(rewards, mask, OmegaConf.create({}), uids_of(batch), gamma=0.1)
    reference = expected(batch, rewards.shape[1], gamma=1.0)
    torch.testing.assert_close(advantages.double(), reference, rtol=1e-5, atol=1e-6)


def test_verl_algo_config_and_missing_uid() -> None:
    # AlgoConfig has no ``bao`` field: the defaults (BAO's recipe) apply. Without ``uid`` every
    # row is its own group (mean 0, std 1), so equal rows keep non-zero advantages.
    batch = [[Row(gaps=[0, 1], lengths=[2, 2], rewards=[0.25, 1.0], padding=0)] * 2]
    rewards, mask = layout(batch)
    advantages = run_verl(rewards, mask, AlgoConfig(gamma=0.8), uids=None)
    reference = expected([[row] for row in batch[0]], rewards.shape[1], gamma=0.8)
    torch.testing.assert_close(advantages.double(), reference, rtol=1e-5, atol=1e-6)
    assert torch.all(advantages[mask == 1] != 0)


def test_registered_under_bao_turn() -> None:
    registered = get_adv_estimator_fn("bao_turn")  # type: ignore[no-untyped-call]
    assert registered is compute_bao_turn_advantage


@pytest.mark.parametrize(
    ("mask", "spans"),
    [
        ([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], [(1, 3), (5, 6), (7, 10)]),
        ([1, 1, 1], [(0, 3)]),
        ([0, 0], []),
        ([], []),
    ],
)
def test_turn_spans(mask: list[int], spans: list[tuple[int, int]]) -> None:
    assert turn_spans(torch.tensor(mask, dtype=torch.int64)) == spans
    assert turn_spans(torch.tensor(mask, dtype=torch.bool)) == spans


@given(batch=batches)
def test_split_turns_agrees_with_turn_spans(batch: list[list[Row]]) -> None:
    rewards, mask = layout(batch)
    _, turn_rewards, token_counts = split_turns(rewards, mask)
    flat = [row for group in batch for row in group]
    for i, row in enumerate(flat):
        spans = turn_spans(mask[i])
        assert [stop - start for start, stop in spans] == row.lengths == token_counts[i]
        assert [start for start, _ in spans] == row.starts()
        assert turn_rewards[i] == row.rewards
