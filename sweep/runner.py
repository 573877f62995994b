"""The sweep loop: claim a trial, run its backend in a subprocess, record the outcome.

One :class:`SweepRunner` per process. The sweep process (``bao-pareto sweep``) is the
*leader*; ``bao-pareto worker`` processes join the same study through its storage. Each
runs up to ``jobs`` trials at once, each trial in its own thread that waits on one
subprocess per training seed.

The runner orchestrates; each job is a module of its own: :mod:`sweep.lease` (owners,
heartbeats, stale trials), :mod:`sweep.launchers` (where a run goes: a local subprocess,
:mod:`sweep.execution`, a Slurm job or a Ray job), :mod:`sweep.cost` (what it held for how
long), :mod:`sweep.early_stop` (a run's evaluations while it trains, and the pruner's
decisions on them), :mod:`sweep.stopping` (when to stop, seed aggregation: pure
functions), :mod:`sweep.records` (what is written where), :mod:`sweep.tracking` (MLflow
through outages).

Records, per trial: an Optuna trial in the study (the parameters, the objective values, and
the attributes of :mod:`bao.records`), and an MLflow run, child of the sweep's run (params,
metrics, logs; with several seeds, one nested run per seed and the mean and standard error
on the trial's run). A failed attempt is closed everywhere with its reason and retried as a
new trial with the same parameters, linked by ``retry_of``, up to ``max_retries`` times; a
trial whose owner died is failed as ``stale`` and retried by whichever process sees it first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bao import records
from bao.errors import first_line
from sweep import cost, execution, stopping
from sweep.backends import RunRequest, TrialError
from sweep.config import LoadedSweep
from sweep.drivers import OptunaDriver, pop_waiting, record_constraints
from sweep.early_stop import EarlyStopper, TrialPrunedError
from sweep.front import pareto_front_trials
from sweep.launchers import JobRecord, job_request, make_launcher
from sweep.lease import Heartbeat, this_process
from sweep.progress import SweepProgress, SweepResult, duration
from sweep.session import SweepAbortedError, SweepSession, WorkspaceFullError, check_free_space
from sweep.tracking import TrackingUnavailableError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "SweepAbortedError",
    "SweepProgress",
    "SweepResult",
    "SweepRunner",
    "WorkspaceFullError",
    "check_free_space",
    "pareto_front_trials",
]

log = logging.getLogger(__name__)

POLL_S = execution.POLL_S
REPORT_EVERY_S = 10.0
"""Seconds between two progress reports while no trial event happens (elapsed time, ETA,
the plain output's minute summary: sweep/progress.py)."""


class SweepRunner(SweepSession):
    """Runs (or joins) one sweep until ``n_trials`` trials are complete."""

    def __init__(
        self,
        loaded: LoadedSweep,
        workspace: Path,
        *,
        leader: bool = True,
        jobs: int | None = None,
        n_trials: int | None = None,
        on_progress: Callable[[SweepProgress], None] | None = None,
    ) -> None:
        super().__init__(loaded, workspace, leader=leader, n_trials=n_trials, owner=this_process())
        self.jobs = jobs or self.config.jobs
        self.on_progress = on_progress
        self.stop_event = threading.Event()
        self._durations: list[float] = []
        self._front_cache: tuple[int, list[FrozenTrial]] = (0, [])
        self._started = time.monotonic()
        self._last_event = ""
        self._last_report = 0.0
        self.heartbeat: Heartbeat
        self.launcher = make_launcher(loaded)
        # trial number -> what its runs cost, and the scheduler's ids of its jobs
        self._costs: dict[int, list[dict[str, float]]] = {}
        self._job_ids: dict[int, list[str]] = {}
        self.early_stop: EarlyStopper

    def stop(self) -> None:
        """Asks the loop to stop: running trials are terminated, failed as interrupted and
        queued again, so a later run of the sweep redoes them."""
        self.stop_event.set()

    def run(self) -> SweepResult:
        if not hasattr(self, "study"):
            self.prepare()
        self.heartbeat = Heartbeat(self.study, self.owner, self.config.heartbeat_interval)
        self.early_stop = EarlyStopper(
            self.config, self.study, self.backend, self.tracker, sweep_stop=self.stop_event
        )
        self._recover_stale()
        self.heartbeat.start()
        aborted = False
        try:
            self._loop()
        except SweepAbortedError:
            aborted = True
            raise
        finally:
            self.heartbeat.close()
            counts = self.study.counts()
            self._record_sweep_cost()
            self.finish(
                counts,
                self._front(),
                aborted=aborted,
                stopped=self.stop_event.is_set(),
                done=_finished(counts) >= self.n_trials,
            )
        return self._result()

    # ----------------------------------------------------------------------------- loop

    def _loop(self) -> None:
        last_recovery = time.monotonic()
        idle_since: float | None = None
        active: dict[Future[None], int] = {}
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="trial") as pool:
            while not self.stop_event.is_set():
                counts = self.study.counts()
                self._check_failures(counts)
                # Disk and MLflow are checked only when a trial is about to be claimed: a
                # running trial is never stopped by a check meant for the next one.
                ready = False
                if len(active) < self.jobs and _finished(counts) < self.n_trials:
                    ready = self._ready_for_trials()
                while ready and len(active) < self.jobs and not self.stop_event.is_set():
                    trial = self._claim()
                    if trial is None:
                        break
                    active[pool.submit(self._execute, trial)] = trial.number
                if not active:
                    counts = self.study.counts()
                    if _finished(counts) >= self.n_trials:
                        break
                    if counts["RUNNING"] or counts["WAITING"] or not ready:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = time.monotonic()
                    elif stopping.idle_too_long(time.monotonic() - idle_since, self.config.lease):
                        log.warning("no trial to run and none running anywhere; leaving")
                        break
                    self.stop_event.wait(POLL_S)
                else:
                    done, _ = wait(active, timeout=POLL_S, return_when=FIRST_COMPLETED)
                    for future in done:
                        active.pop(future)
                        future.result()
                    if done:
                        self._report()
                if time.monotonic() - self._last_report > REPORT_EVERY_S:
                    self._report()
                if time.monotonic() - last_recovery > self.config.heartbeat_interval:
                    self._recover_stale()
                    last_recovery = time.monotonic()
            for future in active:  # stop requested: runs are terminating
                future.result()

    def _ready_for_trials(self) -> bool:
        """Whether a new trial may start: disk space left (else the sweep stops) and MLflow
        answering (else the sweep waits; running trials go on)."""
        try:
            check_free_space(self.workspace, self.config.min_free_disk_mb)
        except WorkspaceFullError:
            self.stop()
            raise
        if self.tracker.available and not self.tracker.has_pending:
            return True
        if self.tracker.probe():
            self._emit("MLflow answers again")
            return True
        event = f"MLflow unreachable: no new trial starts; writes kept in {records.OUTBOX_FILE}"
        if self._last_event != event:
            self._emit(event)
        return False

    def _claim(self) -> optuna.Trial | None:
        """The next trial for this process: a queued one (retries, pymoo generations)
        first, else a new proposal while fewer than ``n_trials`` are done or under way."""
        trial = pop_waiting(self.study, self.config)
        if trial is not None:
            return trial
        counts = self.study.counts()
        budget = stopping.budget(
            self.n_trials, _finished(counts), counts["RUNNING"], counts["WAITING"]
        )
        trial = self.driver.propose(self.study, budget, leader=self.leader)
        if trial is None or not isinstance(self.driver, OptunaDriver):
            return trial
        live = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
        ahead = sum(
            1 for t in self.study.trials() if t.number < trial.number and t.state.name in live
        )
        if stopping.surplus(ahead, self.n_trials):
            trial.set_user_attr(records.ATTR_REASON, "surplus: n_trials were already under way")
            self.study.study.tell(trial, state=_state("FAIL"))
            return None
        return trial

    def _check_failures(self, counts: Any) -> None:
        retries = self.config.max_retries
        limit = stopping.failure_limit(self.config.max_failures, self.n_trials, retries)
        complete, failed = _finished(counts), counts["FAIL"]
        if not stopping.too_many_failures(complete, failed, limit, retries):
            return
        reasons = self.study.failure_reasons()
        failed = stopping.counted_failures(failed, reasons)
        if stopping.too_many_failures(complete, failed, limit, retries):
            self.stop()
            raise SweepAbortedError(
                stopping.abort_message(self.config.name, complete, failed, reasons),
                fix="see each trial's failure_reason with bao-pareto status, fix the cause, "
                "and re-run the sweep to resume",
            )

    # ---------------------------------------------------------------------------- trial

    def _execute(self, trial: optuna.Trial) -> None:
        number = trial.number
        attrs = dict(trial.user_attrs)
        self.heartbeat.own(number)
        started = time.monotonic()
        run_id = ""
        try:
            self.early_stop.inherit_rungs(trial, attrs)
            run_id = self._trial_run(trial, attrs)
            trial.set_user_attr(records.ATTR_RUN_ID, run_id)
            self._emit(f"trial {number} started{_attempt(attrs)}: {_named(trial.params)}")
            try:
                values, extra, means = self._train_seeds(trial, run_id, started)
            finally:
                self._record_cost(trial, run_id)
            for key, value in extra.items():
                trial.set_user_attr(key, value)
            record_constraints(trial, self.config, means)
            self._tell(trial, values)
        except TrialPrunedError as pruned:
            self._prune(trial, run_id, pruned)
        except TrialError as failure:
            self._fail(trial, attrs, run_id, failure)
        except TrackingUnavailableError as error:
            self._fail(trial, attrs, run_id, TrialError(stopping.TRACKING_CODE, str(error)))
        except Exception as error:  # a bug or an outage must not take the sweep down
            log.exception("trial %d failed unexpectedly", number)
            self._fail(trial, attrs, run_id, TrialError("error", first_line(error)))
        else:
            # Complete in Optuna: from here on, MLflow trouble is logged, never a failure.
            try:
                self.tracker.set_terminated(run_id, status="FINISHED")
            except Exception as error:
                log.warning("trial %d: run %s not closed: %s", number, run_id, first_line(error))
            took = time.monotonic() - started
            self._durations.append(took)
            metrics = [objective.metric for objective in self.config.objectives]
            values_text = _named(dict(zip(metrics, values, strict=True)))
            self._emit(f"trial {number} complete in {duration(took)}: {values_text}")
        finally:
            self.early_stop.forget(number)
            self.heartbeat.release(number)

    def _train_seeds(
        self, trial: optuna.Trial, run_id: str, started: float
    ) -> tuple[list[float], dict[str, Any], dict[str, float]]:
        """Runs every training seed; returns the objective means, attributes to keep, and
        the mean of every wanted metric."""
        seeds = self.config.training_seeds
        deadline = started + self.config.trial_timeout
        wanted = [o.metric for o in self.config.objectives]
        wanted += [c.metric for c in self.config.constraints if c.metric not in wanted]
        per_seed: list[dict[str, float]] = []
        for seed in seeds:
            seed_run = run_id if len(seeds) == 1 else self._seed_run(trial.number, run_id, seed)
            workdir = records.run_workdir(self.folder, trial.number, seed)
            workdir.mkdir(parents=True, exist_ok=True)
            request = RunRequest(dict(trial.params), seed, trial.number, seed_run, workdir)
            try:
                metrics = self._run_backend(trial, request, deadline)
                problem = stopping.metric_problem(metrics, wanted, seed)
                if problem is not None:
                    raise TrialError(*problem)
            except TrialPrunedError as pruned:
                if seed_run != run_id:
                    self._close_pruned(seed_run, pruned)
                raise
            except TrialError as failure:
                if seed_run != run_id:
                    self._close_run(seed_run, failure)
                raise
            if seed_run != run_id:
                self.tracker.set_terminated(seed_run, status="FINISHED")
            per_seed.append(metrics)
        summary = stopping.aggregate_seeds(per_seed, wanted)
        if summary.logged:
            # At the last step the seeds' means were logged at while they trained, or after
            # it: MLflow reads a metric's value at its highest step.
            last = self.early_stop.last_step(trial.number)
            self.tracker.log_metrics(run_id, summary.logged, step=last)
        values = [summary.means[o.metric] for o in self.config.objectives]
        extra: dict[str, Any] = {
            records.ATTR_SEED_VALUES: summary.seed_values,
            records.ATTR_STDERR: summary.stderr,
        }
        return values, extra, summary.means

    def _run_backend(
        self, trial: optuna.Trial, request: RunRequest, deadline: float
    ) -> dict[str, float]:
        log.info("trial %d seed %d: %s", request.trial_number, request.seed, request.params)
        # The launcher stops the run when `halt` is set: by the sweep's stop, or by the
        # pruner, which reads the run's progress file meanwhile (sweep/early_stop.py).
        with self.early_stop.watch(trial, request) as halt:
            self.launcher.run(
                job_request(
                    self.backend,
                    request,
                    sweep=self.config.name,
                    tracking_uri=self.tracking_uri,
                    workspace=self.workspace,
                ),
                deadline=deadline,
                stop=halt,
                after=lambda record: self._ended(request, record),
            )
        metrics = self.backend.collect(request, self.tracker)
        self._costs.setdefault(request.trial_number, []).append(cost.user_cost(metrics))
        return metrics

    # ------------------------------------------------------------------------- pruned

    def _prune(self, trial: optuna.Trial, run_id: str, pruned: TrialPrunedError) -> None:
        """Ends a pruned trial: PRUNED in Optuna with its last values kept as an attribute
        (never on the front, not a failure, not retried), its MLflow run KILLED and tagged."""
        state = self.study.storage.get_trial(self.study.trial_id(trial.number)).state
        if state.is_finished():  # another process already took it as stale and requeued it
            if run_id:
                self._close_pruned(run_id, pruned)
            return
        recorded = trial.user_attrs.get(f"{records.ATTR_EVAL_PREFIX}{pruned.step}") or {}
        trial.set_user_attr(
            records.ATTR_PRUNED,
            {
                "step": pruned.step,
                "rung": pruned.rung,
                "rule": pruned.decision.rule,
                "values": recorded.get("values"),
            },
        )
        self.study.study.tell(trial, state=_state("PRUNED"))
        if run_id:
            self._close_pruned(run_id, pruned)
        self._emit(f"trial {trial.number} pruned: {pruned}")

    def _close_pruned(self, run_id: str, pruned: TrialPrunedError) -> None:
        try:
            self.tracker.set_tag(run_id, records.TAG_PRUNED, str(pruned))
            self.tracker.set_terminated(run_id, status="KILLED")
        except Exception:  # MLflow refused it (outages are kept and retried)
            log.warning("could not close MLflow run %s", run_id, exc_info=True)

    def _ended(self, request: RunRequest, ended: JobRecord) -> None:
        """A run's end, however it ended: its cost and job id kept, its log attached."""
        number = request.trial_number
        self._costs.setdefault(number, []).append(ended.usage.as_cost())
        if ended.job_id is not None:
            self._job_ids.setdefault(number, []).append(ended.job_id)
        self._attach_log(request.run_id, ended.log)

    def _record_cost(self, trial: optuna.Trial, run_id: str) -> None:
        """The attempt's cost (all its seeds, whether they succeeded) on the trial and its
        MLflow run; logged, never raised."""
        costs = self._costs.pop(trial.number, [])
        job_ids = self._job_ids.pop(trial.number, [])
        if not costs:
            return
        summed = cost.total(costs)
        try:
            trial.set_user_attr(records.ATTR_COST, summed)
            if job_ids:
                trial.set_user_attr(records.ATTR_JOB_IDS, job_ids)
            if run_id:
                prefixed = {f"{records.TRIAL_COST_PREFIX}{k}": v for k, v in summed.items()}
                self.tracker.log_metrics(run_id, prefixed)
        except Exception as error:
            log.warning("trial %d: cost not recorded: %s", trial.number, first_line(error))

    def _record_sweep_cost(self) -> None:
        """Every attempt's cost so far, whichever process ran it, on the sweep's run."""
        try:
            summed = cost.sweep_cost(t.user_attrs for t in self.study.trials())
            prefixed = {f"{records.SWEEP_COST_PREFIX}{k}": v for k, v in summed.items()}
            self.tracker.log_metrics(self.parent_run_id, prefixed)
        except Exception as error:
            log.warning("the sweep's cost was not recorded: %s", first_line(error))

    def _attach_log(self, run_id: str, log_path: Path) -> None:
        try:
            self.tracker.log_artifact(run_id, log_path, artifact_path=records.ARTIFACT_LOGS)
        except Exception:  # the log is a convenience; losing it must not fail the trial
            log.warning("could not attach %s to run %s", log_path, run_id, exc_info=True)

    # --------------------------------------------------------------------------- report

    def _emit(self, event: str) -> None:
        self._last_event = event
        # The event travels with its own report: trial threads emit concurrently, and a
        # shared attribute read back after the database calls below could be another's.
        self._report(event=event)

    def _report(self, *, event: str | None = None) -> None:
        self._last_report = time.monotonic()
        if self.on_progress is None:
            return
        counts = self.study.counts()
        remaining = max(0, self.n_trials - _finished(counts))
        self.on_progress(
            SweepProgress(
                n_trials=self.n_trials,
                complete=counts["COMPLETE"],
                running=counts["RUNNING"],
                waiting=counts["WAITING"],
                failed=counts["FAIL"],
                pruned=counts["PRUNED"],
                front=[(t.number, list(t.values)) for t in self._front()],
                elapsed_s=time.monotonic() - self._started,
                eta_s=stopping.eta(remaining, self._durations, self.jobs),
                last_event=self._last_event if event is None else event,
                new_event=event is not None,
            )
        )

    def _front(self) -> list[FrozenTrial]:
        """The Pareto front of the complete trials, recomputed only when one has completed
        (complete trials never change): progress is reported three times per trial."""
        complete = self.study.study.get_trials(deepcopy=False, states=(_state("COMPLETE"),))
        if len(complete) != self._front_cache[0]:
            directions = [objective.direction for objective in self.config.objectives]
            self._front_cache = (len(complete), pareto_front_trials(complete, directions))
        return self._front_cache[1]

    def _result(self) -> SweepResult:
        counts = self.study.counts()
        return SweepResult(
            name=self.config.name,
            complete=counts["COMPLETE"],
            failed=counts["FAIL"],
            interrupted=self.stop_event.is_set() and _finished(counts) < self.n_trials,
            parent_run_id=self.parent_run_id,
            storage_url=self.study.url,
            front=[(t.number, dict(t.params), list(t.values)) for t in self._front()],
            pruned=counts["PRUNED"],
        )


def _finished(counts: Any) -> int:
    """Trials that count towards ``n_trials``: complete and pruned ones (a pruned trial
    used its share of the budget; docs/sweeps.md, "Early stopping")."""
    return int(counts["COMPLETE"]) + int(counts["PRUNED"])


def _named(values: dict[str, Any]) -> str:
    """``a=0.1, b=3``: parameters or objective values in an event line."""
    return ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in values.items()
    )


def _attempt(attrs: dict[str, Any]) -> str:
    """`` (attempt 2, retry of 7)`` for a retry; nothing for a first attempt."""
    if records.ATTR_RETRY_OF not in attrs:
        return ""
    attempt = attrs.get(records.ATTR_ATTEMPT, 1)
    return f" (attempt {attempt}, retry of {attrs[records.ATTR_RETRY_OF]})"


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]
