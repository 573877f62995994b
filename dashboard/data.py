"""What the dashboard reads, without Streamlit: sweep listings, change stamps, trial records.

Everything here is a plain function of the workspace, so the pages stay thin and the tests
and benchmarks call the same code. :mod:`dashboard.state` wraps these in Streamlit caches.

The dashboard reads only inside its workspace: sweeps are found under ``sweeps/``, MLflow
artifacts through the workspace's tracking store, and published reference tables only from
the path given when the dashboard was launched (never a path typed into the browser).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bao import records

if TYPE_CHECKING:
    import pandas as pd

    from analysis.loader import SweepData
    from bao.trajectory import Trajectory

log = logging.getLogger(__name__)

REFERENCE_TABLE_ENV: Final = "BAO_PARETO_REFERENCE_TABLE"
"""Set by ``bao-pareto dashboard --reference-table CSV``: published results to draw."""
POLL_SECONDS: Final = 10
"""Storages without a file to watch (PostgreSQL, MySQL) are re-read at most this often."""
TRAJECTORIES: Final = records.ARTIFACT_TRAJECTORIES
RUN_CONFIG: Final = records.ARTIFACT_RUN_CONFIG


def sweep_names(workspace: Path) -> list[str]:
    """Every sweep in the workspace (a folder under ``sweeps/`` with a manifest), sorted."""
    root = workspace / records.SWEEPS
    if not root.is_dir():
        return []
    manifests = root.glob(f"*/{records.MANIFEST_FILE}")
    return sorted(p.parent.name for p in manifests if p.is_file())


def sweep_stamp(workspace: Path, name: str) -> str:
    """Changes whenever the sweep's records may have changed; cheap enough to call on every
    rerun. File storages (the default SQLite database, a journal file) are stamped by their
    size and modification time; server storages by a clock tick of :data:`POLL_SECONDS`."""
    from sweep.storage import sweep_dir

    folder = sweep_dir(workspace, name)
    parts = [_file_stamp(folder / records.MANIFEST_FILE)]
    storage = _storage_file(workspace, name)
    stamps = [] if storage is None else [_file_stamp(storage)]
    if stamps and stamps[0] != "-":
        stamps.append(_file_stamp(storage.with_name(storage.name + "-wal")))  # type: ignore[union-attr]
    else:
        # A server storage, or a file that cannot be checked: re-read on a clock tick.
        stamps = [f"t{int(time.time() // POLL_SECONDS)}"]
    return "|".join(parts + stamps)


def _file_stamp(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return "-"
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def _storage_file(workspace: Path, name: str) -> Path | None:
    from sweep.records import storage_in
    from sweep.storage import read_manifest

    try:
        loaded, recorded = read_manifest(workspace, name)
    except Exception:  # a broken manifest is reported by the overview, not here
        return None
    url = storage_in(loaded, workspace, recorded)
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:"))
    return None


@dataclass(frozen=True)
class SweepSummary:
    """One row of the sweeps overview."""

    sweep: str
    state: str
    """``running``, ``finished``, ``stopped`` (fewer than ``n_trials`` done, nothing running),
    ``not started`` or ``unreadable``."""
    n_trials: int | None
    complete: int
    running: int
    failed: int
    hypervolume: float | None
    reference: str
    last_update: pd.Timestamp | None
    error: str | None = None

    def to_row(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "state": self.state,
            "trials done": f"{self.complete}/{self.n_trials}" if self.n_trials else "-",
            "complete": self.complete,
            "running": self.running,
            "failed": self.failed,
            "hypervolume": self.hypervolume,
            "reference point": self.reference,
            "last update": self.last_update,
            "problem": self.error or "",
        }


def summarise(data: SweepData) -> SweepSummary:
    """State, counts, hypervolume and last activity of a loaded sweep."""
    import pandas as pd

    from analysis.pareto import AnalysisError, hypervolume

    trials = data.trials
    states = trials["state"].value_counts()
    complete = int(states.get("COMPLETE", 0))
    running = int(states.get("RUNNING", 0))
    failed = int(states.get("FAIL", 0))
    n_trials = data.target_trials or int(data.loaded.config.driver.n_trials)
    if running:
        state = "running"
    elif trials.empty:
        state = "not started"
    elif complete >= n_trials:
        state = "finished"
    else:
        state = "stopped"
    volume = None
    reference = ""
    try:
        point = data.reference if not data.complete.empty else None
    except AnalysisError as error:  # e.g. no threshold and no feasible trial to bound it
        point = None
        reference = describe(error)
    if point is not None:
        frame = data.complete
        volume = hypervolume(
            data.values(frame),
            data.directions,
            point.point,
            frame["feasible"].to_numpy(dtype=bool),
        )
        reference = ", ".join(
            f"{m.split('/')[-1]} {p:g}" for m, p in zip(data.metrics, point.point, strict=True)
        )
        if not point.governed:
            reference += " (from the data)"
    stamps = pd.concat([trials["datetime_start"], trials["datetime_complete"]]).dropna()
    return SweepSummary(
        sweep=data.name,
        state=state,
        n_trials=n_trials,
        complete=complete,
        running=running,
        failed=failed,
        hypervolume=volume,
        reference=reference,
        last_update=stamps.max() if not stamps.empty else None,
    )


def unreadable(name: str, error: Exception) -> SweepSummary:
    """The overview row of a sweep that cannot be loaded: the reason instead of numbers."""
    return SweepSummary(
        sweep=name,
        state="unreadable",
        n_trials=None,
        complete=0,
        running=0,
        failed=0,
        hypervolume=None,
        reference="",
        last_update=None,
        error=describe(error),
    )


def describe(error: Exception) -> str:
    """One line for an error, with its fix when the project's errors carry one."""
    from bao.errors import first_line

    fix = getattr(error, "fix", None)
    text = first_line(error)
    return f"{text} ({fix})" if fix and str(fix) not in text else text


