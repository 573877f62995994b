"""Drivers: who proposes each trial's parameters.

Every proposal is a trial in the sweep's Optuna study, whatever the library, so one storage
holds the whole history, several processes can share it, and a crashed driver restarts from
it. Two kinds of driver:

- :class:`OptunaDriver`: an Optuna sampler. Any process (the sweep or a worker) asks the
  study for a new trial; the sampler reads the shared history, as Optuna intends.
- :class:`PymooDriver`: a pymoo algorithm through its ask/tell interface, one generation at
  a time. Its state is never pickled: it is rebuilt by replaying the stored generations
  through a freshly seeded algorithm (same seed and same told values give the same next
  generation). Only the sweep process (the leader) proposes; it enqueues a generation as
  WAITING trials, which any process then pops and runs.

Retries of failed trials are WAITING trials too, with the failed trial's parameters.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bao.records import ATTR_ATTEMPT, ATTR_GENERATION, ATTR_INDEX, ATTR_VIOLATIONS
from sweep.config import SweepConfig
from sweep.params import FloatParam, IntParam
from sweep.space import distributions
from sweep.storage import SweepStudy

if TYPE_CHECKING:
    import optuna
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

FAILED_PENALTY = 1e6
"""Objective value pymoo is told for a parameter set that failed every attempt (minimised
space); such points are also marked infeasible wherever the algorithm handles constraints."""


def suggest_all(trial: optuna.Trial, config: SweepConfig) -> dict[str, Any]:
    """Draws (or, for an enqueued trial, reads back) every parameter of the search space."""
    params: dict[str, Any] = {}
    for path, spec in config.search_space.items():
        if isinstance(spec, FloatParam):
            params[path] = trial.suggest_float(
                path, spec.low, spec.high, log=spec.log, step=spec.step
            )
        elif isinstance(spec, IntParam):
            params[path] = trial.suggest_int(
                path, spec.low, spec.high, log=spec.log, step=spec.step
            )
        else:
            params[path] = trial.suggest_categorical(path, spec.choices)
    return params


def pop_waiting(study: SweepStudy, config: SweepConfig) -> optuna.Trial | None:
    """Claims one WAITING trial, or returns None when there is none.

    ``set_trial_state_values`` to RUNNING is a compare-and-set in every Optuna storage: it
    returns False when another process claimed the trial first, so each is run once.
    """
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    for frozen in study.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = study.trial_id(frozen.number)
        try:
            claimed = study.storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        except UpdateFinishedTrialError:
            continue
        if claimed:
            trial = optuna.Trial(study.study, trial_id)
            suggest_all(trial, config)
            return trial
    return None


def record_constraints(
    trial: optuna.Trial, config: SweepConfig, means: Mapping[str, float]
) -> None:
    """Stores each constraint's violation (<= 0 when satisfied) of a finished trial where
    every driver reads it: Optuna's samplers through ``Trial.set_constraint``, pymoo's
    through the ``constraint_violations`` attribute (its ``G``)."""
    if not config.constraints:
        return
    violations = [c.violation(means[c.metric]) for c in config.constraints]
    trial.set_user_attr(ATTR_VIOLATIONS, violations)
    for constraint, violation in zip(config.constraints, violations, strict=True):
        trial.set_constraint(str(constraint), violation)


class Driver(ABC):
    """Proposes trials for one sweep; one instance per process."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config

    @abstractmethod
    def sampler(self, stream: int = 0) -> BaseSampler:
        """The Optuna sampler of the study (what ``study.ask`` samples new trials with).

        ``stream`` 0 is the configured seed. A resumed sweep or a worker passes another
        stream: a sampler seeded afresh would otherwise draw the very points it drew before.
        """

    @abstractmethod
    def propose(self, study: SweepStudy, budget: int, *, leader: bool) -> optuna.Trial | None:
        """A new RUNNING trial, or None when no new parameters can be proposed now.

        ``budget`` is how many trials may still be added before ``n_trials`` is reached.
        """

    def state(self, study: SweepStudy) -> dict[str, Any]:
        """What to record about the driver in the sweep's MLflow run."""
        return {
            "library": self.config.driver.library,
            "algorithm": self.config.driver.algorithm,
            "seed": self.config.driver_seed,
        }


def make_driver(config: SweepConfig) -> Driver:
    if config.driver.library == "pymoo":
        return PymooDriver(config)
    return OptunaDriver(config)


# ---------------------------------------------------------------------------------- optuna


class OptunaDriver(Driver):
    """One of Optuna's samplers, configured from ``driver``."""

    def sampler(self, stream: int = 0) -> BaseSampler:

        driver = self.config.driver
        # Sobol points are indexed by trial number, so QMC keeps one scramble everywhere.
        keep = driver.algorithm == "qmc" or stream == 0
        seed = self.config.driver_seed if keep else (self.config.driver_seed + stream) % 2**32
        # Constraints reach the samplers through Trial.set_constraint (set by the runner).
        sampler: BaseSampler = driver.spec.build(self.config, seed)
        return sampler

    def propose(self, study: SweepStudy, budget: int, *, leader: bool) -> optuna.Trial | None:
        if budget <= 0:
            return None
        with warnings.catch_warnings():
            # Sobol sequences prefer powers of two; grid samplers warn near exhaustion.
            warnings.simplefilter("ignore", UserWarning)
            return study.study.ask(distributions(self.config.search_space))


