"""Launchers: the conformance checks over every registered launcher against a live scheduler
(a subprocess here, a private Slurm cluster, a private Ray head), Slurm's batch script and
the parsing of what Slurm says, and ``--dry-run``'s job for a verl trial on 2 nodes x 8 GPUs
against docs/clusters.md."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sweep.backends import Launch, TrialError
from sweep.config import LauncherConfig, SweepConfig
from sweep.cost import Usage
from sweep.launchers import (
    LAUNCHERS,
    JobRecord,
    JobRequest,
    Launcher,
    make_launcher,
    parse_sacct_job,
    parse_scontrol_job,
    slurm_duration,
)
from sweep.loading import load_sweep_config
from tests.sweep.conftest import REPO_ROOT, TINY_TRAIN, WriteConfig, mlflow_runs
from tests.sweep.ray_head import RayHead, ray_head  # noqa: F401 - fixture
from tests.sweep.slurm import SlurmCluster, slurm_cluster  # noqa: F401 - fixture

MARKS = {"local": [], "slurm": [pytest.mark.slurm], "ray": [pytest.mark.ray]}


def test_every_launcher_kind_of_the_config_has_one_launcher() -> None:
    field = SweepConfig.model_fields["launcher"]
    assert field.default.kind == "local"
    kinds = {
        model.model_fields["kind"].annotation.__args__[0]  # Literal["..."]
        for model in LauncherConfig.__origin__.__args__  # type: ignore[attr-defined]
    }
    assert kinds == set(LAUNCHERS) == {"local", "slurm", "ray"}
    assert all(LAUNCHERS[kind].kind == kind for kind in LAUNCHERS)


# ------------------------------------------------------------------------------ conformance


@pytest.fixture(params=[pytest.param(kind, marks=MARKS[kind]) for kind in LAUNCHERS])
def live_launcher(
    request: pytest.FixtureRequest, command_sweep: WriteConfig
) -> tuple[Launcher, Callable[[str], None]]:
    """A launcher of each kind on a live scheduler, and how to kill one of its jobs from
    outside (``scancel``, Ray's stop, SIGKILL)."""
    kind = request.param
    launcher: dict[str, Any] = {"kind": kind}
    kill: Callable[[str], None]
    if kind == "slurm":
        cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
        launcher |= {"poll_interval": 0.25, "cpus_per_node": 1}

        def kill(job: str) -> None:
            cluster.run("scancel", job)

    elif kind == "ray":
        head: RayHead = request.getfixturevalue("ray_head")
        launcher |= {"address": head.address, "poll_interval": 0.25}

        def kill(job: str) -> None:
            head.client().stop_job(job)  # type: ignore[attr-defined]

    else:

        def kill(job: str) -> None:
            os.kill(int(job), 9)

    loaded = load_sweep_config(command_sweep(launcher=launcher, trial_timeout=120))
    return make_launcher(loaded), kill


def _request(tmp_path: Path, code: str, **env: str) -> JobRequest:
    workdir = tmp_path / "run"
    workdir.mkdir(exist_ok=True)
    launch = Launch(argv=[sys.executable, "-c", code], env={}, cwd=workdir)
    return JobRequest(
        launch, {"BAO_TEST_VALUE": "42", **env}, workdir, f"conformance-{os.getpid()}"
    )


# The run writes its pid, says it started, then sleeps: tests stop or kill it meanwhile.
SLEEPER = (
    "import os, pathlib, time; pathlib.Path('pid').write_text(str(os.getpid())); "
    "print('started', flush=True); time.sleep(120); print('not ' + 'stopped')"
)


def _run(
    launcher: Launcher, request: JobRequest, *, deadline_s: float = 120, stop: Any = None
) -> tuple[list[JobRecord], TrialError | None]:
    ended: list[JobRecord] = []
    try:
        launcher.run(
            request,
            deadline=time.monotonic() + deadline_s,
            stop=stop or threading.Event(),
            after=ended.append,
        )
    except TrialError as error:
        return ended, error
    return ended, None


def _gone(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return True
    return False


def test_a_run_that_succeeds_leaves_its_log_and_its_usage(
    live_launcher: tuple[Launcher, Any], tmp_path: Path
) -> None:
    launcher, _ = live_launcher
    request = _request(
        tmp_path, "import os, time; time.sleep(1); print('value', os.environ['BAO_TEST_VALUE'])"
    )
    ended, error = _run(launcher, request)
    assert error is None
    (record,) = ended
    assert record.log == request.workdir / "run.log"
    assert "value 42" in record.log.read_text()
    assert record.usage.wall_s >= 1.0
    assert record.usage.as_cost()["cpu_seconds"] == record.usage.cpus * record.usage.wall_s
    assert (record.job_id is None) == (launcher.kind == "local")


def test_a_run_that_exits_non_zero_is_an_exit_code_failure(
    live_launcher: tuple[Launcher, Any], tmp_path: Path
) -> None:
    launcher, _ = live_launcher
    ended, error = _run(launcher, _request(tmp_path, "print('oom (simulated)'); exit(3)"))
    assert error is not None
    assert error.code == "exit_code"
    assert "exit status 3" in error.detail
    assert "oom (simulated)" in error.detail
    assert len(ended) == 1


def test_a_stopped_sweep_cancels_the_run(
    live_launcher: tuple[Launcher, Any], tmp_path: Path
) -> None:
    launcher, _ = live_launcher
    request = _request(tmp_path, SLEEPER)
    stop = threading.Event()
    pid_file = request.workdir / "pid"
    threading.Thread(target=lambda: _set_when(pid_file, stop), daemon=True).start()
    ended, error = _run(launcher, request, stop=stop)
    assert error is not None
    assert error.code == "interrupted"
    assert len(ended) == 1
    assert _gone(pid_file)
    assert "not stopped" not in ended[0].log.read_text()


def test_a_run_past_its_deadline_is_cancelled_as_a_timeout(
    live_launcher: tuple[Launcher, Any], tmp_path: Path
) -> None:
    launcher, _ = live_launcher
    request = _request(tmp_path, SLEEPER)
    ended, error = _run(launcher, request, deadline_s=8)
    assert error is not None
    assert error.code == "timeout"
    assert len(ended) == 1
    assert _gone(request.workdir / "pid")


def test_a_run_killed_from_outside_is_a_killed_failure(
    live_launcher: tuple[Launcher, Callable[[str], None]], tmp_path: Path
) -> None:
    launcher, kill = live_launcher
    request = _request(tmp_path, SLEEPER)
    pid_file = request.workdir / "pid"
    outcome: list[Any] = []
    runner = threading.Thread(target=lambda: outcome.append(_run(launcher, request)))
    runner.start()
    _wait_for(pid_file.is_file, "the run to start")
    job = pid_file.read_text() if launcher.kind == "local" else _job_of(launcher, request)
    kill(job)
    runner.join(timeout=120)
    ((ended, error),) = outcome
    assert error is not None
    assert error.code == "killed", error
    assert ended[0].job_id in (None, job)


@pytest.mark.slurm
def test_a_slurm_command_broken_by_the_stop_is_the_stop_and_the_job_is_cancelled(
    slurm_cluster: SlurmCluster,  # noqa: F811 - fixture
    command_sweep: WriteConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Ctrl-C used to reach a scontrol in flight too (same process group): it exited with
    # -2 while the sweep was stopping, and the trial failed as an error, using up a retry.
    launcher = make_launcher(
        load_sweep_config(
            command_sweep(launcher={"kind": "slurm", "poll_interval": 0.25, "cpus_per_node": 1})
        )
    )
    request = _request(tmp_path, SLEEPER)
    pid_file = request.workdir / "pid"
    stop = threading.Event()
    real_state = launcher.job_state  # type: ignore[attr-defined]

    def state_until_the_stop(job_id: str) -> Any:
        if pid_file.is_file() and not stop.is_set():
            stop.set()
            raise TrialError("error", "scontrol show: exit status -2")
        return real_state(job_id)

    monkeypatch.setattr(launcher, "job_state", state_until_the_stop)
    ended, error = _run(launcher, request, stop=stop)
    assert error is not None
    assert error.code == "interrupted", error
    assert len(ended) == 1
    _wait_for(lambda: _gone(pid_file), "the cancelled job's process to end", timeout=60)


@pytest.mark.ray
def test_a_ray_job_whose_status_poll_breaks_is_stopped(
    ray_head: RayHead,  # noqa: F811 - fixture
    command_sweep: WriteConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A busy head that fails a status poll used to leave the job running while the retry ran
    # the same parameters.
    launcher = make_launcher(
        load_sweep_config(
            command_sweep(
                launcher={"kind": "ray", "address": ray_head.address, "poll_interval": 0.25}
            )
        )
    )
    request = _request(tmp_path, SLEEPER)
    pid_file = request.workdir / "pid"
    real_client = launcher.client(launcher.loaded)  # type: ignore[attr-defined]

    class BusyHead:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_client, name)

        def get_job_status(self, job_id: str) -> Any:
            if pid_file.is_file():
                raise ConnectionError("the head did not answer")
            return real_client.get_job_status(job_id)

    monkeypatch.setattr(type(launcher), "client", classmethod(lambda cls, loaded: BusyHead()))
    with pytest.raises(ConnectionError):
        launcher.run(
            request,
            deadline=time.monotonic() + 120,
            stop=threading.Event(),
            after=lambda ended: None,
        )
    _wait_for(lambda: _gone(pid_file), "the stopped job's process to end", timeout=60)


def _set_when(path: Path, event: threading.Event) -> None:
    _wait_for(path.is_file, str(path))
    event.set()


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _job_of(launcher: Launcher, request: JobRequest) -> str:
    """The scheduler's id of the one job named after ``request`` that is running."""
    if launcher.kind == "slurm":
        import subprocess

        out = subprocess.run(
            ["squeue", "-h", "-n", request.name, "-t", "RUNNING", "-o", "%i"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(out) == 1, out
        return out[0]
    from ray.job_submission import JobStatus

    client = launcher.client(launcher.loaded)  # type: ignore[attr-defined]
    running = [
        job.submission_id
        for job in client.list_jobs()
        if (job.submission_id or "").startswith(request.name) and job.status == JobStatus.RUNNING
    ]
    assert len(running) == 1, running
    return str(running[0])


# ------------------------------------------------------------------------- Slurm, offline


def test_slurm_durations_and_job_records_are_read_as_slurm_writes_them() -> None:
    assert slurm_duration("00:00:07") == 7
    assert slurm_duration("1-02:03:04") == 93784
    assert slurm_duration("12:30.5") == 750.5
    assert slurm_duration("INVALID") is None
    line = (
        "JobId=17 JobName=x JobState=CANCELLED Reason=None ExitCode=0:15 RunTime=00:01:40 "
        "NumNodes=2 NumCPUs=32 AllocTRES=cpu=32,mem=64G,node=2,billing=32,gres/gpu=16"
    )
    state = parse_scontrol_job(line)
    assert (state.state, state.exit_code, state.signal) == ("CANCELLED", 0, 15)
    assert (state.elapsed_s, state.nodes, state.cpus, state.gpus) == (100, 2, 32, 16)
    state = parse_sacct_job("CANCELLED by 0|0:0|42|1|4|cpu=4,mem=1G,node=1")
    assert (state.state, state.elapsed_s, state.nodes, state.cpus, state.gpus) == (
        "CANCELLED",
        42,
        1,
        4,
        0,
    )


def test_a_usage_costs_its_allocation_times_its_time() -> None:
    cost = Usage(wall_s=1800, nodes=2, cpus=32, gpus=16).as_cost()
    assert cost == {"wall_s": 1800, "gpu_hours": 8.0, "cpu_seconds": 57600}


def test_the_batch_script_maps_the_launcher_section_and_the_trial_timeout(
    command_sweep: WriteConfig, tmp_path: Path
) -> None:
    launcher_section = {
        "kind": "slurm",
        "nodes": 1,
        "gpus_per_node": 2,
        "cpus_per_node": 6,
        "memory": "32G",
        "partition": "gpu",
        "account": "bao",
        "sbatch": ["--qos=high"],
    }
    loaded = load_sweep_config(command_sweep(launcher=launcher_section, trial_timeout=3601))
    script = make_launcher(loaded).describe(_request(tmp_path, "print(1)"))
    options = re.findall(r"^#SBATCH (\S+)$", script, flags=re.MULTILINE)
    assert options[3:] == [
        "--nodes=1",
        "--ntasks-per-node=1",
        "--cpus-per-task=6",
        "--gpus-per-node=2",
        "--mem=32G",
        "--time=61",  # 3601 s rounded up to minutes
        "--partition=gpu",
        "--account=bao",
        "--no-requeue",
        "--qos=high",
    ]
    assert "export BAO_TEST_VALUE=42" in script
    assert script.rstrip().splitlines()[-1].startswith(f"exec {sys.executable} -c")
    assert "ray start" not in script  # not a verl run


def test_a_bad_sbatch_option_is_one_line(command_sweep: WriteConfig) -> None:
    from bao.configuration import ConfigError

    with pytest.raises(ConfigError, match=r"launcher.*sbatch.*one option like --qos=high"):
        load_sweep_config(command_sweep(launcher={"kind": "slurm", "sbatch": ["qos=high"]}))


# ---------------------------------------------------------------- dry run, docs/clusters.md

DOC = REPO_ROOT / "docs" / "clusters.md"
VERL_SLURM_CONFIG = REPO_ROOT / "configs" / "verl" / "sweep_function_gym_slurm.yaml"
DOC_WORKSPACE = "/shared/bao-runs"
DOC_PYTHON = "/shared/bao-pareto/.venv/bin/python"


def _documented_block(heading: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(heading)
    block = re.search(r"```text\n(.*?)```", text[start:], flags=re.DOTALL)
    assert block is not None, f"no text block after {heading!r} in {DOC}"
    return block.group(1)


@pytest.mark.e2e
def test_docs_show_the_dry_run_of_a_verl_trial_on_2_nodes_of_8_gpus(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("verl")
    from sweep.cli import main

    argv = ["sweep", str(VERL_SLURM_CONFIG), "--dry-run", "--workspace", DOC_WORKSPACE]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # The one path of this machine in the script: the interpreter the sweep runs with.
    out = out.replace(str(Path(sys.executable).parent), str(Path(DOC_PYTHON).parent))
    out = out.replace(str(REPO_ROOT), "/shared/bao-pareto")
    script = out[out.index("#!/bin/bash") :]
    assert "#SBATCH --nodes=2" in script
    assert "#SBATCH --gpus-per-node=8" in script
    assert "ray start --head" in script
    assert script == _documented_block("## The batch script of a verl trial")


# --------------------------------------------------------- the sim sweep, end to end


def _popen_sweep(config: Path, workspace: Path) -> subprocess.Popen[bytes]:
    argv = ["sweep", str(config), "--json", "--workspace", str(workspace)]
    return subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", *argv],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _status(workspace: Path, name: str) -> Any:
    from sweep.records import open_sweep
    from sweep.status import status_document

    opened = open_sweep(workspace, name)
    return status_document(opened.loaded, opened.study)


# Long enough for a test to catch the run under way (a few seconds of training).
SLOW_TRAIN = {**TINY_TRAIN, "trainer": {**TINY_TRAIN["trainer"], "iterations": 12}}


def _cluster_launcher(request: pytest.FixtureRequest, kind: str) -> dict[str, Any]:
    if kind == "slurm":
        request.getfixturevalue("slurm_cluster")
        return {"kind": "slurm", "poll_interval": 0.5}
    head: RayHead = request.getfixturevalue("ray_head")
    return {"kind": "ray", "address": head.address, "poll_interval": 0.5}


CLUSTERS = [
    pytest.param("slurm", marks=pytest.mark.slurm),
    pytest.param("ray", marks=pytest.mark.ray),
]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("kind", CLUSTERS)
def test_a_sim_sweep_runs_its_trials_as_jobs_and_records_their_cost(
    kind: str, request: pytest.FixtureRequest, sim_sweep: WriteConfig, workspace: Path
) -> None:
    launcher = _cluster_launcher(request, kind)
    name = f"e2e-{kind}"
    config = sim_sweep(name=name, launcher=launcher, driver={"algorithm": "random", "n_trials": 2})
    sweep = _popen_sweep(config, workspace)
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, err.decode()[-2000:]
    status = json.loads(out)
    assert (status["complete"], status["failed"], status["launcher"]) == (2, 0, kind)
    runs = mlflow_runs(workspace, name)
    for trial in status["trials"]:
        (job,) = trial["job_ids"]
        cost = trial["cost"]
        assert cost["wall_s"] > 0
        assert cost["cpu_seconds"] == pytest.approx(cost["wall_s"])  # one CPU per job
        assert cost["gpu_hours"] == 0
        run = runs[trial["mlflow_run_id"]]
        assert run.data.metrics["cost/wall_s"] == pytest.approx(cost["wall_s"])
        assert "eval/score" in run.data.metrics  # the run logged into its MLflow run
        artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
        assert "eval/score" in (artifacts / "logs" / "run.log").read_text()  # its --json line
        if kind == "slurm":
            cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
            assert cluster.completions()[job] == "COMPLETED"
        else:
            head: RayHead = request.getfixturevalue("ray_head")
            assert str(head.client().get_job_status(job).value) == "SUCCEEDED"  # type: ignore[attr-defined]
    summed = sum(t["cost"]["wall_s"] for t in status["trials"])
    assert status["cost"]["wall_s"] == pytest.approx(summed)
    (sweep_run,) = [r for r in runs.values() if r.data.tags.get("bao.role") == "sweep"]
    assert sweep_run.data.metrics["sweep/cost/wall_s"] == pytest.approx(summed)


def _running_job(request: pytest.FixtureRequest, kind: str, name: str) -> str:
    """Waits until the scheduler runs trial 0's job of sweep ``name``; its id."""
    job_name = f"{name}-t00000-s0"

    def running() -> str | None:
        if kind == "slurm":
            cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
            jobs = [j for j, (n, s) in cluster.jobs().items() if (n, s) == (job_name, "RUNNING")]
        else:
            head: RayHead = request.getfixturevalue("ray_head")
            jobs = [
                str(job.submission_id)
                for job in head.client().list_jobs()  # type: ignore[attr-defined]
                if (job.submission_id or "").startswith(job_name)
                and str(job.status.value) == "RUNNING"
            ]
        return jobs[0] if jobs else None

    job: str = _wait_for(running, f"job {job_name} to run", 300)
    time.sleep(2)  # into its training
    return job


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("kind", CLUSTERS)
def test_sigint_cancels_the_running_job(
    kind: str, request: pytest.FixtureRequest, sim_sweep: WriteConfig, workspace: Path
) -> None:
    launcher = _cluster_launcher(request, kind)
    name = f"sigint-{kind}"
    config = sim_sweep(
        name=name,
        launcher=launcher,
        train=SLOW_TRAIN,
        driver={"algorithm": "random", "n_trials": 1},
    )
    sweep = _popen_sweep(config, workspace)
    job = _running_job(request, kind, name)
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 130, err.decode()[-2000:]
    status = _status(workspace, name)
    (stopped, *_) = status["trials"]
    assert stopped["state"] == "FAIL"
    assert stopped["job_ids"] == [job]
    if kind == "slurm":
        cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
        assert cluster.completions()[job] == "CANCELLED"
    else:
        head: RayHead = request.getfixturevalue("ray_head")
        assert str(head.client().get_job_status(job).value) == "STOPPED"  # type: ignore[attr-defined]
    run = mlflow_runs(workspace, name)[stopped["mlflow_run_id"]]
    assert run.info.status == "KILLED"
    assert run.data.tags["bao.failure_reason"].startswith("interrupted:")
    assert stopped["cost"]["wall_s"] > 0  # a cancelled job is paid for too


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("kind", CLUSTERS)
def test_a_job_killed_mid_run_is_retried_and_the_sweep_completes(
    kind: str, request: pytest.FixtureRequest, sim_sweep: WriteConfig, workspace: Path
) -> None:
    launcher = _cluster_launcher(request, kind)
    name = f"killed-{kind}"
    config = sim_sweep(
        name=name,
        launcher=launcher,
        train=SLOW_TRAIN,
        driver={"algorithm": "random", "n_trials": 1},
        max_retries=1,
    )
    sweep = _popen_sweep(config, workspace)
    job_id = _running_job(request, kind, name)
    if kind == "slurm":
        cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
        cluster.run("scancel", job_id)  # as an admin, or a node going away, would
    else:
        head: RayHead = request.getfixturevalue("ray_head")
        head.client().stop_job(job_id)  # type: ignore[attr-defined]
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, err.decode()[-2000:]
    status = json.loads(out)
    assert (status["complete"], status["failed"]) == (1, 1)
    killed, retry = status["trials"]
    assert killed["state"] == "FAIL"
    assert killed["job_ids"] == [job_id]
    assert retry["state"] == "COMPLETE"
    assert retry["retry_of"] == killed["number"]
    from sweep.records import open_sweep

    reasons = open_sweep(workspace, name).study.failure_reasons()
    assert reasons[killed["number"]].startswith("killed:")
    if kind == "slurm":
        assert cluster.completions()[job_id] == "CANCELLED"
        assert cluster.completions()[retry["job_ids"][0]] == "COMPLETED"


@pytest.mark.parametrize(
    ("launcher", "said"),
    [
        ({"kind": "slurm"}, "launcher.kind is slurm but"),
        ({"kind": "ray", "address": "http://127.0.0.1:9"}, "launcher.kind is ray but"),
        ({"kind": "ray"}, "neither launcher.address nor $RAY_ADDRESS is set"),
    ],
)
def test_a_scheduler_that_does_not_answer_is_one_line_before_anything_is_written(
    launcher: dict[str, Any], said: str, sim_sweep: WriteConfig, tmp_path: Path
) -> None:
    config = sim_sweep(launcher=launcher)
    workspace = tmp_path / "never-made"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["SLURM_CONF"] = str(tmp_path / "no-slurm.conf")  # no controller to ask
    done = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "sweep", str(config), "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert said in line
    assert not workspace.exists()
