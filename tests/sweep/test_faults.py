"""Fault scenarios of a sweep: broken trials, signals, MLflow outages, full or read-only disks.

Each test provokes the fault for real (a process killed or hanging, a tracking server stopped,
an artifact folder gone, a tmpfs that is full or read-only) and checks the records afterwards:
the Optuna study, the MLflow runs and the sweep's folder agree and nothing was lost. The
results are listed in docs/reliability.md. Crash-and-resume with SIGKILL and SIGTERM on the
simulator backend live in test_sweep_sim.py, several workers in test_workers.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bao.records import OUTBOX_FILE as OUTBOX
from sweep.cli import main
from tests.sweep.conftest import (
    REPO_ROOT,
    TINY_TRAIN,
    WriteConfig,
    mlflow_runs,
    status_json,
)


def _sweep(config: Path, workspace: Path, *extra: str) -> int:
    return main(["sweep", str(config), "--workspace", str(workspace), "--json", *extra])


def _popen_sweep(config: Path, workspace: Path, env: dict[str, str] | None = None) -> Any:
    argv = ["sweep", str(config), "--json", "--workspace", str(workspace)]
    return subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", *argv],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def _trials(workspace: Path, name: str) -> list[Any]:
    from sweep.records import open_sweep

    try:
        study = open_sweep(workspace, name).study
    except Exception:  # not created yet
        return []
    return study.trials()


def _wait_until(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _running_trial(workspace: Path, name: str) -> int:
    """Waits for a RUNNING trial with its MLflow run open; returns its number."""

    def find() -> int | None:
        for trial in _trials(workspace, name):
            if trial.state.name == "RUNNING" and trial.user_attrs.get("mlflow_run_id"):
                return int(trial.number) + 1  # 0 is a valid trial number, not "not yet"
        return None

    return int(_wait_until(find, "a running trial")) - 1


def assert_records_agree(status: dict[str, Any], workspace: Path, name: str) -> None:
    """Optuna and MLflow say the same about every trial: complete ones are FINISHED runs
    with the same objective values and their log attached, failed ones are closed runs with
    their reason."""
    runs = mlflow_runs(workspace, name)
    trial_runs = [r for r in runs.values() if r.data.tags.get("bao.role") == "trial"]
    with_runs = [t for t in status["trials"] if t["mlflow_run_id"]]
    assert sorted(r.info.run_id for r in trial_runs) == sorted(
        t["mlflow_run_id"] for t in with_runs
    )
    for trial in with_runs:
        run = runs[trial["mlflow_run_id"]]
        if trial["state"] == "COMPLETE":
            assert run.info.status == "FINISHED"
            assert [run.data.metrics["f1"], run.data.metrics["f2"]] == trial["values"]
            artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
            assert (artifacts / "logs" / "run.log").is_file()
        else:
            assert run.info.status in ("FAILED", "KILLED")
            assert run.data.tags["bao.failure_reason"]
    assert not any(r.info.status == "RUNNING" for r in trial_runs)


# ------------------------------------------------------------- a backend that breaks


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("fail", "exit_code: exit status 3: CUDA error: out of memory (simulated)"),
        ("hang", "timeout: the trial ran past trial_timeout=3 s"),
        ("nan", "bad_metrics: seed 0: f1=nan"),
        ("no-metrics", "missing_metrics: the command exited 0 but wrote no metrics file"),
    ],
)
def test_a_broken_parameter_set_is_retried_up_to_max_retries_and_the_sweep_goes_on(
    command_sweep: WriteConfig,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    reason: str,
) -> None:
    # The first parameter set breaks on every attempt; all others train normally.
    config = command_sweep(f"{mode}-poisoned", max_retries=2, trial_timeout=3)
    assert _sweep(config, workspace, "--n-trials", "3") == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["complete"], status["failed"], status["running"]) == (3, 3, 0)
    failed = [t for t in status["trials"] if t["state"] == "FAIL"]
    # One parameter set, tried 1 + max_retries times, each retry linked to the first attempt.
    assert len({json.dumps(t["params"], sort_keys=True) for t in failed}) == 1
    assert [t["retry_of"] for t in failed] == [None, failed[0]["number"], failed[1]["number"]]
    assert not any(t["retry_of"] == failed[-1]["number"] for t in status["trials"])
    runs = mlflow_runs(workspace, "cmd")
    for trial in failed:
        run = runs[trial["mlflow_run_id"]]
        assert run.info.status == "FAILED"
        assert run.data.tags["bao.failure_reason"].startswith(reason)
        assert run.data.tags["bao.attempt"] == str(failed.index(trial) + 1)
    (parent,) = [r for r in runs.values() if r.data.tags.get("bao.role") == "sweep"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/fail"] == 3
    assert_records_agree(status, workspace, "cmd")


def test_sigint_stops_the_running_trial_and_resume_redoes_it(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first run hangs until it is stopped.
    config = command_sweep("hang-once", driver={"algorithm": "random", "n_trials": 2})
    sweep = _popen_sweep(config, workspace)
    stopped = _running_trial(workspace, "cmd")
    run_log = workspace / "sweeps" / "cmd" / "trials" / f"{stopped:05d}" / "seed-0" / "run.log"
    _wait_until(lambda: run_log.is_file() and run_log.stat().st_size, "the command to start")
    sweep.send_signal(signal.SIGINT)  # Ctrl-C
    assert sweep.wait(timeout=60) == 130, sweep.stderr.read().decode()
    status = status_json(capsys, "cmd", workspace)
    trial = next(t for t in status["trials"] if t["number"] == stopped)
    assert trial["state"] == "FAIL"
    assert not any(t["state"] == "RUNNING" for t in status["trials"])
    run = mlflow_runs(workspace, "cmd")[trial["mlflow_run_id"]]
    assert run.info.status == "KILLED"
    assert run.data.tags["bao.failure_reason"] == (
        "interrupted: the sweep was stopped during this trial"
    )
    # The hanging command was stopped with its sweep, not orphaned.
    assert not _processes_mentioning(str(config.parent / "state"))
    assert any(t["retry_of"] == stopped and t["state"] == "WAITING" for t in status["trials"])
    assert _sweep(config, workspace) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["complete"], status["failed"]) == (2, 1)
    (retry,) = [t for t in status["trials"] if t["retry_of"] == stopped]
    assert retry["state"] == "COMPLETE"
    assert_records_agree(status, workspace, "cmd")


@pytest.mark.slow
def test_interruptions_use_up_no_retries_and_resume_trains_the_same_parameters(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C, SIGTERM and a closed terminal (SIGHUP), one after another, with max_retries=1:
    none of them uses up an attempt or counts as a failure, and the resumed sweep trains the
    parameter set the first run proposed (issue: new-user fixes, item 1)."""
    config = command_sweep(
        "slow", driver={"algorithm": "random", "n_trials": 1}, max_retries=1, max_failures=2
    )
    gate = config.parent / "gate"  # the training waits for it: it runs until it is stopped
    env = {"FAKE_TRAIN_SECONDS": "0", "FAKE_TRAIN_GATE": str(gate)}
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        sweep = _popen_sweep(config, workspace, env)
        _running_trial(workspace, "cmd")
        sweep.send_signal(stop)
        assert sweep.wait(timeout=60) == 130, sweep.stderr.read().decode()
    trials = _trials(workspace, "cmd")
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "FAIL", "WAITING"]
    assert [t.user_attrs.get("attempt", 1) for t in trials] == [1, 1, 1, 1]
    assert [t.user_attrs.get("retry_of") for t in trials] == [None, 0, 1, 2]
    assert all(t.params == trials[0].params for t in trials[:3])  # (a queued one has none yet)
    assert {t.user_attrs["failure_reason"] for t in trials[:3]} == {
        "interrupted: the sweep was stopped during this trial"
    }
    gate.touch()
    assert _sweep(config, workspace, "--resume") == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["complete"], status["failed"]) == (1, 3)
    (done,) = [t for t in status["trials"] if t["state"] == "COMPLETE"]
    assert (done["number"], done["params"]) == (3, trials[0].params)
    assert_records_agree(status, workspace, "cmd")


