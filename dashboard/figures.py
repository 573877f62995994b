"""The dashboard's plotly figures: pure functions of ``analysis`` outputs.

No Streamlit here and no I/O: each function takes frames or a
:class:`~analysis.report.FrontAnalysis` and returns a ``plotly.graph_objects.Figure``, so the
figures are tested (and benchmarked) without a browser. Large sweeps stay light: the many
trials that are not on the front are drawn as *one* trace (lines separated by gaps), not one
trace per trial; scatter plots of thousands of points switch to WebGL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from analysis.report import FrontAnalysis

FRONT_COLORS: Final = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#7f7f7f",
)
"""Distinct colours for front trials (they repeat after ten)."""
OTHER_COLOR: Final = "rgba(110, 110, 110, 0.35)"
ENVELOPE_COLOR: Final = "#111111"
KNEE_COLOR: Final = "#ff7f0e"
MAX_LABELLED: Final = 12
"""Highlighted trials beyond this many share one trace (a legend of 40 trials is noise)."""


def label(metric: str) -> str:
    """``eval/user_involvement_rate`` -> ``user involvement rate``."""
    return metric.rsplit("/", 1)[-1].replace("_", " ")


def _layout(figure: go.Figure, title: str, **extra: Any) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0.01},
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"itemsizing": "constant"},
        **extra,
    )
    return figure


def _gapped(curves: pd.DataFrame, decimals: int | None = None) -> tuple[list[Any], ...]:
    """Many trials' Pass@U-k curves (rows sorted by k within a trial) as one trace: points
    joined per trial, ``None`` between trials; pass rates rounded to ``decimals`` if given."""
    xs: list[Any] = []
    ys: list[Any] = []
    for _, rows in curves.groupby("number", sort=True):
        rates = rows["pass_rate"] if decimals is None else rows["pass_rate"].round(decimals)
        xs.extend(rows["k"].to_list())
        ys.extend(rates.to_list())
        xs.append(None)
        ys.append(None)
    return xs, ys


def _color(position: int) -> str:
    return FRONT_COLORS[position % len(FRONT_COLORS)]


# ------------------------------------------------------------------------------ frontier


def frontier_figure(
    curves: pd.DataFrame,
    envelope: pd.DataFrame,
    highlighted: Sequence[int],
    *,
    references: pd.DataFrame | None = None,
    collapsed: Sequence[int] = (),
    show_intervals: bool = True,
    title: str = "Pass@U-k: pass rate against the user-involved actions allowed",
) -> go.Figure:
    """Every trial's Pass@U-k curve, the envelope with its interval, the ``highlighted``
    (Pareto-optimal) trials in colour with Wilson intervals, and published reference points.

    ``curves`` and ``envelope`` are :func:`analysis.frontier.pass_curves` and
    :func:`analysis.frontier.envelope`; ``references`` is
    :func:`analysis.imports.reference_points` (``model, group, k, pass_rate``). Highlighted
    trials listed in ``collapsed`` (agents that never answer: their curves lie at zero) share
    one trace and one legend entry.
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    silent = {int(n) for n in collapsed} & {int(n) for n in highlighted}
    chosen = {int(n) for n in highlighted} - silent
    if not curves.empty:
        ordered = curves.sort_values(["number", "k"])
        others = ordered[~ordered["number"].isin(chosen | silent)]
        if not others.empty:
            # Rounded to what a screen can show: a third of the bytes of full float precision
            # for thousands of curves (docs/benchmarks.md).
            xs, ys = _gapped(others, decimals=4)
            # One SVG path, not WebGL: measured faster to draw in a browser without a GPU
            # (docs/benchmarks.md), and a path of 50,000 points is cheap for any browser.
            figure.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={"color": OTHER_COLOR, "width": 1},
                    name=f"other trials ({others['number'].nunique()})",
                    hoverinfo="skip",
                )
            )
        if not envelope.empty and show_intervals:
            band_k = envelope["k"].to_list()
            figure.add_trace(
                go.Scatter(
                    x=band_k + band_k[::-1],
                    y=envelope["hi"].to_list() + envelope["lo"].to_list()[::-1],
                    fill="toself",
                    mode="lines",
                    fillcolor="rgba(17, 17, 17, 0.08)",
                    line={"width": 0},
                    name="envelope 95% interval",
                    hoverinfo="skip",
                )
            )
        if silent:
            xs, ys = _gapped(ordered[ordered["number"].isin(silent)])
            listed = ", ".join(map(str, sorted(silent)[:6])) + (" ..." if len(silent) > 6 else "")
            figure.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines+markers",
                    line={"color": "#7f7f7f", "width": 2, "dash": "dash"},
                    marker={"symbol": "x", "size": 6},
                    name=f"never answer ({len(silent)}: trials {listed})",
                    hoverinfo="skip",
                )
            )
        # The best-performing trials get their own trace, colour and intervals; beyond
        # MAX_LABELLED the rest share one trace (dozens of traces with error bars cost the
        # browser more than they tell the reader).
        best = ordered[ordered["number"].isin(chosen)].groupby("number")["pass_rate"].max()
        ranked = sorted(chosen, key=lambda n: (-best.get(n, -1.0), n))
        for position, number in enumerate(ranked[:MAX_LABELLED]):
            rows = ordered[ordered["number"] == number]
            if rows.empty:
                continue
            error = None
            if show_intervals:
                error = {
                    "type": "data",
                    "symmetric": False,
                    "array": (rows["hi"] - rows["pass_rate"]).to_list(),
                    "arrayminus": (rows["pass_rate"] - rows["lo"]).to_list(),
                    "thickness": 1,
                    "width": 3,
                }
            figure.add_trace(
                go.Scatter(
                    x=rows["k"],
                    y=rows["pass_rate"],
                    error_y=error,
                    mode="lines+markers",
                    line={"color": _color(position), "width": 2},
                    marker={"size": 6},
                    name=f"trial {number}",
                    customdata=np.column_stack([rows["lo"], rows["hi"]]),
                    hovertemplate=f"trial {number}<br>k=%{{x}}: %{{y:.3f}} "
                    "[%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>",
                )
            )
        rest = ranked[MAX_LABELLED:]
        if rest:
            xs, ys = _gapped(ordered[ordered["number"].isin(rest)])
            figure.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines+markers",
                    line={"color": "rgba(31, 119, 180, 0.45)", "width": 1.5},
                    marker={"size": 4},
                    name=f"more highlighted trials ({len(rest)})",
                    hoverinfo="skip",
                )
            )
        if not envelope.empty:
            figure.add_trace(
                go.Scatter(
                    x=envelope["k"],
                    y=envelope["pass_rate"],
                    mode="lines+markers",
                    line={"color": ENVELOPE_COLOR, "width": 3, "dash": "dot"},
                    marker={"symbol": "square", "size": 7},
                    name="envelope (best per k)",
                    customdata=envelope["trial"],
                    hovertemplate="best at k=%{x}: %{y:.3f} (trial %{customdata})<extra></extra>",
                )
            )
    if references is not None and not references.empty:
        _add_references(figure, references)
    published = references is not None and not references.empty
    return _layout(
        figure,
        title,
        xaxis={"title": "k: user-involved actions allowed", "dtick": 1},
        yaxis={"title": "pass rate (Pass@U-k)", "rangemode": "tozero"},
        # The published models get a legend of their own below the sweep's: a click hides one
        # model, a double click shows it alone.
        **(
            {
                # Tall enough for both legends side by side with the plot: one row per
                # entry, two per family title.
                "height": max(480, 160 + LEGEND_ROW_PX * _legend_rows(figure)),
                "legend2": {
                    "title": {"text": "published results"},
                    "groupclick": "toggleitem",
                    "tracegroupgap": 6,
                    "itemsizing": "constant",
                    "x": 1.02,
                    "xanchor": "left",
                    "y": 0.0,
                    "yanchor": "bottom",
                },
            }
            if published
            else {}
        ),
    )


