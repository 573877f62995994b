"""Fronts and hypervolume against independent computations on random fronts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analysis.pareto import (
    AnalysisError,
    hypervolume,
    hypervolume_contributions,
    hypervolume_history,
    hypervolume_subset,
    pareto_mask,
    pareto_ranks,
    reference_point,
)

DIRECTIONS = {
    2: ["maximize", "minimize"],
    3: ["maximize", "minimize", "minimize"],
}


def brute_force_mask(values: np.ndarray, directions: list[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    losses = values * signs
    n = len(values)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if i != j and (losses[j] <= losses[i]).all() and (losses[j] < losses[i]).any():
                mask[i] = False
    return mask


def inclusion_exclusion(values: np.ndarray, directions: list[str], ref: list[float]) -> float:
    """Exact hypervolume of a small set: the union of the boxes [point, ref] (minimised),
    by inclusion-exclusion over every subset. Independent of moocore."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    losses = values * signs
    bound = np.asarray(ref, float) * signs
    boxes = [p for p in losses if (p < bound).all()]
    total = 0.0
    for size in range(1, len(boxes) + 1):
        for subset in itertools.combinations(boxes, size):
            corner = np.max(subset, axis=0)
            total += (-1) ** (size + 1) * float(np.prod(bound - corner))
    return total


