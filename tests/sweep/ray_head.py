"""A private Ray head for the launcher tests, from the ray the verl extra installs.

``ray_head`` (one per test session) runs ``ray start --head --block`` on 127.0.0.1 with free
ports and a temporary folder of its own, in a process group of its own, waits until its Jobs
API answers, and at the end stops that process group (SIGTERM, then SIGKILL): never
``ray stop``, which would stop every Ray process on the machine.

Without ray or a head that comes up, the tests that use it skip with the reason, unless
``BAO_PARETO_REQUIRE_RAY`` is set (CI sets it): then they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_RAY_ENV = "BAO_PARETO_REQUIRE_RAY"
HOST = "127.0.0.1"
START_TIMEOUT_S = 300
"""Seconds the head's Jobs API may take to answer (its dashboard is slow on a busy machine)."""


@dataclass(frozen=True)
class RayHead:
    address: str
    """The Jobs API (the dashboard), ``http://127.0.0.1:PORT``."""
    root: Path

    def client(self) -> object:
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.address)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_RAY_ENV):
        pytest.fail(f"{REQUIRE_RAY_ENV} is set but no Ray head: {reason}")
    pytest.skip(f"no Ray head: {reason}")


def _answers(address: str) -> bool:
    try:
        from ray.job_submission import JobSubmissionClient

        JobSubmissionClient(address).list_jobs()
    except Exception:
        return False
    return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    # ray start --block's daemons share its process group; any left after it ended go too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """A one-node Ray cluster on 127.0.0.1 for the session."""
    ray = Path(sys.executable).with_name("ray")
    if not ray.is_file():
        _unavailable(f"no {ray}; install the verl extra (make install-dev)")
    root = Path(tempfile.mkdtemp(prefix="bao-ray-"))
    dashboard = _free_port()
    address = f"http://{HOST}:{dashboard}"
    argv = [
        str(ray),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={HOST}",
        f"--port={_free_port()}",
        "--include-dashboard=true",
        f"--dashboard-host={HOST}",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}",
        f"--temp-dir={root}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--disable-usage-stats",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # A private head: no token authentication, which Ray turns on by itself when a token file
    # (~/.ray/auth_token) was left by another cluster on this machine.
    env["RAY_AUTH_MODE"] = "disabled"
    log = (root / "ray-start.log").open("wb")
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(address):
            if process.poll() is not None or time.monotonic() > deadline:
                logs = [root / "ray-start.log", root / "session_latest/logs/dashboard.log"]
                tail = " | ".join(
                    path.read_text(errors="replace")[-400:] for path in logs if path.is_file()
                )
                _unavailable(f"`ray start --head` did not come up: {tail}")
            time.sleep(1.0)
        yield RayHead(address, root)
    finally:
        _stop(process)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