REFERENCE_FAMILY_COLORS: Final = ("#6a3d9a", "#b15928", "#1b9e77", "#e7298a", "#66a61e")
"""One colour per family (``group`` column) of published models; they repeat after five."""
REFERENCE_SYMBOLS: Final = (
    "diamond",
    "square",
    "triangle-up",
    "pentagon",
    "star-triangle-up",
    "hexagon",
    "triangle-down",
    "cross",
    "star-diamond",
    "hourglass",
)
"""Marker shapes of the models within one family (open variants after these ten)."""
LEGEND_ROW_PX: Final = 21


def reference_family(group: str) -> str:
    """``open_source_raw`` -> ``open source raw``: a family's legend title."""
    return str(group).replace("_", " ")


def reference_marker(family: int, member: int) -> dict[str, Any]:
    """The marker of a family's ``member``-th model: the family's colour, the member's shape."""
    shape = REFERENCE_SYMBOLS[member % len(REFERENCE_SYMBOLS)]
    if member >= len(REFERENCE_SYMBOLS):
        shape += "-open"
    return {
        "symbol": shape,
        "size": 9,
        "color": REFERENCE_FAMILY_COLORS[family % len(REFERENCE_FAMILY_COLORS)],
        "line": {"width": 0.5, "color": "white"},
    }


