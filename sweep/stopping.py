"""When a sweep stops, and what a trial's seeds add up to: pure functions of counts.

Each rule here is a function of numbers the runner reads from the storage, so it can be
tested without a study, a process or a clock:

- :func:`failure_limit`, :func:`too_many_failures`, :func:`abort_message`: a sweep whose
  attempts keep failing stops instead of burning its budget (an MLflow outage is not the
  trials' fault: those attempts are not counted);
- :func:`budget`, :func:`surplus`: how many new trials may be proposed, and whether a trial
  proposed by two processes at once is one too many;
- :func:`idle_too_long`: a worker with nothing to run and nothing running anywhere leaves;
- :func:`eta`: the time left, for progress displays;
- :func:`aggregate_seeds`, :func:`metric_problem`: a trial's value is the mean over its
  training seeds, with the standard error, and each seed must log every wanted metric.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TRACKING_CODE = "tracking"
"""The failure code of an attempt that failed because MLflow did not answer."""

INTERRUPTED_CODE = "interrupted"
"""The failure code of an attempt whose sweep was stopped (Ctrl-C, SIGTERM, SIGHUP)."""

NOT_THE_TRIALS_FAULT = (TRACKING_CODE, INTERRUPTED_CODE)
"""Failure codes that neither use up an attempt (``max_retries``) nor count towards
``max_failures``: the parameter set is run again as it was (docs/reliability.md, scenarios 2
and 5d)."""


def counts_as_failure(code: str) -> bool:
    """Whether a failed attempt with this code uses up an attempt and counts as a failure."""
    return code not in NOT_THE_TRIALS_FAULT


def failure_limit(max_failures: int | None, n_trials: int, max_retries: int) -> int:
    """Failed attempts after which the sweep stops (``max_failures``, by default every
    trial failing every attempt)."""
    return max_failures or n_trials * (max_retries + 1)


def too_many_failures(complete: int, failed: int, limit: int, max_retries: int) -> bool:
    """Whether ``failed`` attempts stop the sweep: the limit is reached, or nothing has
    completed and the first ``2 * (max_retries + 1)`` attempts all failed."""
    hopeless = complete == 0 and failed >= 2 * (max_retries + 1)
    return failed >= limit or hopeless


def counted_failures(failed: int, reasons: Mapping[int, str]) -> int:
    """``failed`` without the attempts an MLflow outage or a stop of the sweep failed (a
    reason is ``"<code>: <detail>"``)."""
    uncounted = tuple(f"{code}:" for code in NOT_THE_TRIALS_FAULT)
    return failed - sum(reason.startswith(uncounted) for reason in reasons.values())


def abort_message(name: str, complete: int, failed: int, reasons: Mapping[int, str]) -> str:
    """The line a stopped sweep ends with: how many failed, and the last reason."""
    last = reasons[max(reasons)] if reasons else "?"
    return (
        f"sweep {name!r} stopped after {failed} failed trial attempts ({complete} complete); "
        f"last reason: {last}"
    )


def budget(n_trials: int, complete: int, running: int, waiting: int) -> int:
    """New trials that may still be proposed before ``n_trials`` are done or under way."""
    return n_trials - (complete + running + waiting)


def surplus(ahead: int, n_trials: int) -> bool:
    """Whether a new trial with ``ahead`` live trials numbered before it is one too many
    (another process asked at the same moment: the lower numbers win)."""
    return ahead >= n_trials


def idle_too_long(idle_s: float, lease: float) -> bool:
    """Whether a process that has had nothing to run, with nothing running or queued
    anywhere, for ``idle_s`` seconds should leave (longer than a lease: a crashed trial
    would have been requeued by then)."""
    return idle_s > lease


def eta(remaining: int, durations: Sequence[float], jobs: int) -> float | None:
    """Seconds left at the mean trial duration so far, ``jobs`` at a time; None before any
    trial has completed."""
    if not durations:
        return None
    return remaining * statistics.fmean(durations) / jobs


def metric_problem(
    metrics: Mapping[str, float], wanted: Sequence[str], seed: int
) -> tuple[str, str] | None:
    """``(code, detail)`` when a seed's run lacks a wanted metric or logged a non-finite one."""
    missing = [m for m in wanted if m not in metrics]
    if missing:
        return "missing_metrics", f"seed {seed}: the run logged no {', '.join(map(repr, missing))}"
    bad = [m for m in wanted if not math.isfinite(metrics[m])]
    if bad:
        return "bad_metrics", f"seed {seed}: {', '.join(f'{m}={metrics[m]}' for m in bad)}"
    return None


@dataclass(frozen=True)
class SeedSummary:
    """A trial's metrics over its training seeds."""

    seed_values: dict[str, list[float]]
    """Wanted metric -> each seed's value."""
    means: dict[str, float]
    stderr: dict[str, float]
    """Standard error of the mean (0 for one seed)."""
    logged: dict[str, float]
    """What the trial's own run gets with several seeds: the mean of every metric all seeds
    logged finite, and ``<metric>_stderr`` for the wanted ones; empty for one seed (the
    seed's run is the trial's run)."""


def aggregate_seeds(per_seed: Sequence[Mapping[str, float]], wanted: Sequence[str]) -> SeedSummary:
    seed_values = {m: [seed[m] for seed in per_seed] for m in wanted}
    means = {m: math.fsum(v) / len(v) for m, v in seed_values.items()}
    stderr = {
        m: (statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0)
        for m, v in seed_values.items()
    }
    logged: dict[str, float] = {}
    if len(per_seed) > 1:
        shared = set.intersection(*(set(seed) for seed in per_seed))
        logged = {
            k: math.fsum(s[k] for s in per_seed) / len(per_seed)
            for k in sorted(shared)
            if all(math.isfinite(s[k]) for s in per_seed)
        }
        logged.update({f"{m}_stderr": stderr[m] for m in wanted})
    return SeedSummary(seed_values=seed_values, means=means, stderr=stderr, logged=logged)
