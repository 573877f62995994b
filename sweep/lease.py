"""Who runs a trial, and how a dead owner is told apart from a slow one.

Every running trial carries its owner (host, pid, process start ticks, a random token) and a
heartbeat refreshed every ``heartbeat_interval`` seconds (Optuna's own heartbeat covers
neither ask/tell nor journal storage). A RUNNING trial whose owner process is gone (same
host) or whose heartbeat is older than ``lease`` is *stale*: whichever process sees it first
fails it (the storage's compare-and-set on the trial state makes that happen once) and the
runner retries it. This module holds the owner record, the stale rule (a pure function of
a trial, the clock and the lease), the claim and release of a stale trial, and the
heartbeat thread; the runner decides what a recovered trial leads to.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bao.records import ATTR_REASON, SYSTEM_HEARTBEAT, SYSTEM_OWNER

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from sweep.storage import SweepStudy

log = logging.getLogger(__name__)

Owner = dict[str, str | int | None]


def process_start_ticks(pid: int) -> int | None:
    """The start time of a process in clock ticks (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def this_process() -> Owner:
    """The owner record of this process, with a token of its own."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": process_start_ticks(os.getpid()),
        "token": uuid.uuid4().hex,
    }


def owner_alive(owner: dict[str, Any]) -> bool | None:
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
    return started is None or process_start_ticks(pid) == started


def stale_reason(frozen: FrozenTrial, now: float, lease: float) -> str | None:
    """Why a RUNNING trial is dead (its process is gone, or silent past ``lease``), or None."""
    owner = frozen.system_attrs.get(SYSTEM_OWNER) or {}
    alive = owner_alive(owner) if owner else None
    where = f"{owner.get('host')}:{owner.get('pid')}" if owner else "an unknown process"
    if alive is False:
        return f"its process {where} is gone"
    start = frozen.datetime_start.timestamp() if frozen.datetime_start else now
    beat = float(frozen.system_attrs.get(SYSTEM_HEARTBEAT, start))
    if alive is None and now - beat > lease:
        return f"no heartbeat from {where} for {now - beat:.0f} s (lease {lease:g} s)"
    return None


def stale_trials(
    running: Iterable[FrozenTrial], now: float, lease: float, token: object
) -> list[tuple[FrozenTrial, str]]:
    """The RUNNING trials that are stale, with why; never those of the owner ``token``
    (this process's own trials are alive while it asks)."""
    found = []
    for frozen in running:
        owner = frozen.system_attrs.get(SYSTEM_OWNER) or {}
        if owner.get("token") == token:
            continue
        why = stale_reason(frozen, now, lease)
        if why is not None:
            found.append((frozen, why))
    return found


def take_over(study: SweepStudy, number: int, reason: str) -> bool:
    """Fails stale trial ``number`` with ``reason``; False when it finished meanwhile or
    another process took it over first."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    trial_id = study.trial_id(number)
    try:
        # Attributes of a finished trial are frozen: the reason goes first.
        study.storage.set_trial_user_attr(trial_id, ATTR_REASON, reason)
        study.storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False
    return True


class Heartbeat:
    """Marks the trials this process runs as its own, and beats for them on a thread."""

    def __init__(self, study: SweepStudy, owner: Owner, interval: float) -> None:
        self.study = study
        self.owner = owner
        self.interval = interval
        self._owned: dict[int, int] = {}  # trial number -> trial id
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def own(self, number: int) -> None:
        """Records this process as the owner of trial ``number``, with a first beat."""
        trial_id = self.study.trial_id(number)
        with self._lock:
            self._owned[number] = trial_id
        self.study.storage.set_trial_system_attr(trial_id, SYSTEM_OWNER, self.owner)
        self.study.storage.set_trial_system_attr(trial_id, SYSTEM_HEARTBEAT, time.time())

    def release(self, number: int) -> None:
        with self._lock:
            self._owned.pop(number, None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Ends the beats (the thread stops at its next wake-up)."""
        self._closing.set()

    def _loop(self) -> None:
        # Beats go on while a stop is under way: the runs are still being closed.
        while not self._closing.wait(self.interval):
            with self._lock:
                owned = list(self._owned.values())
            for trial_id in owned:
                try:
                    self.study.storage.set_trial_system_attr(
                        trial_id, SYSTEM_HEARTBEAT, time.time()
                    )
                except Exception:  # finished meanwhile, or a storage hiccup: next beat
                    log.debug("heartbeat for trial id %d failed", trial_id, exc_info=True)