def _legend_rows(figure: go.Figure) -> int:
    entries = [t for t in figure.data if t.showlegend is not False]
    titles = {t.legendgroup for t in entries if t.legendgrouptitle.text}
    return len(entries) + 2 * len(titles)


def _add_references(figure: go.Figure, references: pd.DataFrame) -> None:
    """Published models (:func:`analysis.imports.reference_points`), each its own trace and
    legend entry in ``legend2``, grouped by family under the family's name: a family shares a
    colour, its models differ in marker shape, so a point can be told apart without hovering."""
    import plotly.graph_objects as go

    families = list(dict.fromkeys(references["group"]))
    for family, group in enumerate(families):
        rows_of_family = references[references["group"] == group]
        for member, model in enumerate(dict.fromkeys(rows_of_family["model"])):
            rows = rows_of_family[rows_of_family["model"] == model]
            marker = reference_marker(family, member)
            figure.add_trace(
                go.Scatter(
                    x=rows["k"],
                    y=rows["pass_rate"],
                    mode="lines+markers",
                    line={"dash": "dot", "width": 1, "color": marker["color"]},
                    marker=marker,
                    opacity=0.8,
                    name=str(model),
                    legend="legend2",
                    legendgroup=f"published: {group}",
                    legendgrouptitle={"text": reference_family(group)},
                    hovertemplate=f"{model} ({reference_family(group)})<br>"
                    "Pass@U-%{x}: %{y:.3f}<extra></extra>",
                )
            )


# ---------------------------------------------------------------------- objective space