def test_after_sigkill_status_marks_the_dead_trial_stale_and_its_command_is_gone(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = command_sweep("hang-once", driver={"algorithm": "random", "n_trials": 2})
    sweep = _popen_sweep(config, workspace)
    killed = _running_trial(workspace, "cmd")
    state = str(config.parent / "state")
    # Its marker, not just its process: killed before writing it (a slow start under load),
    # the command would hang again on resume.
    _wait_until((config.parent / "state" / "hung").exists, "the command to hang")
    sweep.kill()  # SIGKILL: no handler runs, nothing is closed
    sweep.wait()
    # The command dies with the sweep (parent-death signal), not left holding a GPU.
    _wait_until(lambda: not _processes_mentioning(state), "the orphaned command to exit", 10)
    status = status_json(capsys, "cmd", workspace)
    trial = status["trials"][killed]
    assert trial["state"] == "RUNNING"  # what the storage says until a process takes it over
    assert trial["stale"] == f"its process {socket.gethostname()}:{sweep.pid} is gone"
    assert _sweep(config, workspace, "--resume") == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["complete"], status["failed"]) == (2, 1)
    assert status["trials"][killed]["stale"] is None
    run = mlflow_runs(workspace, "cmd")[status["trials"][killed]["mlflow_run_id"]]
    assert run.info.status == "FAILED"
    assert run.data.tags["bao.failure_reason"].startswith("stale: its process")
    assert_records_agree(status, workspace, "cmd")


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


