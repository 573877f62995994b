"""Every dashboard page through Streamlit's AppTest, on real and made-to-order workspaces."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.analysis.builders import real_workspace, sweep_config

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
PAGES = ("overview", "frontier", "objectives", "parameters", "trial", "compare", "deploy")
TIMEOUT = 180


def open_app(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("BAO_PARETO_HOME", str(workspace))
    monkeypatch.delenv("BAO_PARETO_REFERENCE_TABLE", raising=False)
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def visit(app: AppTest, page: str) -> AppTest:
    app.switch_page(f"views/{page}.py").run()
    assert not app.exception, f"{page}: {[e.value for e in app.exception]}"
    return app


def charts(app: AppTest) -> list[dict[str, Any]]:
    """The plotly figures on the page, as the JSON the browser receives."""
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def trace_names(figure: dict[str, Any]) -> list[str]:
    return [str(trace.get("name")) for trace in figure["data"]]


def never_answering_trials(workspace: Path, sweep: str) -> list[int]:
    """Trial numbers of ``sweep`` whose agent left every held-out task unanswered, from the
    trials' MLflow runs."""
    from bao.tracking import mlflow_client

    client = mlflow_client(workspace)
    experiment = client.get_experiment_by_name(sweep)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`bao.role` = 'trial'")
    assert runs, f"no trial runs in {sweep}"
    return sorted(
        int(run.data.tags["bao.trial_number"])
        for run in runs
        if run.data.metrics.get("eval/no_answer_rate") == 1.0
    )


def texts(elements: Any) -> str:
    return " ".join(str(e.value) for e in elements)


def pick_sweep(app: AppTest, name: str) -> None:
    app.selectbox(key="_widget.sweep").set_value(name).run()
    assert not app.exception


def metrics(score: float, involvement: float, **more: float) -> dict[str, float]:
    rates = {f"eval/pass_at_u_{k}": min(1.0, score + 0.02 * (k - 1)) for k in range(1, 4)}
    return {
        "eval/score": score,
        "eval/user_involvement_rate": involvement,
        "eval/n_trajectories": 100.0,
        "eval/no_answer_rate": 0.1,
        **rates,
        **more,
    }


SCORE_UR = [
    {"metric": "eval/score", "direction": "maximize", "threshold": 0.0},
    {"metric": "eval/user_involvement_rate", "direction": "minimize", "threshold": 1.0},
]


# ------------------------------------------------------------------------- real sweeps