def objective_figure(
    analysis: FrontAnalysis,
    x_metric: str,
    y_metric: str,
    *,
    show_errors: bool = True,
    p_nondominated: bool = False,
    include_reference: bool = False,
) -> go.Figure:
    """Two objectives against each other: dominated trials in grey, the Pareto front in
    colour (joined in order), error bars from the draws, infeasible trials crossed out, the
    knee starred, and the region worse than the reference point shaded. With
    ``p_nondominated`` the points are coloured by their probability of being non-dominated.

    The axes fit what is drawn (:func:`objective_axis_range`); ``include_reference`` widens
    them to the reference point and the constraint bounds. Every error bar is drawn beneath every
    point (error-bar traces first, then the points), so the front's wide intervals never cover
    a dominated trial."""
    import plotly.graph_objects as go

    data = analysis.data
    metrics = data.metrics
    i, j = metrics.index(x_metric), metrics.index(y_metric)
    frame = analysis.frame
    numbers = frame["number"].to_numpy()
    values = analysis.values
    figure = go.Figure()
    _shade_reference(figure, analysis, i, j)
    groups = {
        "dominated": ~analysis.pareto & analysis.feasible,
        "infeasible": ~analysis.feasible,
        "Pareto front": analysis.pareto,
    }
    bars: list[go.Scatter | go.Scattergl] = []
    points: list[go.Scatter | go.Scattergl] = []
    for name, mask in groups.items():
        if not mask.any():
            continue
        front = name == "Pareto front"
        order = np.argsort(values[mask, i]) if front else np.arange(int(mask.sum()))
        x = values[mask, i][order]
        y = values[mask, j][order]
        trace_kind = go.Scatter if front or mask.sum() < 2000 else go.Scattergl
        marker: dict[str, Any] = {
            "size": 10 if front else 6,
            "color": "#1f77b4" if front else ("#d62728" if name == "infeasible" else "#9a9a9a"),
            "symbol": "x" if name == "infeasible" else "circle",
            "line": {"width": 0.5, "color": "white"},
        }
        if p_nondominated:
            marker.update(
                color=analysis.p_nondominated[mask][order],
                colorscale="Viridis",
                cmin=0,
                cmax=1,
                colorbar={"title": "P(non-dominated)"} if front else None,
                showscale=front,
            )
        legend_name = f"{name} ({int(mask.sum())})"
        if show_errors and (front or mask.sum() <= 500):
            bars.append(
                trace_kind(
                    x=x,
                    y=y,
                    mode="markers",
                    marker={"opacity": 0, "size": 1},
                    error_x=_errors(x, analysis.low[mask, i][order], analysis.high[mask, i][order]),
                    error_y=_errors(y, analysis.low[mask, j][order], analysis.high[mask, j][order]),
                    name=f"{name}: 95% intervals",
                    legendgroup=legend_name,  # hidden and shown with its points
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
        points.append(
            trace_kind(
                x=x,
                y=y,
                mode="lines+markers" if front and len(x) > 1 else "markers",
                line={
                    "shape": _front_shape(data.directions, i),
                    "color": "rgba(31, 119, 180, 0.5)",
                },
                marker=marker,
                name=legend_name,
                legendgroup=legend_name,
                customdata=np.column_stack(
                    [numbers[mask][order], analysis.p_nondominated[mask][order]]
                ),
                hovertemplate="trial %{customdata[0]}<br>"
                f"{label(x_metric)} %{{x:.3f}}<br>{label(y_metric)} %{{y:.3f}}<br>"
                "P(nd) %{customdata[1]:.2f}<extra></extra>",
            )
        )
    figure.add_traces([*bars, *points])
    if analysis.knee is not None:
        row = np.flatnonzero(numbers == analysis.knee)
        if row.size:
            k = int(row[0])
            figure.add_trace(
                go.Scatter(
                    x=[values[k, i]],
                    y=[values[k, j]],
                    mode="markers",
                    marker={
                        "symbol": "star",
                        "size": 18,
                        "color": KNEE_COLOR,
                        "line": {"width": 1, "color": "black"},
                    },
                    name=f"knee (trial {analysis.knee})",
                )
            )
    # Fixed ranges: the shaded regions reach far beyond the data and would stretch autorange.
    fit = {"include_intervals": bool(bars), "include_reference": include_reference}
    return _layout(
        figure,
        f"{label(y_metric)} against {label(x_metric)}",
        xaxis={
            "title": f"{x_metric} ({_direction(data.directions[i])})",
            "range": objective_axis_range(analysis, i, **fit),
        },
        yaxis={
            "title": f"{y_metric} ({_direction(data.directions[j])})",
            "range": objective_axis_range(analysis, j, **fit),
        },
    )


AXIS_PADDING: Final = 0.05
"""Share of the span added on each side of an objective axis: room for the markers (the
knee's star is 18 px) at the edges."""


def objective_axis_range(
    analysis: FrontAnalysis,
    index: int,
    *,
    include_intervals: bool = True,
    include_reference: bool = False,
) -> list[float]:
    """The range of objective ``index`` on the objective-space axes: what is drawn (the
    trials' values, and their 95% intervals when ``include_intervals``), padded by
    :data:`AXIS_PADDING` of its span on each side. With ``include_reference``, also the
    reference point and the bounds of constraints on the metric: thresholds usually lie far
    from the data (a user-involvement threshold of 1 for rates near 0.05) and would leave
    the trials in a corner, so they are shown on request."""
    parts = [analysis.values[:, index]]
    if include_intervals:
        parts += [analysis.low[:, index], analysis.high[:, index]]
    if include_reference:
        parts.append(np.array([analysis.reference.point[index]]))
        for constraint in analysis.data.loaded.config.constraints:
            if constraint.metric == analysis.data.metrics[index]:
                parts.append(np.array([constraint.bound]))
    finite = np.concatenate(parts)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return [0.0, 1.0]
    low, high = float(finite.min()), float(finite.max())
    span = high - low if high > low else max(abs(low), 1.0)
    return [low - AXIS_PADDING * span, high + AXIS_PADDING * span]


def _direction(direction: str) -> str:
    return "higher is better" if direction == "maximize" else "lower is better"


def _front_shape(directions: Sequence[str], i: int) -> str:
    """The step between neighbouring front points (sorted by x) that traces the boundary of
    what they dominate: it turns at the pair's worse x and worse y, so vertical first when
    x is maximised, horizontal first when it is minimised. Only meaningful with exactly two
    objectives; a projection of three is joined straight."""
    if len(directions) != 2:
        return "linear"
    return "vh" if directions[i] == "maximize" else "hv"


def _errors(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    above = np.where(np.isfinite(high), high - value, 0.0)
    below = np.where(np.isfinite(low), value - low, 0.0)
    return {
        "type": "data",
        "symmetric": False,
        "array": np.clip(above, 0, None),
        "arrayminus": np.clip(below, 0, None),
        "thickness": 1,
        "width": 2,
        "color": "rgba(60, 60, 60, 0.45)",
    }


def _shade_reference(figure: go.Figure, analysis: FrontAnalysis, i: int, j: int) -> None:
    """Grey out what is worse than the reference point on either axis (the thresholds: a
    trial there adds no hypervolume), and draw constraint bounds of the plotted metrics."""
    point = analysis.reference.point
    directions = analysis.data.directions
    for axis, index in (("x", i), ("y", j)):
        bound = point[index]
        if not math.isfinite(bound):
            continue
        worse_above = directions[index] == "minimize"
        spec: dict[str, Any] = {
            "type": "rect",
            "xref": "x" if axis == "x" else "paper",
            "yref": "y" if axis == "y" else "paper",
            "fillcolor": "rgba(214, 39, 40, 0.07)",
            "line": {"width": 0},
            "layer": "below",
        }
        reach = 1e6 * max(1.0, abs(bound))  # beyond any axis range, on the worse side
        far = bound + reach if worse_above else bound - reach
        if axis == "x":
            spec.update(x0=bound, x1=far, y0=0, y1=1)
        else:
            spec.update(y0=bound, y1=far, x0=0, x1=1)
        figure.add_shape(spec)
    for constraint in analysis.data.loaded.config.constraints:
        for axis, index in (("x", i), ("y", j)):
            if constraint.metric != analysis.data.metrics[index]:
                continue
            # The violated side: above a "<=" bound, below a ">=" bound.
            reach = 1e6 * max(1.0, abs(constraint.bound))
            far = constraint.bound + reach if constraint.op == "<=" else constraint.bound - reach
            shape: dict[str, Any] = {
                "type": "rect",
                "fillcolor": "rgba(214, 39, 40, 0.12)",
                "line": {"width": 0},
                "layer": "below",
            }
            line = {"dash": "dash", "color": "#d62728", "width": 1}
            if axis == "x":
                shape.update(xref="x", yref="paper", x0=constraint.bound, x1=far, y0=0, y1=1)
                figure.add_vline(x=constraint.bound, line=line, annotation_text=str(constraint))
            else:
                shape.update(xref="paper", yref="y", y0=constraint.bound, y1=far, x0=0, x1=1)
                figure.add_hline(y=constraint.bound, line=line, annotation_text=str(constraint))
            figure.add_shape(shape)


def objective_3d_figure(analysis: FrontAnalysis) -> go.Figure:
    """Three objectives in 3-D: the front in colour, the rest in grey."""
    import plotly.graph_objects as go

    metrics = analysis.data.metrics[:3]
    numbers = analysis.frame["number"].to_numpy()
    figure = go.Figure()
    for name, mask, color, size in (
        ("dominated", ~analysis.pareto, "#9a9a9a", 3),
        ("Pareto front", analysis.pareto, "#1f77b4", 6),
    ):
        if not mask.any():
            continue
        figure.add_trace(
            go.Scatter3d(
                x=analysis.values[mask, 0],
                y=analysis.values[mask, 1],
                z=analysis.values[mask, 2],
                mode="markers",
                marker={"size": size, "color": color},
                name=f"{name} ({int(mask.sum())})",
                customdata=numbers[mask],
                hovertemplate="trial %{customdata}<extra></extra>",
            )
        )
    return _layout(
        figure,
        "Objective space (3-D)",
        scene={
            "xaxis": {"title": label(metrics[0])},
            "yaxis": {"title": label(metrics[1])},
            "zaxis": {"title": label(metrics[2])},
        },
    )


def hypervolume_history_figure(history: pd.DataFrame, reference: Sequence[float]) -> go.Figure:
    """The running front's hypervolume after each completed trial."""
    import plotly.graph_objects as go

    figure = go.Figure(
        go.Scatter(
            x=np.arange(1, len(history) + 1),
            y=history["hypervolume"],
            mode="lines+markers" if len(history) <= 200 else "lines",
            line={"shape": "hv", "color": "#2ca02c"},
            customdata=history["number"],
            hovertemplate="after %{x} trials (last: trial %{customdata}): %{y:.4f}<extra></extra>",
            name="hypervolume",
        )
    )
    shown = ", ".join(f"{p:g}" for p in reference)
    return _layout(
        figure,
        f"Hypervolume history (reference point {shown})",
        xaxis={"title": "complete trials, in completion order", "tickformat": "d"},
        yaxis={"title": "hypervolume", "rangemode": "tozero"},
    )


def cost_figure(trials: Mapping[str, pd.DataFrame]) -> go.Figure | None:
    """What each sweep's attempts cost, complete ones and the rest (failed, interrupted,
    killed) stacked: GPU-hours where any sweep held GPUs, else CPU-hours. ``trials`` maps a
    sweep to its trials frame (``analysis.loader``'s ``cost.*`` columns); None when no trial
    has a recorded cost."""
    import plotly.graph_objects as go

    from analysis.loader import COST_COLUMN_PREFIX
    from bao.records import COST_CPU_SECONDS, COST_GPU_HOURS

    gpu, cpu = f"{COST_COLUMN_PREFIX}{COST_GPU_HOURS}", f"{COST_COLUMN_PREFIX}{COST_CPU_SECONDS}"
    costed = {name: frame[frame[gpu].notna()] for name, frame in trials.items()}
    costed = {name: frame for name, frame in costed.items() if len(frame)}
    if not costed:
        return None
    on_gpus = any(frame[gpu].sum() > 0 for frame in costed.values())
    column, unit, scale = (gpu, "GPU-hours", 1.0) if on_gpus else (cpu, "CPU-hours", 1 / 3600)
    names = list(costed)
    figure = go.Figure()
    for outcome, color, complete in (("complete", "#2ca02c", True), ("other", "#d62728", False)):
        heights = []
        for name in names:
            frame = costed[name]
            chosen = (frame["state"] == "COMPLETE") == complete
            heights.append(float(frame.loc[chosen, column].sum()) * scale)
        figure.add_trace(
            go.Bar(
                x=names,
                y=heights,
                name=f"{outcome} attempts",
                marker_color=color,
                hovertemplate=f"%{{x}}: %{{y:.3g}} {unit}<extra>{outcome}</extra>",
            )
        )
    return _layout(
        figure,
        f"Cost of each sweep's attempts ({unit}: allocation x time)",
        barmode="stack",
        yaxis={"title": unit, "rangemode": "tozero"},
    )


# ---------------------------------------------------------------------------- parameters


def parallel_figure(
    frame: pd.DataFrame, params: Sequence[str], metrics: Sequence[str], color: str
) -> go.Figure:
    """Parallel coordinates: one line per trial through its parameters and objectives,
    coloured by ``color`` (one of the metrics)."""
    import pandas as pd
    import plotly.graph_objects as go

    dimensions: list[dict[str, Any]] = []
    for column in [*params, *metrics]:
        name = label(column.removeprefix("params."))
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.notna().sum() == frame[column].notna().sum():
            dimensions.append({"label": name, "values": numbers.to_numpy(dtype=float)})
            continue
        # A categorical parameter (e.g. credit r2g/equalized): codes on the axis, names as ticks.
        categories = sorted(frame[column].dropna().astype(str).unique())
        positions = {category: code for code, category in enumerate(categories)}
        codes = frame[column].map(lambda v, at=positions: at[str(v)] if pd.notna(v) else None)
        dimensions.append(
            {
                "label": name,
                "values": codes.to_numpy(dtype=float),
                "tickvals": list(range(len(categories))),
                "ticktext": categories,
            }
        )
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": frame[color].to_numpy(dtype=float),
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": label(color)},
            },
            dimensions=dimensions,
        )
    )
    # Parallel coordinates put their axis labels above the plot: room for them and the title.
    return _layout(figure, "Parameters and objectives of the complete trials").update_layout(
        margin={"t": 120}
    )


