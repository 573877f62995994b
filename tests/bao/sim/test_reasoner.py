"""The hypothesis reasoner: exact filtering when infallible, soft evidence, its belief and its
slips when fallible; the truth is never filtered out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bao.expressions import RuleEvaluationError, evaluate, parse_rule
from bao.sim.reasoner import (
    INFALLIBLE,
    REFERENCE_CAPACITY,
    SLIP_OFFSETS,
    Fallibility,
    HypothesisLibrary,
    Reasoner,
)
from bao.tasks import generate_function_tasks

PROBES = np.array(
    [[1, 2, 3, 4], [2, 2, 2, 2], [5, 1, 3, 7], [3, 3, 1, 9], [10, 4, 6, 2], [7, 7, 2, 1]],
    dtype=float,
)
RULES = [
    "a + b + c + d",
    "d + c + b + a",  # the same function as the first: merged
    "a * b - c + d",
    "a * (b - c) + d",
    "(a + b) ** 2 - c * d",
    "a / (b - c) + d",  # errors where b == c
    "a - b - c - d",
    "b ** a - c - d",
]


def library() -> HypothesisLibrary:
    return HypothesisLibrary.from_rules([parse_rule(r) for r in RULES], PROBES)


def value_at(rule: str, point: list[float]) -> float | None:
    try:
        return round(evaluate(parse_rule(rule), point), 4)
    except RuleEvaluationError:
        return None


def reasoner(
    lib: HypothesisLibrary,
    test_case: tuple[int, int, int, int],
    capacity: int = 64,
    fallibility: Fallibility = INFALLIBLE,
    seed: int = 0,
) -> Reasoner:
    values, errors = lib.test_values(np.array([test_case], dtype=float))
    return Reasoner(
        lib,
        np.where(errors, np.nan, values)[:, 0],
        capacity=capacity,
        rng=np.random.default_rng(seed),
        max_turns=16,
        test_case=test_case,
        fallibility=fallibility,
    )


def test_library_merges_equal_functions_and_weights_them() -> None:
    lib = library()
    assert lib.size == len(RULES) - 1
    assert lib.weights[0] == pytest.approx(2 / len(RULES))
    assert lib.weights.sum() == pytest.approx(1.0)
    division = next(i for i in range(lib.size) if "/" in lib.describe(i))
    assert lib.probe_errors[division, 1]  # b == c at (2, 2, 2, 2)


@pytest.mark.parametrize("truth", RULES)
def test_filtering_is_exact_and_keeps_the_truth(truth: str) -> None:
    lib = library()
    agent = reasoner(lib, (9, 8, 7, 6))
    agent.think()
    assert len(agent.pool) == lib.size  # capacity 64 examines the whole library at once
    for probe in range(len(PROBES)):
        agent.observe_query(probe, value_at(truth, PROBES[probe].tolist()))
        # Exactly the hypotheses that reproduce every observation so far remain.
        expected = {
            i
            for i in range(lib.size)
            if all(
                value_at(lib.describe(i), PROBES[p].tolist()) == value_at(truth, PROBES[p].tolist())
                for p in range(probe + 1)
            )
        }
        assert set(agent.pool.tolist()) == expected
        assert any(lib.describe(i) in (truth, "a + b + c + d") for i in agent.pool.tolist())


@pytest.mark.parametrize("truth", RULES)
def test_candidates_examined_after_observations_are_filtered_the_same_way(truth: str) -> None:
    lib = library()
    late = reasoner(lib, (9, 8, 7, 6))
    for probe in range(len(PROBES)):
        late.observe_query(probe, value_at(truth, PROBES[probe].tolist()))
    late.think()  # every candidate is examined against all observations at once
    expected = {
        i
        for i in range(lib.size)
        if all(
            value_at(lib.describe(i), point) == value_at(truth, point) for point in PROBES.tolist()
        )
    }
    assert set(late.pool.tolist()) == expected


def test_errors_and_nan_results_are_different_hypotheses() -> None:
    # At the first probe "a * b - c * d" is inf - inf = nan (a result, not an error); at the
    # second "a / (b - c) + d" divides by zero (an error).
    probes = np.array([[1e308, 10, 1e308, 10], [1, 2, 2, 3]], dtype=float)
    rules = [parse_rule("a * b - c * d"), parse_rule("a / (b - c) + d"), parse_rule("a + b")]
    lib = HypothesisLibrary.from_rules(rules, probes)
    assert lib.size == 3
    assert math.isnan(lib.probe_values[0, 0])
    assert not lib.probe_errors[0, 0]
    agent = reasoner(lib, (9, 8, 7, 6))
    agent.observe_query(1, None)  # an error at (1, 2, 2, 3): only "a / (b - c) + d" errors
    agent.think()
    assert [lib.describe(i) for i in agent.pool.tolist()] == ["a / (b - c) + d"]


def test_wrong_answers_remove_their_predictions() -> None:
    lib = library()
    agent = reasoner(lib, (9, 8, 7, 6))
    agent.think()
    value, confidence = agent.prediction()
    assert value is not None
    assert 0 < confidence <= 1
    agent.observe_wrong_answer(value)
    assert all(abs(agent.test_values[i] - value) > 1e-6 for i in agent.pool.tolist())
    # Hypotheses examined later are checked against the wrong answer too.
    fresh = reasoner(lib, (9, 8, 7, 6), capacity=1)
    fresh.observe_wrong_answer(value)
    for _ in range(lib.size):
        fresh.think()
    assert all(abs(fresh.test_values[i] - value) > 1e-6 for i in fresh.pool.tolist())


def test_capacity_bounds_examination_and_pool() -> None:
    lib = library()
    agent = reasoner(lib, (9, 8, 7, 6), capacity=2)
    agent.think()
    assert len(agent.pool) == 2
    agent.think()
    assert len(agent.pool) == 2  # full: the two most plausible of the four examined stay


# ------------------------------------------------------------------ a fallible reasoner

# Three hypotheses with equal prior weight; at the test case (9, 8, 7, 6) they predict 30,
# 71 and 15 (a + b + c + d, a * b - c + d, a * (b - c) + d).
THREE = ["a + b + c + d", "a * b - c + d", "a * (b - c) + d"]
TEST = (9, 8, 7, 6)


def three() -> HypothesisLibrary:
    return HypothesisLibrary.from_rules([parse_rule(r) for r in THREE], PROBES)


def fallible(mismatch: float = 0.5, slip: float = 0.0, halving: float = 1.0) -> Fallibility:
    return Fallibility(mismatch_likelihood=mismatch, answer_slip=slip, slip_halving_queries=halving)


def test_a_contradicting_result_lowers_a_hypothesis_by_the_mismatch_likelihood() -> None:
    agent = reasoner(three(), TEST, capacity=REFERENCE_CAPACITY, fallibility=fallible(0.5))
    agent.think()  # all three held, nothing unexamined: beliefs 1/3 each
    belief = agent.belief()
    assert belief.confidence == pytest.approx(1 / 3)
    assert belief.unexplored == 0.0
    # At (1, 2, 3, 4): 10, 5 and 3: a result of 10 contradicts the second and the third,
    # whose weights halve: beliefs 1 : 0.5 : 0.5.
    agent.observe_query(0, 10.0)
    belief = agent.belief()
    assert belief.value == 30.0
    assert belief.confidence == pytest.approx(0.5)
    assert belief.runner_up == pytest.approx(0.25)
    # Three more results that only the first reproduces: 1 : 0.0625 : 0.0625.
    for probe in (1, 2, 3):
        agent.observe_query(probe, value_at(THREE[0], PROBES[probe].tolist()))
    assert agent.belief().confidence == pytest.approx(1 / 1.125)
    assert sorted(agent.pool.tolist()) == [0, 1, 2]  # contradicted, yet still held


def test_a_larger_reasoner_reads_more_sharply_and_slips_less() -> None:
    small = reasoner(
        three(), TEST, capacity=REFERENCE_CAPACITY // 4, fallibility=fallible(0.2, 0.2)
    )
    large = reasoner(three(), TEST, capacity=REFERENCE_CAPACITY * 4, fallibility=fallible(0.2, 0.2))
    assert math.exp(small.log_mismatch) == pytest.approx(0.4)  # 0.2 * sqrt(4)
    assert math.exp(large.log_mismatch) == pytest.approx(0.1)  # 0.2 / sqrt(4)
    assert small.slip_chance() == pytest.approx(0.4)
    assert large.slip_chance() == pytest.approx(0.1)


def test_unexamined_hypotheses_keep_a_share_of_the_belief() -> None:
    lib = three()
    agent = reasoner(lib, TEST, capacity=1, fallibility=fallible(0.5))
    assert agent.belief().unexplored == 1.0  # nothing thought of yet
    agent.think()
    held = agent.pool.tolist()
    assert len(held) == 1
    # One third examined and held; two thirds of the prior not yet examined.
    assert agent.belief().confidence == pytest.approx(1 / 3)
    assert agent.belief().unexplored == pytest.approx(2 / 3)
    # A result the held hypothesis reproduces discounts the unexamined mass as a typical
    # wrong hypothesis is discounted: by 0.5 * sqrt(48 / 1), capped at 0.9, at capacity 1.
    agent.observe_query(0, value_at(lib.describe(held[0]), PROBES[0].tolist()))
    assert agent.belief().confidence == pytest.approx((1 / 3) / (1 / 3 + 2 / 3 * 0.9))


def test_slips_happen_at_their_rate_and_halve_with_evidence() -> None:
    lib = three()
    agent = reasoner(lib, TEST, capacity=REFERENCE_CAPACITY, fallibility=fallible(0.0, 0.4, 2.0))
    agent.think()
    agent.observe_query(0, 10.0)  # only a + b + c + d (30 at the test case) stays
    assert agent.slip_chance() == pytest.approx(0.4 * 0.5**0.5)
    agent.observe_query(1, 8.0)
    assert agent.slip_chance() == pytest.approx(0.2)  # two results: halved
    answers = [agent.answer() for _ in range(4000)]
    slipped = [a for a in answers if a != 30.0]
    assert len(slipped) / len(answers) == pytest.approx(0.2, abs=0.02)
    assert {a - 30.0 for a in slipped if a is not None} == set(SLIP_OFFSETS)


def test_a_retry_after_a_slip_keeps_the_hypothesis() -> None:
    lib = three()
    agent = reasoner(lib, TEST, capacity=REFERENCE_CAPACITY, fallibility=fallible(0.5, 0.9))
    agent.think()
    agent.observe_query(0, 10.0)
    answered = next(a for a in iter(agent.answer, None) if a != 30.0)  # a slip
    agent.observe_wrong_answer(answered)
    # No hypothesis predicted the slipped value (here; a rival that did would be ruled out):
    # the belief is unchanged, the retry answers the same value again.
    assert agent.belief().value == 30.0
    assert agent.belief().confidence == pytest.approx(0.5)
    # A wrong answer of the believed value itself rules its hypothesis out; the two rivals
    # tie, and the tie goes to the lower value.
    agent.observe_wrong_answer(30.0)
    assert agent.belief().value == 15.0
    assert agent.belief().confidence == pytest.approx(0.5)
    assert 0 not in agent.pool.tolist()


def test_no_belief_goes_to_an_infinite_value() -> None:
    # At (10, 4, 6, 2) the first rule overflows to inf (a result, not an error): it cannot be
    # the expected result, which is always finite, so the reasoner believes the other one.
    rules = [parse_rule("(a ** 300) * (b ** 300)"), parse_rule("a + b")]
    lib = HypothesisLibrary.from_rules(rules, PROBES)
    agent = reasoner(lib, (10, 4, 6, 2), capacity=REFERENCE_CAPACITY, fallibility=fallible(0.5))
    agent.think()
    assert math.isinf(agent.test_values[0])
    belief = agent.belief()
    assert belief.value == 14.0
    assert belief.confidence == pytest.approx(0.5)  # the inf hypothesis still holds weight
    assert belief.runner_up == 0.0


def test_queries_test_the_leader_where_alternatives_disagree_and_avoid_the_test_case() -> None:
    lib = library()
    agent = reasoner(lib, (1, 2, 3, 4))  # probe 0 is the test case
    agent.think()
    probe = agent.choose_query()
    assert probe is not None
    assert probe != 0
    # Every hypothesis is within a factor 20 of the best prior weight (2/8 against 1/8): the
    # chosen probe is one where the most of them show another value than the leader (the
    # heaviest, "a + b + c + d"); an error counts as a value of its own.
    leader = int(np.argmax(lib.weights))

    def shown(i: int, p: int) -> object:
        return "err" if lib.probe_errors[i, p] else float(lib.probe_values[i, p])

    def disagreeing(p: int) -> int:
        return sum(shown(i, p) != shown(leader, p) for i in range(lib.size))

    assert disagreeing(probe) == max(disagreeing(p) for p in range(1, len(PROBES)))
    agent.observe_query(probe, value_at(RULES[0], PROBES[probe].tolist()))
    assert agent.choose_query() not in (0, probe)  # a probe is queried once


def test_generated_library_covers_most_generated_tasks() -> None:
    lib = HypothesisLibrary.build(size=5000, seed=1, n_probes=16)
    tasks = generate_function_tasks(100, seed=99)
    values, errors = lib.test_values(np.array([t.test_case for t in tasks], dtype=float))
    covered = np.abs(np.where(errors, np.nan, values) - [t.expected_result for t in tasks]) <= 1e-6
    assert 0.3 < covered.any(axis=0).mean() < 1.0  # the truth is findable, not given


INFINITE = (
    "(a ** 300) * (b ** 300)",  # inf at [10, 4, 6, 2]: a product overflows without an error
    "(a ** 300) * (b ** 300) - (c ** 300) * (d ** 300)",  # inf - inf: nan, not an error
)


def _float_rule(lib: HypothesisLibrary, probe: int, value: float | None) -> np.ndarray:
    """The matching rule written with floats and masks (what the codes must reproduce)."""
    errors = lib.probe_errors[:, probe]
    values = lib.probe_values[:, probe]
    if value is None:
        return errors
    same = (values == value) | (np.isnan(values) & math.isnan(value))
    return ~errors & same


def test_observation_codes_match_exactly_the_float_rule() -> None:
    # Generated rules give every case at the probes: errors, nan and infinite results,
    # -0.0 beside 0.0; observations are every shown value plus ones no function shows.
    rules = [task.expression for task in generate_function_tasks(400, seed=5)]
    rules += [
        parse_rule(r)
        for r in ("a / (b - b)", "(a - a) * (0 - 1)", "a ** 400 - b ** 400", *INFINITE)
    ]
    lib = HypothesisLibrary.from_rules(rules, PROBES)
    for probe in range(len(PROBES)):
        shown = {float(v) for v in lib.probe_values[:, probe]}
        for value in [*shown, None, math.nan, -0.0, 0.0, 12345.6789, math.inf, -math.inf]:
            matches = lib.probe_codes[:, probe] == lib.observation_code(probe, value)
            np.testing.assert_array_equal(matches, _float_rule(lib, probe, value))


def test_split_codes_count_the_distinct_predictions() -> None:
    rules = [task.expression for task in generate_function_tasks(400, seed=6)]
    lib = HypothesisLibrary.from_rules([*rules, *(parse_rule(r) for r in INFINITE)], PROBES)
    rng = np.random.default_rng(0)
    for _ in range(50):
        pool = rng.choice(lib.size, size=int(rng.integers(2, 40)), replace=False)
        for probe in range(len(PROBES)):
            values = np.where(lib.probe_errors[pool, probe], np.inf, lib.probe_values[pool, probe])
            assert len(np.unique(lib.split_codes[pool, probe])) == len(np.unique(values))
