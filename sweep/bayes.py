"""Noisy expected hypervolume improvement (BoTorch's qLogNEHVI) as an Optuna sampler.

The driver a trial of hours needs (docs/sweeps.md, "Drivers"): one Gaussian process per
objective and per constraint, the Pareto front itself treated as uncertain (noisy EHVI), and
the hypervolume measured from the sweep's own reference point, the objectives' thresholds
(the user's worst acceptable values), never from an observed worst. It is:

- collapse-aware through the sweep's ``constraints`` (``eval/no_answer_rate <= 0.9``
  in configs/quickstart.yaml): collapsed trials stay in the model and the proposals weigh
  each point by its modelled chance of being feasible;
- noise-aware with ``seeds_per_trial > 1``: each trial's standard error over its seeds
  (the ``stderr`` attribute the runner writes) is the observed noise of the model, instead
  of one noise level inferred for every trial;
- correct with ``jobs > 1`` and workers: trials still running elsewhere are pending points
  (BoTorch's ``X_pending``), so parallel proposals do not pile onto one point.

It is a thin sampler over BoTorch rather than optuna-integration's ``BoTorchSampler``: that
sampler's candidate functions see neither the trials' standard errors nor a fixed reference
point. Only the registry's factory imports this module (reading the registry imports no
sampler). The search space is the unit box of :func:`sweep.space.encode` (choices as bins, log
ranges on their log), the same box pymoo drivers search. The first ``n_startup_trials`` are
Optuna's seeded random draws, the very points random search draws with the same seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from bao.records import ATTR_STDERR
from sweep.space import Param, decode, distributions, encode

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

MIN_NOISE_VARIANCE = 1e-6
"""Floor of an observed noise variance: seeds that agree exactly still leave some doubt."""
MC_SAMPLES = 128
"""Quasi-Monte Carlo samples of the acquisition (BoTorch's default for qLogNEHVI)."""
RESTARTS, RAW_SAMPLES = 10, 512
"""optimize_acqf: local optimisations started from the best of the raw Sobol points."""


class NoisyHypervolumeSampler(optuna.samplers.BaseSampler):
    """The sampler; ``objectives`` are (metric, direction, threshold) triples, ``constraints``
    (name, metric) pairs, the name being what the runner gives Optuna's
    ``Trial.set_constraint`` (the value is <= 0 when satisfied), ``noisy`` whether trials
    carry a standard error over several seeds."""

    def __init__(
        self,
        *,
        space: Mapping[str, Param],
        objectives: Sequence[tuple[str, str, float]],
        constraints: Sequence[tuple[str, str]],
        noisy: bool,
        n_startup_trials: int,
        seed: int,
    ) -> None:
        self._space = dict(space)
        self._objectives = list(objectives)
        self._constraints = list(constraints)
        self._noisy = noisy
        self._n_startup_trials = n_startup_trials
        self._seed = seed
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return distributions(self._space)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        complete = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and all(math.isfinite(v) for v in t.values)
        ]
        if len(complete) < self._n_startup_trials:
            return {}
        running = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number != trial.number and set(self._space) <= set(t.params)
        ]
        point = propose(
            space=self._space,
            objectives=self._objectives,
            constraints=self._constraints,
            noisy=self._noisy,
            complete=complete,
            running=running,
            seed=self._seed + len(complete),
        )
        log.debug("qLogNEHVI over %d trials, %d pending: %s", len(complete), len(running), point)
        return decode(self._space, point)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


