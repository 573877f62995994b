"""Deploy: choose user-involvement budgets, see the variants and why, register them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data as records
from dashboard import figures, state

st.title("Deploy")
name = state.sweep_or_stop()
with state.shown_errors():
    analysis = state.front(name)
data = analysis.data
ks = data.k_values()
if analysis.frame.empty or not ks:
    state.stop_with(f"Sweep {name!r} has no complete trial with Pass@U-k metrics to choose from.")

controls = st.columns(3)
budgets = controls[0].multiselect(
    "Budgets k (user-involved actions a deployment allows)", ks, default=[ks[0]], key="budgets"
)
# No max_value: it would change with the front and reset the widget; a size beyond the front
# is reported by the selection itself.
hv_subset = controls[1].number_input(
    "Hypervolume subset size (0: none)", min_value=0, value=0, key="hv_subset"
)
knee = controls[2].toggle("Include the knee", value=True, key="knee")
if not budgets and not hv_subset and not knee:
    state.stop_with("Choose at least one budget, a subset size or the knee.")

key = (
    name,
    data.signature,
    tuple(budgets),
    int(hv_subset),
    knee,
    state.draws(),
    state.resample_seed(),
)
selections = st.session_state.setdefault("_selections", {})
if key not in selections:
    from analysis.selection import select_variants

    with st.spinner("Selecting ..."), state.shown_errors():
        chosen_variants = select_variants(
            data,
            budgets,
            hv_subset=int(hv_subset) or None,
            knee=knee,
            n_draws=state.draws(),
            seed=state.resample_seed(),
        )
    # Kept with the analysis it came from: the button registers exactly what is shown.
    selections[key] = (analysis, chosen_variants)
variants = selections[key][1]

table = pd.DataFrame(
    [
        {
            "alias": v.alias,
            "trial": v.number,
            "runner-up": v.runner_up,
            "margin": v.margin,
            "chosen in draws": v.p_chosen,
        }
        for v in variants
    ]
)
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "margin": st.column_config.NumberColumn(format="%.3f"),
        "chosen in draws": st.column_config.ProgressColumn(min_value=0, max_value=1, format="%.2f"),
    },
)
# The reasons are sentences: a list reads better than a clipped table cell.
st.markdown("\n".join(f"- **{v.alias}** (trial {v.number}): {v.reason}" for v in variants))
chosen: dict[int, list[str]] = {}
for variant in variants:
    chosen.setdefault(variant.number, []).append(variant.alias)
st.plotly_chart(
    figures.variants_figure(analysis.curves, analysis.envelope, chosen), key="variants_chart"
)
st.caption(f"Front hash {analysis.front_hash()}: registered manifests record it.")

st.subheader("Register")
model = f"bao-pareto-{name}"
st.write(
    f"Registers each chosen trial's model as a version of `{model}` in the workspace's MLflow "
    "registry, moves the aliases above onto it and writes a manifest (the same code as "
    "`bao-pareto select --register`)."
)


def register(shown: tuple[object, ...]) -> None:
    """Registers the selection that was on screen when the button was pressed, even if a
    trial finished since (the rerun would otherwise select, and register, something else)."""
    from analysis.registry import other_aliases, register_variants

    shown_analysis, shown_variants = st.session_state["_selections"][shown]
    root = state.workspace()
    try:
        registered = register_variants(shown_analysis, shown_variants, root)
        untouched = other_aliases(shown_analysis, [v.alias for v in shown_variants], root)
    except Exception as error:  # shown as one line on the page, like every other error
        st.session_state["_register_error"] = records.describe(error)
        return
    st.session_state["_registered"] = (registered, untouched)


st.button("Register in MLflow", type="primary", on_click=register, args=(key,))
if "_register_error" in st.session_state:
    st.error(f"not registered: {st.session_state.pop('_register_error')}")
if "_registered" in st.session_state:
    registered, untouched = st.session_state["_registered"]
    if registered and registered[0].model_name == model:
        st.success(
            "; ".join(
                f"{r.alias} -> version {r.version}"
                + (" (new)" if r.created else " (kept)")
                + (f", moved from {r.previous_version}" if r.previous_version else "")
                for r in registered
            )
        )
        st.dataframe(pd.DataFrame([r.to_dict() for r in registered]), hide_index=True)
        if untouched:
            st.warning(
                "Aliases from earlier selections, not set now: "
                + ", ".join(f"{a} -> version {v}" for a, v in untouched.items())
            )
        st.code(f"mlflow.pytorch.load_model('models:/{model}@{registered[0].alias}')")
