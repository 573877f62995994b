"""A sweep name from the command line or a URL names a sweep of the workspace, never a path:
``status ../../elsewhere/x`` must not read (or, through the analysis cache, write) outside.
A name already taken by a sweep of another config is refused, saying what differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bao.paths import UnsafePathError
from sweep.cli import main
from sweep.storage import open_study, read_manifest, storage_url, sweep_dir, write_manifest
from tests.analysis.builders import sweep_config
from tests.sweep.conftest import WriteConfig

BAD_NAMES = [
    "../../outside/made",
    "made/../../../outside/made",
    "..",
    ".",
    "",
    "made\n",
    "-made",
    "made/",
]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace with one sweep ``made``, and a copy of it outside the workspace that a
    traversing name would reach (its manifest is valid, so reading it would succeed)."""
    import optuna

    workspace = tmp_path / "ws"
    loaded = sweep_config("made")
    url = storage_url(loaded, workspace)
    write_manifest(loaded, workspace, url)
    open_study(loaded, workspace, optuna.samplers.RandomSampler(seed=0))
    shutil.copytree(workspace / "sweeps" / "made", tmp_path / "outside" / "made")
    return workspace


@pytest.mark.parametrize("name", [*BAD_NAMES, "ABSOLUTE"])
def test_read_manifest_refuses_names_that_are_paths(workspace: Path, name: str) -> None:
    if name == "ABSOLUTE":
        name = str(workspace.parent / "outside" / "made")
    assert read_manifest(workspace, "made")[0].config.name == "made"
    with pytest.raises(UnsafePathError, match="sweep name") as caught:
        read_manifest(workspace, name)
    assert "\n" not in str(caught.value)
    with pytest.raises(UnsafePathError):
        sweep_dir(workspace, name)


def test_status_of_a_traversing_name_is_one_line_and_reads_nothing_outside(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = workspace.parent / "outside" / "made"
    before = sorted(p.name for p in outside.iterdir())
    code = main(["status", "../../outside/made", "--workspace", str(workspace), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "sweep name" in lines[0]
    assert "../../outside/made" in lines[0]
    assert sorted(p.name for p in outside.iterdir()) == before  # nothing written there


def test_sweep_names_the_configs_accept_still_work(tmp_path: Path) -> None:
    for name in ("tiny", "tiny-a", "bao_v2.1", "A" * 64):
        assert sweep_dir(tmp_path, name) == tmp_path / "sweeps" / name


@pytest.mark.slow
def test_a_changed_config_under_an_existing_name_is_refused_naming_what_differs(
    command_sweep: WriteConfig, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's `--set driver.algorithm=nsga2` after the demo (issue: new-user fixes): the
    refusal says which key differs and how to name the new sweep, and that command runs."""
    config = command_sweep(driver={"algorithm": "tpe", "n_trials": 2})
    argv = ["sweep", str(config), "--workspace", str(workspace), "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--set", "driver.algorithm=nsga2"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "sweep 'cmd' already exists" in line
    assert "driver.algorithm 'tpe' there, 'nsga2' here" in line
    assert "--set name=cmd-2" in line
    assert main([*argv, "--set", "driver.algorithm=nsga2", "--set", "name=cmd-nsga2"]) == 0
    assert json.loads(capsys.readouterr().out)["complete"] == 2
