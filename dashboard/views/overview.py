"""Sweeps overview: every sweep of the workspace, live while trials run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data as records
from dashboard import figures, state

REFRESH_SECONDS = 5

st.title("Sweeps")
root = state.workspace()
names = records.sweep_names(root)
if not names:
    state.stop_with(
        f"No sweep in `{root}` yet. Start one with "
        f"`bao-pareto sweep configs/quickstart.yaml --workspace {root}`, "
        "then this page lists it (live while it runs)."
    )


@st.cache_resource(max_entries=256, show_spinner=False)
def _summary(name: str, signature: str, _data: object) -> records.SweepSummary:
    return records.summarise(_data)  # type: ignore[arg-type]


def summaries() -> list[records.SweepSummary]:
    found = []
    for name in names:
        try:
            data = state.sweep_data(name)
            found.append(_summary(name, data.signature, data))
        except Exception as error:  # one unreadable sweep must not hide the others
            found.append(records.unreadable(name, error))
    return found


live = st.toggle(
    "Live refresh",
    value=True,
    help=f"re-read the sweeps every {REFRESH_SECONDS} s (only changed sweeps are reloaded)",
)


@st.fragment(run_every=REFRESH_SECONDS if live else None)
def sweeps_table() -> None:
    if records.sweep_names(root) != names:
        st.rerun(scope="app")  # a sweep was added or removed: the sidebar must list it too
    rows = summaries()
    table = pd.DataFrame([row.to_row() for row in rows])
    table["progress"] = [row.complete / row.n_trials if row.n_trials else 0.0 for row in rows]
    st.dataframe(
        table,
        hide_index=True,
        column_order=[
            "sweep",
            "state",
            "progress",
            "trials done",
            "running",
            "failed",
            "hypervolume",
            "reference point",
            "last update",
            "problem",
        ],
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1),
            "hypervolume": st.column_config.NumberColumn("hypervolume", format="%.4f"),
            "last update": st.column_config.DatetimeColumn("last update"),
        },
    )
    running = [row for row in rows if row.running]
    for row in running:
        data = state.sweep_data(row.sweep)
        active = data.trials[data.trials["state"] == "RUNNING"]
        params = [c for c in active.columns if str(c).startswith("params.")]
        st.caption(f"running in {row.sweep}")
        st.dataframe(active[["number", "datetime_start", *params]], hide_index=True)
    st.caption(
        f"{len(rows)} sweeps; hypervolume at each sweep's reference point "
        "(thresholds from its config, else the metrics' natural bounds)."
    )
    readable = [row.sweep for row in rows if row.error is None]
    cost = figures.cost_figure({name: state.sweep_data(name).trials for name in readable})
    if cost is not None:  # docs/clusters.md, "Cost"
        st.plotly_chart(cost, key="cost_chart")


sweeps_table()
