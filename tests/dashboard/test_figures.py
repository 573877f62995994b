"""The dashboard's figures are pure functions of analysis outputs: checked without a browser."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.frontier import envelope, pass_curves
from analysis.loader import SweepData
from analysis.report import FrontAnalysis, analyse_front
from dashboard import figures
from tests.analysis.builders import made_sweep, sweep_config, trial_row

SCORE_UR = [
    {"metric": "eval/score", "direction": "maximize", "threshold": 0.0},
    {"metric": "eval/user_involvement_rate", "direction": "minimize", "threshold": 1.0},
]


def row(number: int, score: float, involvement: float, **more: float) -> dict[str, object]:
    rates = {f"eval/pass_at_u_{k}": min(1.0, score * (1 + 0.1 * (k - 1))) for k in (1, 2, 3)}
    return trial_row(
        number,
        {
            "eval/score": score,
            "eval/user_involvement_rate": involvement,
            "eval/no_answer_rate": 0.0,
            **rates,
            **more,
        },
        lam=0.1 * number,
    )


def sweep(
    points: list[tuple[float, float]],
    objectives: list[dict[str, object]] = SCORE_UR,
    constraints: tuple[str, ...] = (),
) -> SweepData:
    loaded = sweep_config("fig", objectives, constraints)
    rows = [row(i, s, u) for i, (s, u) in enumerate(points)]
    for entry in rows:
        # what the loader would work out from the constraints
        entry["feasible"] = all(
            c.violation(float(entry[c.metric])) <= 0  # type: ignore[arg-type]
            for c in loaded.config.constraints
        )
    return made_sweep(rows, loaded=loaded)


POINTS = [(0.2, 0.05), (0.5, 0.1), (0.4, 0.2), (0.7, 0.3), (0.1, 0.4)]


def test_frontier_draws_the_others_as_one_trace_with_gaps() -> None:
    data = sweep(POINTS)
    curves = pass_curves(data)
    best = envelope(data, curves)
    figure = figures.frontier_figure(curves, best, [1, 3])
    names = [trace.name for trace in figure.data]
    assert names.count("other trials (3)") == 1
    others = next(t for t in figure.data if t.name == "other trials (3)")
    # 3 trials x 3 k, each polyline closed by a gap
    assert len(others.x) == 3 * (3 + 1)
    assert sum(x is None for x in others.x) == 3
    assert "trial 1" in names
    assert "trial 3" in names
    assert "envelope (best per k)" in names
    trial = next(t for t in figure.data if t.name == "trial 3")
    rows = curves[curves["number"] == 3]
    assert np.allclose(trial.error_y.array, rows["hi"] - rows["pass_rate"])


def test_frontier_groups_agents_that_never_answer_and_published_results() -> None:
    data = sweep(POINTS)
    curves = pass_curves(data)
    references = pd.DataFrame(
        {
            "model": ["A", "A", "B"],
            "group": ["open", "open", "closed"],
            "k": [1, 2, 1],
            "pass_rate": [0.3, 0.35, 0.5],
        }
    )
    figure = figures.frontier_figure(
        curves, envelope(data, curves), [1, 3, 4], references=references, collapsed=[4, 0]
    )
    names = [trace.name for trace in figure.data]
    assert "never answer (1: trials 4)" in names
    assert "trial 4" not in names
    published = [t for t in figure.data if t.legend == "legend2"]
    assert [t.name for t in published] == ["A", "B"]
    assert list(published[0].x) == [1, 2]


def test_published_models_are_told_apart_in_a_legend_grouped_by_family() -> None:
    data = sweep(POINTS)
    curves = pass_curves(data)
    models = {
        "commercial": ["G1", "G2", "G3"],
        "open_source_raw": ["Q1", "Q2"],
        "fine_tuned": [f"F{i}" for i in range(12)],  # more than the shapes: open variants
    }
    references = pd.DataFrame(
        [
            {"model": model, "group": group, "k": k, "pass_rate": 0.1 + 0.01 * k}
            for group, names in models.items()
            for model in names
            for k in (1, 2)
        ]
    )
    figure = figures.frontier_figure(curves, envelope(data, curves), [1], references=references)
    published = [t for t in figure.data if t.legend == "legend2"]
    assert [t.name for t in published] == [m for names in models.values() for m in names]
    assert all(t.showlegend is not False for t in published)  # one legend entry per model
    by_family = {
        group: [t for t in published if t.name in names] for group, names in models.items()
    }
    for group, traces in by_family.items():
        assert {t.legendgroup for t in traces} == {f"published: {group}"}
        assert {t.legendgrouptitle.text for t in traces} == {group.replace("_", " ")}
        assert len({t.marker.color for t in traces}) == 1  # a family shares its colour
    colours = [traces[0].marker.color for traces in by_family.values()]
    assert len(set(colours)) == len(colours)
    looks = [(t.marker.symbol, t.marker.color) for t in published]
    assert len(set(looks)) == len(published)  # no two models look alike
    assert figure.layout.legend2.groupclick == "toggleitem"
    assert figure.layout.height >= 21 * (len(published) + 2 * len(models))  # room for it


def test_frontier_without_intervals_has_no_error_bars_or_band() -> None:
    data = sweep(POINTS)
    curves = pass_curves(data)
    figure = figures.frontier_figure(curves, envelope(data, curves), [1], show_intervals=False)
    assert all(t.name != "envelope 95% interval" for t in figure.data)
    assert next(t for t in figure.data if t.name == "trial 1").error_y.array is None


@pytest.mark.parametrize(
    ("directions", "shape"),
    [
        (("maximize", "minimize"), "vh"),
        (("maximize", "maximize"), "vh"),
        (("minimize", "minimize"), "hv"),
        (("minimize", "maximize"), "hv"),
    ],
)
def test_the_front_line_turns_at_the_dominated_corner(
    directions: tuple[str, str], shape: str
) -> None:
    # The corner between two neighbouring front points is their worse x and worse y, so the
    # staircase never passes through a point better than both.
    objectives = [
        {"metric": "eval/score", "direction": directions[0]},
        {"metric": "eval/user_involvement_rate", "direction": directions[1]},
    ]
    assert figures._front_shape(directions, 0) == shape
    data = sweep(POINTS, objectives)
    analysis = analyse_front(data, n_draws=50)
    figure = figures.objective_figure(analysis, "eval/score", "eval/user_involvement_rate")
    front = next(t for t in figure.data if t.name.startswith("Pareto front ("))
    assert front.line.shape == shape
    assert list(front.x) == sorted(front.x)


def test_objective_space_marks_front_knee_and_shades_the_reference() -> None:
    analysis = analyse_front(sweep(POINTS), n_draws=50)
    figure = figures.objective_figure(analysis, "eval/score", "eval/user_involvement_rate")
    names = [t.name for t in figure.data]
    assert f"Pareto front ({len(analysis.front_numbers)})" in names
    assert f"knee (trial {analysis.knee})" in names
    assert any(n.startswith("dominated") for n in names)
    # score 0 is the threshold (left of it is worse), involvement 1 (above it is worse)
    shapes = figure.layout.shapes
    assert any(s.x0 == 0.0 and s.x1 < 0 for s in shapes)
    assert any(s.y0 == 1.0 and s.y1 > 1 for s in shapes)
    low, high = figure.layout.xaxis.range
    assert low < 0.1
    assert high > 0.7


def test_objective_space_shades_the_violated_side_of_a_constraint() -> None:
    data = sweep(POINTS, constraints=("eval/user_involvement_rate <= 0.25",))
    analysis = analyse_front(data, n_draws=50)
    figure = figures.objective_figure(analysis, "eval/score", "eval/user_involvement_rate")
    assert any(
        s.yref == "y" and s.y0 == 0.25 and s.y1 > 0.25 and s.x0 == 0 for s in figure.layout.shapes
    )
    assert any(t.name.startswith("infeasible") for t in figure.data)
    widened = figures.objective_figure(
        analysis, "eval/score", "eval/user_involvement_rate", include_reference=True
    )
    assert widened.layout.yaxis.range[1] >= 1.0  # the reference point on request
    assert widened.layout.yaxis.range[0] <= 0.25 <= widened.layout.yaxis.range[1]


def test_objective_axes_fit_the_trials_and_reach_the_reference_on_request() -> None:
    # Involvement rates of 0.03..0.09 under a threshold of 1: the old axes spanned 0..1.
    points = [(0.40, 0.09), (0.55, 0.05), (0.35, 0.03), (0.45, 0.06)]
    analysis = analyse_front(sweep(points), n_draws=50)
    for errors in (False, True):
        figure = figures.objective_figure(
            analysis, "eval/score", "eval/user_involvement_rate", show_errors=errors
        )
        for axis, column in (("xaxis", 0), ("yaxis", 1)):
            drawn = [analysis.values[:, column]]
            if errors:
                drawn += [analysis.low[:, column], analysis.high[:, column]]
            low = float(np.nanmin(np.concatenate(drawn)))
            high = float(np.nanmax(np.concatenate(drawn)))
            shown = figure.layout[axis].range
            assert shown[0] <= low
            assert high <= shown[1]
            assert shown[1] - shown[0] <= 1.25 * (high - low)
    assert (
        figures.objective_figure(
            analysis, "eval/score", "eval/user_involvement_rate", show_errors=False
        ).layout.yaxis.range[1]
        < 0.1
    )
    widened = figures.objective_figure(
        analysis, "eval/score", "eval/user_involvement_rate", include_reference=True
    )
    assert widened.layout.xaxis.range[0] <= 0.0  # the score threshold
    assert widened.layout.yaxis.range[1] >= 1.0  # the involvement threshold


def test_error_bars_are_drawn_beneath_every_point() -> None:
    analysis = analyse_front(sweep(POINTS), n_draws=50)
    figure = figures.objective_figure(analysis, "eval/score", "eval/user_involvement_rate")
    with_bars = [
        i
        for i, t in enumerate(figure.data)
        if t.error_x.array is not None or t.error_y.array is not None
    ]
    points = [i for i, t in enumerate(figure.data) if t.marker.opacity != 0]
    assert with_bars
    assert max(with_bars) < min(points)  # later traces are drawn on top
    for i in with_bars:  # the bars carry no visible point and no legend entry of their own
        assert figure.data[i].showlegend is False
        group = figure.data[i].legendgroup
        assert any(figure.data[j].legendgroup == group for j in points)  # toggled with them
    front = next(t for t in figure.data if t.name.startswith("Pareto front ("))
    bars = next(t for t in figure.data if t.name == "Pareto front: 95% intervals")
    assert list(bars.x) == list(front.x)
    assert np.allclose(np.asarray(bars.error_y.array) + np.asarray(bars.y), sorted_high(analysis))


def sorted_high(analysis: FrontAnalysis) -> np.ndarray:
    """The front's upper interval ends of the y objective, in the front's x order."""
    front = analysis.pareto
    order = np.argsort(analysis.values[front, 0])
    return np.asarray(analysis.high[front, 1][order])


def test_objective_space_can_colour_by_p_nondominated() -> None:
    analysis = analyse_front(sweep(POINTS), n_draws=50)
    figure = figures.objective_figure(
        analysis, "eval/score", "eval/user_involvement_rate", p_nondominated=True
    )
    front = next(t for t in figure.data if t.name.startswith("Pareto front ("))
    assert front.marker.colorscale is not None
    assert max(front.marker.color) <= 1


def test_hypervolume_history_is_a_step_per_completed_trial() -> None:
    analysis = analyse_front(sweep(POINTS), n_draws=50)
    figure = figures.hypervolume_history_figure(analysis.history, analysis.reference.point)
    (trace,) = figure.data
    assert list(trace.x) == [1, 2, 3, 4, 5]
    assert np.all(np.diff(trace.y) >= -1e-12)
    assert math.isclose(trace.y[-1], analysis.hypervolume)


def test_parameter_figures() -> None:
    analysis = analyse_front(sweep(POINTS), n_draws=50)
    params = ["params.shaping.user_lambda"]
    parallel = figures.parallel_figure(analysis.frame, params, ["eval/score"], "eval/score")
    labels = [d.label for d in parallel.data[0].dimensions]
    assert labels == ["shaping.user lambda", "score"]
    slices = figures.slice_figure(analysis.frame, params, "eval/score", analysis.front_numbers)
    assert {t.name for t in slices.data} == {"dominated", "Pareto front"}
    bars = figures.importance_figure({"eval/score": {"shaping.user_lambda": 1.0}})
    assert bars.data[0].x == (1.0,)


def test_training_figure_has_a_panel_per_metric_and_a_line_per_run() -> None:
    curves = pd.DataFrame(
        {
            "run_id": ["a", "a", "b", "b", "a"],
            "metric": ["train/score"] * 4 + ["train/loss"],
            "step": [0, 1, 0, 1, 0],
            "value": [0.1, 0.2, 0.0, 0.3, 1.0],
        }
    )
    figure = figures.training_figure(curves, ["train/score", "train/loss"])
    assert len(figure.data) == 3
    assert [a.text for a in figure.layout.annotations] == ["score", "loss"]


def test_compare_and_variants_figures() -> None:
    a = analyse_front(sweep(POINTS), n_draws=50)
    b = analyse_front(sweep([(0.3, 0.1), (0.6, 0.15)]), n_draws=50)
    both = figures.compare_figure([a, b])
    assert sum(t.name == "fig" for t in both.data) == 2  # each sweep's front (same name here)
    envelopes = figures.compare_figure([a, b], fronts=False)
    assert all(t.xaxis == "x2" for t in envelopes.data)
    variants = figures.variants_figure(a.curves, a.envelope, {3: ["budget-1", "knee"]})
    assert [t.name for t in variants.data] == ["envelope", "trial 3: budget-1, knee"]
    assert [n.text for n in variants.layout.annotations] == ["budget-1"]


def test_highlighted_trials_beyond_a_dozen_share_one_trace() -> None:
    points = [(0.05 * i, 0.02 * i) for i in range(1, 17)]  # all on the front
    data = sweep(points)
    curves = pass_curves(data)
    numbers = list(range(16))
    figure = figures.frontier_figure(curves, envelope(data, curves), numbers)
    names = [t.name for t in figure.data]
    labelled = [n for n in names if n.startswith("trial ")]
    assert len(labelled) == figures.MAX_LABELLED
    # the best are the ones named: the highest pass rates are the last trials here
    assert "trial 15" in labelled
    assert "trial 0" not in labelled
    assert "more highlighted trials (4)" in names


def _costed(states: list[str], gpu_hours: list[float], cpu_seconds: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "number": range(len(states)),
            "state": states,
            "cost.wall_s": [1.0] * len(states),
            "cost.gpu_hours": gpu_hours,
            "cost.cpu_seconds": cpu_seconds,
        }
    )


def test_the_cost_figure_stacks_complete_and_other_attempts_per_sweep() -> None:
    on_gpus = _costed(["COMPLETE", "FAIL", "COMPLETE"], [2.0, 0.5, 3.0], [10.0, 10.0, 10.0])
    on_cpus = _costed(["COMPLETE", "FAIL"], [0.0, 0.0], [7200.0, 3600.0])
    old = _costed(["COMPLETE"], [math.nan], [math.nan])  # written before costs were recorded
    figure = figures.cost_figure({"a": on_gpus, "b": on_cpus, "old": old})
    assert figure is not None
    complete, other = figure.data
    assert list(complete.x) == ["a", "b"]  # the sweep without costs is left out
    assert list(complete.y) == [5.0, 0.0]  # GPU-hours: one sweep held GPUs
    assert list(other.y) == [0.5, 0.0]
    cpu_only = figures.cost_figure({"b": on_cpus})
    assert cpu_only is not None
    assert [list(trace.y) for trace in cpu_only.data] == [[2.0], [1.0]]  # CPU-hours
    assert "CPU-hours" in cpu_only.layout.yaxis.title.text
    assert figures.cost_figure({"old": old}) is None
