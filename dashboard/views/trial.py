"""Trial detail: config, training curves, evaluation metrics, trajectories turn by turn."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from analysis.frontier import pass_curves
from dashboard import data as records
from dashboard import figures, state

st.title("Trial detail")
name = state.sweep_or_stop()
with state.shown_errors():
    analysis = state.front(name)
data = analysis.data
trials = data.trials
if trials.empty:
    state.stop_with(f"Sweep {name!r} has no trial yet.")

numbers = [int(n) for n in trials["number"]]
states = dict(zip(numbers, trials["state"], strict=True))
rungs = dict(zip(numbers, trials["pruned_rung"].astype(float), strict=True))
wanted = st.query_params.get("trial")
default = analysis.knee if analysis.knee is not None else numbers[0]
if wanted is not None and wanted.isdigit() and int(wanted) in states:
    default = int(wanted)
number = st.selectbox(
    "Trial",
    numbers,
    index=numbers.index(default),
    format_func=lambda n: (
        f"trial {n} ({states[n].lower()}"
        + (f" at rung {int(rungs[n])}" if math.isfinite(rungs[n]) else "")
        + ")"
        + (" - on the front" if n in analysis.front_numbers else "")
        + (" - knee" if n == analysis.knee else "")
    ),
)
st.query_params["trial"] = str(number)
row = trials[trials["number"] == number].iloc[0]

facts = st.columns(4)
facts[0].metric("state", str(row["state"]))
duration = row.get("duration_s")
known = isinstance(duration, float) and math.isfinite(duration)
facts[1].metric("duration", f"{duration:.0f} s" if known else state.NOT_RECORDED)
facts[2].metric("seeds", int(row.get("n_seeds", 0)))
facts[3].metric("attempt", int(row.get("attempt", 1)))
if row["state"] == "PRUNED":
    rung = row.get("pruned_rung")
    where = f"rung {int(rung)}" if isinstance(rung, float) and math.isfinite(rung) else "a rung"
    st.warning(f"pruned at {where} by the {row.get('pruned_rule') or '?'} rule (docs/sweeps.md)")
if row["state"] == "FAIL":
    # The reason is backend output: shown as plain text, never rendered as markdown.
    st.error("failed")
    st.text(str(row.get("failure_reason") or "no reason recorded"))
if isinstance(row.get("retry_of"), int | float) and not pd.isna(row.get("retry_of")):
    st.caption(f"retry of trial {int(row['retry_of'])}")

left, right = st.columns(2)
with left:
    st.subheader("Parameters")
    params = {path: row[f"params.{path}"] for path in data.loaded.config.search_space}
    st.dataframe(
        pd.DataFrame(
            {
                "parameter": list(params),
                # A parameter the trial did not sample (a conditional one) reads as missing.
                "value": [state.NOT_RECORDED if pd.isna(v) else str(v) for v in params.values()],
            }
        ),
        hide_index=True,
    )
    runs = records.seed_runs(data, number)
    if not runs.empty:
        config = state.artifact_text(name, str(runs["run_id"].iloc[0]), records.RUN_CONFIG)
        with st.expander("Training config (config.yaml of the run)"):
            if config is None:
                st.caption("this run logged no config.yaml")
            else:
                st.code(config, language="yaml")
with right:
    st.subheader("Evaluation")
    metrics = records.eval_metrics(data, number)
    if metrics.empty:
        st.info("No evaluation metrics recorded for this trial.")
    else:
        st.dataframe(
            metrics,
            hide_index=True,
            placeholder=state.NOT_RECORDED,
            column_config={
                "value": st.column_config.NumberColumn(format="%.4f"),
                **{
                    bound: st.column_config.NumberColumn(
                        format="%.4f",
                        help="95% interval of the value, where the run logged one (pass rates)",
                    )
                    for bound in ("low", "high")
                },
            },
        )

curve = pass_curves(data, trials[trials["number"] == number])
if not curve.empty:
    st.plotly_chart(
        figures.trial_pass_figure(curve, analysis.envelope, number), key="trial_pass_chart"
    )

st.subheader("Training curves")
if runs.empty:
    st.info("No MLflow run is linked to this trial.")
else:
    with state.shown_errors():
        curves = state.training_curves(name, [str(r) for r in runs["run_id"]])
    available = sorted(curves["metric"].unique()) if not curves.empty else []
    if not available:
        st.info("This trial's runs logged no training curves.")
    else:
        preferred = [
            m
            for m in (
                "train/score",
                "train/answer_share",
                "train/shaped_return",
                "train/mean_turns",
            )
            if m in available
        ]
        shown = st.multiselect("Curves", available, default=preferred or available[:4])
        st.plotly_chart(figures.training_figure(curves, shown), key="training_chart")

st.subheader("Trajectories")
if runs.empty:
    st.stop()
seed_labels = {str(r.run_id): f"seed {r.seed} (run {str(r.run_id)[:8]})" for r in runs.itertuples()}
run_id = st.selectbox("Run", list(seed_labels), format_func=seed_labels.__getitem__)
with state.shown_errors():
    episodes = state.trajectories(name, run_id)
if not episodes:
    state.stop_with("This run logged no evaluation trajectories.")
outcome = st.radio("Show", ["all", "solved", "unsolved"], horizontal=True)
solved = [any(t.is_success for t in e.turns) for e in episodes]
indices = [i for i, ok in enumerate(solved) if outcome == "all" or (outcome == "solved") == ok]
if not indices:
    state.stop_with(f"No {outcome} trajectory in this run.")
index = st.selectbox(
    f"Task ({len(indices)} of {len(episodes)})",
    indices,
    format_func=lambda i: (
        f"{episodes[i].task_id}: {len(episodes[i].turns)} turns, "
        f"{episodes[i].n_answers} answers, {'solved' if solved[i] else 'unsolved'}"
    ),
)
st.dataframe(
    records.turn_table(episodes[index]),
    hide_index=True,
    placeholder=state.NOT_RECORDED,
    column_config={
        "content": st.column_config.TextColumn(width="medium"),
        "observation": st.column_config.TextColumn(width="large"),
        "shaped reward": st.column_config.NumberColumn(format="%.3f"),
    },
)
