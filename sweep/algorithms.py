"""The algorithms a sweep can be driven by: one registry entry each.

An entry says what the rest of the sweep needs to know about an algorithm: its library
(``optuna``: a sampler any process samples from; ``pymoo``: an ask/tell algorithm the leader
drives generation by generation), whether it is population-based (then ``batch_size`` sets
its population), whether it takes constraints, and a factory. The config's checks, the
drivers and the docs' list all read this registry: adding an algorithm is one
:func:`register` call here (the conformance tests in tests/sweep/test_drivers.py and
tests/sweep/test_sweep_sim.py then run it).

Factories import their library when called, so reading the registry (to check a config)
imports neither Optuna's samplers nor pymoo.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sweep.params import CategoricalParam, FloatParam, IntParam

Library = Literal["optuna", "pymoo"]


class DriverSettings(Protocol):
    """What a factory reads of ``driver`` (:class:`sweep.config.DriverConfig` is one)."""

    @property
    def n_startup_trials(self) -> int: ...
    @property
    def population(self) -> int: ...
    @property
    def grid_points(self) -> int: ...


class ObjectiveSettings(Protocol):
    """What a factory reads of an objective (:class:`sweep.config.Objective` is one)."""

    @property
    def metric(self) -> str: ...
    @property
    def direction(self) -> str: ...
    @property
    def threshold(self) -> float | None: ...


class ConstraintSettings(Protocol):
    """What a factory reads of a constraint (:class:`sweep.config.Constraint` is one);
    ``str()`` of it is the name the runner gives ``Trial.set_constraint``."""

    @property
    def metric(self) -> str: ...


class SweepSettings(Protocol):
    """What a factory reads of a sweep config (:class:`sweep.config.SweepConfig` is one;
    a protocol, so that the config can check algorithms here without a circle)."""

    @property
    def driver(self) -> DriverSettings: ...
    @property
    def search_space(self) -> Mapping[str, FloatParam | IntParam | CategoricalParam]: ...
    @property
    def objectives(self) -> Sequence[ObjectiveSettings]: ...
    @property
    def constraints(self) -> Sequence[ConstraintSettings]: ...
    @property
    def seeds_per_trial(self) -> int: ...


@dataclass(frozen=True)
class AlgorithmSpec:
    library: Library
    name: str
    population_based: bool
    """``batch_size`` sets its population (default 8)."""
    handles_constraints: bool
    """Constraints may be set with it. Optuna's samplers read them through
    ``Trial.set_constraint`` where they can (random, qmc and grid draw regardless; the
    analysis still marks infeasible trials); pymoo's nsga2 and nsga3 are told them as
    inequality constraints; moead cannot be told any."""
    build: Callable[[SweepSettings, int], Any]
    """``(config, seed)`` -> an Optuna sampler, or a pymoo algorithm not yet set up."""
    aims_at_thresholds: bool = False
    """Its hypervolume is measured from the objectives' thresholds: every objective must
    set one (the config says so before the sweep starts)."""


ALGORITHMS: dict[tuple[Library, str], AlgorithmSpec] = {}


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    ALGORITHMS[spec.library, spec.name] = spec
    return spec


def algorithm_names(library: Library) -> tuple[str, ...]:
    """The registered algorithms of ``library``, in registration order."""
    return tuple(name for (lib, name) in ALGORITHMS if lib == library)


def population_algorithms() -> tuple[str, ...]:
    """Names of the population-based algorithms (of any library), each once."""
    names = [spec.name for spec in ALGORITHMS.values() if spec.population_based]
    return tuple(dict.fromkeys(names))


def algorithm(library: Library, name: str) -> AlgorithmSpec:
    """The registered ``library``/``name``; one line with the choices when there is none."""
    try:
        return ALGORITHMS[library, name]
    except KeyError:
        raise ValueError(
            f"unknown {library} algorithm {name!r}; "
            f"choose one of {', '.join(algorithm_names(library))}"
        ) from None


# ---------------------------------------------------------------------------------- optuna


def _optuna(name: str, make: Callable[[Any, SweepSettings, int], Any], **facts: bool) -> None:
    def build(config: SweepSettings, seed: int) -> Any:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return make(optuna.samplers, config, seed)

    population = facts.get("population_based", False)
    register(AlgorithmSpec("optuna", name, population, True, build))


_optuna(
    "tpe",
    lambda samplers, config, seed: samplers.TPESampler(
        seed=seed,
        n_startup_trials=config.driver.n_startup_trials,
        multivariate=True,
        constant_liar=True,  # parallel trials do not all land on one point
    ),
)
_optuna(
    "nsga2",
    lambda samplers, config, seed: samplers.NSGAIISampler(
        population_size=config.driver.population, seed=seed
    ),
    population_based=True,
)
_optuna(
    "nsga3",
    lambda samplers, config, seed: samplers.NSGAIIISampler(
        population_size=config.driver.population, seed=seed
    ),
    population_based=True,
)
_optuna(
    "gp",
    lambda samplers, config, seed: samplers.GPSampler(
        seed=seed, n_startup_trials=config.driver.n_startup_trials
    ),
)
_optuna("random", lambda samplers, config, seed: samplers.RandomSampler(seed=seed))
_optuna(
    "qmc",
    lambda samplers, config, seed: samplers.QMCSampler(
        qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False
    ),
)


def _noisy_ehvi(config: SweepSettings, seed: int) -> Any:
    from sweep.bayes import NoisyHypervolumeSampler

    objectives = []
    for objective in config.objectives:
        if objective.threshold is None:  # the config refuses this first (aims_at_thresholds)
            raise ValueError(f"objective {objective.metric} has no threshold")
        objectives.append((objective.metric, objective.direction, objective.threshold))
    return NoisyHypervolumeSampler(
        space=config.search_space,
        objectives=objectives,
        constraints=[(str(c), c.metric) for c in config.constraints],
        noisy=config.seeds_per_trial > 1,
        n_startup_trials=config.driver.n_startup_trials,
        seed=seed,
    )


# BoTorch's qLogNEHVI (sweep/bayes.py): collapse-aware through constraints, noise-aware with
# several seeds per trial, aimed at the thresholds, running trials pending.
register(AlgorithmSpec("optuna", "botorch", False, True, _noisy_ehvi, aims_at_thresholds=True))


def _grid(samplers: Any, config: SweepSettings, seed: int) -> Any:
    from sweep.space import grid_values

    grid = {
        path: grid_values(spec, config.driver.grid_points)
        for path, spec in config.search_space.items()
    }
    return samplers.GridSampler(grid, seed=seed)


_optuna("grid", _grid)


# ----------------------------------------------------------------------------------- pymoo


def reference_directions(n_obj: int, population: int) -> Any:
    """Das-Dennis directions, the most partitions that keep their count <= ``population``
    (at least one partition)."""
    import numpy as np
    from pymoo.util.ref_dirs import get_reference_directions

    partitions = 1
    while math.comb(partitions + 1 + n_obj - 1, n_obj - 1) <= population:
        partitions += 1
    return np.asarray(get_reference_directions("das-dennis", n_obj, n_partitions=partitions))


def _nsga2(config: SweepSettings, seed: int) -> Any:
    from pymoo.algorithms.moo.nsga2 import NSGA2

    return NSGA2(pop_size=config.driver.population)


def _nsga3(config: SweepSettings, seed: int) -> Any:
    from pymoo.algorithms.moo.nsga3 import NSGA3

    directions = reference_directions(len(config.objectives), config.driver.population)
    return NSGA3(ref_dirs=directions, pop_size=config.driver.population)


def _moead(config: SweepSettings, seed: int) -> Any:
    from pymoo.algorithms.moo.moead import ParallelMOEAD

    directions = reference_directions(len(config.objectives), config.driver.population)
    return ParallelMOEAD(
        ref_dirs=directions,
        n_neighbors=max(2, min(len(directions) // 2, 10)),
        n_offsprings=len(directions),
    )


register(AlgorithmSpec("pymoo", "nsga2", True, True, _nsga2))
register(AlgorithmSpec("pymoo", "nsga3", True, True, _nsga3))
register(AlgorithmSpec("pymoo", "moead", True, False, _moead))