def slice_figure(
    frame: pd.DataFrame, params: Sequence[str], metric: str, pareto: Sequence[int]
) -> go.Figure:
    """One panel per parameter: the metric against the parameter's value, front in colour."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    columns = max(1, len(params))
    figure = make_subplots(
        rows=1,
        cols=columns,
        shared_yaxes=True,
        subplot_titles=[label(p.removeprefix("params.")) for p in params],
    )
    on_front = frame["number"].isin(set(pareto)).to_numpy()
    for position, param in enumerate(params, start=1):
        for name, mask, color in (
            ("dominated", ~on_front, "#9a9a9a"),
            ("Pareto front", on_front, "#1f77b4"),
        ):
            if not mask.any():
                continue
            trace = go.Scattergl if mask.sum() >= 2000 else go.Scatter
            figure.add_trace(
                trace(
                    x=frame.loc[mask, param],
                    y=frame.loc[mask, metric],
                    mode="markers",
                    marker={"color": color, "size": 8 if name == "Pareto front" else 5},
                    name=name,
                    legendgroup=name,
                    showlegend=position == 1,
                    customdata=frame.loc[mask, "number"],
                    hovertemplate="trial %{customdata}: %{x:.4g} -> %{y:.3f}<extra></extra>",
                ),
                row=1,
                col=position,
            )
    figure.update_yaxes(title_text=metric, row=1, col=1)
    return _layout(figure, f"How each parameter moves {label(metric)}")


def importance_figure(importances: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """Grouped bars: for each objective, each parameter's share of the explained variance."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for metric, shares in importances.items():
        params = list(shares)
        figure.add_trace(
            go.Bar(
                y=[label(p) for p in params],
                x=[shares[p] for p in params],
                orientation="h",
                name=label(metric),
                hovertemplate="%{y}: %{x:.2f}<extra></extra>",
            )
        )
    return _layout(
        figure,
        "Parameter importance (fANOVA, per objective)",
        barmode="group",
        xaxis={"title": "share of the objective's variance", "range": [0, 1]},
    )


