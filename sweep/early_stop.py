"""The runner's side of early stopping: watch a run's evaluations while it trains, record
them, and stop the run when the pruner says so at a rung.

The rules themselves are pure functions in :mod:`sweep.pruning`; this module is where they
meet a running trial (docs/sweeps.md, "Early stopping"):

- :meth:`EarlyStopper.watch` wraps one run of one training seed. A thread reads the run's
  progress file every ``POLL_S``; each evaluation is kept in the Optuna trial
  (``eval@STEP``, :data:`bao.records.ATTR_EVAL_PREFIX`) and, where the run does not log it
  itself, in its MLflow run as step metrics. At a rung the pruner decides against the points
  every other attempt recorded there; a decision to prune sets the ``halt`` event the
  launcher stops the run on, and the run's interruption then surfaces as
  :class:`TrialPrunedError` (never as a failure, even when the sweep's own stop follows).
- Decisions are kept per trial (:data:`bao.records.ATTR_RUNGS`) and taken over by a retry
  (:meth:`EarlyStopper.inherit_rungs`): a resumed sweep judges a parameter set once.

The runner ends a pruned trial (Optuna state, MLflow run): sweep/runner.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bao import records
from bao.errors import first_line
from sweep import execution, pruning, stopping
from sweep.backends import Backend, RunRequest, TrialError
from sweep.config import SweepConfig
from sweep.storage import SweepStudy
from sweep.tracking import Tracker

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

POLL_S = execution.POLL_S
"""Seconds between two reads of a run's progress file (the runs' own poll period)."""


class TrialPrunedError(Exception):
    """A run the pruner stopped at a rung (not a failure: the trial ends PRUNED)."""

    def __init__(self, decision: pruning.Decision, step: int, rung: int | None) -> None:
        super().__init__(f"{decision.rule} rule at rung {rung} (step {step})")
        self.decision = decision
        self.step = step
        self.rung = rung


class EarlyStopper:
    """One per runner: the evidence of every trial it runs, and the pruner's decisions.

    Without a pruner (``kind: none``) it still records every evaluation (the trial's
    ``eval@STEP`` attributes, the MLflow step metrics, the trial's ``steps``); it never
    decides.
    """

    def __init__(
        self,
        config: SweepConfig,
        study: SweepStudy,
        backend: Backend,
        tracker: Tracker,
        *,
        sweep_stop: threading.Event,
    ) -> None:
        self.config = config
        self.study = study
        self.backend = backend
        self.tracker = tracker
        self.sweep_stop = sweep_stop
        pruner = config.pruner
        self.rung_steps = pruning.rung_steps(
            pruner.min_step, pruner.reduction_factor, backend.max_step()
        )
        # trial number -> step -> each seed's evaluation there
        self._evaluations: dict[int, dict[int, list[dict[str, float]]]] = {}

    @contextlib.contextmanager
    def watch(self, trial: optuna.Trial, request: RunRequest) -> Iterator[threading.Event]:
        """Watches one run while the ``with`` block runs it; yields the event that stops it
        (set by the pruner, or by the sweep's stop). A run stopped by the pruner raises
        :class:`TrialPrunedError` out of the block instead of its interruption."""
        halt = threading.Event()
        ended = threading.Event()
        verdict: list[tuple[pruning.Decision, int]] = []
        watcher = threading.Thread(
            target=self._watch,
            args=(trial, request, halt, ended, verdict),
            name=f"progress-{request.trial_number}",
            daemon=True,
        )
        watcher.start()
        try:
            yield halt
        except TrialError as failure:
            # A verdict is recorded only while `halt` was unset: the pruner stopped the run,
            # even when the sweep's own stop (Ctrl-C) came just after it.
            if verdict and failure.code == stopping.INTERRUPTED_CODE:
                decision, step = verdict[0]
                raise TrialPrunedError(decision, step, self._rung_index(step)) from None
            raise
        finally:
            ended.set()
            watcher.join()

    def last_step(self, number: int) -> int:
        """The highest step trial ``number`` was evaluated at in this process (0: none)."""
        return max(self._evaluations.get(number, {}), default=0)

    def forget(self, number: int) -> None:
        """Drops trial ``number``'s evidence once the trial has ended."""
        self._evaluations.pop(number, None)

    def _rung_index(self, step: int) -> int | None:
        """Which rung ``step`` is (0 the first), None when it is not one."""
        if step not in self.rung_steps:
            return None
        return self.rung_steps.index(step)

    def inherit_rungs(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        """A retry takes its failed attempt's rung decisions: the same parameter set is not
        judged again against a different field (a sweep resumed after a kill decides the
        same way)."""
        previous = attrs.get(records.ATTR_RETRY_OF)
        if previous is None or not self.config.pruner.enabled:
            return
        try:
            frozen = self.study.study.get_trials(deepcopy=False)[int(previous)]
        except (IndexError, ValueError, TypeError):
            return
        decided = frozen.user_attrs.get(records.ATTR_RUNGS)
        if isinstance(decided, dict) and decided:
            trial.set_user_attr(records.ATTR_RUNGS, dict(decided))

    # ------------------------------------------------------------------------- the watcher

    def _watch(
        self,
        trial: optuna.Trial,
        request: RunRequest,
        halt: threading.Event,
        ended: threading.Event,
        verdict: list[tuple[pruning.Decision, int]],
    ) -> None:
        """Reads the run's progress file until the run ends; each evaluation is recorded,
        and a prune decision sets ``halt`` (and ``verdict``: the decision and its step)."""
        path = self.backend.progress_file(request)
        offset = 0
        while True:
            finished = ended.wait(POLL_S)
            if self.sweep_stop.is_set():
                halt.set()
            evaluations, offset = pruning.read_progress(path, offset)
            for evaluation in evaluations:
                try:
                    decision = self._evaluated(trial, request, evaluation, decide=not finished)
                except Exception as error:  # evidence lost must not take the run down
                    log.warning(
                        "trial %d: evaluation at step %d not recorded: %s",
                        request.trial_number,
                        evaluation.step,
                        first_line(error),
                    )
                    continue
                if decision is not None and decision.prune and not halt.is_set():
                    verdict.append((decision, evaluation.step))
                    halt.set()
                    break  # what the run did past its last rung is not its record
            if finished or verdict:
                return

    def _evaluated(
        self,
        trial: optuna.Trial,
        request: RunRequest,
        evaluation: pruning.Evaluation,
        *,
        decide: bool,
    ) -> pruning.Decision | None:
        """Records one evaluation (the trial's attributes, its MLflow run) and, at a rung,
        returns the pruner's decision there (None elsewhere, or without a pruner)."""
        number, step = request.trial_number, evaluation.step
        objectives = [o.metric for o in self.config.objectives]
        per_step = self._evaluations.setdefault(number, {}).setdefault(step, [])
        per_step.append(dict(evaluation.metrics))
        means = pruning.mean_evaluation(per_step, objectives)
        if means is None:  # the objectives are not all there: no point to compare
            return None
        rates = pruning.mean_evaluation(per_step, [pruning.NO_ANSWER_METRIC])
        rate = None if rates is None else rates[pruning.NO_ANSWER_METRIC]
        values = [means[m] for m in objectives]
        trial.set_user_attr(
            f"{records.ATTR_EVAL_PREFIX}{step}", {"values": values, "no_answer_rate": rate}
        )
        steps = max(step, int(trial.user_attrs.get(records.ATTR_STEPS, 0) or 0))
        trial.set_user_attr(records.ATTR_STEPS, steps)
        trial_run = str(trial.user_attrs.get(records.ATTR_RUN_ID, request.run_id))
        if not self.backend.logs_evaluations or trial_run != request.run_id:
            # A command's run, or the seeds' mean on a trial run above its seed runs.
            logged = {m: v for m, v in zip(objectives, values, strict=True)}
            if rate is not None:
                logged[pruning.NO_ANSWER_METRIC] = rate
            self.tracker.log_metrics(trial_run, logged, step=step)
        rung = self._rung_index(step)
        if not decide or not self.config.pruner.enabled or rung is None:
            return None
        decided: dict[str, str] = dict(trial.user_attrs.get(records.ATTR_RUNGS) or {})
        if str(step) in decided:  # decided already: by an earlier seed, or the attempt retried
            return pruning.Decision.parse(decided[str(step)])
        decision = pruning.decide(
            self.config.pruner.settings(),
            rung,
            point=values,
            no_answer_rate=rate,
            others=self._points_at(step, exclude=trial.number),
            directions=[o.direction for o in self.config.objectives],
        )
        decided[str(step)] = str(decision)
        trial.set_user_attr(records.ATTR_RUNGS, decided)
        log.info("trial %d at rung %d (step %d): %s", number, rung, step, decision.action)
        return decision

    def _points_at(self, step: int, *, exclude: int) -> list[list[float]]:
        """The points other attempts recorded at ``step``: complete, pruned and running ones
        (a failed attempt's evidence comes again with its retry)."""
        key = f"{records.ATTR_EVAL_PREFIX}{step}"
        points = []
        for other in self.study.study.get_trials(deepcopy=False):
            if other.number == exclude or other.state.name not in ("COMPLETE", "PRUNED", "RUNNING"):
                continue
            recorded = other.user_attrs.get(key)
            if isinstance(recorded, dict) and isinstance(recorded.get("values"), list):
                points.append([float(v) for v in recorded["values"]])
        return points
