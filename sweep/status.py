"""What a sweep's storage says about it: the ``status --json`` document (DESIGN section 4)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sweep.config import LoadedSweep
from sweep.drivers import ATTR_REASON, ATTR_RETRY_OF, ATTR_RUN_ID, make_driver
from sweep.storage import N_TRIALS_ATTR, SweepStudy, open_study, read_manifest


def open_existing(workspace: Path, name: str) -> tuple[LoadedSweep, SweepStudy]:
    """The sweep called ``name``, read-only use: never creates a study."""
    loaded, url = read_manifest(workspace, name)
    driver = make_driver(loaded.config)
    return loaded, open_study(loaded, workspace, driver.sampler(), create=False, url=url)


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def status_document(loaded: LoadedSweep, study: SweepStudy) -> dict[str, Any]:
    """The sweep's trials as JSON. A RUNNING trial whose process died is marked ``stale``
    with the reason (it stays RUNNING in the storage until a sweep or worker retries it)."""
    import time

    from sweep.runner import stale_reason

    trials = study.trials()
    counts = study.counts()
    now = time.time()
    lease = loaded.config.lease
    n_trials = int(study.study.user_attrs.get(N_TRIALS_ATTR, loaded.config.driver.n_trials))
    return {
        "sweep": loaded.config.name,
        "n_trials": n_trials,
        "complete": counts["COMPLETE"],
        "running": counts["RUNNING"],
        "failed": counts["FAIL"],
        "trials": [
            {
                "number": trial.number,
                "state": trial.state.name,
                "params": dict(trial.params),
                "values": [_number(v) for v in trial.values] if trial.values else None,
                "mlflow_run_id": trial.user_attrs.get(ATTR_RUN_ID),
                "retry_of": trial.user_attrs.get(ATTR_RETRY_OF),
                "stale": stale_reason(trial, now, lease) if trial.state.name == "RUNNING" else None,
            }
            for trial in trials
        ],
    }


def failure_reasons(study: SweepStudy) -> dict[int, str]:
    return {
        trial.number: str(trial.user_attrs.get(ATTR_REASON, ""))
        for trial in study.trials()
        if trial.state.name == "FAIL"
    }
