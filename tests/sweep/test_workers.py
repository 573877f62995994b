"""Four workers on one sweep, on every kind of shared storage: every trial recorded once.

The workers start together on one study (SQLite file, journal file, PostgreSQL server) and
race for everything: creating the study and the sweep's MLflow run, asking for trials, the
last trials of ``n_trials``. Whatever the order, each trial is run once, recorded once in
Optuna and once in MLflow with the same values, and nothing is left running or lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.sweep.conftest import REPO_ROOT, WriteConfig, mlflow_runs, status_json
from tests.sweep.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.sweep.test_sweep_sim import assert_status_matches_mlflow

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

N_WORKERS = 4
N_TRIALS = 8
WORKER_TIMEOUT_S = 600


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def shared_storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The storage URL the workers share: one of each kind."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")  # only this variant needs a server
        return url
    if request.param == "journal":
        return f"journal:{tmp_path / 'shared' / 'journal.log'}"
    return f"sqlite:///{tmp_path / 'shared' / 'optuna.db'}"


def _explain(status: Any, logs: list[Path]) -> str:
    """What the workers said and what the storage holds, for a failing assertion."""
    said = "\n".join(
        f"--- worker {i} stderr ---\n{log.read_text(errors='replace')[-4000:]}"
        for i, log in enumerate(logs)
    )
    return f"\n{said}\n--- status ---\n{json.dumps(status, indent=1)}"


def test_four_workers_share_one_storage(
    shared_storage: str,
    sim_sweep: WriteConfig,
    workspace: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    driver = {"algorithm": "tpe", "n_trials": N_TRIALS}
    config = sim_sweep(driver=driver, storage=shared_storage, jobs=1)
    env = {**os.environ, "BAO_PARETO_HOME": str(workspace)}
    logs = [tmp_path / f"worker-{i}.stderr" for i in range(N_WORKERS)]
    workers = []
    for log in logs:
        with log.open("wb") as stderr:  # a file, not a pipe: a full pipe would stall a worker
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "sweep.cli", "worker", str(config)],
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            )
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    try:
        codes = [w.wait(timeout=max(1.0, deadline - time.monotonic())) for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    status = status_json(capsys, "tiny", workspace)
    why = _explain(status, logs)
    assert codes == [0] * N_WORKERS, why

    trials = status["trials"]
    states = Counter(t["state"] for t in trials)
    assert states["COMPLETE"] == N_TRIALS, why
    assert states["RUNNING"] == states["WAITING"] == 0, why  # nothing stuck, nothing queued
    assert status["complete"] + status["failed"] == len(trials), why  # no result lost
    numbers = [t["number"] for t in trials]
    assert len(numbers) == len(set(numbers)), why
    run_ids = [t["mlflow_run_id"] for t in trials if t["mlflow_run_id"]]
    assert len(run_ids) == len(set(run_ids)), why
    # Every trial that ran has its MLflow run, and both records hold the same values.
    assert all(t["mlflow_run_id"] for t in trials if t["state"] == "COMPLETE"), why
    assert_status_matches_mlflow(status, workspace)

    # A parameter set runs again only as a linked retry of a failed attempt.
    by_number = {t["number"]: t for t in trials}
    complete_sets = Counter(
        json.dumps(t["params"], sort_keys=True) for t in trials if t["state"] == "COMPLETE"
    )
    assert max(complete_sets.values()) == 1, why
    seen: set[str] = set()
    for trial in sorted(trials, key=lambda t: t["number"]):
        params = json.dumps(trial["params"], sort_keys=True)
        if params in seen:
            original = by_number.get(trial["retry_of"])
            assert original is not None, why
            assert original["state"] == "FAIL", why
            assert original["params"] == trial["params"], why
        seen.add(params)

    # The four workers agreed on one sweep run in MLflow.
    runs = mlflow_runs(workspace, "tiny")
    roles = Counter(r.data.tags.get("bao.role") for r in runs.values())
    assert roles["sweep"] == 1, why
    assert roles["trial"] == len(run_ids), why