# ------------------------------------------------------------------------- trial records


def seed_runs(data: SweepData, number: int) -> pd.DataFrame:
    """``seed, run_id`` of the trial's training runs (its own run when it has one seed)."""
    import pandas as pd

    seeds = data.seeds
    rows = seeds[seeds["number"] == number][["seed", "run_id"]] if not seeds.empty else None
    if rows is not None and not rows.empty:
        return rows.reset_index(drop=True)
    trial = data.trials[data.trials["number"] == number]
    run_id = trial["mlflow_run_id"].iloc[0] if not trial.empty else None
    if run_id is None or (isinstance(run_id, float) and math.isnan(run_id)):
        return pd.DataFrame({"seed": pd.Series([], dtype=object), "run_id": []})
    return pd.DataFrame({"seed": [data.loaded.config.seed], "run_id": [str(run_id)]})


def training_curves(data: SweepData, run_ids: list[str], prefix: str = "train/") -> pd.DataFrame:
    """Long table ``run_id, metric, step, value`` of every ``prefix`` metric of the runs."""
    from analysis.loader import metric_histories

    return metric_histories(data, run_ids, prefix)


def run_artifact_text(data: SweepData, run_id: str, path: str) -> str | None:
    """A text artifact of one of the sweep's runs, or ``None`` when it has none."""
    from analysis.loader import run_artifact_text as read

    return read(data, run_id, path)


def trajectories(data: SweepData, run_id: str) -> list[Trajectory]:
    """The evaluation trajectories a run logged (empty when it logged none)."""
    from bao.trajectory import read_trajectories

    text = run_artifact_text(data, run_id, TRAJECTORIES)
    if text is None:
        return []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / TRAJECTORIES
        path.write_text(text, encoding="utf-8")
        return read_trajectories(path)


def turn_table(trajectory: Trajectory) -> pd.DataFrame:
    """One row per turn, the columns the trajectory viewer shows."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "turn": index,
                "choice": turn.choice,
                "content": turn.content,
                "observation": turn.observation,
                "event": turn.event,
                "reward": turn.reward,
                "shaped reward": turn.shaped_reward,
            }
            for index, turn in enumerate(trajectory.turns, start=1)
        ],
        columns=["turn", "choice", "content", "observation", "event", "reward", "shaped reward"],
    )


def eval_metrics(data: SweepData, number: int) -> pd.DataFrame:
    """The trial's evaluation metrics with their Wilson intervals where logged:
    ``metric, value, low, high``."""
    import pandas as pd

    from analysis.jsonable import finite_or_none

    row = data.trials[data.trials["number"] == number]
    if row.empty:
        return pd.DataFrame(columns=["metric", "value", "low", "high"])
    record = row.iloc[0]
    names = sorted(
        str(c)
        for c in data.trials.columns
        if str(c).startswith("eval/") and not str(c).endswith(("_lo", "_hi"))
    )
    rows = []
    for name in names:
        value = finite_or_none(record.get(name))
        if value is None:
            continue
        rows.append(
            {
                "metric": name,
                "value": value,
                "low": finite_or_none(record.get(f"{name}_lo")),
                "high": finite_or_none(record.get(f"{name}_hi")),
            }
        )
    return pd.DataFrame(rows, columns=["metric", "value", "low", "high"])


# --------------------------------------------------------------------------- references


def reference_table_path() -> Path | None:
    """The published-results table the dashboard was launched with, if any."""
    value = os.environ.get(REFERENCE_TABLE_ENV)
    return Path(value) if value else None


def reference_gyms(path: Path) -> list[str]:
    from analysis.imports import load_reference_table

    return sorted(str(g) for g in load_reference_table(path)["gym"].unique())


# --------------------------------------------------------------------------- parameters


def parameter_importance(data: SweepData) -> dict[str, dict[str, float]]:
    """Per objective, each searched parameter's fANOVA importance
    (:func:`analysis.importance.parameter_importance` on the study the reader opens)."""
    from analysis.importance import parameter_importance as importance
    from analysis.loader import study_of

    study = study_of(data) if len(data.complete) >= 2 else None
    return {} if study is None else importance(data, study)
