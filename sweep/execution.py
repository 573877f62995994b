"""One training run as a subprocess: spawn, wait, terminate, keep its log.

The runner owns the one failure model; this module turns what a process does into it: an
exit status other than 0 (``exit_code``), a signal (``killed``), the trial's deadline
(``timeout``), a stop of the sweep (``interrupted``), a command that cannot start
(``error``). The run's output goes to ``run.log`` in its work folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bao.processes import die_with_parent
from bao.records import RUN_LOG
from sweep.backends import Launch, TrialError
from sweep.stopping import INTERRUPTED_CODE

log = logging.getLogger(__name__)

POLL_S = 0.5
STOP_GRACE_S = 10.0
"""Seconds a stopped run gets between SIGTERM and SIGKILL."""


def run_process(
    launch: Launch,
    env: dict[str, str],
    workdir: Path,
    *,
    deadline: float,
    timeout: float,
    stop: threading.Event,
    after: Callable[[Path], None],
) -> None:
    """Runs ``launch`` to its end with ``env``, its output in ``workdir``'s ``run.log``;
    ``after(log)`` is called once the process has ended, however it ended. Raises
    :class:`TrialError` unless it exits with status 0 before ``deadline`` (monotonic clock)
    and before ``stop`` is set (``timeout`` is only named in the message)."""
    log_path = workdir / RUN_LOG
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
        code = wait(process, deadline, timeout, stop)
    finally:
        after(log_path)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
        raise TrialError("killed", f"the run was killed by {name}")
    if code != 0:
        raise TrialError("exit_code", f"exit status {code}: {last_line(log_path)}")


def wait(
    process: subprocess.Popen[bytes], deadline: float, timeout: float, stop: threading.Event
) -> int:
    """The process's exit status; terminates it and raises on ``stop`` or past ``deadline``."""
    while True:
        try:
            return process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
        if stop.is_set():
            terminate(process)
            raise TrialError(INTERRUPTED_CODE, "the sweep was stopped during this trial")
        if time.monotonic() > deadline:
            terminate(process)
            raise TrialError("timeout", f"the trial ran past trial_timeout={timeout:g} s")


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the run's process group, SIGKILL after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return "(no log)"
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else "(no output)"
