"""Which searched parameters move each objective: fANOVA importances over the sweep's study.

A statistic over the study the reader opened (:func:`analysis.loader.study_of`); it reads
nothing itself. The dashboard's parameters page draws it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

    from analysis.loader import SweepData

log = logging.getLogger(__name__)


def parameter_importance(data: SweepData, study: optuna.Study) -> dict[str, dict[str, float]]:
    """Per objective, each searched parameter's fANOVA importance (Optuna's evaluator, on the
    sweep's complete trials; shares summing to 1). Empty when there is nothing to explain:
    fewer than two complete trials, or a single parameter."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    if len(data.complete) < 2:
        return {}
    result: dict[str, dict[str, float]] = {}
    for index, metric in enumerate(data.metrics):

        def target(trial: optuna.trial.FrozenTrial, index: int = index) -> float:
            return float(trial.values[index])

        try:
            shares = get_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=0), target=target
            )
        except (RuntimeError, ValueError) as error:
            # Optuna refuses when no parameter varies or too few trials are complete.
            log.info("no parameter importance for %s of %s: %s", metric, data.name, error)
            continue
        result[metric] = {name: float(value) for name, value in shares.items()}
    return result