# -------------------------------------------------------------------------------- trials


def training_figure(curves: pd.DataFrame, metrics: Sequence[str]) -> go.Figure:
    """A panel per training metric, one line per seed run (``dashboard.data.training_curves``)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    shown = list(metrics) or ["(no training curves)"]
    columns = 2 if len(shown) > 1 else 1
    rows = math.ceil(len(shown) / columns)
    figure = make_subplots(
        rows=rows, cols=columns, subplot_titles=[label(m) for m in shown], vertical_spacing=0.12
    )
    runs = sorted(curves["run_id"].unique()) if not curves.empty else []
    for position, metric in enumerate(shown):
        row, col = divmod(position, columns)
        for seed_position, run_id in enumerate(runs):
            part = curves[(curves["metric"] == metric) & (curves["run_id"] == run_id)]
            if part.empty:
                continue
            figure.add_trace(
                go.Scatter(
                    x=part["step"],
                    y=part["value"],
                    mode="lines",
                    line={"color": _color(seed_position), "width": 1.5},
                    name=f"run {run_id[:8]}",
                    legendgroup=run_id,
                    showlegend=position == 0,
                ),
                row=row + 1,
                col=col + 1,
            )
    # Only the bottom row names its axis: a title under every panel runs into the next
    # row's panel titles.
    figure.update_xaxes(title_text="iteration", row=rows)
    return _layout(figure, "Training curves", height=max(320, 260 * rows))


def trial_pass_figure(curve: pd.DataFrame, envelope: pd.DataFrame, number: int) -> go.Figure:
    """One trial's Pass@U-k with its Wilson interval, beside the sweep's envelope."""
    import plotly.graph_objects as go

    figure = go.Figure()
    if not envelope.empty:
        figure.add_trace(
            go.Scatter(
                x=envelope["k"],
                y=envelope["pass_rate"],
                mode="lines",
                line={"color": ENVELOPE_COLOR, "dash": "dot"},
                name="sweep envelope",
            )
        )
    if not curve.empty:
        figure.add_trace(
            go.Scatter(
                x=curve["k"],
                y=curve["pass_rate"],
                error_y=_errors(
                    curve["pass_rate"].to_numpy(), curve["lo"].to_numpy(), curve["hi"].to_numpy()
                ),
                mode="lines+markers",
                line={"color": FRONT_COLORS[0]},
                name=f"trial {number}",
            )
        )
    return _layout(
        figure,
        f"Pass@U-k of trial {number}",
        xaxis={"title": "k: user-involved actions allowed", "dtick": 1},
        yaxis={"title": "pass rate", "range": [0, 1.02]},
    )


# ------------------------------------------------------------------------------- compare


def compare_figure(analyses: Sequence[FrontAnalysis], *, fronts: bool = True) -> go.Figure:
    """Two panels: each sweep's front in objective space (first two objectives; left empty
    with ``fronts=False``, for sweeps with different objectives) and each sweep's Pass@U-k
    envelope."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    first = analyses[0].data
    x_metric = first.metrics[0]
    y_metric = first.metrics[1] if fronts and len(first.metrics) > 1 else None
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=[
            f"fronts: {label(y_metric)} against {label(x_metric)}"
            if y_metric
            else "fronts (objectives differ)",
            "Pass@U-k envelopes",
        ],
    )
    for position, analysis in enumerate(analyses):
        color = _color(position)
        name = analysis.data.name
        if y_metric is not None and len(analysis.frame):
            mask = analysis.pareto
            order = np.argsort(analysis.values[mask, 0])
            figure.add_trace(
                go.Scatter(
                    x=analysis.values[~mask, 0],
                    y=analysis.values[~mask, 1],
                    mode="markers",
                    marker={"color": color, "size": 4, "opacity": 0.25},
                    name=f"{name}: other trials",
                    legendgroup=name,
                    showlegend=False,
                ),
                row=1,
                col=1,
            )
            figure.add_trace(
                go.Scatter(
                    x=analysis.values[mask, 0][order],
                    y=analysis.values[mask, 1][order],
                    mode="lines+markers",
                    line={"color": color, "shape": _front_shape(first.directions, 0)},
                    marker={"size": 9},
                    name=name,
                    legendgroup=name,
                ),
                row=1,
                col=1,
            )
        if not analysis.envelope.empty:
            figure.add_trace(
                go.Scatter(
                    x=analysis.envelope["k"],
                    y=analysis.envelope["pass_rate"],
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": analysis.envelope["hi"] - analysis.envelope["pass_rate"],
                        "arrayminus": analysis.envelope["pass_rate"] - analysis.envelope["lo"],
                        "thickness": 1,
                    },
                    mode="lines+markers",
                    line={"color": color},
                    name=f"{name} envelope",
                    legendgroup=name,
                    showlegend=False,
                ),
                row=1,
                col=2,
            )
    if y_metric:
        figure.update_xaxes(title_text=x_metric, row=1, col=1)
        figure.update_yaxes(title_text=y_metric, row=1, col=1)
    figure.update_xaxes(title_text="k", dtick=1, row=1, col=2)
    figure.update_yaxes(title_text="best pass rate", row=1, col=2)
    return _layout(figure, "Sweeps compared", height=480)


