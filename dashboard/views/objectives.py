"""Objective space: the trials in the sweep's objectives, the front, the knee, hypervolume."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import figures, state

st.title("Objective space")
name = state.sweep_or_stop()
with state.shown_errors():
    analysis = state.front(name)
data = analysis.data
if analysis.frame.empty:
    failed = int((data.trials["state"] == "FAIL").sum())
    state.stop_with(
        f"Sweep {name!r} has no complete trial with finite objective values yet "
        f"({len(data.trials)} trials, {failed} failed)."
    )

metrics = data.metrics
top = st.columns(4)
top[0].metric("complete trials", len(analysis.frame))
top[1].metric("on the front", len(analysis.front_numbers))
top[2].metric("hypervolume", f"{analysis.hypervolume:.4f}")
top[3].metric("knee", "-" if analysis.knee is None else f"trial {analysis.knee}")
if not analysis.reference.governed:
    st.warning(
        "The reference point comes from the data (no thresholds in the sweep config): "
        "hypervolumes are not comparable over time."
    )

if len(metrics) == 1:
    st.info("One objective: there is no trade-off to draw; the table below ranks the trials.")
else:
    axes = st.columns(2)
    x_metric = axes[0].selectbox("x axis", metrics, index=0)
    y_metric = axes[1].selectbox("y axis", [m for m in metrics if m != x_metric], index=0)
    toggles = st.columns(3)
    colour = toggles[0].toggle("colour by P(non-dominated)")
    errors = toggles[1].toggle("error bars", value=True)
    reference = toggles[2].toggle(
        "include the reference point",
        help="widen the axes to the reference point and the constraint bounds; by default "
        "they fit the trials",
    )
    figure = state.cached_figure(
        (
            "objectives",
            name,
            data.signature,
            state.draws(),
            state.resample_seed(),
            x_metric,
            y_metric,
            colour,
            errors,
            reference,
        ),
        lambda: figures.objective_figure(
            analysis,
            x_metric,
            y_metric,
            show_errors=errors,
            p_nondominated=colour,
            include_reference=reference,
        ),
    )
    st.plotly_chart(figure, key="objective_chart")
    point = ", ".join(
        f"{metric}={value:g}"
        for metric, value in zip(metrics, analysis.reference.point, strict=True)
    )
    st.caption(
        "Shaded: worse than the reference point (no hypervolume) or violating a constraint. "
        "Error bars: 95% intervals of the resampled evaluations (drawn beneath the points). "
        f"The axes fit the trials and their intervals; *include the reference point* widens "
        f"them to the reference point ({point}) and the constraint bounds."
    )
    if len(metrics) >= 3 and st.toggle("3-D view"):
        st.plotly_chart(figures.objective_3d_figure(analysis), key="objective_3d_chart")

st.plotly_chart(
    figures.hypervolume_history_figure(analysis.history, analysis.reference.point),
    key="history_chart",
)

st.subheader("Front")
rows = []
for i, number in enumerate(analysis.frame["number"]):
    if not (analysis.pareto[i] or analysis.p_nondominated[i] >= 0.05):
        continue
    row: dict[str, object] = {"trial": int(number)}
    for j, metric in enumerate(metrics):
        row[metric] = (
            f"{analysis.values[i, j]:.3f} [{analysis.low[i, j]:.3f}, {analysis.high[i, j]:.3f}]"
        )
    row["on front"] = bool(analysis.pareto[i])
    row["P(non-dominated)"] = float(analysis.p_nondominated[i])
    row["HV contribution"] = float(analysis.contributions[i])
    row["knee"] = int(number) == analysis.knee
    rows.append(row)
st.dataframe(
    pd.DataFrame(rows).sort_values("P(non-dominated)", ascending=False) if rows else pd.DataFrame(),
    hide_index=True,
    column_config={
        "P(non-dominated)": st.column_config.ProgressColumn(
            min_value=0, max_value=1, format="%.2f"
        ),
        "HV contribution": st.column_config.NumberColumn(format="%.4f"),
    },
)
st.caption("Front trials and every trial with P(non-dominated) >= 0.05.")

pruned = data.trials[data.trials["state"] == "PRUNED"]
if not pruned.empty:
    # Stopped early by the sweep's pruner (docs/sweeps.md, "Early stopping"): never on the
    # front above, listed with the rung and rule that stopped them.
    st.subheader(f"Pruned trials ({len(pruned)})")
    st.dataframe(
        pruned[["number", "state", "pruned_rung", "pruned_rule"]].rename(
            columns={"number": "trial", "pruned_rung": "rung", "pruned_rule": "rule"}
        ),
        hide_index=True,
        column_config={"rung": st.column_config.NumberColumn(format="%d")},
    )
