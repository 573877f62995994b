"""The dashboard listens on 127.0.0.1 unless told otherwise, and a sweep named in its URL
must be one of the workspace's: ``?sweep=../../elsewhere`` opens nothing outside it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest
from streamlit.testing.v1 import AppTest

from analysis.loader import CACHE_FOLDER
from bao.paths import UnsafePathError
from dashboard import data as records
from tests.analysis.builders import real_workspace, sweep_config
from tests.conftest import REPO_ROOT
from tests.dashboard.test_pages import APP, SCORE_UR, TIMEOUT, metrics

SERVER_START_TIMEOUT: Final = 60.0
LISTEN: Final = "0A"  # TCP_LISTEN in /proc/net/tcp


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ------------------------------------------------------------------------ the address


class ExecveCalledError(Exception):
    """Stands in for os.execve: carries the command line instead of replacing the process."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(argv)
        self.argv = argv
        self.env = env


def built_command(
    monkeypatch: pytest.MonkeyPatch, workspace: Path, *options: str
) -> tuple[list[str], dict[str, str]]:
    from sweep.cli import main

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        raise ExecveCalledError(argv, env)

    monkeypatch.setattr(os, "execve", execve)  # dashboard.cli calls os.execve
    workspace.mkdir(exist_ok=True)  # the dashboard refuses a missing workspace
    port = str(free_port())
    with pytest.raises(ExecveCalledError) as caught:
        main(["dashboard", "--workspace", str(workspace), "--port", port, *options])
    return caught.value.argv, caught.value.env


def option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, item in enumerate(argv[:-1]) if item == name]


def test_the_default_command_binds_loopback_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    argv, env = built_command(monkeypatch, tmp_path / "ws")
    assert argv[1:4] == ["-m", "streamlit", "run"]
    assert option(argv, "--server.address") == ["127.0.0.1"]
    assert option(argv, "--server.headless") == ["true"]
    assert env["BAO_PARETO_HOME"] == str((tmp_path / "ws").resolve())


def test_another_address_takes_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    argv, _ = built_command(monkeypatch, tmp_path / "ws", "--host", "0.0.0.0")
    assert option(argv, "--server.address") == ["0.0.0.0"]


def listening(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on ``port``, from /proc/net/tcp{,6}
    (every process of this network namespace, so also a server started by someone else)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != LISTEN or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host order (little-endian here).
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, packed))
    return found


def test_listening_reads_proc_net_tcp() -> None:
    # The reader itself can fail: a socket bound to all interfaces shows as 0.0.0.0.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        port = int(server.getsockname()[1])
        assert listening(port) == {"0.0.0.0"}
    assert listening(port) == set()


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group this test started (its own session), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.mark.slow
def test_the_real_dashboard_listens_on_127_0_0_1_only(tmp_path: Path) -> None:
    port = free_port()
    entry = Path(sys.executable).parent / "bao-pareto"
    launcher = [str(entry)] if entry.is_file() else [sys.executable, "-m", "sweep.cli"]
    (tmp_path / "ws").mkdir()
    command = [*launcher, "dashboard", "--workspace", str(tmp_path / "ws"), "--port", str(port)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    log = tmp_path / "dashboard.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped without touching others
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not listening(port):
            assert process.poll() is None, f"exited {process.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"not listening on {port}: {log.read_text()}"
            time.sleep(0.2)
        time.sleep(0.5)  # a server binding more than one address binds them together
        assert listening(port) == {"127.0.0.1"}, log.read_text()
    finally:
        stop_group(process)
    assert process.returncode is not None
    assert listening(port) == set()


# ------------------------------------------------------------------ the files it reads

_opened: list[str] | None = None


def _record_open(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event in ("open", "sqlite3.connect", "os.listdir", "os.scandir"):
        target = args[0] if args else None
        if isinstance(target, str | bytes | os.PathLike):
            _opened.append(os.fsdecode(target))


sys.addaudithook(_record_open)  # permanent, as audit hooks are; records only when armed


@contextmanager
def opened_files() -> Iterator[list[str]]:
    """Every file the process opens (and folder it lists) while the block runs, in any
    thread: AppTest runs the app's script in a thread of its own."""
    global _opened  # noqa: PLW0603 (the audit hook is process-wide; this is its switch)
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


@pytest.fixture(scope="module")
def workspace_beside_a_bait(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A workspace with sweep ``made``, and beside it a copy of that sweep's manifest
    (``bait/made/sweep.yaml``) which a traversing name would reach and could load."""
    root = tmp_path_factory.mktemp("security")
    workspace = root / "ws"
    real_workspace(
        workspace,
        [{"metrics": metrics(0.5, 0.1)}, {"metrics": metrics(0.4, 0.05)}],
        loaded=sweep_config("made", SCORE_UR),
    )
    bait = root / "bait" / "made"
    shutil.copytree(
        workspace / "sweeps" / "made", bait, ignore=shutil.ignore_patterns("*.db", CACHE_FOLDER)
    )
    return workspace, bait


@pytest.mark.parametrize("wanted", ["../../bait/made", "made/../../../bait/made", "ABSOLUTE"])
def test_a_sweep_in_the_url_outside_the_workspace_is_never_opened(
    workspace_beside_a_bait: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, wanted: str
) -> None:
    workspace, bait = workspace_beside_a_bait
    if wanted == "ABSOLUTE":
        wanted = str(bait)
    monkeypatch.setenv("BAO_PARETO_HOME", str(workspace))
    monkeypatch.delenv("BAO_PARETO_REFERENCE_TABLE", raising=False)
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.query_params["sweep"] = wanted
    with opened_files() as opened:
        app.run()
        for page in ("frontier", "trial"):
            app.switch_page(f"views/{page}.py").run()
            assert not app.exception, [e.value for e in app.exception]
    assert not app.exception, [e.value for e in app.exception]
    assert app.session_state["sweep"] == "made"  # the workspace's own sweep instead
    assert any(path.endswith("sweep.yaml") for path in opened)  # the hook sees reads
    outside = [path for path in opened if str(bait.parent) in os.path.abspath(path)]
    assert not outside


def test_the_data_layer_refuses_a_sweep_name_that_is_a_path(
    workspace_beside_a_bait: tuple[Path, Path],
) -> None:
    workspace, bait = workspace_beside_a_bait
    assert records.sweep_names(workspace) == ["made"]
    for name in ("../../bait/made", str(bait)):
        with pytest.raises(UnsafePathError, match="sweep name"):
            records.sweep_stamp(workspace, name)
