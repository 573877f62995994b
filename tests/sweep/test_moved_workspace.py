"""A workspace copied (``cp -a``) or moved (``mv``) elsewhere reads the same and writes only
inside itself (issue: new-user fixes, item 2; docs/architecture.md, "Paths")."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sweep.cli import main
from tests.sweep.conftest import WriteConfig, mlflow_runs


def documents(workspace: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``status --json`` and ``front --json`` of sweep ``cmd`` in ``workspace``."""
    found = {}
    for command in ("status", "front"):
        capsys.readouterr()
        assert main([command, "cmd", "--json", "--workspace", str(workspace)]) == 0
        found[command] = json.loads(capsys.readouterr().out)
    return found


def contents(root: Path) -> dict[str, str]:
    """Every file under ``root`` (lock files aside) by relative path: its content's hash."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith(".lock")
    }


@pytest.mark.slow
def test_a_copied_then_moved_workspace_reads_the_same_and_writes_only_inside_itself(
    command_sweep: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = command_sweep(driver={"algorithm": "random", "n_trials": 3})
    original = tmp_path / "ws_src"
    assert main(["sweep", str(config), "--workspace", str(original), "--json"]) == 0
    written = documents(original, capsys)
    assert str(original) not in json.dumps(written)  # the documents hold no paths

    copy = tmp_path / "ws_copy"
    shutil.copytree(original, copy, symlinks=True)  # cp -a: the original stays
    untouched = contents(original)
    assert documents(copy, capsys) == written
    # Resuming the copy writes its new runs, logs and artifacts into the copy.
    more = ["--n-trials", "4", "--json"]
    assert main(["sweep", str(config), "--workspace", str(copy), *more]) == 0
    assert contents(original) == untouched
    runs = mlflow_runs(copy, "cmd")
    assert len(runs) == 5  # the sweep's run and four trials
    for run in runs.values():
        assert run.info.artifact_uri.startswith(copy.as_uri() + "/"), run.info.artifact_uri
    logs = sorted(copy.glob("mlartifacts/cmd/*/artifacts/logs/run.log"))
    assert len(logs) == 4

    resumed = documents(copy, capsys)
    assert resumed["status"]["complete"] == 4  # its own storage: the original has 3
    moved = tmp_path / "ws_moved"
    copy.rename(moved)  # mv
    assert documents(moved, capsys) == resumed
    assert not copy.exists()  # reading the moved workspace created nothing where it was
    assert contents(original) == untouched

    # A copy without the sweep's storage is one line, and reading it creates no storage.
    storage = moved / "sweeps" / "cmd" / "optuna.db"
    storage.unlink()
    capsys.readouterr()
    assert main(["status", "cmd", "--workspace", str(moved)]) == 2
    assert "'cmd' has a manifest but no Optuna storage" in capsys.readouterr().err
    assert not storage.exists()
