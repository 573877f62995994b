"""Every driver proposes valid parameters, reproducibly from its seed (no training involved)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bao.records import ATTR_GENERATION
from sweep.algorithms import ALGORITHMS, algorithm_names
from sweep.config import SweepConfig
from sweep.drivers import make_driver, pop_waiting
from sweep.loading import check_against_backend
from sweep.storage import SweepStudy, open_study

# Conformance: every registered algorithm (sweep/algorithms.py) is run through these tests.
# A botorch proposal fits a Gaussian process per objective: seconds each, the slowest case.
DRIVERS = [
    pytest.param(*key, marks=pytest.mark.slow) if key == ("optuna", "botorch") else key
    for key in ALGORITHMS
]


def _config(library: str, algorithm: str, seed: int = 3, **driver: Any) -> SweepConfig:
    settings: dict[str, Any] = {"library": library, "algorithm": algorithm, "seed": seed}
    settings["n_trials"] = driver.pop("n_trials", 10)
    if algorithm in ("nsga2", "nsga3", "moead"):
        settings["batch_size"] = 4
    if algorithm == "grid":
        settings["grid_points"] = 3
    if algorithm in ("tpe", "gp", "botorch"):
        settings["n_startup_trials"] = 3
    return SweepConfig.model_validate(
        {
            "name": f"{library}-{algorithm}",
            "backend": {"kind": "command", "argv": ["true"], "metrics": ["f1", "f2"]},
            "search_space": {
                "x": {"type": "float", "low": 0.0, "high": 1.0},
                "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                "k": {"type": "int", "low": 1, "high": 5},
                "credit": {"type": "categorical", "choices": ["r2g", "equalized", "em"]},
            },
            "objectives": [  # thresholds: the reference point botorch aims at
                {"metric": "f1", "direction": "minimize", "threshold": 2.0},
                {"metric": "f2", "direction": "maximize", "threshold": -1.0},
            ],
            "driver": settings | driver,
        }
    )


def _objective(params: dict[str, Any]) -> list[float]:
    x = params["x"]
    bonus = {"r2g": 0.0, "equalized": 0.1, "em": 0.2}[params["credit"]]
    return [x + 0.01 * params["k"], math.sqrt(x) - bonus + math.log10(params["lr"]) / 100]


def _drive(
    config: SweepConfig, tmp_path: Path, n: int, *, restart: bool = False
) -> list[dict[str, Any]]:
    """The runner's claim/tell cycle, one trial at a time, with a synthetic objective;
    ``restart`` makes a new driver for every trial, as a sweep restarted each time would."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / f"{config.name}.yaml"
    source.write_text("")
    loaded = check_against_backend(config, source)
    driver = make_driver(config)
    study = open_study(loaded, tmp_path, driver.sampler())
    proposals = []
    for _ in range(n):
        trial = pop_waiting(study, config)
        if trial is None:
            budget = config.driver.n_trials - len(study.trials())
            if restart:
                driver = make_driver(config)
            trial = driver.propose(study, budget, leader=True)
        assert trial is not None
        proposals.append(dict(trial.params))
        study.study.tell(trial, _objective(trial.params))
    return proposals


@pytest.mark.parametrize(("library", "algorithm"), DRIVERS)
def test_same_seed_same_proposals(library: str, algorithm: str, tmp_path: Path) -> None:
    first = _drive(_config(library, algorithm), tmp_path / "a", 10)
    second = _drive(_config(library, algorithm), tmp_path / "b", 10)
    assert first == second
    other = _drive(_config(library, algorithm, seed=4), tmp_path / "c", 10)
    if algorithm != "grid":  # a grid visits the same points, only the order changes
        assert other != first
    for params in first:
        assert 0.0 <= params["x"] <= 1.0
        assert 1e-4 <= params["lr"] <= 1e-1
        assert params["k"] in range(1, 6)
        assert params["credit"] in ("r2g", "equalized", "em")


@pytest.mark.parametrize("algorithm", algorithm_names("pymoo"))
def test_pymoo_generations_are_enqueued_and_replayed(algorithm: str, tmp_path: Path) -> None:
    config = _config("pymoo", algorithm)
    proposals = _drive(config, tmp_path / "a", 10)
    # A restarted driver rebuilds its state from the storage alone: same proposals.
    assert _drive(config, tmp_path / "r", 10, restart=True) == proposals
    source = tmp_path / "b.yaml"
    source.write_text("")
    loaded = check_against_backend(config, source)
    study: SweepStudy = open_study(loaded, tmp_path / "a", make_driver(config).sampler())
    generations = [t.user_attrs[ATTR_GENERATION] for t in study.trials()]
    assert generations == sorted(generations)
    assert generations[-1] >= 1  # the second generation came from pymoo's tell
    assert make_driver(config).propose(study, 0, leader=True) is None  # no budget, no trial


def test_workers_never_propose_pymoo_generations(tmp_path: Path) -> None:
    config = _config("pymoo", "nsga2")
    source = tmp_path / "c.yaml"
    source.write_text("")
    loaded = check_against_backend(config, source)
    driver = make_driver(config)
    study = open_study(loaded, tmp_path, driver.sampler())
    assert driver.propose(study, 10, leader=False) is None
    assert study.trials() == []
