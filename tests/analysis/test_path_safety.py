"""Names that reach files in the analysis: a sweep name never loads (nor caches) a sweep
outside the workspace, and an alias never puts its manifest outside ``deployment/``."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from analysis.loader import CACHE_FOLDER, load_sweep
from analysis.registry import register_variants
from analysis.report import analyse_front
from analysis.selection import select_knee
from bao.paths import UnsafePathError
from tests.analysis.builders import real_workspace
from tests.analysis.test_registry import curve


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paths")
    workspace = root / "ws"
    real_workspace(
        workspace,
        [{"metrics": curve([0.5, 0.52, 0.53], 0.05)}, {"metrics": curve([0.4, 0.6, 0.7], 0.3)}],
    )
    return workspace


def test_a_traversing_sweep_name_loads_and_caches_nothing_outside(workspace: Path) -> None:
    outside = workspace.parent / "outside" / "made"
    shutil.copytree(
        workspace / "sweeps" / "made", outside, ignore=shutil.ignore_patterns("*.db", CACHE_FOLDER)
    )
    for name in ("../../outside/made", str(outside), "made/../../../outside/made"):
        with pytest.raises(UnsafePathError, match="sweep name"):
            load_sweep(workspace, name, use_cache=True)
    assert not (outside / CACHE_FOLDER).exists()
    # The sweep itself still loads and caches where it belongs.
    assert len(load_sweep(workspace, "made").trials) == 2
    assert (workspace / "sweeps" / "made" / CACHE_FOLDER).is_dir()


@pytest.mark.parametrize("alias", ["../../etc", "/etc/x", "..", "deployment/../../x"])
def test_an_alias_writes_its_manifest_inside_deployment(workspace: Path, alias: str) -> None:
    data = load_sweep(workspace, "made", use_cache=False)
    analysis = analyse_front(data, n_draws=50)
    variant = dataclasses.replace(select_knee(data), alias=alias)
    artifacts = workspace / "mlartifacts"
    before = {p for p in artifacts.rglob("*") if p.is_file()}
    # The registry may refuse such an alias; the manifest is logged before that.
    with contextlib.suppress(MlflowException):
        register_variants(analysis, [variant], workspace)
    written = {p for p in artifacts.rglob("*") if p.is_file()} - before
    assert written, "the manifest was not logged"
    for path in written:
        assert path.parent.name == "deployment", path
        assert path.suffix == ".json", path
        assert ".." not in path.name
        assert "/" not in path.stem
    escaped = [p for p in workspace.parent.rglob("*.json") if workspace not in p.parents]
    assert not escaped
