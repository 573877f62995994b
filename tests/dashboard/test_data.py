"""What the dashboard reads (dashboard.data) and how it is launched (dashboard.cli)."""

from __future__ import annotations

import math
import socket
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from bao.trajectory import Trajectory, Turn
from dashboard import data as records
from dashboard.cli import build_parser
from sweep.cli import main
from tests.analysis.builders import real_workspace, sweep_config

SCORE_UR = [
    {"metric": "eval/score", "direction": "maximize", "threshold": 0.0},
    {"metric": "eval/user_involvement_rate", "direction": "minimize", "threshold": 1.0},
]


def metrics(score: float, involvement: float) -> dict[str, float]:
    return {
        "eval/score": score,
        "eval/user_involvement_rate": involvement,
        "eval/pass_at_u_1": score,
        "eval/pass_at_u_1_lo": max(0.0, score - 0.1),
        "eval/pass_at_u_1_hi": min(1.0, score + 0.1),
        "eval/n_trajectories": 50.0,
    }


def test_sweep_names_are_folders_with_a_manifest(tmp_path: Path) -> None:
    assert records.sweep_names(tmp_path / "nothing") == []
    real_workspace(tmp_path, [], loaded=sweep_config("b"))
    real_workspace(tmp_path, [], loaded=sweep_config("a"))
    (tmp_path / "sweeps" / "stray").mkdir()
    assert records.sweep_names(tmp_path) == ["a", "b"]


def test_the_stamp_changes_when_a_trial_is_recorded(tmp_path: Path) -> None:
    data = real_workspace(tmp_path, [{"metrics": metrics(0.5, 0.1)}])
    before = records.sweep_stamp(tmp_path, "made")
    assert records.sweep_stamp(tmp_path, "made") == before  # stable while nothing happens
    time.sleep(0.01)
    study = optuna.load_study(study_name="made", storage=data.storage_url)
    study.add_trial(
        create_trial(
            params={"shaping.user_lambda": 0.3},
            distributions={"shaping.user_lambda": FloatDistribution(0.0, 0.5)},
            values=[0.6, 0.2],
        )
    )
    assert records.sweep_stamp(tmp_path, "made") != before


def test_server_storages_are_polled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_workspace(tmp_path, [])
    monkeypatch.setattr(records, "_storage_file", lambda workspace, name: None)
    clock = iter([1000.0, 1001.0, 1000.0 + records.POLL_SECONDS])
    monkeypatch.setattr(records.time, "time", lambda: next(clock))
    first, second, third = (records.sweep_stamp(tmp_path, "made") for _ in range(3))
    assert first == second
    assert third != first


def test_summaries_say_what_state_a_sweep_is_in(tmp_path: Path) -> None:
    finished = real_workspace(
        tmp_path / "a",
        [{"metrics": metrics(0.5, 0.1)}, {"metrics": metrics(0.6, 0.3)}],
        loaded=sweep_config("done", SCORE_UR),
    )
    summary = records.summarise(replace(finished, target_trials=2))
    assert summary.state == "finished"
    assert (summary.complete, summary.failed, summary.running) == (2, 0, 0)
    # score 0 and involvement 1 are the thresholds: the front's dominated area
    assert summary.hypervolume == pytest.approx(0.5 * 0.9 + 0.1 * 0.7)
    assert summary.reference == "score 0, user_involvement_rate 1"
    assert summary.last_update is not None

    running = real_workspace(
        tmp_path / "b",
        [{"metrics": metrics(0.5, 0.1)}, {"metrics": {}, "state": "RUNNING"}],
        loaded=sweep_config("busy", SCORE_UR),
    )
    assert records.summarise(running).state == "running"
    empty = real_workspace(tmp_path / "c", [], loaded=sweep_config("fresh", SCORE_UR))
    fresh = records.summarise(empty)
    assert fresh.state == "not started"
    assert fresh.hypervolume is None
    row = records.unreadable("bad", ValueError("boom"))
    assert row.to_row()["problem"] == "boom"


def test_describe_appends_the_fix() -> None:
    from bao.configuration import ConfigError

    error = ConfigError("no sweep named 'x'", fix="run bao-pareto sweep first")
    assert records.describe(error).count("run bao-pareto sweep first") == 1

    class OutageError(Exception):
        fix = "start the server"

    assert records.describe(OutageError("no database\ndetails")) == "no database (start the server)"
    assert records.describe(KeyError()) == "KeyError"


def test_evaluation_metrics_pair_values_with_their_intervals(tmp_path: Path) -> None:
    data = real_workspace(tmp_path, [{"metrics": metrics(0.5, 0.1)}])
    table = records.eval_metrics(data, 0).set_index("metric")
    assert table.loc["eval/pass_at_u_1", "low"] == pytest.approx(0.4)
    assert table.loc["eval/pass_at_u_1", "high"] == pytest.approx(0.6)
    assert math.isnan(table.loc["eval/score", "low"])
    assert "eval/pass_at_u_1_lo" not in table.index
    assert records.eval_metrics(data, 99).empty


