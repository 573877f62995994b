"""Conformance of every registered backend (sweep.backends.BACKENDS), without running one.

Each backend gets one example sweep config from configs/ (the documented ones); a backend
registered without an example fails here, so a new backend comes with its checks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sweep.backends import BACKENDS, Backend, Launch, RunRequest, backend_class, make_backend
from sweep.loading import load_sweep_config
from sweep.space import corner_values

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "sim": REPO_ROOT / "configs" / "quickstart.yaml",
    "verl": REPO_ROOT / "configs" / "verl" / "sweep_function_gym.yaml",
    "command": REPO_ROOT / "configs" / "command.yaml",
}


@pytest.fixture(params=sorted(BACKENDS))
def kind(request: pytest.FixtureRequest) -> str:
    kind = str(request.param)
    if kind == "verl" and importlib.util.find_spec("verl") is None:
        pytest.skip("the verl extra is not installed")
    return kind


def test_every_backend_has_an_example_and_its_kind() -> None:
    assert set(EXAMPLES) == set(BACKENDS)
    for kind, cls in BACKENDS.items():
        assert cls.kind == kind
        assert backend_class(kind) is cls
        assert issubclass(cls, Backend)


def test_an_unknown_kind_is_one_line_with_the_choices() -> None:
    from bao.configuration import ConfigError

    with pytest.raises(ConfigError, match="unknown backend kind 'slurm'") as error:
        backend_class("slurm")
    assert "sim, verl, command" in str(error.value)


def test_check_returns_the_metrics_the_objectives_name(kind: str) -> None:
    loaded = load_sweep_config(EXAMPLES[kind])
    assert loaded.config.backend.kind == kind
    config = loaded.config
    train, names = backend_class(kind).check(config, Path(loaded.base_dir), loaded.source)
    assert train == loaded.train_config
    assert names == loaded.metric_names
    for objective in config.objectives:
        assert objective.metric in names


def test_launch_gives_an_argv_of_strings(kind: str, tmp_path: Path) -> None:
    loaded = load_sweep_config(EXAMPLES[kind])
    backend = make_backend(loaded, tmp_path / "train.yaml", tmp_path / "ws")
    assert type(backend) is BACKENDS[kind]
    params = {path: corner_values(spec)[0] for path, spec in loaded.config.search_space.items()}
    request = RunRequest(params, seed=3, trial_number=7, run_id="r1", workdir=tmp_path / "w")
    launch = backend.launch(request)
    assert isinstance(launch, Launch)
    assert launch.argv
    assert all(isinstance(item, str) for item in launch.argv)
    assert "3" in " ".join(launch.argv)  # the training seed reaches the run


def test_dry_run_checks_every_corner(kind: str, tmp_path: Path) -> None:
    from sweep.backends import dry_run_commands

    loaded = load_sweep_config(EXAMPLES[kind])
    corners = [
        {path: value}
        for path, spec in loaded.config.search_space.items()
        for value in corner_values(spec)
    ]
    checked = dry_run_commands(loaded, str(tmp_path / "ws"))
    assert [entry["params"] for entry in checked] == corners
    assert all(entry["check"] for entry in checked)


@pytest.mark.parametrize(
    ("kind", "section", "key"),
    [("sim", "trainer", "iterations"), ("verl", "schedule", "total_training_steps")],
)
def test_a_runs_last_step_is_the_training_configs_and_never_a_rung(
    kind: str, section: str, key: str
) -> None:
    from sweep import pruning

    loaded = load_sweep_config(EXAMPLES[kind])
    loaded.train_config.setdefault(section, {})[key] = 30
    backend = backend_class(kind)(loaded, Path(loaded.source), Path("."))
    assert backend.max_step() == 30
    # Rungs at 10 x 3^k: 10, then 30 is the run's end, where its final evaluation decides.
    assert pruning.rung_steps(10, 3, backend.max_step()) == [10]
