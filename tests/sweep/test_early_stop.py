"""sweep/early_stop.py: a run's evaluations recorded while it trains, and a prune at a rung
that stops the run and surfaces as TrialPrunedError (fakes for the backend and MLflow; a
real in-memory Optuna study)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import optuna
import pytest

from bao import records
from sweep.backends import RunRequest, TrialError
from sweep.config import SweepConfig
from sweep.early_stop import EarlyStopper, TrialPrunedError
from sweep.storage import SweepStudy
from tests.sweep.conftest import OBJECTIVES

WAIT_S = 10.0


class FakeBackend:
    """What the stopper asks of a backend: where the progress file is, the last step."""

    logs_evaluations = False

    def progress_file(self, request: RunRequest) -> Path:
        return request.workdir / records.PROGRESS_FILE

    def max_step(self) -> int:
        return 10


class FakeTracker:
    def __init__(self) -> None:
        self.logged: list[tuple[str, dict[str, float], int]] = []

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        self.logged.append((run_id, metrics, step))


def stopper(tmp_path: Path, pruner: dict[str, Any] | None = None, stop: bool = False) -> Any:
    config = SweepConfig.model_validate(
        {"name": "p", "objectives": OBJECTIVES, **({"pruner": pruner} if pruner else {})}
    )
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    sweep_stop = threading.Event()
    if stop:
        sweep_stop.set()
    tracker = FakeTracker()
    early_stop = EarlyStopper(
        config,
        SweepStudy(study=study, storage=storage, url="in-memory"),
        FakeBackend(),  # type: ignore[arg-type]
        tracker,  # type: ignore[arg-type]
        sweep_stop=sweep_stop,
    )
    trial = study.ask()
    workdir = tmp_path / "seed-0"
    workdir.mkdir()
    request = RunRequest({}, seed=0, trial_number=trial.number, run_id="run-1", workdir=workdir)
    return early_stop, trial, request, tracker


def evaluate(
    request: RunRequest, step: int, score: float, involvement: float, no_answer: float
) -> None:
    line = {
        "step": step,
        "metrics": {
            "eval/score": score,
            "eval/user_involvement_rate": involvement,
            "eval/no_answer_rate": no_answer,
        },
    }
    with (request.workdir / records.PROGRESS_FILE).open("a") as stream:
        stream.write(json.dumps(line) + "\n")


def run_watched(
    early_stop: EarlyStopper,
    trial: optuna.Trial,
    request: RunRequest,
    evaluations: list[tuple[int, float, float, float]],
    *,
    halted: bool,
    failure: TrialError,
    seen: dict[str, threading.Event],
) -> None:
    """A run under ``watch``: writes its evaluations, waits to be halted if ``halted``,
    then ends with ``failure`` as a launcher would report it; ``seen`` gets the halt event."""
    with early_stop.watch(trial, request) as halt:
        seen["halt"] = halt
        for evaluation in evaluations:
            evaluate(request, *evaluation)
        if halted:
            assert halt.wait(WAIT_S), "the run was never halted"
        raise failure


INTERRUPTED = TrialError("interrupted", "stopped")


def test_a_collapsed_run_at_a_rung_is_halted_and_ends_pruned(tmp_path: Path) -> None:
    # Rungs at steps 2 and 6 (min_step 2, reduction factor 3, last step 10).
    early_stop, trial, request, tracker = stopper(
        tmp_path, {"kind": "collapse", "min_step": 2, "reduction_factor": 3}
    )
    assert early_stop.rung_steps == [2, 6]
    # Step 1 is no rung: recorded, never decided; at step 2 the agent has collapsed.
    evaluations = [(1, 0.0, 0.0, 1.0), (2, 0.0, 0.0, 0.95)]
    with pytest.raises(TrialPrunedError) as pruned:
        run_watched(
            early_stop, trial, request, evaluations, halted=True, failure=INTERRUPTED, seen={}
        )
    assert (pruned.value.step, pruned.value.rung, pruned.value.decision.rule) == (2, 0, "collapse")
    attrs = trial.study.trials[0].user_attrs
    assert attrs["eval@1"] == {"values": [0.0, 0.0], "no_answer_rate": 1.0}
    assert attrs["eval@2"]["no_answer_rate"] == 0.95
    assert attrs[records.ATTR_STEPS] == 2
    assert list(attrs[records.ATTR_RUNGS]) == ["2"]
    # The backend does not log its evaluations, so they reach the trial's run as steps.
    assert [(run, step) for run, _, step in tracker.logged] == [("run-1", 1), ("run-1", 2)]


def test_without_a_pruner_evaluations_are_kept_and_failures_pass_unchanged(
    tmp_path: Path,
) -> None:
    early_stop, trial, request, _ = stopper(tmp_path)
    seen: dict[str, threading.Event] = {}
    failure = TrialError("exit_code", "exit status 1")
    evaluations = [(5, 0.4, 0.03, 0.5), (10, 0.5, 0.04, 0.4)]
    with pytest.raises(TrialError, match="exit_code"):
        run_watched(
            early_stop, trial, request, evaluations, halted=False, failure=failure, seen=seen
        )
    assert not seen["halt"].is_set()
    assert early_stop.last_step(trial.number) == 10  # read once more after the run ended
    assert records.ATTR_RUNGS not in trial.study.trials[0].user_attrs
    early_stop.forget(trial.number)
    assert early_stop.last_step(trial.number) == 0


def test_the_sweeps_stop_halts_the_run_as_an_interruption_not_a_prune(tmp_path: Path) -> None:
    early_stop, trial, request, _ = stopper(
        tmp_path, {"kind": "collapse", "min_step": 2}, stop=True
    )
    with pytest.raises(TrialError, match="interrupted"):
        run_watched(early_stop, trial, request, [], halted=True, failure=INTERRUPTED, seen={})
