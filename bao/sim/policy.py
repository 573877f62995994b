"""The behaviour policy: which kind of action to take this turn, from compact features.

The policy chooses the action type (query, search, answer, finish); the reasoner supplies the
content. Features expose what an LLM agent would know at that point: the turn and remaining
budget, whether it has the test case, how strongly it believes its best value and the runner-up,
how much of its belief is still on rules it has not thought of, how many hypotheses it holds,
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
FEATURE_NAMES: Final = (
    "turn",
    "turns_left",
    "last_turn",
    "test_known",
    "confidence",
    "runner_up",
    "unexplored",
    "has_prediction",
    "pool_size",
    "wrong_answers",
    "last_was_answer",
    "queries",
    "probes_exhausted",
    *(f"last_event_{event}" for event in LAST_EVENTS),
)
N_FEATURES: Final = len(FEATURE_NAMES)


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
    confidence: float,
    runner_up: float,
    unexplored: float,
    has_prediction: bool,
    pool_size: int,
    capacity: int,
    wrong_answers: int,
    last_was_answer: bool,
    n_queries: int,
    probes_left: int,
    last_event: str | None,
) -> list[float]:
    """One turn's feature vector (in the order of :data:`FEATURE_NAMES`), all in [0, 1]."""
    vector = [
        turn / max_turns,
        (max_turns - turn) / max_turns,
        1.0 if max_turns - turn == 1 else 0.0,  # the last turn: answer now or never
        float(test_known),
        confidence if test_known else 0.0,
        runner_up if test_known else 0.0,
        unexplored,
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
    """Logits over :data:`ACTIONS`: a linear map of the features plus a two-hidden-layer tanh
    MLP (a residual policy: the linear part carries the base model's tendencies, the MLP
    learns the rest).

    Args:
        hidden_size: width of the MLP's hidden layers.
        initial_action_probs: the base model's action probabilities in a state where its
            belief in its best value is even (confidence 0.5).
        answer_confidence_logit: how much the base model's answer logit rises from no belief
            to full belief in its best value (0: it answers at the same rate whatever it
            believes). RL starts from an instruct model that answers when it thinks it knows,
            not from one that answers at random; with a belief-blind start, early random
            answers cost more than successes earn at a large user-involvement weight and
            training tips into never answering before it can learn when to answer.
    """

    def __init__(
        self,
        hidden_size: int = 64,
        initial_action_probs: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
        answer_confidence_logit: float = 0.0,
    ) -> None:
        super().__init__()
        self.base = nn.Linear(N_FEATURES, len(ACTIONS))
        self.layers = nn.Sequential(
            nn.Linear(N_FEATURES, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, len(ACTIONS)),
        )
        # The MLP starts near zero, so the policy starts at the base model's tendencies and
        # learns from there what each state calls for.
        last = self.layers[-1]
        assert isinstance(last, nn.Linear)
        nn.init.normal_(last.weight, std=0.01)
        nn.init.zeros_(last.bias)
        answer = ACTIONS.index("answer")
        with torch.no_grad():
            self.base.weight.zero_()
            self.base.weight[answer, FEATURE_NAMES.index("confidence")] = answer_confidence_logit
            self.base.bias.copy_(torch.log(torch.tensor(list(initial_action_probs))))
            self.base.bias[answer] -= answer_confidence_logit / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.base(x) + self.layers(x)
        return logits
