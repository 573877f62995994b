"""The botorch driver (sweep/bayes.py): constraints, observed noise, running trials, the
reference point; and the unit box it searches (sweep.space.encode)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from pydantic import ValidationError

from bao.records import ATTR_STDERR
from sweep.algorithms import algorithm
from sweep.bayes import MIN_NOISE_VARIANCE, training_data
from sweep.config import SweepConfig
from sweep.space import decode, distributions, encode

SPACE: dict[str, Any] = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "k": {"type": "int", "low": 1, "high": 5},
    "credit": {"type": "categorical", "choices": ["r2g", "equalized", "em"]},
}
LIMIT = "f3 <= 0.3"


def _config(*, constraints: list[str] | None = None, seeds_per_trial: int = 1) -> SweepConfig:
    return SweepConfig.model_validate(
        {
            "name": "bayes",
            "backend": {"kind": "command", "argv": ["true"]},
            "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "objectives": [
                {"metric": "f1", "direction": "maximize", "threshold": 0.0},
                {"metric": "f2", "direction": "minimize", "threshold": 1.5},
            ],
            "constraints": constraints or [],
            "seeds_per_trial": seeds_per_trial,
            "driver": {"algorithm": "botorch", "n_startup_trials": 5, "seed": 1},
        }
    )


def _study(config: SweepConfig) -> optuna.Study:
    sampler = algorithm("optuna", "botorch").build(config, config.driver_seed)
    directions = [objective.direction for objective in config.objectives]
    return optuna.create_study(sampler=sampler, directions=directions)


def _tell(study: optuna.Study, trial: optuna.Trial, *, constrained: bool) -> None:
    x = trial.params["x"]
    if constrained:
        trial.set_constraint(LIMIT, x - 0.3)  # the "f3 <= 0.3" of the config, f3 = x
    # Every point is on the front: more x buys f1 at the price of f2.
    study.tell(trial, [x, x * x])


def test_encode_is_the_inverse_of_decode() -> None:
    config = SweepConfig.model_validate(
        {
            "name": "space",
            "backend": {"kind": "command", "argv": ["true"]},
            "search_space": SPACE,
            "objectives": [
                {"metric": "f1", "direction": "minimize"},
                {"metric": "f2", "direction": "maximize"},
            ],
        }
    )
    space = config.search_space
    params = {"x": 0.25, "lr": 1e-3, "k": 4, "credit": "em"}
    point = encode(space, params)
    assert point[0] == pytest.approx(0.25)
    assert point[1] == pytest.approx(1 / 3)  # 1e-3 is a third of the way from 1e-4 to 1e-1
    assert point[2] == pytest.approx(0.75)
    assert point[3] == pytest.approx(5 / 6)  # the middle of the last of three bins
    decoded = decode(space, point)
    assert decoded["lr"] == pytest.approx(1e-3)  # exp(log(x)) is x up to rounding
    assert {**decoded, "lr": 1e-3} == params
    assert set(distributions(space)) == set(params)


def test_botorch_needs_a_threshold_on_every_objective() -> None:
    with pytest.raises(ValidationError, match=r"objectives\[1\]\.threshold"):
        SweepConfig.model_validate(
            {
                "name": "loose",
                "backend": {"kind": "command", "argv": ["true"]},
                "objectives": [
                    {"metric": "f1", "direction": "maximize", "threshold": 0.0},
                    {"metric": "f2", "direction": "minimize"},
                ],
                "driver": {"algorithm": "botorch"},
            }
        )


@pytest.mark.slow
def test_proposals_move_into_the_feasible_region() -> None:
    """After the random start, the model is told that x > 0.3 violates the constraint:
    most proposals then keep to x <= 0.3 (random search would put 70% above it)."""
    study = _study(_config(constraints=[LIMIT]))
    proposals = []
    for _ in range(9):
        trial = study.ask()
        proposals.append(trial.suggest_float("x", 0.0, 1.0))
        _tell(study, trial, constrained=True)
    modelled = proposals[5:]
    assert sum(x <= 0.35 for x in modelled) >= 3, modelled


@pytest.mark.slow
def test_a_running_trial_is_a_pending_point() -> None:
    """Two proposals asked before either is told: with the same data and the same seed the
    second would repeat the first, unless the first, still running, is pending."""
    study = _study(_config())
    for _ in range(5):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        _tell(study, trial, constrained=False)
    first = study.ask()
    second = study.ask()
    a, b = first.suggest_float("x", 0.0, 1.0), second.suggest_float("x", 0.0, 1.0)
    assert abs(a - b) > 1e-3, (a, b)


def test_the_standard_errors_over_seeds_are_the_observed_noise() -> None:
    config = _config(constraints=[LIMIT], seeds_per_trial=2)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for x, errors in ((0.2, {"f1": 0.1, "f2": 0.0, "f3": 0.02}), (0.6, {"f1": 0.2, "f2": 0.3})):
        study.enqueue_trial({"x": x})
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr(ATTR_STDERR, errors)
        trial.set_constraint(LIMIT, x - 0.3)
        study.tell(trial, [x, x * x])
    objectives = [(o.metric, o.direction, o.threshold or 0.0) for o in config.objectives]
    complete = study.get_trials(deepcopy=False)
    columns, variances = training_data(objectives, [(LIMIT, "f3")], complete)
    values = [t.params["x"] for t in complete]
    # Larger is better in every model column: f2 (minimised) is negated.
    assert values == [0.2, 0.6]
    assert columns[:, 0].tolist() == values
    assert columns[:, 1].tolist() == [-v * v for v in values]
    assert columns[:, 2].tolist() == pytest.approx([v - 0.3 for v in values])
    # The second trial has no standard error for f3: no observed noise for anyone.
    assert variances is None
    columns, variances = training_data(objectives, [], complete[:1])
    assert variances is not None
    assert variances[0].tolist() == pytest.approx([0.01, MIN_NOISE_VARIANCE])


def test_a_trial_without_its_constraint_value_is_refused() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, [0.5, 0.25])
    with pytest.raises(ValueError, match=LIMIT):
        training_data(
            [("f1", "maximize", 0.0), ("f2", "minimize", 1.5)],
            [(LIMIT, "f3")],
            study.get_trials(deepcopy=False),
        )
