"""Parameters: how lambda, alpha and beta move each objective."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, state

st.title("Parameters")
name = state.sweep_or_stop()
with state.shown_errors():
    analysis = state.front(name)
data = analysis.data
params = [f"params.{path}" for path in data.loaded.config.search_space]
frame = analysis.frame
if frame.empty:
    state.stop_with(f"Sweep {name!r} has no complete trial yet: nothing to relate.")
if not params:
    state.stop_with(f"Sweep {name!r} searches no parameter.")
usable = [p for p in params if frame[p].notna().any()]

colour = st.selectbox("Colour the lines by", data.metrics)
st.plotly_chart(
    state.cached_figure(
        ("parallel", name, data.signature, colour),
        lambda: figures.parallel_figure(frame, usable, data.metrics, colour),
    ),
    key="parallel_chart",
)

metric = st.selectbox("Slices of", data.metrics, key="slice_metric")
st.plotly_chart(
    state.cached_figure(
        ("slices", name, data.signature, metric),
        lambda: figures.slice_figure(frame, usable, metric, analysis.front_numbers),
    ),
    key="slice_chart",
)

st.subheader("Importance")
with state.shown_errors():
    shares = state.importance(name)
if shares:
    st.plotly_chart(figures.importance_figure(shares), key="importance_chart")
    st.caption(
        "fANOVA (Optuna's evaluator, a random forest over the complete trials): the share of "
        "each objective's variance a parameter explains on its own. Few trials make it noisy."
    )
else:
    st.info(
        "Not enough to estimate importance: it needs at least two complete trials, a "
        "parameter that varies and objective values that differ between trials."
    )