# ------------------------------------------------------------------- MLflow outages


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TrackingServer:
    """``mlflow server`` on a local port over the workspace's SQLite database, which can be
    stopped and started again on the same port (an outage of the tracking server)."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        log = (self.workspace / "mlflow-server.log").open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--workers", "1"),
                *("--backend-store-uri", f"sqlite:///{self.workspace / 'mlflow.db'}"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_until(self._healthy, "the MLflow server", timeout=180)

    def _healthy(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, "the MLflow server exited"
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # an outage, not a clean shutdown
        self.process.wait(timeout=30)


@pytest.fixture
def tracking_server(workspace: Path) -> Iterator[TrackingServer]:
    server = TrackingServer(workspace)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# MLflow's HTTP client retries a refused connection for minutes on its own; without that,
# the outage reaches the runner at once and the test stays short.
NO_HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@pytest.mark.slow
@pytest.mark.e2e
def test_a_tracking_server_outage_pauses_new_trials_and_loses_no_write(
    command_sweep: WriteConfig,
    workspace: Path,
    tracking_server: TrackingServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = command_sweep(
        "slow",
        driver={"algorithm": "random", "n_trials": 3},
        tracking_uri=tracking_server.url,
        tracking_patience=1,
    )
    sweep = _popen_sweep(config, workspace, {**NO_HTTP_RETRIES, "FAKE_TRAIN_SECONDS": "4"})
    try:
        first = _running_trial(workspace, "cmd")
        tracking_server.stop()
        outbox = workspace / "sweeps" / "cmd" / OUTBOX
        # The trial finishes during the outage: its values reach Optuna, its MLflow writes
        # (metrics, log, end) wait in the outbox.
        _wait_until(outbox.is_file, "writes kept in the outbox", timeout=60)
        _wait_until(
            lambda: _trials(workspace, "cmd")[first].state.name == "COMPLETE", "trial complete"
        )
        time.sleep(3)
        assert len(_trials(workspace, "cmd")) == 1, "a trial started while MLflow was down"
        assert sweep.poll() is None
        tracking_server.start()
        assert sweep.wait(timeout=180) == 0, sweep.stderr.read().decode()
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert "MLflow" in sweep.stderr.read().decode()  # the outage was reported
    status = status_json(capsys, "cmd", workspace)
    assert (status["complete"], status["failed"]) == (3, 0)
    assert not outbox.exists()
    assert_records_agree(status, workspace, "cmd")
    runs = mlflow_runs(workspace, "cmd")
    run = runs[status["trials"][first]["mlflow_run_id"]]
    # Closed from the outbox, with the time the trial really ended.
    assert run.info.end_time < runs[status["trials"][first + 1]["mlflow_run_id"]].info.start_time


@pytest.mark.slow
def test_a_locked_mlflow_database_is_waited_out(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    # Longer than SQLite's own 20 s busy timeout in MLflow: the runner's retries take over.
    config = command_sweep("slow", driver={"algorithm": "random", "n_trials": 2})
    # The first training ends only once the database is locked (under load, a 1 s training
    # could finish, and its writes land, before the lock was taken).
    gate = workspace.parent / "training-may-end"
    sweep = _popen_sweep(
        config, workspace, {"FAKE_TRAIN_SECONDS": "0", "FAKE_TRAIN_GATE": str(gate)}
    )
    try:
        first = _running_trial(workspace, "cmd")
        database = sqlite3.connect(workspace / "mlflow.db", isolation_level=None, timeout=60)
        database.execute("BEGIN EXCLUSIVE")  # a backup, a long migration, a stuck client
        gate.touch()
        time.sleep(25)
        # The trial's end waits for MLflow (its log, its metrics); nothing else starts.
        assert [t.state.name for t in _trials(workspace, "cmd")] == ["RUNNING"]
        database.execute("ROLLBACK")
        database.close()
        assert sweep.wait(timeout=120) == 0, sweep.stderr.read().decode()
    finally:
        if sweep.poll() is None:
            sweep.kill()
    status = status_json(capsys, "cmd", workspace)
    assert (status["complete"], status["failed"]) == (2, 0)
    assert_records_agree(status, workspace, "cmd")
    assert not (workspace / "sweeps" / "cmd" / OUTBOX).exists()  # waited out, nothing kept
    assert first == 0


@pytest.mark.slow
def test_an_artifact_store_outage_keeps_writes_until_it_returns(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = command_sweep(
        "slow", driver={"algorithm": "random", "n_trials": 3}, tracking_patience=1
    )
    sweep = _popen_sweep(config, workspace, {"FAKE_TRAIN_SECONDS": "3"})
    store = workspace / "mlartifacts" / "cmd"
    away = store.with_name("cmd.away")
    try:
        first = _running_trial(workspace, "cmd")
        store.rename(away)  # the store is gone (an unmounted share); a file stands in its way
        store.write_text("not a folder")
        outbox = workspace / "sweeps" / "cmd" / OUTBOX
        _wait_until(outbox.is_file, "writes kept in the outbox", timeout=60)
        time.sleep(3)
        assert len(_trials(workspace, "cmd")) == 1, "a trial started while MLflow was down"
        # The run's metrics and end wait behind its log, in order.
        kept = [json.loads(line)["op"] for line in outbox.read_text().splitlines()]
        assert kept[0] == "log_artifact"
        assert "set_terminated" in kept
        run = mlflow_runs(workspace, "cmd")[
            _trials(workspace, "cmd")[first].user_attrs["mlflow_run_id"]
        ]
        assert run.info.status == "RUNNING"
        store.unlink()
        away.rename(store)
        assert sweep.wait(timeout=120) == 0, sweep.stderr.read().decode()
    finally:
        if sweep.poll() is None:
            sweep.kill()
    status = status_json(capsys, "cmd", workspace)
    assert (status["complete"], status["failed"]) == (3, 0)
    assert not outbox.exists()
    assert_records_agree(status, workspace, "cmd")


@pytest.mark.slow
@pytest.mark.e2e
def test_a_training_run_that_loses_mlflow_is_failed_cleanly_and_retried(
    sim_sweep: WriteConfig,
    workspace: Path,
    tracking_server: TrackingServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The simulator's train logs into MLflow itself: with the server down it cannot finish.
    train = {**TINY_TRAIN, "trainer": {**TINY_TRAIN["trainer"], "iterations": 12}}
    config = sim_sweep(
        driver={"algorithm": "random", "n_trials": 2},
        train=train,
        tracking_uri=tracking_server.url,
        tracking_patience=1,
    )
    sweep = _popen_sweep(config, workspace, NO_HTTP_RETRIES)
    try:
        broken = _running_trial(workspace, "tiny")
        tracking_server.stop()
        _wait_until(
            lambda: _trials(workspace, "tiny")[broken].state.name == "FAIL", "the trial to fail"
        )
        time.sleep(2)
        assert len(_trials(workspace, "tiny")) == 2  # the attempt and its queued retry
        assert _trials(workspace, "tiny")[1].state.name == "WAITING"
        tracking_server.start()
        assert sweep.wait(timeout=300) == 0, sweep.stderr.read().decode()
    finally:
        if sweep.poll() is None:
            sweep.kill()
    status = status_json(capsys, "tiny", workspace)
    assert (status["complete"], status["failed"]) == (2, 1)
    failed = status["trials"][broken]
    (retry,) = [t for t in status["trials"] if t["retry_of"] == broken]
    assert retry["state"] == "COMPLETE"
    assert retry["params"] == failed["params"]
    run = mlflow_runs(workspace, "tiny")[failed["mlflow_run_id"]]
    assert run.info.status == "FAILED"
    assert run.data.tags["bao.failure_reason"].split(":")[0] in ("exit_code", "tracking")


# ------------------------------------------------------------------------- the disk


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str, *options: str) -> Iterator[Path]:
    """A small tmpfs at ``folder`` (needs root with CAP_SYS_ADMIN; skips otherwise)."""
    folder.mkdir(parents=True)
    argv = ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options])]
    done = subprocess.run([*argv, "tmpfs", str(folder)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _one_line_and_nothing_written(
    capsys: pytest.CaptureFixture[str], root: Path, before: set[Path]
) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert set(root.rglob("*")) == before
    return lines[0]


def test_a_full_disk_stops_the_sweep_before_any_trial(
    command_sweep: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = command_sweep("ok")
    with _tmpfs(tmp_path / "disk", "8m") as disk:
        (disk / "filler").write_bytes(b"\0" * (7 * 2**20))
        before = set(disk.rglob("*"))
        assert _sweep(config, disk / "ws") == 2
        line = _one_line_and_nothing_written(capsys, disk, before)
    assert "MB free on the file system of workspace" in line
    assert "min_free_disk_mb=512" in line
    assert "free disk space" in line


def test_a_read_only_workspace_stops_the_sweep_before_any_trial(
    command_sweep: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = command_sweep("ok", min_free_disk_mb=0)
    with _tmpfs(tmp_path / "disk", "8m", "ro") as disk:
        before = set(disk.rglob("*"))
        assert _sweep(config, disk / "ws") == 2
        line = _one_line_and_nothing_written(capsys, disk, before)
    assert f"workspace {str(disk / 'ws')!r} is not writable (Read-only file system)" in line
    assert "--workspace" in line


def test_a_disk_that_fills_during_the_sweep_stops_it_before_the_next_trial(
    command_sweep: WriteConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = command_sweep("fill", min_free_disk_mb=24)
    with _tmpfs(tmp_path / "disk", "64m") as disk:
        # Each trial's checkpoint leaves less than min_free_disk_mb free.
        monkeypatch.setenv("FAKE_TRAIN_FILL_MB", "48")
        # A sweep whose last trial is done has nothing left to check: it ends normally.
        assert _sweep(config, disk / "one", "--n-trials", "1") == 0
        capsys.readouterr()
        for checkpoint in (disk / "one").rglob("checkpoint.bin"):
            checkpoint.unlink()
        workspace = disk / "ws"
        assert _sweep(config, workspace) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "below min_free_disk_mb=24" in line
        status = status_json(capsys, "cmd", workspace)
        # The finished trial is kept whole; no trial was started and failed on the full disk.
        assert [t["state"] for t in status["trials"]] == ["COMPLETE"]
        assert_records_agree(status, workspace, "cmd")
