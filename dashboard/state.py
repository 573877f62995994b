"""The Streamlit side of the data: caches, the chosen sweep, and one-line errors.

Loading a sweep and analysing its front are the expensive steps; both are cached across
reruns and sessions (``st.cache_resource``: the same objects, never copied, never mutated).
The load is keyed by :func:`dashboard.data.sweep_stamp` (cheap: file size and time of the
storage), the analysis by the sweep's signature, so a widget change recomputes nothing and a
finished trial recomputes once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import streamlit as st

from dashboard import data as records

if TYPE_CHECKING:
    import pandas as pd

    from analysis.loader import SweepData
    from analysis.report import FrontAnalysis
    from analysis.uncertainty import SweepComparison

SWEEP_KEY: Final = "sweep"
DRAWS_KEY: Final = "draws"
SEED_KEY: Final = "resample_seed"
DEFAULT_DRAWS: Final = 1000
NOT_RECORDED: Final = "-"
"""What a table cell or a metric shows for a value the run did not record (Streamlit's own
placeholder for a missing cell is the word "None")."""
T = TypeVar("T")


def workspace() -> Path:
    """The workspace the dashboard was launched on (``$BAO_PARETO_HOME``, set by the CLI).

    Never created here: a dashboard only reads (registering variants aside)."""
    from bao.tracking import DEFAULT_WORKSPACE

    return Path(os.environ.get("BAO_PARETO_HOME") or DEFAULT_WORKSPACE).resolve()


def draws() -> int:
    return int(st.session_state.get(DRAWS_KEY, DEFAULT_DRAWS))


def resample_seed() -> int:
    return int(st.session_state.get(SEED_KEY, 0))


def chosen_sweep() -> str | None:
    """The sweep picked in the sidebar (``None`` in an empty workspace)."""
    value = st.session_state.get(SWEEP_KEY)
    return str(value) if value else None


def remembered(widget: Callable[..., Any], label: str, key: str, **options: Any) -> Any:
    """A sidebar widget whose value survives page switches.

    Streamlit drops a widget's state when a page switch reruns the script, so the value
    lives under ``key`` (plain session state) and the widget, keyed ``_widget.<key>``, is
    reset from it on every run and copies its changes back."""
    widget_key = f"_widget.{key}"
    st.session_state[widget_key] = st.session_state[key]

    def keep() -> None:
        st.session_state[key] = st.session_state[widget_key]

    return widget(label, key=widget_key, on_change=keep, **options)


def stop_with(message: str, *, info: bool = True) -> NoReturn:
    """Show one line and end this page's run (the rest of the page needs what is missing)."""
    (st.info if info else st.error)(message)
    st.stop()


@contextmanager
def shown_errors() -> Iterator[None]:
    """Errors of loading or analysis as one red line with their fix, then stop the page."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from analysis.pareto import AnalysisError
    from bao.configuration import ConfigError

    try:
        yield
    except (
        AnalysisError,
        ConfigError,
        OSError,
        ValueError,
        MlflowException,
        SQLAlchemyError,
    ) as error:  # a deleted run, a locked database: one line, the other pages still work
        stop_with(records.describe(error), info=False)


def sweep_or_stop() -> str:
    name = chosen_sweep()
    if name is None:
        stop_with(
            f"No sweep in {workspace()} yet. Start one with "
            f"`bao-pareto sweep configs/quickstart.yaml --workspace {workspace()}`."
        )
    return name


# ----------------------------------------------------------------------------- caches


@st.cache_resource(max_entries=64, show_spinner=False)
def _load(workspace_path: str, name: str, stamp: str) -> SweepData:
    from analysis.loader import load_sweep

    return load_sweep(Path(workspace_path), name)


# Few entries: each analysis holds its draws (draws x trials x objectives floats).
@st.cache_resource(max_entries=8, show_spinner="Analysing the front ...")
def _analyse(
    workspace_path: str, name: str, signature: str, n_draws: int, seed: int, _data: SweepData
) -> FrontAnalysis:
    from analysis.report import analyse_front

    return analyse_front(_data, n_draws=n_draws, seed=seed)


def sweep_data(name: str) -> SweepData:
    """The sweep, reloaded only when its storage changed."""
    root = workspace()
    return _load(str(root), name, records.sweep_stamp(root, name))


def front(name: str) -> FrontAnalysis:
    """The sweep's :class:`FrontAnalysis` at the sidebar's draws and seed."""
    data = sweep_data(name)
    return _analyse(str(workspace()), name, data.signature, draws(), resample_seed(), data)


@st.cache_resource(max_entries=16, show_spinner="Comparing hypervolumes ...")
def _compare(
    pair: tuple[str, str],
    signatures: tuple[str, str],
    n_draws: int,
    seed: int,
    _a: SweepData,
    _b: SweepData,
) -> SweepComparison:
    from analysis.uncertainty import compare_sweeps

    return compare_sweeps(_a, _b, n_draws=n_draws, seed=seed)


def comparison(a: str, b: str) -> SweepComparison:
    first, second = sweep_data(a), sweep_data(b)
    return _compare(
        (a, b), (first.signature, second.signature), draws(), resample_seed(), first, second
    )


@st.cache_resource(max_entries=16, show_spinner="Estimating parameter importance ...")
def _importance(name: str, signature: str, _data: SweepData) -> dict[str, dict[str, float]]:
    return records.parameter_importance(_data)


def importance(name: str) -> dict[str, dict[str, float]]:
    data = sweep_data(name)
    return _importance(name, data.signature, data)


# Run records are keyed by the sweep's stamp too: a running trial's curves, config and
# trajectories are read again once its sweep changes, not frozen at the first view.
@st.cache_data(max_entries=64, show_spinner=False)
def _curves(root: str, name: str, stamp: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    return records.training_curves(sweep_data(name), list(run_ids))


def training_curves(name: str, run_ids: list[str]) -> pd.DataFrame:
    root = workspace()
    return _curves(str(root), name, records.sweep_stamp(root, name), tuple(run_ids))


@st.cache_resource(max_entries=32, show_spinner="Reading trajectories ...")
def _trajectories(root: str, name: str, stamp: str, run_id: str) -> list[Any]:
    return records.trajectories(sweep_data(name), run_id)


def trajectories(name: str, run_id: str) -> list[Any]:
    root = workspace()
    return _trajectories(str(root), name, records.sweep_stamp(root, name), run_id)


@st.cache_data(max_entries=64, show_spinner=False)
def _artifact(root: str, name: str, stamp: str, run_id: str, path: str) -> str | None:
    return records.run_artifact_text(sweep_data(name), run_id, path)


def artifact_text(name: str, run_id: str, path: str) -> str | None:
    root = workspace()
    return _artifact(str(root), name, records.sweep_stamp(root, name), run_id, path)


_FIGURES: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_FIGURES_LOCK = threading.Lock()
MAX_FIGURES: Final = 64


def cached_figure(key: tuple[Any, ...], build: Callable[[], T]) -> T:
    """A figure built once per ``key`` (sweep, signature and options) in this server process,
    shared by every session: a widget change or the next visitor reuses it. The figures are
    never modified after they are built."""
    full_key = (str(workspace()), *key)
    with _FIGURES_LOCK:
        if full_key in _FIGURES:
            _FIGURES.move_to_end(full_key)
            return _FIGURES[full_key]  # type: ignore[no-any-return]
    figure = build()
    with _FIGURES_LOCK:
        _FIGURES[full_key] = figure
        while len(_FIGURES) > MAX_FIGURES:
            _FIGURES.popitem(last=False)
    return figure
