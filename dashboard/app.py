"""The bao-pareto dashboard: ``bao-pareto dashboard`` runs this script with Streamlit.

This file only lays out the navigation and the sidebar (the sweep, the resampling); each page
is a short script in ``views/`` that reads cached analyses (:mod:`dashboard.state`) and draws
figures built by :mod:`dashboard.figures`.

The folder is deliberately not called ``pages/``: Streamlit treats a ``pages/`` folder beside
the main script as an old-style multipage app until the first ``st.navigation`` call of the
server, so the first browser to open a deep link (``/frontier``) would run that page's script
alone, without this sidebar, and list the files (docs/dashboard.md, "Navigation and links").
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import state
from dashboard.data import sweep_names

HERE = Path(__file__).parent

st.set_page_config(page_title="bao-pareto", page_icon="📈", layout="wide")

# (url path, script in views/, title, Material icon). The url paths are the deep links
# docs/dashboard.md lists: spelled here rather than left to the file names, so that renaming a
# script cannot break a bookmark. The first page is the default, served at the root.
PAGES = (
    ("sweeps", "overview", "Sweeps", "list"),
    ("frontier", "frontier", "Frontier", "show_chart"),
    ("objectives", "objectives", "Objective space", "scatter_plot"),
    ("parameters", "parameters", "Parameters", "tune"),
    ("trial", "trial", "Trial detail", "search"),
    ("compare", "compare", "Compare sweeps", "compare_arrows"),
    ("deploy", "deploy", "Deploy", "rocket_launch"),
)
pages = [
    st.Page(
        HERE / "views" / f"{script}.py",
        title=title,
        icon=f":material/{icon}:",
        url_path=url_path,
        default=position == 0,
    )
    for position, (url_path, script, title, icon) in enumerate(PAGES)
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