# ----------------------------------------------------------------------------------- pymoo


class PymooDriver(Driver):
    """A pymoo algorithm, generation by generation, its state replayed from the study."""

    def __init__(self, config: SweepConfig) -> None:
        super().__init__(config)
        self.n_var = len(config.search_space)
        self.n_obj = len(config.objectives)
        self.handles_constraints = config.driver.spec.handles_constraints
        # nsga2/nsga3 get one extra constraint: "the trial succeeded" (0 or 1).
        self.n_constr = len(config.constraints) + 1 if self.handles_constraints else 0
        self.generation = 0

    def sampler(self, stream: int = 0) -> BaseSampler:
        import optuna

        # Never used to sample: every pymoo trial is enqueued with its parameters fixed.
        return optuna.samplers.RandomSampler(seed=self.config.driver_seed)

    def _problem(self) -> Any:
        from pymoo.core.problem import Problem

        return Problem(
            n_var=self.n_var, n_obj=self.n_obj, n_ieq_constr=self.n_constr, xl=0.0, xu=1.0
        )

    def _algorithm(self) -> Any:
        from pymoo.core.termination import NoTermination

        algorithm = self.config.driver.spec.build(self.config, self.config.driver_seed)
        algorithm.setup(self._problem(), termination=NoTermination(), seed=self.config.driver_seed)
        return algorithm

    def _replay(self, trials: Sequence[FrozenTrial]) -> tuple[int, np.ndarray, set[int]]:
        """Tells the algorithm every finished generation; returns the first unfinished one:
        its number, its points, and the indices that already have a trial."""
        from pymoo.core.evaluator import Evaluator
        from pymoo.problems.static import StaticProblem

        by_generation: dict[int, dict[int, list[FrozenTrial]]] = {}
        for trial in trials:
            generation = trial.user_attrs.get(ATTR_GENERATION)
            if generation is None:
                continue
            index = int(trial.user_attrs[ATTR_INDEX])
            by_generation.setdefault(int(generation), {}).setdefault(index, []).append(trial)
        algorithm = self._algorithm()
        problem = self._problem()
        generation = 0
        while True:
            population = algorithm.ask()
            points = np.asarray(population.get("X"), dtype=float)
            members = by_generation.get(generation, {})
            outcome = self._outcome(members, len(points))
            if outcome is None:
                return generation, points, set(members)
            objectives, constraints = outcome
            static = StaticProblem(problem, F=objectives, G=constraints)
            Evaluator().eval(static, population)
            algorithm.tell(infills=population)
            generation += 1

    def _outcome(
        self, members: dict[int, list[FrozenTrial]], size: int
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The generation's (F, G) in pymoo's minimised form, or None if any is unfinished."""
        from optuna.trial import TrialState

        signs = np.array(
            [1.0 if o.direction == "minimize" else -1.0 for o in self.config.objectives]
        )
        objectives = np.zeros((size, self.n_obj))
        constraints = np.zeros((size, self.n_constr))
        failed: list[int] = []
        for index in range(size):
            attempts = members.get(index, [])
            complete = [t for t in attempts if t.state == TrialState.COMPLETE]
            if complete:
                trial = complete[0]
                objectives[index] = signs * np.asarray(trial.values, dtype=float)
                if self.handles_constraints:
                    violations = list(trial.user_attrs.get(ATTR_VIOLATIONS, []))
                    constraints[index, : len(violations)] = violations
                continue
            if not attempts or any(
                t.state in (TrialState.RUNNING, TrialState.WAITING) for t in attempts
            ):
                return None
            failed.append(index)
        if failed:
            done = [i for i in range(size) if i not in failed]
            worst = objectives[done].max(axis=0) if done else np.full(self.n_obj, FAILED_PENALTY)
            for index in failed:
                objectives[index] = worst if self.handles_constraints else FAILED_PENALTY
                if self.handles_constraints:
                    constraints[index, -1] = 1.0
        return objectives, (constraints if self.n_constr else None)

    def propose(self, study: SweepStudy, budget: int, *, leader: bool) -> optuna.Trial | None:
        from sweep.space import decode

        if budget <= 0 or not leader:
            return None
        generation, points, started = self._replay(study.study.get_trials(deepcopy=False))
        self.generation = generation
        missing = [i for i in range(len(points)) if i not in started][:budget]
        for index in missing:
            study.study.enqueue_trial(
                decode(self.config.search_space, points[index]),
                user_attrs={ATTR_GENERATION: generation, ATTR_INDEX: index, ATTR_ATTEMPT: 1},
            )
        if missing:
            log.info("pymoo generation %d: %d trials enqueued", generation, len(missing))
        return pop_waiting(study, self.config)

    def state(self, study: SweepStudy) -> dict[str, Any]:
        return {**super().state(study), "generation": self.generation}