def optuna_hypervolume(values: np.ndarray, directions: list[str], ref: list[float]) -> float:
    """Optuna's own WFG implementation (no moocore inside)."""
    from optuna._hypervolume import compute_hypervolume

    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    losses = values * signs
    bound = np.asarray(ref, float) * signs
    inside = losses[(losses < bound).all(axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(compute_hypervolume(inside, bound))


def random_values(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    return rng.random((n, m)).round(2)  # rounding makes ties and duplicates common


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("case", range(25))
def test_pareto_mask_equals_brute_force(m: int, case: int) -> None:
    rng = np.random.default_rng(case)
    values = random_values(rng, int(rng.integers(1, 40)), m)
    directions = DIRECTIONS[m]
    assert (pareto_mask(values, directions) == brute_force_mask(values, directions)).all()


def test_pareto_mask_skips_unusable_rows() -> None:
    values = np.array([[0.9, 0.1], [0.95, 0.05], [math.nan, 0.0], [1.0, 0.0]])
    feasible = np.array([True, True, True, False])
    mask = pareto_mask(values, ["maximize", "minimize"], feasible)
    # Row 3 would dominate everything but is infeasible; row 2 has no value.
    assert mask.tolist() == [False, True, False, False]
    assert pareto_ranks(values, ["maximize", "minimize"], feasible).tolist() == [1, 0, -1, -1]


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("case", range(15))
def test_pareto_ranks_equal_peeling(m: int, case: int) -> None:
    rng = np.random.default_rng(100 + case)
    values = random_values(rng, 30, m)
    directions = DIRECTIONS[m]
    expected = np.full(len(values), -1)
    remaining = np.arange(len(values))
    rank = 0
    while remaining.size:
        front = brute_force_mask(values[remaining], directions)
        expected[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    assert (pareto_ranks(values, directions) == expected).all()


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("case", range(20))
def test_hypervolume_equals_independent_computations(m: int, case: int) -> None:
    rng = np.random.default_rng(200 + case)
    directions = DIRECTIONS[m]
    ref = [0.0] + [1.0] * (m - 1)  # worst: 0 for the maximised, 1 for the minimised
    small = random_values(rng, int(rng.integers(1, 10)), m)
    assert hypervolume(small, directions, ref) == pytest.approx(
        inclusion_exclusion(small, directions, ref), abs=1e-12
    )
    large = rng.random((200, m))
    assert hypervolume(large, directions, ref) == pytest.approx(
        optuna_hypervolume(large, directions, ref), rel=1e-9
    )


def test_hypervolume_known_value_and_outside_points() -> None:
    values = np.array([[0.5, 0.5], [0.8, 0.9], [-0.1, 0.1], [0.3, 1.5]])
    # Only the first two improve on the reference (0, 1); their union is 0.25 + 0.08 - 0.05.
    assert hypervolume(values, ["maximize", "minimize"], [0.0, 1.0]) == pytest.approx(0.28)
    assert hypervolume(np.empty((0, 2)), ["maximize", "minimize"], [0.0, 1.0]) == 0.0


@pytest.mark.parametrize("case", range(10))
def test_contributions_are_the_loss_without_each_point(case: int) -> None:
    rng = np.random.default_rng(300 + case)
    m = 2 + case % 2
    directions = DIRECTIONS[m]
    ref = [0.0] + [1.0] * (m - 1)
    values = random_values(rng, 12, m)
    total = inclusion_exclusion(values, directions, ref)
    contributions = hypervolume_contributions(values, directions, ref)
    for i in range(len(values)):
        without = np.delete(values, i, axis=0)
        duplicated = any((values[j] == values[i]).all() for j in range(len(values)) if j != i)
        expected = 0.0 if duplicated else total - inclusion_exclusion(without, directions, ref)
        assert contributions[i] == pytest.approx(expected, abs=1e-12)


def test_history_is_the_hypervolume_of_every_prefix() -> None:
    rng = np.random.default_rng(7)
    values = rng.random((40, 2))
    directions = ["maximize", "minimize"]
    feasible = rng.random(40) > 0.2
    history = hypervolume_history(values, directions, [0.0, 1.0], feasible)
    for i in range(len(values)):
        prefix = hypervolume(values[: i + 1], directions, [0.0, 1.0], feasible[: i + 1])
        assert history[i] == pytest.approx(prefix, abs=1e-12)
    assert (np.diff(history) >= -1e-15).all()


def test_reference_point_prefers_thresholds_then_bounds_then_nadir() -> None:
    metrics = ["eval/pass_at_u_3", "eval/user_involvement_rate", "train/seconds"]
    directions = ["maximize", "minimize", "minimize"]
    values = np.array([[0.5, 0.2, 10.0], [0.6, 0.3, 30.0]])
    point = reference_point(metrics, directions, [0.2, None, None], values)
    assert point.point == pytest.approx((0.2, 1.0, 32.0))  # 30 + 10% of the range 20
    assert point.sources == ("threshold", "bound", "nadir")
    assert not point.governed
    governed = reference_point(metrics[:2], directions[:2])
    assert governed.point == (0.0, 1.0)
    assert governed.governed
    assert governed.version == reference_point(metrics[:2], directions[:2]).version
    assert governed.version != reference_point(metrics[:2], directions[:2], [0.1, None]).version
    with pytest.raises(AnalysisError, match="threshold"):
        reference_point(["train/seconds", "eval/score"], ["minimize", "maximize"])


@pytest.mark.parametrize("case", range(8))
def test_hypervolume_subset_is_the_best_subset(case: int) -> None:
    rng = np.random.default_rng(400 + case)
    directions = ["maximize", "minimize"]
    # Points on a curved front, so every subset differs.
    x = np.sort(rng.random(9))
    values = np.column_stack([x, x**2 + rng.random(9) * 0.01])
    mask = pareto_mask(values, directions)
    size = 3
    best = max(
        itertools.combinations(np.flatnonzero(mask), min(size, int(mask.sum()))),
        key=lambda s: hypervolume(values[list(s)], directions, [0.0, 1.0]),
    )
    chosen = hypervolume_subset(values, directions, [0.0, 1.0], size)
    assert hypervolume(values[chosen], directions, [0.0, 1.0]) == pytest.approx(
        hypervolume(values[list(best)], directions, [0.0, 1.0])
    )
    greedy = hypervolume_subset(values, directions, [0.0, 1.0], size, exact_limit=0)
    assert len(greedy) == len(chosen)
    ratio = hypervolume(values[greedy], directions, [0.0, 1.0]) / hypervolume(
        values[chosen], directions, [0.0, 1.0]
    )
    assert ratio >= 1 - 1 / math.e


def test_bad_shapes_and_directions_are_one_line_errors() -> None:
    with pytest.raises(AnalysisError, match="one column per direction"):
        pareto_mask(np.zeros((3, 3)), ["maximize", "minimize"])
    with pytest.raises(AnalysisError, match="'maximize' or 'minimize'"):
        pareto_mask(np.zeros((3, 2)), ["max", "minimize"])