@pytest.mark.slow
def test_every_page_renders_a_real_sim_workspace(
    sim_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(sim_workspace, monkeypatch)
    overview = app.dataframe[0].value
    assert set(overview["sweep"]) == {"tiny-a", "tiny-b"}
    assert set(overview["state"]) == {"finished"}
    assert overview["hypervolume"].notna().all()
    # The sweeps ran locally, so their attempts are costed (CPU-hours, docs/clusters.md).
    (cost,) = charts(app)
    assert set(cost["data"][0]["x"]) == {"tiny-a", "tiny-b"}  # complete attempts, per sweep
    assert "CPU-hours" in cost["layout"]["title"]["text"]

    expected = {"frontier": 1, "objectives": 2, "parameters": 3, "trial": 2, "deploy": 1}
    for page, count in expected.items():
        visit(app, page)
        assert len(charts(app)) >= count, page
        assert not app.error, f"{page}: {texts(app.error)}"
    visit(app, "compare")
    assert len(charts(app)) == 1
    table = app.dataframe[0].value
    assert list(table["sweep"]) == ["tiny-b"]
    assert math.isfinite(float(table["difference"].iloc[0]))


@pytest.mark.slow
def test_frontier_draws_curves_envelope_front_and_published_results(
    sim_workspace: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    table = tmp_path / "published.csv"
    table.write_text(
        "model,group,gym,pass_at_u_1,pass_at_u_2,score,user_involvement_rate\n"
        "Model-A,open,function_gym,0.30,0.35,0.36,0.05\n"
        "Model-B,open,function_gym,0.40,0.45,0.46,0.07\n"
    )
    app = open_app(sim_workspace, monkeypatch)
    monkeypatch.setenv("BAO_PARETO_REFERENCE_TABLE", str(table))
    visit(app, "frontier")
    figure = charts(app)[0]
    names = trace_names(figure)
    assert "envelope (best per k)" in names
    published = [t for t in figure["data"] if t.get("legend") == "legend2"]
    assert [t["name"] for t in published] == ["Model-A", "Model-B"]  # a legend entry each
    assert {t["legendgrouptitle"]["text"] for t in published} == {"open"}  # under the family
    # tiny-a: learners on the front; agents that never answer grouped as such, and only those.
    assert any(n.startswith("trial ") for n in names)
    assert_never_answering_grouped(names, sim_workspace, "tiny-a")
    envelope = app.dataframe[0].value
    assert list(envelope["k"]) == list(range(1, 10))

    app.radio[0].set_value("knee").run()
    assert not app.exception
    knee_names = trace_names(charts(app)[0])
    assert sum(n.startswith("trial ") for n in knee_names) == 1

    pick_sweep(app, "tiny-b")
    app.radio[0].set_value("Pareto front").run()
    assert_never_answering_grouped(trace_names(charts(app)[0]), sim_workspace, "tiny-b")


def assert_never_answering_grouped(names: list[str], workspace: Path, sweep: str) -> None:
    """The frontier's "never answer" trace lists exactly the trials whose runs left every
    held-out task unanswered (read from MLflow). Whether a short real run collapses is the
    simulator's business (tiny-b's second trial does on this machine, tiny-a's none since the
    fallible reasoner); the page must match what the runs say."""
    silent = never_answering_trials(workspace, sweep)
    grouped = [n for n in names if n.startswith("never answer")]
    if silent:
        assert grouped == [f"never answer ({len(silent)}: trials {', '.join(map(str, silent))})"]
    else:
        assert grouped == []


@pytest.mark.slow
def test_trial_detail_shows_config_curves_and_turns(
    sim_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(sim_workspace, monkeypatch)
    visit(app, "trial")
    trial = app.main.selectbox[0]
    assert "knee" in trial.format_func(trial.value)
    codes = texts(app.code)
    assert "trainer:" in codes  # the run's config.yaml
    evaluation = app.dataframe[1].value
    assert "eval/score" in set(evaluation["metric"])
    turns = app.dataframe[-1].value
    assert list(turns.columns) == [
        "turn", "choice", "content", "observation", "event", "reward", "shaped reward",
    ]  # fmt: skip
    assert len(turns) >= 1
    assert set(turns["choice"]) <= {"action", "search", "answer", "finish", "invalid"}
    assert turns["shaped reward"].notna().all()

    app.radio[0].set_value("solved").run()
    assert not app.exception
    solved = app.dataframe[-1].value
    assert (solved["event"] == "answer_correct").any()


@pytest.mark.slow
def test_parameters_page_has_importance_per_objective(
    sim_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(sim_workspace, monkeypatch)
    visit(app, "parameters")
    parallel, _, importance = charts(app)[:3]
    assert parallel["data"][0]["type"] == "parcoords"
    labels = [d["label"] for d in parallel["data"][0]["dimensions"]]
    assert sorted(labels[:2]) == ["shaping.info seeking", "shaping.user lambda"]
    assert labels[2:] == ["score", "user involvement rate"]
    assert {t["name"] for t in importance["data"]} == {"score", "user involvement rate"}


# ----------------------------------------------------------------------------- edge cases


def test_empty_workspace_every_page_says_how_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(tmp_path / "empty", monkeypatch)
    for page in PAGES:
        visit(app, page)
        assert not charts(app)
        message = texts(app.info)
        if page == "compare":
            assert "at least two sweeps" in message
        else:
            assert "No sweep" in message, page
            assert "bao-pareto sweep" in message, page


def test_a_sweep_without_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = tmp_path / "ws"
    real_workspace(workspace, [], loaded=sweep_config("fresh", SCORE_UR))
    app = open_app(workspace, monkeypatch)
    assert app.dataframe[0].value["state"].iloc[0] == "not started"
    for page in PAGES[1:]:
        visit(app, page)
        assert not charts(app), page
        assert texts(app.info), page


def test_a_sweep_with_one_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = tmp_path / "ws"
    real_workspace(
        workspace, [{"metrics": metrics(0.5, 0.1)}], loaded=sweep_config("single", SCORE_UR)
    )
    app = open_app(workspace, monkeypatch)
    visit(app, "frontier")
    assert "trial 0" in trace_names(charts(app)[0])
    visit(app, "objectives")
    assert any("knee (trial 0)" in n for n in trace_names(charts(app)[0]))
    visit(app, "parameters")
    assert "at least two complete trials" in texts(app.info)
    visit(app, "deploy")
    variants = app.dataframe[0].value
    assert set(variants["alias"]) == {"budget-1", "knee"}
    assert set(variants["trial"]) == {0}


def test_a_sweep_whose_trials_all_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = tmp_path / "ws"
    failed = [{"metrics": metrics(0.5, 0.1), "state": "FAIL"} for _ in range(2)]
    real_workspace(workspace, failed, loaded=sweep_config("broken", SCORE_UR))
    app = open_app(workspace, monkeypatch)
    row = app.dataframe[0].value.iloc[0]
    assert row["failed"] == 2
    assert row["state"] == "stopped"
    for page in ("frontier", "objectives", "parameters", "deploy"):
        visit(app, page)
        assert not charts(app), page
        assert texts(app.info), page
    visit(app, "objectives")
    assert "2 failed" in texts(app.info)
    visit(app, "trial")
    assert "failed" in texts(app.error)


def test_three_objectives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    three = [*SCORE_UR, {"metric": "eval/mean_turns", "direction": "minimize", "threshold": 16}]
    trials = [
        {"metrics": metrics(0.3 + 0.1 * i, 0.05 + 0.03 * i, **{"eval/mean_turns": 12.0 - i})}
        for i in range(5)
    ]
    workspace = tmp_path / "ws"
    real_workspace(workspace, trials, loaded=sweep_config("three", three))
    app = open_app(workspace, monkeypatch)
    visit(app, "objectives")
    assert [s.label for s in app.main.selectbox] == ["x axis", "y axis"]
    app.main.selectbox[1].set_value("eval/mean_turns").run()
    figure = charts(app)[0]
    assert figure["layout"]["yaxis"]["title"]["text"].startswith("eval/mean_turns")
    # a projection of three objectives is not a staircase
    front = next(t for t in figure["data"] if str(t["name"]).startswith("Pareto front ("))
    assert front["line"]["shape"] == "linear"
    next(t for t in app.toggle if t.label == "3-D view").set_value(True).run()
    assert any(t["type"] == "scatter3d" for c in charts(app) for t in c["data"])
    for page in ("frontier", "parameters", "trial", "deploy"):
        visit(app, page)
        assert charts(app), page


def test_a_metric_missing_from_some_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    complete = metrics(0.6, 0.2, **{"eval/mean_turns": 9.0})
    partial = {
        k: v
        for k, v in metrics(0.4, 0.1).items()
        if k not in ("eval/pass_at_u_3", "eval/no_answer_rate")
    }
    bare = {"eval/score": 0.2, "eval/user_involvement_rate": 0.05}  # no Pass@U-k at all
    workspace = tmp_path / "ws"
    real_workspace(
        workspace,
        [{"metrics": complete}, {"metrics": partial}, {"metrics": bare}],
        loaded=sweep_config("patchy", SCORE_UR),
    )
    app = open_app(workspace, monkeypatch)
    for page in PAGES[1:]:
        visit(app, page)
        assert not app.error, f"{page}: {texts(app.error)}"
    visit(app, "frontier")
    figure = charts(app)[0]
    envelope = app.dataframe[0].value
    assert envelope.set_index("k").loc[3, "trial"] == 0  # only trial 0 reports Pass@U-3
    assert figure["data"]
    visit(app, "trial")
    app.main.selectbox[0].set_value(2).run()
    assert not app.exception
    evaluation = app.dataframe[1].value
    assert set(evaluation["metric"]) == {"eval/score", "eval/user_involvement_rate"}


def test_an_unreadable_sweep_does_not_hide_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    real_workspace(
        workspace, [{"metrics": metrics(0.5, 0.1)}], loaded=sweep_config("good", SCORE_UR)
    )
    broken = workspace / "sweeps" / "bad"
    broken.mkdir(parents=True)
    (broken / "sweep.yaml").write_text("config: [unclosed\n")
    app = open_app(workspace, monkeypatch)
    table = app.dataframe[0].value.set_index("sweep")
    assert table.loc["good", "state"] == "stopped"  # 1 of its 4 trials done, none running
    assert table.loc["bad", "state"] == "unreadable"
    assert table.loc["bad", "problem"]
    pick_sweep(app, "bad")
    visit(app, "frontier")
    assert texts(app.error)  # one line, no traceback


def test_the_overview_sees_new_trials_without_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    workspace = tmp_path / "ws"
    data = real_workspace(
        workspace, [{"metrics": metrics(0.5, 0.1)}], loaded=sweep_config("live", SCORE_UR)
    )
    app = open_app(workspace, monkeypatch)
    assert app.dataframe[0].value["complete"].iloc[0] == 1
    study = optuna.load_study(study_name="live", storage=data.storage_url)
    study.add_trial(
        create_trial(
            params={"shaping.user_lambda": 0.2},
            distributions={"shaping.user_lambda": FloatDistribution(0.0, 0.5)},
            values=[0.7, 0.3],
        )
    )
    app.run()
    assert app.dataframe[0].value["complete"].iloc[0] == 2


def test_compare_sweeps_with_other_objectives_draws_envelopes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    real_workspace(workspace, [{"metrics": metrics(0.5, 0.1)}], loaded=sweep_config("a", SCORE_UR))
    real_workspace(workspace, [{"metrics": metrics(0.4, 0.1)}], loaded=sweep_config("b"))
    app = open_app(workspace, monkeypatch)
    visit(app, "compare")
    assert len(charts(app)) == 1
    assert "other objectives" in texts(app.info)


def test_deploy_registers_the_chosen_variants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bao.tracking import mlflow_client

    workspace = tmp_path / "ws"
    trials = [
        {"metrics": metrics(0.3, 0.05), "lam": 0.4},
        {"metrics": metrics(0.6, 0.2), "lam": 0.0},
    ]
    real_workspace(workspace, trials, loaded=sweep_config("ship", SCORE_UR))
    app = open_app(workspace, monkeypatch)
    visit(app, "deploy")
    app.multiselect[0].set_value([1, 3]).run()
    variants = app.dataframe[0].value.set_index("alias")
    assert set(variants.index) == {"budget-1", "budget-3", "knee"}
    assert variants.loc["budget-1", "trial"] == 1
    next(b for b in app.button if b.label == "Register in MLflow").click().run()
    assert not app.exception
    assert "budget-1 -> version" in texts(app.success)
    client = mlflow_client(workspace)
    version = client.get_model_version_by_alias("bao-pareto-ship", "budget-1")
    assert version.tags["bao.trial_run_id"]
