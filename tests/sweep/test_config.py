"""Sweep configs: defaults, overrides, and one clear line for every mistake, before any trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bao.configuration import ConfigError
from sweep.cli import main
from sweep.loading import load_sweep_config
from sweep.space import decode, grid_values
from tests.sweep.conftest import REPO_ROOT, WriteConfig


def test_quickstart_config_is_valid_and_has_the_promised_shape() -> None:
    loaded = load_sweep_config(REPO_ROOT / "configs" / "quickstart.yaml")
    config = loaded.config
    assert config.driver.n_trials >= 24
    assert set(config.search_space) == {
        "shaping.user_lambda",
        "shaping.info_seeking",
        "shaping.over_thinking",
    }
    assert [(o.metric, o.direction) for o in config.objectives] == [
        ("eval/score", "maximize"),
        ("eval/user_involvement_rate", "minimize"),
    ]
    assert loaded.train_config["trainer"]["iterations"] == 60
    assert "eval/pass_at_u_9" in loaded.metric_names
    # The reference point a deployment would accept, and collapse as a constraint.
    assert [o.threshold for o in config.objectives] == [0.1, 1 / 16]
    assert [str(c) for c in config.constraints] == ["eval/no_answer_rate <= 0.9"]
    assert "eval/no_answer_rate" in loaded.metric_names


@pytest.mark.parametrize("name", ["quickstart.yaml", "lambda_grid.yaml", "command.yaml"])
def test_every_sweep_config_key_has_a_comment(name: str) -> None:
    load_sweep_config(REPO_ROOT / "configs" / name)
    text = (REPO_ROOT / "configs" / name).read_text()
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "-")) and ":" in line:
            _, _, rest = line.partition(":")
            assert "#" in rest or rest.strip() == "", f"no comment on {line!r}"


def test_overrides_apply_before_validation(sim_sweep: WriteConfig) -> None:
    loaded = load_sweep_config(
        sim_sweep(), ["driver.algorithm=nsga2", "driver.batch_size=4", "seeds_per_trial=2"]
    )
    assert loaded.config.driver.algorithm == "nsga2"
    assert loaded.config.training_seeds == [0, 1]


def test_fingerprint_ignores_runtime_knobs_only(sim_sweep: WriteConfig) -> None:
    base = load_sweep_config(sim_sweep()).config.fingerprint()
    same = load_sweep_config(sim_sweep(), ["driver.n_trials=50", "jobs=4", "max_retries=3"])
    assert same.config.fingerprint() == base
    # A threshold only moves the analysis' reference point, never the trials.
    governed = load_sweep_config(sim_sweep(), ["objectives.0.threshold=0.2"])
    assert governed.config.objectives[0].threshold == 0.2
    assert governed.config.fingerprint() == base
    other = load_sweep_config(sim_sweep(), ["driver.algorithm=tpe"])
    assert other.config.fingerprint() != base


def _first_objective(metric: str, direction: str) -> dict[str, Any]:
    """Objectives with a given first one and the usual user-involvement second one."""
    second = {"metric": "eval/user_involvement_rate", "direction": "minimize"}
    return {"objectives": [{"metric": metric, "direction": direction}, second]}


BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown key", {"driverr": {}}, "unknown key 'driverr'; allowed keys here:"),
    ("unknown nested key", {"driver": {"algo": "tpe"}}, "unknown key 'driver.algo'"),
    (
        "inverted range",
        {"search_space": {"shaping.user_lambda": {"type": "float", "low": 0.5, "high": 0.1}}},
        "low (0.5) must be below high (0.1); swap them",
    ),
    (
        "log range from zero",
        {
            "search_space": {
                "trainer.learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}
            }
        },
        "a log-scale range needs low > 0",
    ),
    ("empty search space", {"search_space": {}}, "the search space is empty"),
    (
        "unknown metric",
        _first_objective("eval/scor", "maximize"),
        "the sim backend does not log 'eval/scor'; use one of eval/score",
    ),
    (
        "metric beyond k_max",
        _first_objective("eval/pass_at_u_12", "maximize"),
        "does not log 'eval/pass_at_u_12'",
    ),
    (
        "one objective",
        {"objectives": [{"metric": "eval/score", "direction": "maximize"}]},
        "key 'objectives'",
    ),
    (
        "duplicate objective",
        {
            "objectives": [
                {"metric": "eval/score", "direction": "maximize"},
                {"metric": "eval/score", "direction": "minimize"},
            ]
        },
        "objective 'eval/score' is listed twice",
    ),
    (
        "bad direction",
        _first_objective("eval/score", "up"),
        "key 'objectives.0.direction'",
    ),
    ("unknown driver", {"driver": {"algorithm": "cmaes"}}, "unknown optuna algorithm 'cmaes'"),
    ("unknown library", {"driver": {"library": "hyperopt"}}, "key 'driver.library'"),
    (
        "pymoo algorithm",
        {"driver": {"library": "pymoo", "algorithm": "tpe"}},
        "unknown pymoo algorithm 'tpe'; choose one of nsga2, nsga3, moead",
    ),
    (
        "batch size on tpe",
        {"driver": {"algorithm": "tpe", "batch_size": 8}},
        "remove it for tpe",
    ),
    (
        "unknown config path",
        {"search_space": {"shaping.user_lamda": {"type": "float", "low": 0, "high": 1}}},
        "search_space.shaping.user_lamda = 0.0 is not a valid training value",
    ),
    (
        "range outside the training config's",
        {"search_space": {"advantage.gamma": {"type": "float", "low": 0.5, "high": 1.5}}},
        "search_space.advantage.gamma = 1.5 is not a valid training value",
    ),
    (
        "bad constraint",
        {"constraints": ["eval/user_involvement_rate < 0.3"]},
        "is not 'metric <= number' or 'metric >= number'",
    ),
    (
        "constraint on an unknown metric",
        {"constraints": ["eval/ur <= 0.3"]},
        "constraints[0]: the sim backend does not log 'eval/ur'",
    ),
    (
        "grid smaller than n_trials",
        {"driver": {"algorithm": "grid", "n_trials": 200, "grid_points": 3}},
        "driver.n_trials (200) exceeds the grid's 27 points",
    ),
    ("bad name", {"name": "../escape"}, "key 'name'"),
    ("zero trials", {"driver": {"n_trials": 0}}, "key 'driver.n_trials'"),
    (
        "missing training config",
        {"backend": {"kind": "sim", "train_config": "nowhere.yaml"}},
        "backend.train_config:",
    ),
    ("unknown backend", {"backend": {"kind": "slurm"}}, "key 'backend'"),
    (
        "bad training override",
        {"train": {"trainer": {"iterations": -1}}},
        "train: key 'trainer.iterations'",
    ),
    (
        "moead with constraints",
        {
            "driver": {"library": "pymoo", "algorithm": "moead"},
            "constraints": ["eval/user_involvement_rate <= 0.3"],
        },
        "pymoo's moead does not handle constraints",
    ),
    (
        "non-finite threshold",
        {
            "objectives": [
                {"metric": "eval/score", "direction": "maximize", "threshold": float("nan")},
                {"metric": "eval/user_involvement_rate", "direction": "minimize"},
            ]
        },
        "threshold must be a finite number",
    ),
]


@pytest.mark.parametrize(
    ("label", "change", "expected"), BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS]
)
def test_bad_config_is_one_line_before_any_trial(
    label: str,
    *,
    change: dict[str, Any],
    expected: str,
    sim_sweep: WriteConfig,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = sim_sweep(**change)
    assert main(["sweep", str(config), "--workspace", str(workspace)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert not (workspace / "sweeps").exists()  # nothing was started or written


def test_unknown_placeholder_in_a_command(command_sweep: WriteConfig) -> None:
    path = command_sweep()
    data = yaml.safe_load(path.read_text())
    data["backend"]["argv"].append("--lr={learning_rate}")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"unknown placeholder \{learning_rate\}"):
        load_sweep_config(path)


def test_command_objective_not_logged(command_sweep: WriteConfig) -> None:
    with pytest.raises(ConfigError, match="the command backend does not log 'f3'"):
        load_sweep_config(command_sweep(), ["objectives.0.metric=f3"])


def test_a_changed_sweep_under_an_existing_name_is_refused(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = command_sweep(driver={"n_trials": 1})
    assert main(["sweep", str(config), "--workspace", str(workspace), "--json"]) == 0
    changed = ["--set", "search_space.x.high=2.0"]
    assert main(["sweep", str(config), "--workspace", str(workspace), *changed]) == 2
    assert "already exists" in capsys.readouterr().err
    # runtime knobs may change: more trials resume the same sweep
    argv = ["sweep", str(config), "--workspace", str(workspace), "--n-trials", "2", "--json"]
    assert main(argv) == 0


def test_resume_of_an_unknown_sweep(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", str(command_sweep()), "--workspace", str(workspace), "--resume"]) == 2
    assert "--resume: no sweep named 'cmd'" in capsys.readouterr().err


def test_status_of_an_unknown_sweep(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "nope", "--workspace", str(workspace)]) == 2
    assert "no sweep named 'nope'" in capsys.readouterr().err


def test_decode_and_grid_respect_types_steps_and_logs() -> None:
    from sweep.config import SweepConfig

    config = SweepConfig.model_validate(
        {
            "name": "s",
            "objectives": [
                {"metric": "a", "direction": "minimize"},
                {"metric": "b", "direction": "minimize"},
            ],
            "search_space": {
                "f": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25},
                "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                "n": {"type": "int", "low": 2, "high": 10, "step": 4},
                "c": {"type": "categorical", "choices": ["x", "y", "z"]},
            },
        }
    )
    space = config.search_space
    assert decode(space, [0.0, 0.0, 0.0, 0.0]) == {"f": 0.0, "lr": 1e-4, "n": 2, "c": "x"}
    top = decode(space, [1.0, 1.0, 1.0, 1.0])
    assert top == {"f": 1.0, "lr": pytest.approx(1e-2), "n": 10, "c": "z"}
    middle = decode(space, [0.4, 0.5, 0.5, 0.5])
    assert middle == {"f": 0.5, "lr": pytest.approx(1e-3), "n": 6, "c": "y"}
    assert grid_values(space["f"], 3) == [0.0, 0.5, 1.0]
    assert grid_values(space["f"], 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert grid_values(space["lr"], 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert grid_values(space["n"], 5) == [2, 6, 10]
    assert grid_values(space["c"], 2) == ["x", "y", "z"]


def test_overrides_reach_list_items_and_dotted_keys(sim_sweep: WriteConfig) -> None:
    space = {"shaping.user_lambda": {"type": "float", "low": 0.0, "high": 0.5}}
    loaded = load_sweep_config(
        sim_sweep(search_space=space),
        ["objectives.0.metric=eval/pass_at_u_1", "search_space.shaping.user_lambda.high=0.3"],
    )
    assert loaded.config.objectives[0].metric == "eval/pass_at_u_1"
    assert loaded.config.search_space["shaping.user_lambda"].high == 0.3  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="is a list of 2 items and '5' is not an index"):
        load_sweep_config(sim_sweep(), ["objectives.5.metric=eval/score"])
