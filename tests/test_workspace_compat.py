"""A workspace written by 0.1.0 reads the same with the current code.

``tests/fixtures/workspace-0.1.0`` was written by the 0.1.0 code together with the ``status``,
``front`` and ``select`` JSON that code printed for it (tests/fixtures/README.md). Its records
hold the absolute paths of the folder it was written in, which no longer exists: reading a
copy in another folder also checks that the reader finds the storage and the artifacts
relative to the workspace it is given.

The documents are compared exactly, except that floats may differ in their last bits
(relative 1e-12): the intervals come from matrix products whose rounding depends on the BLAS
build and the CPU, and this test pins the record format, not a machine's arithmetic.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.make_workspace_0_1_0 import DOCUMENTS

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "workspace-0.1.0"
CASES = [(name, kind, argv) for name, commands in DOCUMENTS.items() for kind, argv in commands]


@pytest.fixture(scope="module")
def moved_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fixture's workspace in a folder of its own (the repository is never
    written: the analysis caches land in the copy)."""
    written_at = json.loads((FIXTURE / "written_at.json").read_text())["workspace"]
    target = tmp_path_factory.mktemp("moved") / "ws"
    assert not Path(written_at).exists(), "the fixture's original folder must be gone"
    shutil.copytree(FIXTURE / "ws", target)
    return target


def same(found: Any, expected: Any, where: str = "$") -> None:
    """``found`` is ``expected``: the same keys, lengths, types and values, floats up to
    relative 1e-12; fails naming the first place that differs."""
    assert type(found) is type(expected), f"{where}: {found!r} != {expected!r}"
    if isinstance(expected, dict):
        # The fixture was written with sorted keys; the order of keys is not the format.
        assert sorted(found) == sorted(expected), f"{where}: keys {sorted(found)}"
        for key in expected:
            same(found[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(found) == len(expected), f"{where}: {len(found)} items, not {len(expected)}"
        for index, (a, b) in enumerate(zip(found, expected, strict=True)):
            same(a, b, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert found == pytest.approx(expected, rel=1e-12, abs=0.0), f"{where}: {found!r}"
    else:
        assert found == expected, f"{where}: {found!r} != {expected!r}"


# Keys the documents gained after 0.1.0, with what a 0.1.0 workspace (nothing pruned, no cost
# recorded) must show in them; every other key must read as 0.1.0 printed it.
ADDED_SINCE_0_1_0: dict[str, dict[str, Any]] = {
    "status": {"pruned": 0, "compute_seconds": 0.0},
    "front": {"pruned": 0},
}
ADDED_PER_TRIAL: dict[str, dict[str, Any]] = {
    "status": {"compute_seconds": 0.0, "steps": None, "pruned": None},
}


def without_additions(document: Any, kind: str) -> Any:
    """``document`` less the keys added since 0.1.0, after checking their values."""
    for key, value in ADDED_SINCE_0_1_0.get(kind, {}).items():
        assert document.pop(key) == value, f"$.{key}"
    for index, trial in enumerate(document.get("trials", []) if kind == "status" else []):
        for key, value in ADDED_PER_TRIAL[kind].items():
            assert trial.pop(key) == value, f"$.trials[{index}].{key}"
    return document


def run_json(argv: list[str], workspace: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    from sweep.cli import main

    capsys.readouterr()
    assert main([*argv, "--workspace", str(workspace)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("name", "kind", "argv"), CASES, ids=[f"{n}-{k}" for n, k, _ in CASES])
def test_a_0_1_0_workspace_reads_the_same(
    name: str,
    kind: str,
    argv: list[str],
    moved_workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = json.loads((FIXTURE / f"{name}.{kind}.json").read_text())
    same(without_additions(run_json(argv, moved_workspace, capsys), kind), expected)


def test_the_fixture_keeps_what_it_pins() -> None:
    """The cases the fixture was made for are in it: a retried failure, nested seed runs, a
    collapsed trial, task-bootstrap and seed-bootstrap intervals."""
    sim_front = json.loads((FIXTURE / "fx-sim.front.json").read_text())
    cmd_status = json.loads((FIXTURE / "fx-cmd.status.json").read_text())
    cmd_front = json.loads((FIXTURE / "fx-cmd.front.json").read_text())
    assert any(t.get("collapsed") for t in sim_front["trials"])
    assert {"task-bootstrap"} == {m for t in sim_front["trials"] for m in t["uncertainty"]}
    assert {"seed-bootstrap"} == {m for t in cmd_front["trials"] for m in t.get("uncertainty", [])}
    assert any(t["state"] == "FAIL" for t in cmd_status["trials"])
    assert any(t["retry_of"] is not None for t in cmd_status["trials"])
    assert any(t.get("feasible") is False for t in cmd_front["trials"])


def test_the_comparison_tells_a_changed_document() -> None:
    document = json.loads((FIXTURE / "fx-cmd.front.json").read_text())
    same(json.loads(json.dumps(document)), document)
    for change in (
        lambda d: d["trials"][1].update(values=[d["trials"][1]["values"][0] * (1 + 1e-9), 0.5]),
        lambda d: d["trials"].pop(),
        lambda d: d.update(knee=None),
        lambda d: d["trials"][0].update(extra=1),
    ):
        changed = json.loads(json.dumps(document))
        change(changed)
        with pytest.raises(AssertionError):
            same(changed, document)


def test_registering_from_a_moved_0_1_0_workspace_writes_inside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``select --register`` writes deployment manifests into its trial runs' artifacts: in
    a moved workspace they land in the workspace, never in the folder it was written in
    (issue: new-user fixes, item 2)."""
    from mlflow.tracking import MlflowClient

    written_at = Path(json.loads((FIXTURE / "written_at.json").read_text())["workspace"])
    workspace = tmp_path / "ws"
    shutil.copytree(FIXTURE / "ws", workspace)
    argv = ["select", "fx-sim", "--budget", "1", "--register", "--json", "--draws", "20"]
    run_json(argv, workspace, capsys)
    assert not written_at.exists()
    manifests = sorted(workspace.glob("mlartifacts/*/*/artifacts/deployment/*.json"))
    assert manifests, "no deployment manifest in the workspace"
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    for experiment in client.search_experiments():
        if experiment.name.startswith("fx-"):
            assert experiment.artifact_location.startswith(workspace.as_uri() + "/")