def test_seed_runs_of_single_and_multi_seed_trials(tmp_path: Path) -> None:
    data = real_workspace(
        tmp_path,
        [
            {"metrics": metrics(0.5, 0.1)},
            {"metrics": metrics(0.6, 0.2), "seeds": [metrics(0.55, 0.2), metrics(0.65, 0.2)]},
        ],
    )
    single = records.seed_runs(data, 0)
    assert list(single["run_id"]) == [data.trials.loc[0, "mlflow_run_id"]]
    assert list(records.seed_runs(data, 1)["seed"]) == [0, 1]
    assert records.seed_runs(data, 42).empty


def test_turn_table_lists_every_turn() -> None:
    trajectory = Trajectory(
        "t1",
        [
            Turn("action", "1 2 3 4", "query_result", 0.0, -0.0, "f(1,2,3,4) = 7"),
            Turn("answer", "12", "answer_correct", 1.0, 0.9, "correct"),
        ],
    )
    table = records.turn_table(trajectory)
    assert list(table["turn"]) == [1, 2]
    assert list(table["shaped reward"]) == [-0.0, 0.9]
    assert table.loc[1, "observation"] == "correct"


def test_parameter_importance_needs_two_complete_trials(tmp_path: Path) -> None:
    one = real_workspace(tmp_path / "one", [{"metrics": metrics(0.5, 0.1)}])
    assert records.parameter_importance(one) == {}
    trials = [{"metrics": metrics(0.1 * i, 0.05 * i), "lam": 0.05 * i} for i in range(6)]
    several = real_workspace(tmp_path / "six", trials)
    shares = records.parameter_importance(several)
    assert set(shares) == {"eval/pass_at_u_1", "eval/user_involvement_rate"}
    assert shares["eval/pass_at_u_1"] == {"shaping.user_lambda": pytest.approx(1.0)}


# -------------------------------------------------------------------------------- CLI


def test_the_dashboard_binds_localhost_by_default() -> None:
    args = build_parser("dashboard").parse_args([])
    assert args.host == "127.0.0.1"
    assert args.port == 8501


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a check regress, fail instead of replacing pytest with a Streamlit server."""

    def refuse(*args: object) -> None:
        raise AssertionError("the dashboard would have started")

    monkeypatch.setattr("dashboard.cli.os.execve", refuse)


def test_a_busy_port_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status = main(["dashboard", "--workspace", str(tmp_path), "--port", str(port)])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1
    assert f"127.0.0.1:{port}" in err
    assert "--port" in err


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_workspace_that_is_not_a_folder_is_refused_and_nothing_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    typo = tmp_path / "typo"
    if kind == "file":
        typo.write_text("not a workspace\n")
    before = sorted(tmp_path.rglob("*"))
    status = main(["dashboard", "--workspace", str(typo)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(typo) in lines[0]
    assert ("does not exist" if kind == "missing" else "is not a folder") in lines[0]
    assert "--workspace" in lines[0]
    assert "Traceback" not in captured.err
    assert sorted(tmp_path.rglob("*")) == before  # the folder was not created


def test_the_default_workspace_must_exist_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BAO_PARETO_HOME", raising=False)
    assert main(["dashboard"]) == 2
    assert "bao-runs" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_reference_table_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "table.csv"
    table.write_text("model,gym\nx,function_gym\n")
    status = main(["dashboard", "--workspace", str(tmp_path), "--reference-table", str(table)])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1
    assert "table.csv" in err


def test_a_categorical_parameter_gets_named_ticks() -> None:
    import pandas as pd

    from dashboard.figures import parallel_figure

    frame = pd.DataFrame(
        {"params.credit": ["r2g", "equalized", "r2g"], "eval/score": [0.2, 0.4, 0.3]}
    )
    figure = parallel_figure(frame, ["params.credit"], ["eval/score"], "eval/score")
    credit = figure.data[0].dimensions[0]
    assert list(credit.ticktext) == ["equalized", "r2g"]
    assert list(credit.values) == [1.0, 0.0, 1.0]


def test_a_storage_url_with_options_is_still_watched(tmp_path: Path) -> None:
    import yaml

    real_workspace(tmp_path, [])
    manifest = tmp_path / "sweeps" / "made" / "sweep.yaml"
    document = yaml.safe_load(manifest.read_text())
    document["storage"] += "?timeout=30"
    manifest.write_text(yaml.safe_dump(document))
    stamp = records.sweep_stamp(tmp_path, "made")
    assert not stamp.split("|")[-1].startswith("t")  # the file's stamp, not the clock
