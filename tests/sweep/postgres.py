"""A private PostgreSQL server for the storage tests, started from Debian's binaries.

``postgres_server`` (one per test session) runs ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/*/bin`` (or ``$PATH``) on a data folder in a fresh temporary folder,
listening on 127.0.0.1 on a free port with trust authentication, and stops it (``pg_ctl stop
-m fast``) and removes the folder at the end, whatever happened. PostgreSQL refuses to run as
root, so as root both run as the ``postgres`` system user (``runuser -u postgres``), which
owns the folder. ``postgres_url`` creates a fresh database for each test, so studies of
different tests never meet.

Without binaries, the driver or a server that starts, the tests that use it skip with the
reason, unless ``BAO_PARETO_REQUIRE_POSTGRES`` is set (CI sets it): then they fail.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_POSTGRES_ENV = "BAO_PARETO_REQUIRE_POSTGRES"
SYSTEM_USER = "postgres"
"""The system user the server runs as when the tests run as root."""
SUPERUSER = "postgres"
"""The database superuser ``initdb`` creates (trust authentication, no password)."""
HOST = "127.0.0.1"
START_TIMEOUT_S = 60
START_ATTEMPTS = 3
"""Tries with a new free port each: another process may take the port before the server."""


class PostgresUnavailableError(Exception):
    """No server could be started here; the message says why."""


@dataclass
class PostgresServer:
    port: int
    root: Path
    _names: Iterator[int]

    def url(self, database: str) -> str:
        # The URL users write: sweep.storage gives a bare postgresql:// the installed driver.
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg2

        name = f"bao_test_{next(self._names)}"
        connection = psycopg2.connect(
            host=HOST, port=self.port, user=SUPERUSER, dbname="postgres", connect_timeout=10
        )
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


def _binaries() -> tuple[str, str]:
    """``initdb`` and ``pg_ctl`` of the newest installed server."""
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0,
    )
    for folder in reversed(versions):
        initdb, pg_ctl = Path(folder, "initdb"), Path(folder, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return str(initdb), str(pg_ctl)
    initdb_path, pg_ctl_path = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb_path and pg_ctl_path:
        return initdb_path, pg_ctl_path
    raise PostgresUnavailableError(
        "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or PATH; "
        "install them with `apt-get install postgresql`"
    )


def _as_server_user() -> list[str]:
    """The command prefix that runs the server's binaries as a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailableError("running as root and `runuser` is not available")
    try:
        import pwd

        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailableError(
            f"running as root and there is no {SYSTEM_USER!r} system user to run the server as "
            "(the postgresql package creates it)"
        ) from None
    return [runuser, "-u", SYSTEM_USER, "--"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _run(argv: list[str], cwd: Path, timeout: float = START_TIMEOUT_S) -> None:
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PostgresUnavailableError(f"{Path(argv[0]).name}: {error}") from None
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip().splitlines()
        raise PostgresUnavailableError(
            f"`{' '.join(argv)}` exited {done.returncode}: {' | '.join(output[-5:])}"
        )


def _log_tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no server log)"
    return " | ".join(lines[-5:]) or "(empty server log)"


def _start(root: Path, prefix: list[str], initdb: str, pg_ctl: str) -> PostgresServer:
    data, log = root / "data", root / "server.log"
    _run(
        [
            *prefix,
            initdb,
            f"--pgdata={data}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ],
        cwd=root,
    )
    with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(
            f"listen_addresses = '{HOST}'\n"
            f"unix_socket_directories = '{root}'\n"  # the default may not exist
            # A throwaway server: durability buys nothing, speed does.
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "max_connections = 200\nshared_buffers = 32MB\n"
        )
    error: PostgresUnavailableError | None = None
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        try:
            _run(
                [
                    *prefix,
                    pg_ctl,
                    "start",
                    f"--pgdata={data}",
                    f"--log={log}",
                    "--wait",
                    f"--timeout={START_TIMEOUT_S}",
                    f"--options=-p {port}",
                ],
                cwd=root,
                timeout=START_TIMEOUT_S + 10,
            )
        except PostgresUnavailableError as failed:
            error = PostgresUnavailableError(f"{failed}; server log: {_log_tail(log)}")
            continue
        return PostgresServer(port=port, root=root, _names=itertools.count())
    assert error is not None
    raise error


def _stop(root: Path, prefix: list[str], pg_ctl: str) -> None:
    data = root / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            [*prefix, pg_ctl, "stop", f"--pgdata={data}", "--mode=fast", "--wait"],
            cwd=root,
            capture_output=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_POSTGRES_ENV):
        pytest.fail(f"no PostgreSQL server for the test: {reason} ({REQUIRE_POSTGRES_ENV} is set)")
    pytest.skip(f"no PostgreSQL server: {reason}; set {REQUIRE_POSTGRES_ENV}=1 to fail instead")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test session (see the module's docstring)."""
    try:
        import psycopg2  # noqa: F401 - the driver the storage URL needs

        initdb, pg_ctl = _binaries()
        prefix = _as_server_user()
    except ImportError as error:
        _unavailable(f"the psycopg2 driver is not installed ({error}); pip install -e '.[dev]'")
    except PostgresUnavailableError as error:
        _unavailable(str(error))
    # Not pytest's tmp_path: its parents are root's own (mode 0700), which the server user
    # could not enter.
    root = Path(tempfile.mkdtemp(prefix="bao-pg-"))
    try:
        if prefix:
            shutil.chown(root, user=SYSTEM_USER, group=SYSTEM_USER)
        try:
            server = _start(root, prefix, initdb, pg_ctl)
        except PostgresUnavailableError as error:
            _unavailable(str(error))
        yield server
    finally:
        try:
            _stop(root, prefix, pg_ctl)
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server, for this test alone."""
    return postgres_server.create_database()
