"""The sweep loop: claim a trial, run its backend in a subprocess, record the outcome.

One :class:`SweepRunner` per process. The sweep process (``bao-pareto sweep``) is the
*leader*; ``bao-pareto worker`` processes join the same study through its storage. Each
runs up to ``jobs`` trials at once, each trial in its own thread that waits on one
subprocess per training seed.

Records, per trial: an Optuna trial in the study (the parameters, the objective values, and
user attributes ``mlflow_run_id``, ``attempt``, ``retry_of``, ``failure_reason``,
``seed_values``), and an MLflow run, child of the sweep's run (params, metrics, logs;
with several seeds, one nested run per seed and the mean and standard error on the trial's
run). A failed attempt is closed everywhere with its reason and retried as a new trial with
the same parameters, linked by ``retry_of``, up to ``max_retries`` times.

Crashes: every running trial carries its owner (host, pid) and a heartbeat refreshed every
``heartbeat_interval`` seconds (Optuna's own heartbeat covers neither ask/tell nor journal
storage). A RUNNING trial whose owner process is gone (same host) or whose heartbeat is
older than ``lease`` is failed with reason ``stale`` and retried, by whichever process sees
it first; the storage's compare-and-set on the trial state makes that happen once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bao.errors import BaoError, first_line
from bao.processes import die_with_parent
from sweep.backends import Backend, RunRequest, TrialError, make_backend
from sweep.config import LoadedSweep
from sweep.drivers import (
    ATTR_ATTEMPT,
    ATTR_GENERATION,
    ATTR_INDEX,
    ATTR_REASON,
    ATTR_RETRY_OF,
    ATTR_RUN_ID,
    ATTR_SEED_VALUES,
    ATTR_STDERR,
    ATTR_VIOLATIONS,
    Driver,
    OptunaDriver,
    make_driver,
    pop_waiting,
)
from sweep.status import failure_reasons
from sweep.storage import (
    N_TRIALS_ATTR,
    SweepStudy,
    open_study,
    sweep_dir,
    write_atomically,
    write_manifest,
)
from sweep.tracking import OUTBOX, Tracker, TrackingUnavailableError

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "bao:heartbeat"
OWNER_KEY = "bao:owner"
PARENT_RUN_ATTR = "mlflow_parent_run_id"
POLL_S = 0.5
STOP_GRACE_S = 10.0
"""Seconds a stopped run gets between SIGTERM and SIGKILL."""


class SweepAbortedError(BaoError):
    """The sweep stopped because its trials keep failing."""


class WorkspaceFullError(BaoError):
    """The workspace's file system has less free space than ``min_free_disk_mb``."""


def check_free_space(workspace: Path, min_free_mb: float) -> None:
    """Raises :class:`WorkspaceFullError` when the workspace's disk is (nearly) full.

    Checked before a sweep starts and before each new trial: a trial started on a full disk
    fails half-way (a checkpoint, a log, the MLflow database), and so would every retry.
    """
    import shutil

    if min_free_mb <= 0:
        return
    probe = workspace
    while not probe.exists() and probe != probe.parent:  # not created yet: its parent's disk
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free / 2**20
    if free_mb < min_free_mb:
        raise WorkspaceFullError(
            f"only {free_mb:.0f} MB free on the file system of workspace {str(workspace)!r}, "
            f"below min_free_disk_mb={min_free_mb:g}",
            fix="free disk space or move the workspace (--workspace); lower min_free_disk_mb "
            "only if trials write little",
        )


@dataclass
class SweepProgress:
    """A snapshot for progress displays (the CLI draws it; the runner only reports it)."""

    n_trials: int
    complete: int
    running: int
    waiting: int
    failed: int
    front: list[tuple[int, list[float]]]
    elapsed_s: float
    eta_s: float | None
    last_event: str = ""


@dataclass
class SweepResult:
    name: str
    complete: int
    failed: int
    interrupted: bool
    parent_run_id: str
    storage_url: str
    front: list[tuple[int, dict[str, Any], list[float]]] = field(default_factory=list)


