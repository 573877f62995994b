"""Compare: several sweeps on one frontier, with hypervolume differences and intervals."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data as records
from dashboard import figures, state

st.title("Compare sweeps")
names = records.sweep_names(state.workspace())
if len(names) < 2:
    state.stop_with("Comparing needs at least two sweeps in the workspace.")
first = state.chosen_sweep() or names[0]
default = [first, *[n for n in names if n != first][:1]]
picked = st.multiselect("Sweeps (the first is the baseline)", names, default=default)
if len(picked) < 2:
    state.stop_with("Pick at least two sweeps.")

analyses = []
for name in picked:
    with state.shown_errors():
        analysis = state.front(name)
    if analysis.frame.empty:
        st.warning(f"{name}: no complete trial yet, left out.")
        continue
    analyses.append(analysis)
if len(analyses) < 2:
    state.stop_with("Fewer than two of the picked sweeps have complete trials.")

metrics = analyses[0].data.metrics
clash = [a.data.name for a in analyses[1:] if a.data.metrics != metrics]
st.plotly_chart(figures.compare_figure(analyses, fronts=not clash), key="compare_chart")
if clash:
    state.stop_with(
        f"{', '.join(clash)} optimise other objectives than {analyses[0].data.name} "
        f"({', '.join(metrics)}): their Pass@U-k envelopes are drawn above, but fronts and "
        "hypervolumes compare only between sweeps with the same objectives."
    )

baseline = analyses[0].data.name
rows = []
for other in analyses[1:]:
    try:
        result = state.comparison(other.data.name, baseline)
    except Exception as error:  # shown per pair: the others still compare
        st.warning(f"{other.data.name} vs {baseline}: {records.describe(error)}")
        continue
    rows.append(
        {
            "sweep": other.data.name,
            "hypervolume": result.hypervolume_a,
            f"{baseline} hypervolume": result.hypervolume_b,
            "difference": result.difference,
            "95% interval": f"[{result.low:+.4f}, {result.high:+.4f}]",
            "P(better)": result.p_a_better,
            "reference point": ", ".join(f"{p:g}" for p in result.reference),
        }
    )
if rows:
    st.subheader(f"Hypervolume against {baseline}")
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        column_config={
            "hypervolume": st.column_config.NumberColumn(format="%.4f"),
            f"{baseline} hypervolume": st.column_config.NumberColumn(format="%.4f"),
            "difference": st.column_config.NumberColumn(format="%+.4f"),
            "P(better)": st.column_config.ProgressColumn(min_value=0, max_value=1, format="%.2f"),
        },
    )
    st.caption(
        "Difference = this sweep's hypervolume minus the baseline's, at one reference point; "
        "interval and P(better) from resampling each sweep's evaluations."
    )
