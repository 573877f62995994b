"""A private single-node Slurm cluster for the launcher tests, started from Debian's binaries.

``slurm_cluster`` (one per test session) writes a ``slurm.conf`` into a fresh temporary
folder (controller and node on 127.0.0.1, free ports, ``proctrack/linuxproc``, no cgroups,
job completions in a text file that ``sacct -c`` reads), starts ``munged`` on a private
socket with a fresh key, then ``slurmctld`` and ``slurmd``, and points ``$SLURM_CONF`` at it
for the session; at the end ``scontrol shutdown`` stops the daemons, ``munged`` is stopped by
its pid, and the folder is removed, whatever happened. No systemd, no /etc files.

Without the binaries or a cluster that comes up, the tests that use it skip with the reason,
unless ``BAO_PARETO_REQUIRE_SLURM`` is set (CI sets it): then they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_SLURM_ENV = "BAO_PARETO_REQUIRE_SLURM"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sacct", "squeue")


class SlurmUnavailableError(Exception):
    """No cluster could be started here; the message says why."""


@dataclass(frozen=True)
class SlurmCluster:
    root: Path
    conf: Path
    node: str

    def run(self, *argv: str) -> str:
        """A Slurm command against this cluster; its stdout."""
        env = {**os.environ, "SLURM_CONF": str(self.conf)}
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=env, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    def completions(self) -> dict[str, str]:
        """Job id -> final state, from the job completion records (``sacct -c``)."""
        text = self.run("sacct", "-c", "-n", "-P", "-o", "JobID,State")
        return dict(line.split("|", 1) for line in text.splitlines() if "|" in line)

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Job id -> (name, state) of every job the controller knows."""
        text = self.run("squeue", "-h", "-t", "all", "-o", "%i|%j|%T")
        return {
            job: (name, state)
            for job, name, state in (line.split("|") for line in text.splitlines() if line)
        }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _conf(root: Path, node: str) -> str:
    cpus = os.cpu_count() or 1
    return "\n".join(
        [
            "ClusterName=baotest",
            f"SlurmctldHost={node}({HOST})",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={root / 'munge.sock'}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            # No cgroups in a container: processes tracked by their parent, tasks unbound.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            # No slurmdbd: finished jobs are read from the completion file (sacct -c).
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={root / 'jobcomp.txt'}",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MinJobAge=3600",
            "KillWait=5",
            "ReturnToService=2",
            "MpiDefault=none",
            f"NodeName={node} NodeAddr={HOST} CPUs={cpus} RealMemory=1000 State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _start(root: Path) -> SlurmCluster:
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        raise SlurmUnavailableError(
            f"no {', '.join(missing)} on PATH; install them with `apt-get install slurm-wlm munge`"
        )
    if os.geteuid() != 0:
        raise SlurmUnavailableError("the private Slurm cluster runs its daemons as root")
    node = socket.gethostname().split(".")[0]
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, node), encoding="utf-8")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munged = [
        "munged",
        "--force",
        f"--socket={root / 'munge.sock'}",
        f"--key-file={key}",
        f"--log-file={root / 'munged.log'}",
        f"--pid-file={root / 'munged.pid'}",
        f"--seed-file={root / 'munged.seed'}",
    ]
    for argv in (munged, ["slurmctld", "-i"], ["slurmd"]):
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        if done.returncode != 0:
            raise SlurmUnavailableError(f"{argv[0]} exited {done.returncode}: {done.stderr}")
    cluster = SlurmCluster(root, conf, node)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            state = cluster.run("sinfo", "-h", "-n", node, "-o", "%T").strip()
            if state in ("idle", "mixed", "allocated"):
                return cluster
        time.sleep(0.5)
    raise SlurmUnavailableError(f"node {node} not idle after {START_TIMEOUT_S} s: {_tail(root)}")


def _tail(root: Path) -> str:
    lines: list[str] = []
    for name in ("slurmctld.log", "slurmd.log"):
        with contextlib.suppress(OSError):
            lines += (root / name).read_text(errors="replace").splitlines()[-3:]
    return " | ".join(lines) or "(no logs)"


def _stop(root: Path) -> None:
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            ["scontrol", "shutdown"], check=False, capture_output=True, env=env, timeout=30
        )
    # Only the daemons started here, by their pid files; Slurm's own stop comes first.
    for name in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
        try:
            pid = int((root / name).read_text().strip())
        except (OSError, ValueError):
            continue
        with contextlib.suppress(ProcessLookupError):
            if name == "munged.pid":
                os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)  # ProcessLookupError once it is gone
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_SLURM_ENV):
        pytest.fail(f"{REQUIRE_SLURM_ENV} is set but no Slurm cluster: {reason}")
    pytest.skip(f"no Slurm cluster: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A single-node Slurm cluster on 127.0.0.1 for the session, ``$SLURM_CONF`` set."""
    # A short path: munge's socket path must fit in a sun_path.
    root = Path(tempfile.mkdtemp(prefix="bao-slurm-"))
    previous = os.environ.get("SLURM_CONF")
    try:
        try:
            cluster = _start(root)
        except (SlurmUnavailableError, OSError, subprocess.TimeoutExpired) as error:
            _unavailable(str(error))
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        _stop(root)
        shutil.rmtree(root, ignore_errors=True)
