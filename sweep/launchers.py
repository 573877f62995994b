"""Launchers: where one training run of a trial goes, and how it is watched, stopped and costed.

The backend says *what* a run is (its argv, :mod:`sweep.backends`); the launcher says *where*
it runs: ``local`` (a subprocess of the sweep's process, :mod:`sweep.execution`), ``slurm``
(one batch job, through ``sbatch``, ``scontrol``/``sacct`` and ``scancel``) or ``ray`` (one
job on an existing Ray cluster, through Ray's ``JobSubmissionClient``). One class per
``launcher.kind`` in :data:`LAUNCHERS`; the runner holds one and calls :meth:`Launcher.run`
for every run.

Every launcher maps what its scheduler says onto the runner's one failure model
(:class:`sweep.backends.TrialError`): a non-zero exit is ``exit_code``, a job ended by a
signal, a lost node, a pre-emption or a cancel the sweep did not ask for is ``killed`` (the
runner retries it like a crash), the scheduler's time limit or the sweep's deadline is
``timeout``, a stop of the sweep is ``interrupted`` (the job is cancelled first). Each run's
output ends in ``run.log`` in its work folder, and what it held for how long is reported as
a :class:`sweep.cost.Usage` (docs/clusters.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bao.configuration import ConfigError
from bao.errors import BaoError, first_line
from bao.records import PROGRESS_ENV, RUN_LOG
from sweep import execution
from sweep.backends import Backend, Launch, RunRequest, TrialError, backend_class
from sweep.config import LoadedSweep, LocalLauncher, RayLauncher, SlurmLauncher
from sweep.cost import Usage
from sweep.stopping import INTERRUPTED_CODE

log = logging.getLogger(__name__)

CANCEL_WAIT_S = 90.0
"""Seconds a cancelled job gets to reach a final state (Slurm's KillWait is 30 s by default)."""
SCHEDULER_PATIENCE_S = 300.0
"""Seconds a scheduler command may keep failing (a busy controller) before the run fails."""
SCRIPT_FILE = "job.sbatch"
"""In a run's work folder: the batch script a Slurm run was submitted with."""


class LauncherUnavailableError(BaoError):
    """The scheduler a launcher needs cannot be reached from here."""


@dataclass(frozen=True)
class JobRequest:
    """One run to place: the backend's launch, the variables it needs beyond those of the
    process that places it, its work folder and a name for the scheduler's queue."""

    launch: Launch
    env: dict[str, str]
    workdir: Path
    name: str


@dataclass(frozen=True)
class JobRecord:
    """A run that has ended, however it ended: its log, what it held, the scheduler's id."""

    log: Path
    usage: Usage
    job_id: str | None


class Launcher(ABC):
    """Everything that differs by ``launcher.kind``: placing, watching and stopping a run."""

    kind: ClassVar[str]

    def __init__(self, loaded: LoadedSweep) -> None:
        self.loaded = loaded
        self.config = loaded.config

    @classmethod
    def preflight(cls, loaded: LoadedSweep) -> None:
        """What must hold before any trial starts (the scheduler answers)."""
        return

    @abstractmethod
    def describe(self, request: JobRequest) -> str:
        """What would be submitted for ``request`` (the batch script, the job spec, the
        command), for ``--dry-run``."""

    @abstractmethod
    def run(
        self,
        request: JobRequest,
        *,
        deadline: float,
        stop: threading.Event,
        after: Callable[[JobRecord], None],
    ) -> None:
        """Runs ``request`` to its end; ``after`` is called once it has ended, however it
        ended. Raises :class:`TrialError` unless it succeeded before ``deadline`` (monotonic
        clock) and before ``stop`` is set; the run is cancelled in those two cases."""

    def _allocation(self, wall_s: float) -> Usage:
        """The configured allocation held for ``wall_s``."""
        settings = self.config.launcher
        nodes = settings.nodes
        return Usage(
            wall_s=wall_s,
            nodes=nodes,
            cpus=nodes * settings.cpus_per_node,
            gpus=nodes * settings.gpus_per_node,
        )


# ------------------------------------------------------------------------------------ local


class LocalSubprocess(Launcher):
    """A subprocess of this process (:func:`sweep.execution.run_process`)."""

    kind = "local"

    def describe(self, request: JobRequest) -> str:
        env = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(request.env.items()))
        where = f"cd {shlex.quote(str(request.launch.cwd))} && " if request.launch.cwd else ""
        return f"{where}{env} {shlex.join(request.launch.argv)}"

    def run(
        self,
        request: JobRequest,
        *,
        deadline: float,
        stop: threading.Event,
        after: Callable[[JobRecord], None],
    ) -> None:
        started = time.monotonic()

        def ended(log_path: Path) -> None:
            after(JobRecord(log_path, self._allocation(time.monotonic() - started), None))

        execution.run_process(
            request.launch,
            {**os.environ, **request.env},
            request.workdir,
            deadline=deadline,
            timeout=self.config.trial_timeout,
            stop=stop,
            after=ended,
        )