def propose(
    *,
    space: Mapping[str, Param],
    objectives: Sequence[tuple[str, str, float]],
    constraints: Sequence[tuple[str, str]],
    noisy: bool,
    complete: Sequence[FrozenTrial],
    running: Sequence[FrozenTrial],
    seed: int,
) -> list[float]:
    """The next point of the unit box: the maximiser of qLogNEHVI given the trials."""
    import torch
    from botorch.acquisition.multi_objective.logei import (
        qLogNoisyExpectedHypervolumeImprovement,
    )
    from botorch.acquisition.multi_objective.objective import (
        IdentityMCMultiOutputObjective,
    )
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.model_list_gp_regression import ModelListGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim.optimize import optimize_acqf
    from botorch.sampling.normal import SobolQMCNormalSampler
    from gpytorch.mlls import SumMarginalLogLikelihood

    signs = _signs(objectives)
    columns, variances = training_data(objectives, constraints, complete)
    dtype = torch.double
    train_x = torch.tensor([encode(space, t.params) for t in complete], dtype=dtype)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        models = []
        for j in range(columns.shape[1]):
            y = torch.tensor(columns[:, j : j + 1], dtype=dtype)
            yvar = None
            if noisy and variances is not None:
                yvar = torch.tensor(variances[:, j : j + 1], dtype=dtype)
            models.append(
                SingleTaskGP(train_x, y, train_Yvar=yvar, outcome_transform=Standardize(m=1))
            )
        model = ModelListGP(*models)
        fit_gpytorch_mll(SumMarginalLogLikelihood(model.likelihood, model))
        n_obj = len(objectives)
        pending = (
            torch.tensor([encode(space, t.params) for t in running], dtype=dtype)
            if running
            else None
        )
        acquisition = qLogNoisyExpectedHypervolumeImprovement(
            model=model,
            ref_point=[
                sign * threshold for sign, (_, _, threshold) in zip(signs, objectives, strict=True)
            ],
            X_baseline=train_x,
            sampler=SobolQMCNormalSampler(sample_shape=torch.Size([MC_SAMPLES]), seed=seed),
            objective=IdentityMCMultiOutputObjective(outcomes=list(range(n_obj))),
            constraints=[_column(n_obj + i) for i in range(len(constraints))] or None,
            X_pending=pending,
            prune_baseline=True,
        )
        bounds = torch.tensor([[0.0] * len(space), [1.0] * len(space)], dtype=dtype)
        candidate, _ = optimize_acqf(
            acquisition,
            bounds=bounds,
            q=1,
            num_restarts=RESTARTS,
            raw_samples=RAW_SAMPLES,
            options={"seed": seed},
        )
    return [float(v) for v in candidate[0].tolist()]


def _signs(objectives: Sequence[tuple[str, str, float]]) -> list[float]:
    return [1.0 if direction == "maximize" else -1.0 for _, direction, _ in objectives]


def training_data(
    objectives: Sequence[tuple[str, str, float]],
    constraints: Sequence[tuple[str, str]],
    complete: Sequence[FrozenTrial],
) -> tuple[np.ndarray, np.ndarray | None]:
    """What the models learn: one row per complete trial, the objectives made
    larger-is-better, then the constraint values (<= 0 feasible); and their observed noise
    variances, the squared standard errors over seeds (None when a trial has none)."""
    signs = _signs(objectives)
    metrics = [metric for metric, _, _ in objectives] + [metric for _, metric in constraints]
    rows, noise = [], []
    for trial in complete:
        values = [sign * value for sign, value in zip(signs, trial.values, strict=True)]
        stored = trial.constraints
        missing = [name for name, _ in constraints if name not in stored]
        if missing:
            raise ValueError(
                f"trial {trial.number} has no value for constraint {missing[0]!r}; "
                "complete trials through the sweep's runner, which sets them"
            )
        rows.append(values + [stored[name] for name, _ in constraints])
        stderr = trial.user_attrs.get(ATTR_STDERR) or {}
        noise.append([stderr.get(metric) for metric in metrics])
    columns = np.asarray(rows, dtype=float)
    if any(value is None for row in noise for value in row):
        return columns, None
    variances = np.maximum(np.square(np.asarray(noise, dtype=float)), MIN_NOISE_VARIANCE)
    return columns, variances


def _column(index: int) -> Any:
    """BoTorch's constraint callable: the sampled value of one model output (<= 0 feasible)."""

    def value(samples: Any) -> Any:
        return samples[..., index]

    return value
