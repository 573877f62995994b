"""Frontier: Pass@U-k curves of every trial, the envelope, the front, published results."""

from __future__ import annotations

import streamlit as st

from analysis.report import collapsed_numbers
from dashboard import data as records
from dashboard import figures, state

st.title("Frontier")
name = state.sweep_or_stop()
with state.shown_errors():
    analysis = state.front(name)
curves, envelope = analysis.curves, analysis.envelope
if curves.empty:
    state.stop_with(
        f"Sweep {name!r} has no complete trial with Pass@U-k metrics yet "
        f"({len(analysis.data.trials)} trials recorded)."
    )

left, middle, right = st.columns(3)
highlight = left.radio(
    "Highlight",
    ["Pareto front", "envelope trials", "knee"],
    horizontal=True,
    help="Pareto front: non-dominated in the sweep's objectives; envelope trials: the best "
    "trial at some k",
)
show_intervals = middle.toggle("95% intervals", value=True)
references = None
gym = None
table_path = records.reference_table_path()
if table_path is not None:
    with state.shown_errors():
        from analysis.imports import load_reference_table, reference_points

        gyms = records.reference_gyms(table_path)
        gym = right.selectbox(
            "Published results",
            ["(none)", *gyms],
            index=1 + gyms.index("function_gym") if "function_gym" in gyms else 0,
        )
        if gym != "(none)":
            references = reference_points(load_reference_table(table_path), gym)
else:
    right.caption("Published results: launch with `--reference-table CSV` to draw them.")

if highlight == "Pareto front":
    chosen = analysis.front_numbers
elif highlight == "envelope trials":
    chosen = sorted({int(t) for t in envelope["trial"]})
else:
    chosen = [analysis.knee] if analysis.knee is not None else []
collapsed = collapsed_numbers(analysis.frame)
figure = state.cached_figure(
    (
        "frontier",
        name,
        analysis.data.signature,
        state.draws(),
        highlight,
        show_intervals,
        str(table_path),
        gym,
    ),
    lambda: figures.frontier_figure(
        curves,
        envelope,
        chosen,
        references=references,
        collapsed=collapsed,
        show_intervals=show_intervals,
    ),
)
st.plotly_chart(figure, key="frontier_chart")

st.subheader("Envelope: best pass rate per budget k")
table = envelope.assign(
    interval=[f"[{lo:.3f}, {hi:.3f}]" for lo, hi in envelope[["lo", "hi"]].itertuples(index=False)],
    attained_by=[len(a) for a in envelope["attainers"]],
)[["k", "pass_rate", "interval", "trial", "attained_by"]]
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "pass_rate": st.column_config.NumberColumn("best pass rate", format="%.3f"),
        "attained_by": st.column_config.NumberColumn(
            "trials within the interval", help="trials whose Wilson interval reaches the best"
        ),
    },
)
st.caption(
    "Intervals: Wilson 95% over the evaluation tasks (pooled over seeds). A trial within the "
    "best's interval cannot be told apart from it at that k."
)