# -------------------------------------------------------------------------------- deploy


def variants_figure(
    curves: pd.DataFrame, envelope: pd.DataFrame, chosen: Mapping[int, Sequence[str]]
) -> go.Figure:
    """The envelope with the chosen trials' curves, each labelled with its aliases."""
    import plotly.graph_objects as go

    figure = go.Figure()
    if not envelope.empty:
        figure.add_trace(
            go.Scatter(
                x=envelope["k"],
                y=envelope["pass_rate"],
                mode="lines",
                line={"color": ENVELOPE_COLOR, "dash": "dot", "width": 3},
                name="envelope",
            )
        )
    for position, (number, aliases) in enumerate(sorted(chosen.items())):
        rows = curves[curves["number"] == number].sort_values("k")
        if rows.empty:
            continue
        figure.add_trace(
            go.Scatter(
                x=rows["k"],
                y=rows["pass_rate"],
                mode="lines+markers",
                line={"color": _color(position), "width": 2},
                name=f"trial {number}: {', '.join(aliases)}",
            )
        )
        for alias in aliases:
            if alias.startswith("budget-"):
                k = int(alias.removeprefix("budget-"))
                at = rows[rows["k"] == k]
                if not at.empty:
                    figure.add_annotation(
                        x=k,
                        y=float(at["pass_rate"].iloc[0]),
                        text=alias,
                        showarrow=True,
                        arrowhead=2,
                        ax=0,
                        ay=-30,
                        font={"color": _color(position)},
                    )
    return _layout(
        figure,
        "Selected variants on the Pass@U-k envelope",
        xaxis={"title": "k: user-involved actions allowed", "dtick": 1},
        yaxis={"title": "pass rate", "rangemode": "tozero"},
    )