# ------------------------------------------------------------------------------------ slurm

SLURM_TOOLS = ("sbatch", "scontrol", "scancel")
SLURM_RUNNING = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"})
SLURM_LOST = frozenset(
    {"CANCELLED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "OUT_OF_MEMORY", "REVOKED"}
)
"""Final states of a job that did not end by itself: retried like a crash."""
SLURM_OUT_OF_TIME = frozenset({"TIMEOUT", "DEADLINE"})
RAY_PORT = 6379
RAY_WAIT_S = 120
"""Seconds a multi-node job's script waits for its Ray head to answer."""


@dataclass(frozen=True)
class SlurmJobState:
    """What Slurm says about a job: its state, exit status and signal, and what it held."""

    state: str
    exit_code: int
    signal: int
    elapsed_s: float | None
    nodes: int | None
    cpus: int | None
    gpus: int | None


def slurm_duration(text: str) -> float | None:
    """Seconds of a Slurm duration (``[D-]HH:MM:SS``, ``MM:SS``, ``MM:SS.mmm``)."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", text.strip())
    if match is None:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def slurm_gpus(tres: str) -> int | None:
    """The GPUs of a TRES list (``cpu=16,node=2,gres/gpu=16``); 0 when none is listed."""
    if not tres:
        return None
    match = re.search(r"gres/gpu=(\d+)", tres)
    return int(match.group(1)) if match else 0


def parse_scontrol_job(text: str) -> SlurmJobState:
    """A job's state from ``scontrol show job -o ID``'s ``key=value`` line."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, _, value = token.partition("=")
        fields.setdefault(key, value)
    code, _, sig = fields.get("ExitCode", "0:0").partition(":")
    return SlurmJobState(
        state=fields.get("JobState", "UNKNOWN"),
        exit_code=int(code or 0),
        signal=int(sig or 0),
        elapsed_s=slurm_duration(fields.get("RunTime", "")),
        nodes=_int(fields.get("NumNodes", "")),
        cpus=_int(fields.get("NumCPUs", "")),
        gpus=slurm_gpus(fields.get("AllocTRES") or fields.get("TRES", "")),
    )


def parse_sacct_job(line: str) -> SlurmJobState:
    """A job's state from ``sacct -n -P -X -o State,ExitCode,ElapsedRaw,NNodes,NCPUS,AllocTRES``
    (a job Slurm's controller has already forgotten)."""
    state, exit_code, elapsed, nodes, cpus, tres = (line.split("|") + [""] * 6)[:6]
    code, _, sig = exit_code.partition(":")
    return SlurmJobState(
        state=state.split()[0] if state else "UNKNOWN",  # "CANCELLED by 0"
        exit_code=int(code or 0),
        signal=int(sig or 0),
        elapsed_s=float(elapsed) if elapsed.isdigit() else None,
        nodes=_int(nodes),
        cpus=_int(cpus),
        gpus=slurm_gpus(tres),
    )


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


class SlurmBatchJob(Launcher):
    """One ``sbatch`` job per run, on the cluster this machine submits to."""

    kind = "slurm"

    @property
    def settings(self) -> SlurmLauncher:
        settings = self.config.launcher
        assert isinstance(settings, SlurmLauncher)
        return settings

    @classmethod
    def preflight(cls, loaded: LoadedSweep) -> None:
        missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
        if missing:
            raise LauncherUnavailableError(
                f"launcher.kind is slurm but {', '.join(missing)} is not on PATH",
                fix="run the sweep on a Slurm login node, or set launcher.kind: local",
            )
        try:
            _slurm("scontrol", "ping", patience=0.0)  # at start: one line now, not a wait
        except TrialError as error:
            raise LauncherUnavailableError(
                f"launcher.kind is slurm but the Slurm controller does not answer ({error.detail})",
                fix="check `scontrol ping` and $SLURM_CONF on this machine",
            ) from None

    def time_limit_minutes(self) -> int:
        """``--time``: the configured limit, else the trial's timeout in whole minutes."""
        return self.settings.time_limit_minutes or max(1, math.ceil(self.config.trial_timeout / 60))

    def script(self, request: JobRequest) -> str:
        """The batch script of ``request``: ``#SBATCH`` lines, the run's variables, and the
        run's command (a verl run on several nodes first starts its Ray cluster)."""
        settings = self.settings
        options = [
            f"--job-name={request.name}",
            f"--output={request.workdir / RUN_LOG}",
            # Where a local run would run: relative paths in configs mean the same.
            f"--chdir={request.launch.cwd or Path.cwd()}",
            f"--nodes={settings.nodes}",
            "--ntasks-per-node=1",
            f"--cpus-per-task={settings.cpus_per_node}",
        ]
        if settings.gpus_per_node:
            options.append(f"--gpus-per-node={settings.gpus_per_node}")
        if settings.memory:
            options.append(f"--mem={settings.memory}")
        options.append(f"--time={self.time_limit_minutes()}")
        if settings.partition:
            options.append(f"--partition={settings.partition}")
        if settings.account:
            options.append(f"--account={settings.account}")
        # A lost node fails the run and the sweep retries it as a new attempt (with its own
        # records); a job Slurm requeued by itself would run twice under one attempt.
        options.append("--no-requeue")
        options += settings.sbatch
        lines = ["#!/bin/bash", *(f"#SBATCH {option}" for option in options)]
        lines += ["", "set -euo pipefail"]
        lines += [
            f"export {key}={shlex.quote(value)}" for key, value in sorted(request.env.items())
        ]
        command = shlex.join(request.launch.argv)
        if settings.nodes > 1 and backend_class(self.config.backend.kind).runs_ray_cluster:
            lines += self._ray_cluster_lines()
            lines += [command]
        else:
            lines += [f"exec {command}"]
        return "\n".join(lines) + "\n"

    def _ray_cluster_lines(self) -> list[str]:
        """A Ray head on the allocation's first node and a worker on each other one; the run
        joins it through ``RAY_ADDRESS`` (docs/verl.md, "On a cluster")."""
        ray = shlex.quote(str(Path(sys.executable).with_name("ray")))
        gpus = self.settings.gpus_per_node
        per_node = f"--num-cpus=$SLURM_CPUS_PER_TASK --num-gpus={gpus} --block"
        return [
            "",
            "# The run's Ray cluster, inside this allocation: head on the first node.",
            'nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))',
            'head_ip=$(srun --nodes=1 --ntasks=1 -w "${nodes[0]}" hostname --ip-address '
            "| awk '{print $1}')",
            f'srun --nodes=1 --ntasks=1 -w "${{nodes[0]}}" {ray} start --head '
            f'--node-ip-address="$head_ip" --port={RAY_PORT} {per_node} &',
            f'export RAY_ADDRESS="$head_ip:{RAY_PORT}"',
            f"for _ in $(seq {RAY_WAIT_S}); do {ray} status >/dev/null 2>&1 && break; "
            "sleep 1; done",
            'for node in "${nodes[@]:1}"; do',
            f'    srun --nodes=1 --ntasks=1 -w "$node" {ray} start --address="$RAY_ADDRESS" '
            f"{per_node} &",
            "done",
            "",
        ]

    def describe(self, request: JobRequest) -> str:
        return self.script(request)

    def run(
        self,
        request: JobRequest,
        *,
        deadline: float,
        stop: threading.Event,
        after: Callable[[JobRecord], None],
    ) -> None:
        script = request.workdir / SCRIPT_FILE
        script.write_text(self.script(request), encoding="utf-8")
        log_path = request.workdir / RUN_LOG
        submitted = time.monotonic()
        job_id = _slurm("sbatch", "--parsable", str(script)).strip().split(";")[0]
        log.info("%s: Slurm job %s", request.name, job_id)
        ended: SlurmJobState | None = None
        final: SlurmJobState | None = None
        try:
            ended = final = self._watch(job_id, deadline, stop)
        except TrialError as error:
            # A Slurm command that broke while the sweep was stopping is the stop, not a fault
            # of the trial: it must use up no retry (docs/reliability.md, scenario 2).
            if stop.is_set() and error.code != INTERRUPTED_CODE:
                raise TrialError(
                    INTERRUPTED_CODE, f"the sweep was stopped ({error.detail})"
                ) from None
            raise
        finally:
            if ended is None:  # the sweep stopped, the deadline passed, or the watch broke
                final = self._cancel(job_id)
            after(JobRecord(log_path, self._usage(final, time.monotonic() - submitted), job_id))
        self._raise_for(job_id, ended, log_path)

    def _usage(self, state: SlurmJobState | None, since_submitted: float) -> Usage:
        """What Slurm says the job held, for how long; the configured allocation for the time
        since submission (queue wait included) when Slurm cannot tell."""
        if state is None or state.elapsed_s is None:
            return self._allocation(since_submitted)
        usage = self._allocation(state.elapsed_s)
        if not state.nodes:
            return usage
        return Usage(state.elapsed_s, state.nodes, state.cpus or usage.cpus, state.gpus or 0)

    def _watch(self, job_id: str, deadline: float, stop: threading.Event) -> SlurmJobState:
        """The job's final state; raises :class:`TrialError` when the sweep stopped or the
        deadline passed (the caller then cancels the job)."""
        while True:
            state = self.job_state(job_id)
            if state.state not in SLURM_RUNNING:
                return state
            if stop.wait(self.settings.poll_interval):
                raise TrialError(INTERRUPTED_CODE, "the sweep was stopped during this trial")
            if time.monotonic() > deadline:
                raise TrialError(
                    "timeout", f"the trial ran past trial_timeout={self.config.trial_timeout:g} s"
                )

    def job_state(self, job_id: str) -> SlurmJobState:
        """What ``scontrol`` says about the job, or ``sacct`` once the controller forgot it."""
        try:
            return parse_scontrol_job(_slurm("scontrol", "show", "job", "-o", job_id))
        except TrialError as error:
            if "Invalid job id" not in error.detail:
                raise
        fields = "State,ExitCode,ElapsedRaw,NNodes,NCPUS,AllocTRES"
        text = _slurm("sacct", "-n", "-P", "-X", "-j", job_id, "-o", fields)
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise TrialError("error", f"Slurm has no record of job {job_id}")
        return parse_sacct_job(lines[0])

    def _cancel(self, job_id: str) -> SlurmJobState | None:
        """``scancel``, then the job's final state (None if it never got there)."""
        log.info("cancelling Slurm job %s", job_id)
        try:
            _slurm("scancel", job_id)
        except TrialError as error:
            log.warning("scancel %s: %s", job_id, error.detail)
        waited_until = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < waited_until:
            try:
                state = self.job_state(job_id)
            except TrialError:
                return None
            if state.state not in SLURM_RUNNING:
                return state
            time.sleep(min(1.0, self.settings.poll_interval))
        log.warning("Slurm job %s still not ended %g s after scancel", job_id, CANCEL_WAIT_S)
        return None

    def _raise_for(self, job_id: str, state: SlurmJobState, log_path: Path) -> None:
        what = f"Slurm job {job_id} ended {state.state}"
        if state.state == "COMPLETED" and state.exit_code == 0:
            return
        if state.state in SLURM_OUT_OF_TIME:
            raise TrialError("timeout", f"{what} (--time={self.time_limit_minutes()})")
        if state.state in SLURM_LOST or state.signal:
            signal_note = f", signal {state.signal}" if state.signal else ""
            raise TrialError("killed", f"{what}{signal_note}: {execution.last_line(log_path)}")
        raise TrialError(
            "exit_code", f"{what}, exit status {state.exit_code}: {execution.last_line(log_path)}"
        )


def _slurm(*argv: str, patience: float = SCHEDULER_PATIENCE_S) -> str:
    """A Slurm command's output; a controller that does not answer is asked again for up to
    ``patience`` seconds; a refusal raises :class:`TrialError` (``error``)."""
    waited = 0.0
    while True:
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
                # Its own session: the Ctrl-C (or SIGTERM, SIGHUP) that stops the sweep must
                # not also kill a scontrol or sbatch in flight (that would lose a job id or
                # turn a stop into an error); the runner cancels the jobs itself.
                start_new_session=True,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise TrialError("error", f"{argv[0]}: {first_line(error)}") from None
        if done.returncode == 0:
            return done.stdout
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        detail = lines[-1][:300]
        transient = "Socket timed out" in detail or "Unable to contact" in detail
        if not transient or waited >= patience:
            raise TrialError("error", f"{' '.join(argv[:2])}: {detail}")
        log.warning("%s: %s; asking again", argv[0], detail)
        time.sleep(5.0)
        waited += 5.0


# -------------------------------------------------------------------------------------- ray

RAY_FINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


class RayJob(Launcher):
    """One job per run on a running Ray cluster, through the Jobs API."""

    kind = "ray"

    @property
    def settings(self) -> RayLauncher:
        settings = self.config.launcher
        assert isinstance(settings, RayLauncher)
        return settings

    @classmethod
    def address(cls, loaded: LoadedSweep) -> str:
        settings = loaded.config.launcher
        assert isinstance(settings, RayLauncher)
        address = settings.address or os.environ.get("RAY_ADDRESS", "")
        if not address:
            raise LauncherUnavailableError(
                "launcher.kind is ray but neither launcher.address nor $RAY_ADDRESS is set",
                fix="set launcher.address to the cluster's dashboard, e.g. http://head:8265",
            )
        return address

    @classmethod
    def client(cls, loaded: LoadedSweep) -> Any:
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise LauncherUnavailableError(
                "launcher.kind is ray but ray is not installed",
                fix="install the verl extra (pip install -e '.[verl]'), which brings ray",
            ) from None
        address = cls.address(loaded)
        try:
            return JobSubmissionClient(address)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise LauncherUnavailableError(
                f"launcher.kind is ray but the Ray cluster at {address} does not answer "
                f"({first_line(error)})",
                fix="start it (ray start --head) or check launcher.address",
            ) from None

    @classmethod
    def preflight(cls, loaded: LoadedSweep) -> None:
        cls.client(loaded)

    def spec(self, request: JobRequest) -> dict[str, Any]:
        """The arguments of ``JobSubmissionClient.submit_job`` for ``request``."""
        command = shlex.join(request.launch.argv)
        cwd = request.launch.cwd or Path.cwd()  # as for a local run
        return {
            "entrypoint": f"cd {shlex.quote(str(cwd))} && exec {command}",
            "runtime_env": {"env_vars": dict(sorted(request.env.items()))},
            "entrypoint_num_cpus": self.settings.entrypoint_num_cpus,
            "entrypoint_num_gpus": self.settings.entrypoint_num_gpus,
        }

    def describe(self, request: JobRequest) -> str:
        return json.dumps(self.spec(request), indent=2)

    def run(
        self,
        request: JobRequest,
        *,
        deadline: float,
        stop: threading.Event,
        after: Callable[[JobRecord], None],
    ) -> None:
        client = self.client(self.loaded)
        job_id = f"{request.name}-{uuid.uuid4().hex[:8]}"
        log_path = request.workdir / RUN_LOG
        started = time.monotonic()
        try:
            client.submit_job(submission_id=job_id, **self.spec(request))
        except Exception as error:  # the cluster refused it: no job, nothing to cancel
            raise TrialError("error", f"Ray refused the job: {first_line(error)}") from None
        log.info("%s: Ray job %s", request.name, job_id)
        info: Any = None
        ended = False
        try:
            while True:
                status = str(client.get_job_status(job_id).value)
                if status in RAY_FINAL:
                    ended = True
                    break
                if stop.wait(self.settings.poll_interval):
                    raise TrialError(INTERRUPTED_CODE, "the sweep was stopped during this trial")
                if time.monotonic() > deadline:
                    raise TrialError(
                        "timeout",
                        f"the trial ran past trial_timeout={self.config.trial_timeout:g} s",
                    )
        finally:
            # Stopped, timed out, or the status poll broke (a busy head): the job must not
            # go on holding its resources while a retry runs the same parameters.
            if not ended:
                self._stop(client, job_id)
            info = _quietly(client.get_job_info, job_id)
            logs = _quietly(client.get_job_logs, job_id)
            log_path.write_text(logs or "", encoding="utf-8")
            wall = time.monotonic() - started
            if info is not None and info.start_time and info.end_time:
                wall = (info.end_time - info.start_time) / 1000.0
            after(JobRecord(log_path, self._allocation(wall), job_id))
        status = str(info.status.value) if info is not None else "UNKNOWN"
        what = f"Ray job {job_id} ended {status}"
        if status == "SUCCEEDED":
            return
        if status == "STOPPED":  # stopped by someone else, or its cluster lost it
            raise TrialError("killed", f"{what}: {execution.last_line(log_path)}")
        code = getattr(info, "driver_exit_code", None)
        if code is None or code < 0:
            message = str(getattr(info, "message", "") or "").strip().splitlines() or ["?"]
            raise TrialError("killed", f"{what}: {message[0][:300]}")
        raise TrialError(
            "exit_code", f"{what}, exit status {code}: {execution.last_line(log_path)}"
        )

    def _stop(self, client: Any, job_id: str) -> None:
        log.info("stopping Ray job %s", job_id)
        _quietly(client.stop_job, job_id)
        waited_until = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < waited_until:
            status = _quietly(client.get_job_status, job_id)
            if status is None or str(status.value) in RAY_FINAL:
                return
            time.sleep(1.0)
        log.warning("Ray job %s still not ended %g s after stop_job", job_id, CANCEL_WAIT_S)


def _quietly(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, or None (logged) when the cluster does not answer."""
    try:
        return call(*args)
    except Exception as error:
        log.warning("Ray: %s failed: %s", getattr(call, "__name__", call), first_line(error))
        return None


# ------------------------------------------------------------------------------ the runs


def job_request(
    backend: Backend, request: RunRequest, *, sweep: str, tracking_uri: str, workspace: Path
) -> JobRequest:
    """The launcher's view of one run: the backend's launch with the variables that tie it
    to its MLflow run and its workspace."""
    launch = backend.launch(request)
    env = {
        **launch.env,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_RUN_ID": request.run_id,
        "BAO_PARETO_HOME": str(workspace),
        "PYTHONUNBUFFERED": "1",
        # Where the run appends its intermediate evaluations (sweep/pruning.py reads them).
        PROGRESS_ENV: str(backend.progress_file(request)),
    }
    name = f"{sweep}-t{request.trial_number:05d}-s{request.seed}"
    return JobRequest(launch=launch, env=env, workdir=request.workdir, name=name)


DRY_RUN_ID = "DRY-RUN-MLFLOW-RUN-ID"
"""The MLflow run id a ``--dry-run`` job shows (a real run has one created for it)."""


def describe_first_run(loaded: LoadedSweep, workspace: str | None, params: dict[str, Any]) -> str:
    """What the launcher would submit for trial 0's first seed with ``params`` (``--dry-run``),
    in the workspace ``workspace`` names, without creating anything."""
    from bao import records
    from bao.tracking import tracking_uri, workspace_path
    from sweep.backends import make_backend
    from sweep.storage import sweep_dir

    root = workspace_path(workspace).resolve()
    folder = sweep_dir(root, loaded.config.name)
    backend = make_backend(loaded, folder / records.TRAIN_CONFIG_FILE, root)
    seed = loaded.config.training_seeds[0]
    request = RunRequest(params, seed, 0, DRY_RUN_ID, records.run_workdir(folder, 0, seed))
    uri = loaded.config.tracking_uri or tracking_uri(root)
    job = job_request(backend, request, sweep=loaded.config.name, tracking_uri=uri, workspace=root)
    return make_launcher(loaded).describe(job)


# ------------------------------------------------------------------------------- registry

LAUNCHERS: dict[str, type[Launcher]] = {
    launcher.kind: launcher for launcher in (LocalSubprocess, SlurmBatchJob, RayJob)
}
"""``launcher.kind`` -> its class: the one place a launcher is chosen."""


def make_launcher(loaded: LoadedSweep) -> Launcher:
    return LAUNCHERS[loaded.config.launcher.kind](loaded)


def check_allocation(loaded: LoadedSweep) -> None:
    """A cluster launcher's nodes and GPUs per node are those the training config runs on
    (verl's ``schedule.nnodes`` and ``n_gpus_per_node``): a job that holds other than what
    its run uses either waits forever or pays for idle GPUs."""
    settings = loaded.config.launcher
    if isinstance(settings, LocalLauncher):
        return
    wanted = backend_class(loaded.config.backend.kind).nodes_and_gpus(loaded.train_config)
    if wanted is None or wanted == (settings.nodes, settings.gpus_per_node):
        return
    raise ConfigError(
        f"{loaded.source}: launcher asks for {settings.nodes} node(s) x "
        f"{settings.gpus_per_node} GPU(s) but the training config runs on {wanted[0]} x "
        f"{wanted[1]} (schedule.nnodes x schedule.n_gpus_per_node)",
        fix="set launcher.nodes and launcher.gpus_per_node to the training config's, or "
        "change train.schedule",
    )


def preflight(loaded: LoadedSweep) -> None:
    """What must hold here before any trial starts: for a local run, the backend's own
    preflight (e.g. verl: the GPUs of this machine); for a cluster, the scheduler answers
    (the GPUs are the allocation's, not this machine's)."""
    if isinstance(loaded.config.launcher, LocalLauncher):
        from sweep.backends import preflight as backend_preflight

        backend_preflight(loaded)
        return
    LAUNCHERS[loaded.config.launcher.kind].preflight(loaded)