# ---------------------------------------------------------------------------- processes


def _process_start_ticks(pid: int) -> int | None:
    """The start time of a process in clock ticks (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _owner_alive(owner: dict[str, Any]) -> bool | None:
    """True/False for an owner process on this host; None when that cannot be told here."""
    if owner.get("host") != socket.gethostname():
        return None
    pid = int(owner.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = owner.get("started")
    return started is None or _process_start_ticks(pid) == started


def stale_reason(frozen: FrozenTrial, now: float, lease: float) -> str | None:
    """Why a RUNNING trial is dead (its process is gone, or silent past ``lease``), or None."""
    owner = frozen.system_attrs.get(OWNER_KEY) or {}
    alive = _owner_alive(owner) if owner else None
    where = f"{owner.get('host')}:{owner.get('pid')}" if owner else "an unknown process"
    if alive is False:
        return f"its process {where} is gone"
    start = frozen.datetime_start.timestamp() if frozen.datetime_start else now
    beat = float(frozen.system_attrs.get(HEARTBEAT_KEY, start))
    if alive is None and now - beat > lease:
        return f"no heartbeat from {where} for {now - beat:.0f} s (lease {lease:g} s)"
    return None


# ------------------------------------------------------------------------------- runner


class SweepRunner:
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
        self.loaded = loaded
        self.config = loaded.config
        self.workspace = workspace
        self.leader = leader
        self.jobs = jobs or self.config.jobs
        self._n_trials_given = n_trials
        self.n_trials = n_trials or self.config.driver.n_trials
        self.on_progress = on_progress
        self.folder = sweep_dir(workspace, self.config.name)
        self.stop_event = threading.Event()
        self._closing = threading.Event()
        self.owner: dict[str, str | int | None] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": _process_start_ticks(os.getpid()),
            "token": uuid.uuid4().hex,
        }
        self._owned: dict[int, int] = {}  # trial number -> trial id, for heartbeats
        self._owned_lock = threading.Lock()
        self._durations: list[float] = []
        self._front_cache: tuple[int, list[FrozenTrial]] = (0, [])
        self._started = time.monotonic()
        self._last_event = ""
        self.driver: Driver = make_driver(self.config)
        self.study: SweepStudy
        self.backend: Backend
        self.client: MlflowClient
        self.tracker: Tracker
        self.tracking_uri = ""
        self.experiment_id = ""
        self.parent_run_id = ""

    # --------------------------------------------------------------------------- set-up

    def prepare(self) -> None:
        """Opens (or creates) the study, the manifest and the sweep's MLflow run."""
        from filelock import Timeout

        from bao.tracking import experiment_id, mlflow_client, tracking_uri, workspace_lock

        with workspace_lock(self.workspace):  # concurrent starters create tables once
            self.study = open_study(self.loaded, self.workspace, self.driver.sampler())
        existing = len(self.study.trials())
        if existing or not self.leader:
            # Same seed, same proposals holds for a sweep run start to finish by one
            # process; a resumed sweep or a worker continues on a stream of its own.
            token = str(self.owner["token"])
            stream = 1 + existing + (0 if self.leader else int(token[:8], 16))
            self.study.study.sampler = self.driver.sampler(stream)
        write_manifest(self.loaded, self.workspace, self.study.url)
        target = self.study.study.user_attrs.get(N_TRIALS_ATTR)
        if not self.leader and self._n_trials_given is None and target is not None:
            self.n_trials = int(target)  # a worker follows the sweep's own target
        elif self.leader or self._n_trials_given is not None or target is None:
            self.study.study.set_user_attr(N_TRIALS_ATTR, self.n_trials)
        train_path = self.folder / "train.yaml"
        if self.loaded.train_config:
            write_atomically(train_path, yaml.safe_dump(self.loaded.train_config, sort_keys=False))
        self.backend = make_backend(self.loaded, train_path, self.workspace)
        self.tracking_uri = self.config.tracking_uri or tracking_uri(self.workspace)
        self.client = mlflow_client(self.workspace, self.tracking_uri)
        self.tracker = Tracker(self.client, self.folder / OUTBOX, self.config.tracking_patience)
        try:
            self.experiment_id = self.tracker.call(
                "the experiment", experiment_id, self.client, self.config.name, self.workspace
            )
            # Writes an earlier process of this sweep kept through an outage go first (an
            # old KILLED must not land on the sweep's run after it is set RUNNING again).
            self.tracker.replay()
            # Workers starting together on one machine agree on one sweep run under a lock
            # (MLflow stamps a run's start before it is stored, so "the earliest" alone can
            # split them); across machines the earliest-run rule is all there is.
            with workspace_lock(self.workspace, f"sweep-run-{self.config.name}"):
                self.parent_run_id = self.tracker.call("the sweep's run", self._parent_run)
        except (TrackingUnavailableError, Timeout) as error:
            raise BaoError(
                f"cannot start sweep {self.config.name!r}: {error}",
                fix=f"start the MLflow tracking server or check tracking_uri ({self.tracking_uri})",
            ) from None

    def _parent_run(self) -> str:
        """The sweep's MLflow run; concurrent starters agree on the earliest one."""
        runs = self._sweep_runs()
        created = None
        if not runs:
            created = self.client.create_run(
                self.experiment_id,
                run_name=self.config.name,
                tags={
                    "bao.role": "sweep",
                    "bao.sweep": self.config.name,
                    "bao.storage": self.study.url,
                    "bao.fingerprint": self.config.fingerprint(),
                },
            ).info.run_id
            runs = self._sweep_runs()
        chosen: str = runs[0].info.run_id
        if created is not None and created != chosen:
            self.client.delete_run(created)  # another process created it first
        if created == chosen:
            self._record_config(chosen)
        self.study.study.set_user_attr(PARENT_RUN_ATTR, chosen)
        if self.leader:
            self.client.update_run(chosen, status="RUNNING")
        return chosen

    def _sweep_runs(self) -> list[Any]:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string="tags.`bao.role` = 'sweep'",
            max_results=100,
        )
        return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))

    def _record_config(self, run_id: str) -> None:
        from bao.configuration import flatten
        from bao.tracking import log_params

        config = self.config.model_dump(mode="json")
        log_params(self.client, run_id, flatten(config))
        self.client.log_artifact(run_id, str(self.folder / "sweep.yaml"))
        if self.loaded.train_config:
            self.client.log_artifact(run_id, str(self.folder / "train.yaml"))

    # ----------------------------------------------------------------------------- loop

    def stop(self) -> None:
        """Asks the loop to stop: running trials are terminated, failed as interrupted and
        queued again, so a later run of the sweep redoes them."""
        self.stop_event.set()

    def run(self) -> SweepResult:
        if not hasattr(self, "study"):
            self.prepare()
        self._recover_stale()
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        aborted = False
        try:
            self._loop()
        except SweepAbortedError:
            aborted = True
            raise
        finally:
            self._closing.set()  # ends the heartbeat thread
            self._finish(aborted=aborted)
        return self._result()

    def _loop(self) -> None:
        last_recovery = time.monotonic()
        idle_since: float | None = None
        active: dict[Future[None], int] = {}
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="trial") as pool:
            while True:
                if self.stop_event.is_set():
                    break
                counts = self.study.counts()
                self._check_failures(counts)
                # Disk and MLflow are checked only when a trial is about to be claimed: a
                # running trial is never stopped by a check meant for the next one.
                ready = False
                if len(active) < self.jobs and counts["COMPLETE"] < self.n_trials:
                    ready = self._ready_for_trials()
                while ready and len(active) < self.jobs and not self.stop_event.is_set():
                    trial = self._claim()
                    if trial is None:
                        break
                    active[pool.submit(self._execute, trial)] = trial.number
                if not active:
                    counts = self.study.counts()
                    if counts["COMPLETE"] >= self.n_trials:
                        break
                    if counts["RUNNING"] or counts["WAITING"] or not ready:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > self.config.lease:
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
        event = f"MLflow unreachable: no new trial starts; writes kept in {OUTBOX}"
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
        budget = self.n_trials - (counts["COMPLETE"] + counts["RUNNING"] + counts["WAITING"])
        trial = self.driver.propose(self.study, budget, leader=self.leader)
        if trial is None or not isinstance(self.driver, OptunaDriver):
            return trial
        # Another process may have asked at the same moment: the lower numbers win.
        ahead = sum(
            1
            for t in self.study.trials()
            if t.number < trial.number and t.state.name in ("COMPLETE", "RUNNING", "WAITING")
        )
        if ahead >= self.n_trials:
            trial.set_user_attr(ATTR_REASON, "surplus: n_trials were already under way")
            self.study.study.tell(trial, state=_state("FAIL"))
            return None
        return trial

    def _check_failures(self, counts: Any) -> None:
        failed = counts["FAIL"]
        limit = self.config.max_failures or self.n_trials * (self.config.max_retries + 1)
        hopeless = counts["COMPLETE"] == 0 and failed >= 2 * (self.config.max_retries + 1)
        if failed >= limit or hopeless:
            reasons = failure_reasons(self.study)
            # An MLflow outage is not the trials' fault: those attempts do not count.
            failed -= sum(reason.startswith("tracking:") for reason in reasons.values())
            hopeless = counts["COMPLETE"] == 0 and failed >= 2 * (self.config.max_retries + 1)
        if failed >= limit or hopeless:
            last = reasons[max(reasons)] if reasons else "?"
            self.stop()
            raise SweepAbortedError(
                f"sweep {self.config.name!r} stopped after {failed} failed trial attempts "
                f"({counts['COMPLETE']} complete); last reason: {last}",
                fix="see each trial's failure_reason with bao-pareto status, fix the cause, "
                "and re-run the sweep to resume",
            )

    # ---------------------------------------------------------------------------- trial

    def _execute(self, trial: optuna.Trial) -> None:
        number = trial.number
        trial_id = self.study.trial_id(number)
        attrs = dict(trial.user_attrs)
        with self._owned_lock:
            self._owned[number] = trial_id
        self.study.storage.set_trial_system_attr(trial_id, OWNER_KEY, self.owner)
        self.study.storage.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())
        started = time.monotonic()
        run_id = ""
        try:
            run_id = self._trial_run(trial, attrs)
            trial.set_user_attr(ATTR_RUN_ID, run_id)
            self._emit(f"trial {number} started")
            values, extra = self._train_seeds(trial, run_id, started)
            for key, value in extra.items():
                trial.set_user_attr(key, value)
            for constraint, violation in zip(
                self.config.constraints, extra.get(ATTR_VIOLATIONS, []), strict=True
            ):
                trial.set_constraint(str(constraint), violation)  # what the samplers read
            self._tell(trial, values)
        except TrialError as failure:
            self._fail(trial, attrs, run_id, failure)
        except TrackingUnavailableError as error:
            self._fail(trial, attrs, run_id, TrialError("tracking", str(error)))
        except Exception as error:  # a bug or an outage must not take the sweep down
            log.exception("trial %d failed unexpectedly", number)
            self._fail(trial, attrs, run_id, TrialError("error", first_line(error)))
        else:
            # Complete in Optuna: from here on, MLflow trouble is logged, never a failure.
            try:
                self.tracker.set_terminated(run_id, status="FINISHED")
            except Exception as error:
                log.warning("trial %d: run %s not closed: %s", number, run_id, first_line(error))
            self._durations.append(time.monotonic() - started)
            self._emit(f"trial {number} complete")
        finally:
            with self._owned_lock:
                self._owned.pop(number, None)

    def _trial_run(self, trial: optuna.Trial, attrs: dict[str, Any]) -> str:
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "bao.role": "trial",
            "bao.sweep": self.config.name,
            "bao.trial_number": str(trial.number),
            "bao.attempt": str(attrs.get(ATTR_ATTEMPT, 1)),
            "bao.backend": self.config.backend.kind,
        }
        if ATTR_RETRY_OF in attrs:
            tags["bao.retry_of"] = str(attrs[ATTR_RETRY_OF])
        if ATTR_GENERATION in attrs:
            tags["bao.generation"] = str(attrs[ATTR_GENERATION])
        run = self.tracker.call(
            "a trial's new run",
            self.client.create_run,
            self.experiment_id,
            run_name=f"{self.config.name}-trial-{trial.number:04d}",
            tags=tags,
        )
        run_id: str = run.info.run_id
        self.tracker.log_params(run_id, {f"trial.{k}": v for k, v in trial.params.items()})
        return run_id

    def _train_seeds(
        self, trial: optuna.Trial, run_id: str, started: float
    ) -> tuple[list[float], dict[str, Any]]:
        """Runs every training seed; returns the objective means and attributes to keep."""
        seeds = self.config.training_seeds
        deadline = started + self.config.trial_timeout
        wanted = [o.metric for o in self.config.objectives]
        wanted += [c.metric for c in self.config.constraints if c.metric not in wanted]
        per_seed: list[dict[str, float]] = []
        for seed in seeds:
            seed_run = run_id
            if len(seeds) > 1:
                seed_run = self.tracker.call(
                    "a seed's new run",
                    self.client.create_run,
                    self.experiment_id,
                    run_name=f"{self.config.name}-trial-{trial.number:04d}-seed{seed}",
                    tags={
                        "mlflow.parentRunId": run_id,
                        "bao.role": "seed",
                        "bao.sweep": self.config.name,
                        "bao.trial_number": str(trial.number),
                        "bao.seed": str(seed),
                    },
                ).info.run_id
            workdir = self.folder / "trials" / f"{trial.number:05d}" / f"seed-{seed}"
            workdir.mkdir(parents=True, exist_ok=True)
            request = RunRequest(
                params=dict(trial.params),
                seed=seed,
                trial_number=trial.number,
                run_id=seed_run,
                workdir=workdir,
            )
            try:
                metrics = self._run_backend(request, deadline)
                missing = [m for m in wanted if m not in metrics]
                if missing:
                    raise TrialError(
                        "missing_metrics",
                        f"seed {seed}: the run logged no {', '.join(map(repr, missing))}",
                    )
                bad = [m for m in wanted if not math.isfinite(metrics[m])]
                if bad:
                    raise TrialError(
                        "bad_metrics",
                        f"seed {seed}: {', '.join(f'{m}={metrics[m]}' for m in bad)}",
                    )
            except TrialError as failure:
                if seed_run != run_id:
                    self._close_run(seed_run, failure)
                raise
            if seed_run != run_id:
                self.tracker.set_terminated(seed_run, status="FINISHED")
            per_seed.append(metrics)
        return self._aggregate(run_id, per_seed, wanted)

    def _aggregate(
        self, run_id: str, per_seed: list[dict[str, float]], wanted: list[str]
    ) -> tuple[list[float], dict[str, Any]]:
        seed_values = {m: [seed[m] for seed in per_seed] for m in wanted}
        means = {m: math.fsum(v) / len(v) for m, v in seed_values.items()}
        stderr = {
            m: (statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0)
            for m, v in seed_values.items()
        }
        if len(per_seed) > 1:
            shared = set.intersection(*(set(seed) for seed in per_seed))
            summary = {
                k: math.fsum(s[k] for s in per_seed) / len(per_seed)
                for k in sorted(shared)
                if all(math.isfinite(s[k]) for s in per_seed)
            }
            summary.update({f"{m}_stderr": stderr[m] for m in wanted})
            self.tracker.log_metrics(run_id, summary)
        values = [means[o.metric] for o in self.config.objectives]
        extra: dict[str, Any] = {ATTR_SEED_VALUES: seed_values, ATTR_STDERR: stderr}
        if self.config.constraints:
            extra[ATTR_VIOLATIONS] = [c.violation(means[c.metric]) for c in self.config.constraints]
        return values, extra

    def _run_backend(self, request: RunRequest, deadline: float) -> dict[str, float]:
        launch = self.backend.launch(request)
        env = {
            **os.environ,
            **launch.env,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_RUN_ID": request.run_id,
            "BAO_PARETO_HOME": str(self.workspace),
            "PYTHONUNBUFFERED": "1",
        }
        log_path = request.workdir / "run.log"
        log.info("trial %d seed %d: %s", request.trial_number, request.seed, launch.argv)
        try:
            with log_path.open("wb") as output:
                process = subprocess.Popen(
                    launch.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=launch.cwd,
                    start_new_session=True,  # the terminal's Ctrl-C reaches only the sweep
                    preexec_fn=die_with_parent(),  # noqa: PLW1509 - async-signal-safe prctl
                )
        except OSError as error:
            raise TrialError("error", f"cannot start {launch.argv[0]!r}: {error}") from None
        try:
            code = self._wait(process, deadline)
        finally:
            self._attach_log(request.run_id, log_path)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            raise TrialError("killed", f"the run was killed by {name}")
        if code != 0:
            raise TrialError("exit_code", f"exit status {code}: {_last_line(log_path)}")
        return self.backend.collect(request, self.tracker)

    def _wait(self, process: subprocess.Popen[bytes], deadline: float) -> int:
        while True:
            try:
                return process.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            if self.stop_event.is_set():
                _terminate(process)
                raise TrialError("interrupted", "the sweep was stopped during this trial")
            if time.monotonic() > deadline:
                _terminate(process)
                raise TrialError(
                    "timeout", f"the trial ran past trial_timeout={self.config.trial_timeout:g} s"
                )

    def _attach_log(self, run_id: str, log_path: Path) -> None:
        try:
            self.tracker.log_artifact(run_id, log_path, artifact_path="logs")
        except Exception:  # the log is a convenience; losing it must not fail the trial
            log.warning("could not attach %s to run %s", log_path, run_id, exc_info=True)

    # -------------------------------------------------------------------------- failure

    def _tell(self, trial: optuna.Trial, values: list[float]) -> None:
        """Records the trial's values.

        Optuna's grid sampler calls ``study.stop()`` once the last grid point is told, which
        raises outside ``study.optimize``; the values are stored before that (Optuna writes
        them in a ``finally``), so that error, and only with a finished trial, is not a
        failure: this runner stops at ``n_trials`` on its own.
        """
        try:
            self.study.study.tell(trial, values)
        except RuntimeError as error:
            state = self.study.storage.get_trial(self.study.trial_id(trial.number)).state
            if "Study.stop" not in str(error) or state.name != "COMPLETE":
                raise

    def _fail(
        self, trial: optuna.Trial, attrs: dict[str, Any], run_id: str, failure: TrialError
    ) -> None:
        reason = str(failure)
        log.warning("trial %d failed: %s", trial.number, reason)
        state = self.study.storage.get_trial(self.study.trial_id(trial.number)).state
        if state.is_finished():  # another process already took it as stale and requeued it
            if run_id:
                self._close_run(run_id, failure)
            return
        # The retry is queued before the attempt is marked failed, so a pymoo generation
        # never looks finished in between. An MLflow outage does not use up an attempt.
        counted = failure.code != "tracking"
        self._enqueue_retry(trial.number, dict(trial.params), attrs, counted=counted)
        trial.set_user_attr(ATTR_REASON, reason)
        with contextlib.suppress(Exception):
            self.study.study.tell(trial, state=_state("FAIL"))
        if run_id:
            self._close_run(run_id, failure)
        self._emit(f"trial {trial.number} failed ({failure.code})")

    def _close_run(self, run_id: str, failure: TrialError) -> None:
        # KILLED: the user stopped it; FAILED: it broke, or the process running it died.
        status = "KILLED" if failure.code == "interrupted" else "FAILED"
        try:
            self.tracker.set_tag(run_id, "bao.failure_reason", str(failure)[:5000])
            self.tracker.set_terminated(run_id, status=status)
        except Exception:  # MLflow refused it (not an outage: those are kept and retried)
            log.warning("could not close MLflow run %s", run_id, exc_info=True)

    def _enqueue_retry(
        self, number: int, params: dict[str, Any], attrs: dict[str, Any], *, counted: bool = True
    ) -> None:
        attempt = int(attrs.get(ATTR_ATTEMPT, 1))
        if counted and attempt > self.config.max_retries:
            log.warning("trial %d: no retries left (%d attempts)", number, attempt)
            return
        retry = {ATTR_ATTEMPT: attempt + int(counted), ATTR_RETRY_OF: number}
        for key in (ATTR_GENERATION, ATTR_INDEX):
            if key in attrs:
                retry[key] = attrs[key]
        self.study.study.enqueue_trial(params, user_attrs=retry)

    def _recover_stale(self) -> None:
        """Fails and requeues RUNNING trials whose owner is gone or silent past the lease."""
        from optuna.exceptions import UpdateFinishedTrialError

        now = time.time()
        for frozen in self.study.study.get_trials(deepcopy=False, states=(_state("RUNNING"),)):
            why = self._stale_reason(frozen, now)
            if why is None:
                continue
            trial_id = self.study.trial_id(frozen.number)
            failure = TrialError("stale", why)
            try:
                # Attributes of a finished trial are frozen: the reason goes first.
                self.study.storage.set_trial_user_attr(trial_id, ATTR_REASON, str(failure))
                self.study.storage.set_trial_state_values(trial_id, _state("FAIL"))
            except UpdateFinishedTrialError:
                continue  # finished, or another process recovered it first
            log.warning("trial %d: %s; retrying", frozen.number, why)
            self._enqueue_retry(frozen.number, dict(frozen.params), dict(frozen.user_attrs))
            run_id = frozen.user_attrs.get(ATTR_RUN_ID)
            if run_id:
                self._close_run(str(run_id), failure)
                children: list[Any]
                try:
                    children = self.tracker.call(
                        "the seed runs of a stale trial",
                        self.client.search_runs,
                        [self.experiment_id],
                        filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
                    )
                except TrackingUnavailableError:
                    log.warning("seed runs of trial %d left open: MLflow is away", frozen.number)
                    children = []
                for child in children:
                    if child.info.status == "RUNNING":
                        self._close_run(child.info.run_id, failure)

    def _stale_reason(self, frozen: FrozenTrial, now: float) -> str | None:
        owner = frozen.system_attrs.get(OWNER_KEY) or {}
        if owner.get("token") == self.owner["token"]:
            return None
        return stale_reason(frozen, now, self.config.lease)

    def _heartbeat_loop(self) -> None:
        # Beats go on while a stop is under way: the runs are still being closed.
        while not self._closing.wait(self.config.heartbeat_interval):
            with self._owned_lock:
                owned = list(self._owned.values())
            for trial_id in owned:
                try:
                    self.study.storage.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())
                except Exception:  # finished meanwhile, or a storage hiccup: next beat
                    log.debug("heartbeat for trial id %d failed", trial_id, exc_info=True)

    # --------------------------------------------------------------------------- report

    def _emit(self, event: str) -> None:
        self._last_event = event
        self._report()

    def _report(self) -> None:
        if self.on_progress is None:
            return
        counts = self.study.counts()
        remaining = max(0, self.n_trials - counts["COMPLETE"])
        eta = None
        if self._durations:
            eta = remaining * statistics.fmean(self._durations) / self.jobs
        self.on_progress(
            SweepProgress(
                n_trials=self.n_trials,
                complete=counts["COMPLETE"],
                running=counts["RUNNING"],
                waiting=counts["WAITING"],
                failed=counts["FAIL"],
                front=[(t.number, list(t.values)) for t in self._front()],
                elapsed_s=time.monotonic() - self._started,
                eta_s=eta,
                last_event=self._last_event,
            )
        )

    def _front(self) -> list[FrozenTrial]:
        """The Pareto front of the complete trials, recomputed only when one has completed
        (complete trials never change): progress is reported three times per trial."""
        from optuna.trial import TrialState

        complete = self.study.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) != self._front_cache[0]:
            directions = [objective.direction for objective in self.config.objectives]
            self._front_cache = (len(complete), pareto_front_trials(complete, directions))
        return self._front_cache[1]

    def _finish(self, *, aborted: bool = False) -> None:
        import json

        counts = self.study.counts()
        done = counts["COMPLETE"] >= self.n_trials
        state = self.driver.state(self.study)
        summary = {
            "n_trials": self.n_trials,
            "complete": counts["COMPLETE"],
            "failed": counts["FAIL"],
            "driver": state,
            "pareto_trials": [t.number for t in self._front()],
        }
        parent = self.parent_run_id
        self.tracker.replay()  # the sweep's own earlier writes land before its end
        try:
            counted = {f"sweep/{key.lower()}": float(counts[key]) for key in ("COMPLETE", "FAIL")}
            self.tracker.log_metrics(parent, counted)
            self.tracker.set_tag(parent, "bao.driver_state", json.dumps(state))
            # In the sweep's folder, not a temporary one: an outage replays it from there.
            path = self.folder / "summary.json"
            write_atomically(path, json.dumps(summary, indent=2))
            self.tracker.log_artifact(parent, path)
            if done:
                self.tracker.set_terminated(parent, status="FINISHED")
            elif self.leader and aborted:
                self.tracker.set_tag(parent, "bao.failure_reason", "too many failures")
                self.tracker.set_terminated(parent, status="FAILED")
            elif self.leader and self.stop_event.is_set():
                self.tracker.set_terminated(parent, status="KILLED")
        except Exception as error:  # MLflow refused a write, or the disk is full
            log.warning("could not write the sweep summary to MLflow: %s", first_line(error))
        left = self.tracker.replay()
        if left:
            log.warning(
                "%d MLflow write(s) wait in %s; the next sweep or worker of %r writes them",
                left,
                self.tracker.outbox,
                self.config.name,
            )

    def _result(self) -> SweepResult:
        counts = self.study.counts()
        return SweepResult(
            name=self.config.name,
            complete=counts["COMPLETE"],
            failed=counts["FAIL"],
            interrupted=self.stop_event.is_set() and counts["COMPLETE"] < self.n_trials,
            parent_run_id=self.parent_run_id,
            storage_url=self.study.url,
            front=[(t.number, dict(t.params), list(t.values)) for t in self._front()],
        )


def pareto_front_trials(
    trials: Sequence[FrozenTrial], directions: Sequence[str]
) -> list[FrozenTrial]:
    """Optuna's ``best_trials`` of complete ``trials``, by trial number: the non-dominated
    feasible ones (a trial is feasible when every constraint value is <= 0), duplicates of a
    front point all kept. ``best_trials`` itself deep-copies every trial of the study, which
    made the runner's progress reports its largest cost per trial (docs/benchmarks.md)."""
    import moocore
    import numpy as np

    # Trial.set_constraint stores the values under this system attribute.
    feasible = [t for t in trials if all(v <= 0 for v in t.system_attrs.get("constraints", ()))]
    if not feasible:
        return []
    values = np.array([t.values for t in feasible], dtype=float)
    keep = moocore.is_nondominated(
        values, maximise=[d == "maximize" for d in directions], keep_weakly=True
    )
    return sorted((t for t, kept in zip(feasible, keep, strict=True) if kept), key=_number)


def _number(trial: FrozenTrial) -> int:
    return trial.number


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the run's process group, SIGKILL after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return "(no log)"
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else "(no output)"
