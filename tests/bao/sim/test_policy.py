"""The behaviour policy: its features and the base model's tendencies it starts from."""

from __future__ import annotations

import math

import pytest
import torch

from bao.sim.policy import ACTIONS, FEATURE_NAMES, N_FEATURES, PolicyNet, features

PRIOR = (0.55, 0.15, 0.25, 0.05)


def state(confidence: float, test_known: bool = True) -> list[float]:
    return features(
        turn=3,
        max_turns=16,
        test_known=test_known,
        confidence=confidence,
        runner_up=0.1,
        unexplored=0.2,
        has_prediction=True,
        pool_size=10,
        capacity=48,
        wrong_answers=0,
        last_was_answer=False,
        n_queries=2,
        probes_left=20,
        last_event="query_result",
    )


def test_features_are_named_and_bounded() -> None:
    vector = state(0.7)
    assert len(vector) == N_FEATURES == len(FEATURE_NAMES) == 19
    assert vector[FEATURE_NAMES.index("confidence")] == 0.7
    assert vector[FEATURE_NAMES.index("runner_up")] == 0.1
    assert vector[FEATURE_NAMES.index("last_event_query_result")] == 1.0
    assert all(0.0 <= v <= 1.0 for v in vector)
    # Before the test case is known the agent has no belief about the test value.
    assert state(0.7, test_known=False)[FEATURE_NAMES.index("confidence")] == 0.0


@pytest.mark.parametrize("confidence", [0.0, 0.5, 1.0])
def test_the_base_model_answers_more_when_it_believes_its_value(confidence: float) -> None:
    torch.manual_seed(0)
    policy = PolicyNet(64, PRIOR, answer_confidence_logit=4.0)
    with torch.no_grad():
        probs = torch.softmax(policy(torch.tensor([state(confidence)])), dim=-1)[0].tolist()
    # Written out: the prior's logits, the answer logit moved by 4 * (confidence - 0.5).
    logits = [math.log(p) for p in PRIOR]
    logits[ACTIONS.index("answer")] += 4.0 * (confidence - 0.5)
    norm = sum(math.exp(v) for v in logits)
    expected = [math.exp(v) / norm for v in logits]
    # The MLP starts near zero (last layer std 0.01), so only a small deviation remains.
    assert probs == pytest.approx(expected, abs=0.01)


def test_a_belief_blind_base_model_keeps_its_prior_everywhere() -> None:
    torch.manual_seed(0)
    policy = PolicyNet(64, PRIOR, answer_confidence_logit=0.0)
    with torch.no_grad():
        for confidence in (0.0, 1.0):
            probs = torch.softmax(policy(torch.tensor([state(confidence)])), dim=-1)[0]
            assert probs.tolist() == pytest.approx(PRIOR, abs=0.01)
