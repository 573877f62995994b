"""What a sweep's storage says about it: the ``status --json`` document (docs/sweeps.md)."""

from __future__ import annotations

import math
from typing import Any

from bao.records import (
    ATTR_JOB_IDS,
    ATTR_PRUNED,
    ATTR_RETRY_OF,
    ATTR_RUN_ID,
    ATTR_STEPS,
    STUDY_N_TRIALS,
)
from sweep.config import LoadedSweep
from sweep.cost import compute_seconds, sweep_cost, trial_cost
from sweep.lease import stale_reason
from sweep.storage import SweepStudy


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def status_document(loaded: LoadedSweep, study: SweepStudy) -> dict[str, Any]:
    """The sweep's trials as JSON. A RUNNING trial whose process died is marked ``stale``
    with the reason (it stays RUNNING in the storage until a sweep or worker retries it).
    ``cost`` is what every attempt held for how long (:mod:`sweep.cost`), for the sweep and
    per trial, and ``job_ids`` the scheduler's jobs of a trial run on a cluster: both only
    where recorded (a workspace written before costs were reads as it did, docs/sweeps.md).
    Every trial carries ``compute_seconds`` (the training time its runs held, 0 before any
    was recorded) and ``steps`` (the furthest step it evaluated, or None); a PRUNED one
    ``pruned`` (the rung, step and rule that stopped it, and its last values)."""
    import time

    trials = study.trials()
    counts = study.counts()
    now = time.time()
    lease = loaded.config.lease
    costs = {trial.number: trial_cost(trial.user_attrs) for trial in trials}
    n_trials = int(study.study.user_attrs.get(STUDY_N_TRIALS, loaded.config.driver.n_trials))
    document: dict[str, Any] = {
        "sweep": loaded.config.name,
        "n_trials": n_trials,
        "complete": counts["COMPLETE"],
        "running": counts["RUNNING"],
        "failed": counts["FAIL"],
        "pruned": counts["PRUNED"],
        "compute_seconds": sum(compute_seconds(trial.user_attrs) for trial in trials),
        "trials": [
            {
                "number": trial.number,
                "state": trial.state.name,
                "params": dict(trial.params),
                "values": [_number(v) for v in trial.values] if trial.values else None,
                "mlflow_run_id": trial.user_attrs.get(ATTR_RUN_ID),
                "retry_of": trial.user_attrs.get(ATTR_RETRY_OF),
                "stale": stale_reason(trial, now, lease) if trial.state.name == "RUNNING" else None,
                "compute_seconds": compute_seconds(trial.user_attrs),
                "steps": trial.user_attrs.get(ATTR_STEPS),
                "pruned": trial.user_attrs.get(ATTR_PRUNED)
                if trial.state.name == "PRUNED"
                else None,
            }
            for trial in trials
        ],
    }
    if any(cost is not None for cost in costs.values()):
        document["launcher"] = loaded.config.launcher.kind
        document["cost"] = sweep_cost(trial.user_attrs for trial in trials)
        for entry, trial in zip(document["trials"], trials, strict=True):
            entry["cost"] = costs[trial.number]
            entry["job_ids"] = trial.user_attrs.get(ATTR_JOB_IDS)
    return document
