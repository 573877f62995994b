"""The lease rules without subprocesses: owners, heartbeats, stale trials, take-over."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from sweep.lease import (
    Heartbeat,
    owner_alive,
    process_start_ticks,
    stale_reason,
    stale_trials,
    take_over,
    this_process,
)

LEASE = 120.0
NOW = 1_000_000.0


def trial(owner: dict[str, Any] | None, beat: float | None, start: float = NOW - 1000) -> Any:
    """What the stale rule reads of a trial: its system attributes and its start."""
    attrs: dict[str, Any] = {}
    if owner is not None:
        attrs["bao:owner"] = owner
    if beat is not None:
        attrs["bao:heartbeat"] = beat
    return SimpleNamespace(system_attrs=attrs, datetime_start=datetime.fromtimestamp(start))


ELSEWHERE = {"host": "another-machine.invalid", "pid": 4321, "started": 1, "token": "t-other"}


def test_an_owner_on_another_host_is_stale_only_past_the_lease() -> None:
    assert stale_reason(trial(ELSEWHERE, beat=NOW - 60), NOW, LEASE) is None
    assert stale_reason(trial(ELSEWHERE, beat=NOW - 121), NOW, LEASE) == (
        "no heartbeat from another-machine.invalid:4321 for 121 s (lease 120 s)"
    )


def test_a_trial_without_owner_or_beat_counts_from_its_start() -> None:
    assert stale_reason(trial(None, None, start=NOW - 100), NOW, LEASE) is None
    assert stale_reason(trial(None, None, start=NOW - 500), NOW, LEASE) == (
        "no heartbeat from an unknown process for 500 s (lease 120 s)"
    )


def test_a_live_owner_on_this_host_is_never_stale_however_old_its_beat() -> None:
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": None}
    assert owner_alive(me) is True
    assert stale_reason(trial(me, beat=NOW - 10 * LEASE), NOW, LEASE) is None


def test_a_reused_pid_on_this_host_is_a_dead_owner() -> None:
    """Same pid, other start ticks: the process that owned the trial is gone."""
    ticks = process_start_ticks(os.getpid())
    if ticks is None:
        pytest.skip("no /proc on this system")
    reused = {"host": socket.gethostname(), "pid": os.getpid(), "started": ticks + 1}
    assert owner_alive(reused) is False
    assert stale_reason(trial(reused, beat=NOW), NOW, LEASE) == (
        f"its process {socket.gethostname()}:{os.getpid()} is gone"
    )


def test_this_process_record_names_this_process() -> None:
    owner = this_process()
    assert (owner["host"], owner["pid"]) == (socket.gethostname(), os.getpid())
    assert owner["token"] != this_process()["token"]  # one token per runner


def test_stale_trials_skips_the_asking_process_own_trials() -> None:
    mine = {**ELSEWHERE, "token": "t-mine"}
    old = NOW - 10 * LEASE
    trials = [trial(mine, beat=old), trial(ELSEWHERE, beat=old), trial(ELSEWHERE, beat=NOW)]
    found = stale_trials(trials, NOW, LEASE, token="t-mine")
    assert [t for t, _ in found] == [trials[1]]


def _study() -> Any:
    import optuna

    from sweep.storage import SweepStudy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="lease")
    return SweepStudy(study=study, storage=storage, url="memory")


def test_take_over_fails_a_running_trial_once() -> None:
    study = _study()
    running = study.study.ask()
    assert take_over(study, running.number, "stale: gone") is True
    frozen = study.study.get_trials()[0]
    assert frozen.state.name == "FAIL"
    assert frozen.user_attrs["failure_reason"] == "stale: gone"
    # A second process seeing the same stale trial takes nothing over.
    assert take_over(study, running.number, "stale: again") is False
    assert study.study.get_trials()[0].user_attrs["failure_reason"] == "stale: gone"


def test_the_heartbeat_owns_beats_and_releases() -> None:
    study = _study()
    running = study.study.ask()
    owner = {"host": "h", "pid": 1, "started": None, "token": "t"}
    heartbeat = Heartbeat(study, owner, interval=0.05)
    before = time.time()
    heartbeat.own(running.number)
    attrs = study.study.get_trials()[0].system_attrs
    assert attrs["bao:owner"] == owner
    first = attrs["bao:heartbeat"]
    assert first >= before
    heartbeat.start()
    try:
        deadline = time.monotonic() + 5
        while study.study.get_trials()[0].system_attrs["bao:heartbeat"] == first:
            assert time.monotonic() < deadline, "no beat within 5 s at a 0.05 s interval"
            time.sleep(0.02)
        heartbeat.release(running.number)
        time.sleep(0.2)  # a beat in flight at the release may still land
        released = study.study.get_trials()[0].system_attrs["bao:heartbeat"]
        time.sleep(0.3)
        assert study.study.get_trials()[0].system_attrs["bao:heartbeat"] == released
    finally:
        heartbeat.close()
