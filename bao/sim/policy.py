"""The behaviour policy: which kind of action to take this turn, from compact features.

The policy chooses the action type (query, search, answer, finish); the reasoner supplies the
content. Features expose what an LLM agent would know at that point: the turn and remaining
budget, whether it has the test case, how strongly its hypotheses agree, how many are left,
its wrong answers so far, whether it just answered, and what the last turn returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import torch
from torch import nn

ACTIONS: Final = ("action", "search", "answer", "finish")
LAST_EVENTS: Final = ("start", "query_result", "query_error", "search", "answer_wrong", "other")
N_FEATURES: Final = 11 + len(LAST_EVENTS)


def last_event_slot(event: str | None) -> int:
    """Which one-hot slot of :data:`LAST_EVENTS` an environment event falls in."""
    if event is None:
        return 0
    if event == "query_result":
        return 1
    if event in ("query_error", "query_test_case_refused"):
        return 2
    if event.startswith("search"):
        return 3
    if event == "answer_wrong":
        return 4
    return 5


def features(
    *,
    turn: int,
    max_turns: int,
    test_known: bool,
    agreement: float,
    has_prediction: bool,
    pool_size: int,
    capacity: int,
    wrong_answers: int,
    last_was_answer: bool,
    n_queries: int,
    probes_left: int,
    last_event: str | None,
) -> list[float]:
    """One turn's feature vector (length :data:`N_FEATURES`), all roughly in [0, 1]."""
    vector = [
        turn / max_turns,
        (max_turns - turn) / max_turns,
        1.0 if max_turns - turn == 1 else 0.0,  # the last turn: answer now or never
        float(test_known),
        agreement if test_known else 0.0,
        float(has_prediction and test_known),
        math.log1p(pool_size) / math.log1p(capacity),
        min(wrong_answers, 4) / 4.0,
        float(last_was_answer),
        min(n_queries, max_turns) / max_turns,
        float(probes_left == 0),
    ]
    one_hot = [0.0] * len(LAST_EVENTS)
    one_hot[last_event_slot(last_event)] = 1.0
    return vector + one_hot


class PolicyNet(nn.Module):
    """A two-hidden-layer tanh MLP from features to logits over :data:`ACTIONS`."""

    def __init__(
        self,
        hidden_size: int = 64,
        initial_action_probs: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(N_FEATURES, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, len(ACTIONS)),
        )
        # Small last-layer weights and a bias of log-probabilities: the policy starts at the
        # given action prior in every state, and learns from there what the state calls for.
        last = self.layers[-1]
        assert isinstance(last, nn.Linear)
        nn.init.normal_(last.weight, std=0.01)
        with torch.no_grad():
            last.bias.copy_(torch.log(torch.tensor(list(initial_action_probs))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.layers(x)
        return logits
