"""Progress without a terminal: plain lines, one per trial event, a summary every minute
(issue: new-user fixes, item 4). The clock is the snapshots' own elapsed time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sweep.progress import PlainProgress, SweepProgress, duration
from tests.sweep.conftest import REPO_ROOT, WriteConfig


def snapshot(
    elapsed: float, event: str = "", *, new: bool = False, complete: int = 0
) -> SweepProgress:
    return SweepProgress(
        n_trials=4,
        complete=complete,
        running=1,
        waiting=0,
        failed=0,
        front=[(0, [0.1, 0.2])] * complete,
        elapsed_s=elapsed,
        eta_s=None if complete == 0 else 90.0,
        last_event=event,
        new_event=new,
    )


def test_the_summary_counts_pruned_trials_beside_the_complete_ones() -> None:
    from sweep.progress import summary_line

    plain = snapshot(61.0, complete=1)
    assert "1/4 complete, 1 running" in summary_line("tiny", plain)
    plain.pruned = 2
    assert "1/4 complete (+2 pruned), 1 running" in summary_line("tiny", plain)


def test_durations_are_minutes_and_seconds() -> None:
    assert [duration(s) for s in (0, 59.4, 60, 125, 3600)] == [
        "0m00s",
        "0m59s",
        "1m00s",
        "2m05s",
        "60m00s",
    ]


def test_each_event_is_one_line_once_and_a_summary_comes_every_minute() -> None:
    plain = PlainProgress("tiny")
    started = "trial 0 started: x=0.5, y=0.25"
    assert plain.lines(snapshot(1.0, started, new=True)) == [f"[0m01s] {started}"]
    # A timer report carries the same last event: it is not repeated.
    assert plain.lines(snapshot(11.0, started)) == []
    assert plain.lines(snapshot(59.9, started)) == []
    assert plain.lines(snapshot(60.0, started)) == [
        "[1m00s] tiny: 0/4 complete, 1 running, 0 queued, 0 failed | 1m00s elapsed, ETA ? "
        "| front: 0 trials"
    ]
    assert plain.lines(snapshot(119.0)) == []
    complete = "trial 0 complete in 2m04s: f1=0.1, f2=0.2"
    assert plain.lines(snapshot(125.0, complete, new=True, complete=1)) == [
        f"[2m05s] {complete}",
        "[2m05s] tiny: 1/4 complete, 1 running, 0 queued, 0 failed | 2m05s elapsed, "
        "ETA 1m30s | front: 1 trials",
    ]
    # The next summary is a whole minute after the last one, not at 3m00s.
    assert plain.lines(snapshot(184.0)) == []
    assert len(plain.lines(snapshot(185.0))) == 1


LINE = re.compile(r"^\[\d+m\d\ds\] (.*)$")


@pytest.mark.slow
def test_without_a_terminal_the_sweep_prints_one_plain_line_per_trial_event(
    command_sweep: WriteConfig, workspace: Path
) -> None:
    # Each parameter set fails its first attempt (flaky): started, failed, retried, complete.
    # Two at once: the trials' threads report at the same moments, and each must still get
    # its own line (an event once shared between threads was printed twice, the other lost).
    config = command_sweep("flaky", driver={"algorithm": "random", "n_trials": 2}, jobs=2)
    done = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "sweep", str(config), "--workspace", str(workspace)],
        cwd=REPO_ROOT,
        capture_output=True,  # stdout and stderr are pipes: no terminal
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr
    assert "\r" not in done.stderr
    events = [m.group(1) for m in map(LINE.match, done.stderr.splitlines()) if m]
    started = [e for e in events if re.fullmatch(r"trial \d+ started: x=\S+, y=\S+", e)]
    failed = [
        e
        for e in events
        if re.fullmatch(
            r"trial \d+ failed: exit_code: exit status 1: first attempt crashes \(simulated\)", e
        )
    ]
    retried = [
        e
        for e in events
        if re.fullmatch(r"trial \d+ started \(attempt 2, retry of \d+\): x=\S+, y=\S+", e)
    ]
    complete = [
        e for e in events if re.fullmatch(r"trial \d+ complete in \d+m\d\ds: f1=\S+, f2=\S+", e)
    ]
    assert (len(started), len(failed), len(retried), len(complete)) == (2, 2, 2, 2), events
    numbers = [int(e.split()[1]) for e in started]
    assert sorted(numbers) == [0, 1], events
    assert "sweep cmd done: 2 complete, 2 failed attempts" in done.stdout
