"""A process's hold on one sweep: its study, its backend, its MLflow runs, opened and closed.

:class:`SweepSession` is what a runner stands on: :meth:`~SweepSession.prepare` opens (or
creates) the study, writes the manifest and the training config, and finds (or creates) the
sweep's MLflow run; :meth:`~SweepSession.finish` writes the sweep's summary and ends that run.
In between it offers the runner the record-keeping steps every failure path shares: closing
a run with its reason, queueing a retry, finding a stale trial's open seed runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bao import records
from bao.errors import BaoError, first_line
from sweep import stopping
from sweep.backends import Backend, TrialError, make_backend
from sweep.config import LoadedSweep
from sweep.drivers import Driver, make_driver
from sweep.lease import stale_trials, take_over
from sweep.records import (
    children_filter,
    role_filter,
    seed_run_tags,
    sweep_run_tags,
    trial_run_tags,
)
from sweep.storage import SweepStudy, open_study, sweep_dir, write_atomically, write_manifest
from sweep.tracking import Tracker, TrackingUnavailableError

if TYPE_CHECKING:
    from collections import Counter

    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import FrozenTrial

    from sweep.lease import Owner

log = logging.getLogger(__name__)


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


class SweepSession:
    """One process's study, backend, driver and MLflow handles for a sweep."""

    def __init__(
        self,
        loaded: LoadedSweep,
        workspace: Path,
        *,
        leader: bool,
        n_trials: int | None,
        owner: Owner,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.workspace = workspace
        self.leader = leader
        self._n_trials_given = n_trials
        self.n_trials = n_trials or self.config.driver.n_trials
        self.folder = sweep_dir(workspace, self.config.name)
        self.owner = owner
        self.driver: Driver = make_driver(self.config)
        self.study: SweepStudy
        self.backend: Backend
        self.client: MlflowClient
        self.tracker: Tracker
        self.tracking_uri = ""
        self.experiment_id = ""
        self.parent_run_id = ""

    @property
    def token(self) -> object:
        """This process's owner token: its own running trials are never stale to it."""
        return self.owner["token"]

    # --------------------------------------------------------------------------- set-up

    def prepare(self) -> None:
        """Opens (or creates) the study, the manifest and the sweep's MLflow run."""
        from filelock import Timeout

        from bao.tracking import (
            check_tracking_store,
            experiment_id,
            mlflow_client,
            tracking_uri,
            workspace_lock,
        )

        # Both stores are checked before anything is written: a damaged mlflow.db or
        # optuna.db is one line with every file as it was (docs/reliability.md).
        self.tracking_uri = self.config.tracking_uri or tracking_uri(self.workspace)
        check_tracking_store(self.workspace, self.tracking_uri)
        with workspace_lock(self.workspace):  # concurrent starters create tables once
            self.study = open_study(self.loaded, self.workspace, self.driver.sampler())
        self.client = mlflow_client(self.workspace, self.tracking_uri, writing=True)
        existing = len(self.study.trials())
        if existing or not self.leader:
            # Same seed, same proposals holds for a sweep run start to finish by one
            # process; a resumed sweep or a worker continues on a stream of its own.
            token = str(self.token)
            stream = 1 + existing + (0 if self.leader else int(token[:8], 16))
            self.study.study.sampler = self.driver.sampler(stream)
        write_manifest(self.loaded, self.workspace, self.study.url)
        target = self.study.study.user_attrs.get(records.STUDY_N_TRIALS)
        if not self.leader and self._n_trials_given is None and target is not None:
            self.n_trials = int(target)  # a worker follows the sweep's own target
        elif self.leader or self._n_trials_given is not None or target is None:
            self.study.study.set_user_attr(records.STUDY_N_TRIALS, self.n_trials)
        train_path = self.folder / records.TRAIN_CONFIG_FILE
        if self.loaded.train_config:
            write_atomically(train_path, yaml.safe_dump(self.loaded.train_config, sort_keys=False))
        self.backend = make_backend(self.loaded, train_path, self.workspace)
        outbox = self.folder / records.OUTBOX_FILE
        self.tracker = Tracker(self.client, outbox, self.config.tracking_patience)
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
            tags = sweep_run_tags(self.config.name, self.study.url, self.config.fingerprint())
            created = self.client.create_run(
                self.experiment_id, run_name=self.config.name, tags=tags
            ).info.run_id
            runs = self._sweep_runs()
        chosen: str = runs[0].info.run_id
        if created is not None and created != chosen:
            self.client.delete_run(created)  # another process created it first
        if created == chosen:
            self._record_config(chosen)
        self.study.study.set_user_attr(records.STUDY_PARENT_RUN, chosen)
        if self.leader:
            self.client.update_run(chosen, status="RUNNING")
        return chosen

    def _sweep_runs(self) -> list[Any]:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=role_filter(records.ROLE_SWEEP), max_results=100
        )
        return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))

    def _record_config(self, run_id: str) -> None:
        from bao.configuration import flatten
        from bao.tracking import log_params

        config = self.config.model_dump(mode="json")
        log_params(self.client, run_id, flatten(config))
        self.client.log_artifact(run_id, str(self.folder / records.MANIFEST_FILE))
        if self.loaded.train_config:
            self.client.log_artifact(run_id, str(self.folder / records.TRAIN_CONFIG_FILE))

    # ---------------------------------------------------------------------------- runs

    def _trial_run(self, trial: optuna.Trial, attrs: dict[str, Any]) -> str:
        """A new MLflow run for an attempt of ``trial``, with its parameters."""
        tags = trial_run_tags(
            self.config.name, self.parent_run_id, trial.number, attrs, self.config.backend.kind
        )
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

    def _seed_run(self, number: int, trial_run_id: str, seed: int) -> str:
        """A new MLflow run for one training seed, nested under the trial's run."""
        run = self.tracker.call(
            "a seed's new run",
            self.client.create_run,
            self.experiment_id,
            run_name=f"{self.config.name}-trial-{number:04d}-seed{seed}",
            tags=seed_run_tags(self.config.name, trial_run_id, number, seed),
        )
        run_id: str = run.info.run_id
        return run_id

    def _close_run(self, run_id: str, failure: TrialError) -> None:
        # KILLED: the user stopped it; FAILED: it broke, or the process running it died.
        status = "KILLED" if failure.code == stopping.INTERRUPTED_CODE else "FAILED"
        try:
            self.tracker.set_tag(run_id, records.TAG_FAILURE_REASON, str(failure)[:5000])
            self.tracker.set_terminated(run_id, status=status)
        except Exception:  # MLflow refused it (not an outage: those are kept and retried)
            log.warning("could not close MLflow run %s", run_id, exc_info=True)

    def _open_children(self, run_id: str, number: int) -> list[str]:
        """The seed runs of a stale trial still marked RUNNING (none while MLflow is away)."""
        try:
            children: list[Any] = self.tracker.call(
                "the seed runs of a stale trial",
                self.client.search_runs,
                [self.experiment_id],
                filter_string=children_filter(run_id),
            )
        except TrackingUnavailableError:
            log.warning("seed runs of trial %d left open: MLflow is away", number)
            return []
        return [child.info.run_id for child in children if child.info.status == "RUNNING"]

    def _enqueue_retry(
        self, number: int, params: dict[str, Any], attrs: dict[str, Any], *, counted: bool = True
    ) -> None:
        attempt = int(attrs.get(records.ATTR_ATTEMPT, 1))
        if counted and attempt > self.config.max_retries:
            log.warning("trial %d: no retries left (%d attempts)", number, attempt)
            return
        retry = {records.ATTR_ATTEMPT: attempt + int(counted), records.ATTR_RETRY_OF: number}
        for key in (records.ATTR_GENERATION, records.ATTR_INDEX):
            if key in attrs:
                retry[key] = attrs[key]
        self.study.study.enqueue_trial(params, user_attrs=retry)

    # -------------------------------------------------------------------------- failure

    def _emit(self, event: str) -> None:
        """Reports an event (a runner draws progress from it; here: nothing)."""

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
        log.warning("trial %d failed: %s", trial.number, failure)
        state = self.study.storage.get_trial(self.study.trial_id(trial.number)).state
        if state.is_finished():  # another process already took it as stale and requeued it
            if run_id:
                self._close_run(run_id, failure)
            return
        # The retry is queued before the attempt is marked failed, so a pymoo generation
        # never looks finished in between. An MLflow outage or a stop of the sweep does not
        # use up an attempt: the same parameter set runs again on resume.
        counted = stopping.counts_as_failure(failure.code)
        self._enqueue_retry(trial.number, dict(trial.params), attrs, counted=counted)
        trial.set_user_attr(records.ATTR_REASON, str(failure))
        from optuna.trial import TrialState

        with contextlib.suppress(Exception):
            self.study.study.tell(trial, state=TrialState.FAIL)
        if run_id:
            self._close_run(run_id, failure)
        self._emit(f"trial {trial.number} failed: {first_line(failure)[:300]}")

    def _recover_stale(self) -> None:
        """Fails and requeues RUNNING trials whose owner is gone or silent past the lease."""
        from optuna.trial import TrialState

        running = self.study.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for frozen, why in stale_trials(running, time.time(), self.config.lease, self.token):
            failure = TrialError("stale", why)
            if not take_over(self.study, frozen.number, str(failure)):
                continue  # finished, or another process recovered it first
            log.warning("trial %d: %s; retrying", frozen.number, why)
            self._enqueue_retry(frozen.number, dict(frozen.params), dict(frozen.user_attrs))
            run_id = frozen.user_attrs.get(records.ATTR_RUN_ID)
            if run_id:
                self._close_run(str(run_id), failure)
                for child in self._open_children(str(run_id), frozen.number):
                    self._close_run(child, failure)

    # --------------------------------------------------------------------------- finish

    def finish(
        self,
        counts: Counter[str],
        front: list[FrozenTrial],
        *,
        aborted: bool,
        stopped: bool,
        done: bool,
    ) -> None:
        """The sweep's summary (metrics, driver state, ``summary.json``) on its run, which
        ends FINISHED when ``done``; the leader marks it FAILED (``aborted``) or KILLED
        (``stopped``). MLflow trouble is logged, never raised."""
        state = self.driver.state(self.study)
        summary = {
            "n_trials": self.n_trials,
            "complete": counts["COMPLETE"],
            "failed": counts["FAIL"],
            "pruned": counts["PRUNED"],
            "driver": state,
            "pareto_trials": [t.number for t in front],
        }
        parent = self.parent_run_id
        self.tracker.replay()  # the sweep's own earlier writes land before its end
        try:
            counted = {
                f"sweep/{key.lower()}": float(counts[key]) for key in ("COMPLETE", "FAIL", "PRUNED")
            }
            self.tracker.log_metrics(parent, counted)
            self.tracker.set_tag(parent, records.TAG_DRIVER_STATE, json.dumps(state))
            # In the sweep's folder, not a temporary one: an outage replays it from there.
            path = self.folder / records.SUMMARY_FILE
            write_atomically(path, json.dumps(summary, indent=2))
            self.tracker.log_artifact(parent, path)
            if done:
                self.tracker.set_terminated(parent, status="FINISHED")
            elif self.leader and aborted:
                self.tracker.set_tag(parent, records.TAG_FAILURE_REASON, "too many failures")
                self.tracker.set_terminated(parent, status="FAILED")
            elif self.leader and stopped:
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
