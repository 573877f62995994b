"""What a running sweep reports: snapshots for progress displays, and its end result.

The runner fills these in; only the CLI draws them (sweep/commands.py).
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


@dataclass
class SweepResult:
    name: str
    complete: int
    failed: int
    interrupted: bool
    parent_run_id: str
    storage_url: str
    front: list[tuple[int, dict[str, Any], list[float]]] = field(default_factory=list)
