"""What a running sweep reports: snapshots for progress displays, and its end result.

The runner fills these in; only the CLI draws them (sweep/commands.py): a live view on a
terminal, and without one (a log file, nohup, a Slurm job) the plain lines of
:class:`PlainProgress`: one line per trial event and a summary every minute
(docs/sweeps.md, "Progress").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SweepProgress:
    """A snapshot for progress displays (the CLI draws it; the runner only reports it)."""

    n_trials: int
    complete: int
    running: int
    waiting: int
    failed: int
    front: list[tuple[int, list[float]]]
    elapsed_s: float
    eta_s: float | None
    last_event: str = ""
    pruned: int = 0
    """Trials a pruner stopped: with ``complete``, the trials that count towards
    ``n_trials``."""
    new_event: bool = False
    """Whether this snapshot reports ``last_event`` for the first time (the runner also
    reports on a timer, with no new event)."""


@dataclass
class SweepResult:
    name: str
    complete: int
    failed: int
    interrupted: bool
    parent_run_id: str
    storage_url: str
    front: list[tuple[int, dict[str, Any], list[float]]] = field(default_factory=list)
    pruned: int = 0


SUMMARY_EVERY_S = 60.0
"""Seconds between two summary lines of :class:`PlainProgress`."""


def duration(seconds: float) -> str:
    """``4m05s``: elapsed times and ETAs in progress displays."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def summary_line(name: str, progress: SweepProgress) -> str:
    """One line on where the sweep stands: counts, elapsed time, ETA, size of the front."""
    eta = "?" if progress.eta_s is None else duration(progress.eta_s)
    pruned = f" (+{progress.pruned} pruned)" if progress.pruned else ""
    return (
        f"{name}: {progress.complete}/{progress.n_trials} complete{pruned}, {progress.running} "
        f"running, {progress.waiting} queued, {progress.failed} failed | "
        f"{duration(progress.elapsed_s)} elapsed, ETA {eta} | front: {len(progress.front)} trials"
    )


class PlainProgress:
    """Progress as plain lines, for output that is not a terminal: each trial event once (a
    trial started, completed with its values, failed with its reason), and a summary when
    :data:`SUMMARY_EVERY_S` seconds of the sweep have passed since the last one. The clock
    is the snapshots' own ``elapsed_s``."""

    def __init__(self, name: str, every_s: float = SUMMARY_EVERY_S) -> None:
        self.name = name
        self.every_s = every_s
        self._next_summary = every_s

    def lines(self, progress: SweepProgress) -> list[str]:
        """The lines this snapshot adds (often none)."""
        found = []
        stamp = f"[{duration(progress.elapsed_s)}]"
        if progress.new_event and progress.last_event:
            found.append(f"{stamp} {progress.last_event}")
        if progress.elapsed_s >= self._next_summary:
            found.append(f"{stamp} {summary_line(self.name, progress)}")
            # The next one a whole interval later, however late this one came.
            self._next_summary = progress.elapsed_s + self.every_s
        return found
