"""The bao-pareto dashboard: ``bao-pareto dashboard`` runs this script with Streamlit.

This file only lays out the navigation and the sidebar (the sweep, the resampling); each page
is a short script in ``pages/`` that reads cached analyses (:mod:`dashboard.state`) and draws
figures built by :mod:`dashboard.figures`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import state
from dashboard.data import sweep_names

HERE = Path(__file__).parent

st.set_page_config(page_title="bao-pareto", page_icon="📈", layout="wide")

pages = [
    st.Page(HERE / "pages/overview.py", title="Sweeps", icon=":material/list:", default=True),
    st.Page(HERE / "pages/frontier.py", title="Frontier", icon=":material/show_chart:"),
    st.Page(HERE / "pages/objectives.py", title="Objective space", icon=":material/scatter_plot:"),
    st.Page(HERE / "pages/parameters.py", title="Parameters", icon=":material/tune:"),
    st.Page(HERE / "pages/trial.py", title="Trial detail", icon=":material/search:"),
    st.Page(HERE / "pages/compare.py", title="Compare sweeps", icon=":material/compare_arrows:"),
    st.Page(HERE / "pages/deploy.py", title="Deploy", icon=":material/rocket_launch:"),
]
navigation = st.navigation(pages)

root = state.workspace()
names = sweep_names(root)
with st.sidebar:
    st.markdown("**bao-pareto**")
    if names:
        # The URL carries the sweep (?sweep=NAME), so a link opens the same view.
        wanted = st.query_params.get(state.SWEEP_KEY)
        if st.session_state.get(state.SWEEP_KEY) not in names:
            st.session_state[state.SWEEP_KEY] = wanted if wanted in names else names[0]
        state.remembered(st.selectbox, "Sweep", state.SWEEP_KEY, options=names)
        st.query_params[state.SWEEP_KEY] = st.session_state[state.SWEEP_KEY]
    else:
        st.session_state.pop(state.SWEEP_KEY, None)
    with st.expander("Uncertainty"):
        st.session_state.setdefault(state.DRAWS_KEY, state.DEFAULT_DRAWS)
        st.session_state.setdefault(state.SEED_KEY, 0)
        state.remembered(
            st.number_input,
            "resampled evaluations",
            state.DRAWS_KEY,
            min_value=50,
            max_value=5_000,
            step=250,
            help="draws behind every interval, P(non-dominated) and selection share",
        )
        state.remembered(st.number_input, "resampling seed", state.SEED_KEY, min_value=0)
    st.caption(f"workspace `{root}`")

navigation.run()
