"""bao.paths: names that become one path component, and paths that must stay in a folder;
plus the call sites in bao that join names from outside onto folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bao.configuration import ConfigError
from bao.errors import BaoError
from bao.paths import (
    MAX_COMPONENT,
    UnsafePathError,
    inside,
    safe_component,
    sanitized_component,
)

TRAVERSALS = ["..", ".", "", "../x", "../../etc", "/etc", "/", "a/b", "a\\b", "x/..", "a\x00b"]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_safe_component_refuses_anything_but_one_name(name: str) -> None:
    with pytest.raises(UnsafePathError) as caught:
        safe_component(name, what="sweep name")
    message = str(caught.value)
    assert message.startswith("sweep name ")
    assert repr(name) in message  # echoes the bad value
    assert "\n" not in message  # one line, even for a name holding a newline
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, BaoError)


@pytest.mark.parametrize("name", ["tiny-a", "run.2", "0f3a9c_b", "a..b", ".hidden", "x" * 200])
def test_safe_component_keeps_plain_names(name: str) -> None:
    assert safe_component(name, what="name") == name


def test_safe_component_checks_type_length_control_characters_and_pattern() -> None:
    with pytest.raises(UnsafePathError, match="must be a string"):
        safe_component(None, what="run id")
    with pytest.raises(UnsafePathError, match="longer than"):
        safe_component("x" * (MAX_COMPONENT + 1), what="run id")
    with pytest.raises(UnsafePathError, match="control character"):
        safe_component("a\nb", what="alias")
    with pytest.raises(UnsafePathError, match="not allowed"):
        safe_component("-rf", what="sweep name", pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*")
    with pytest.raises(UnsafePathError, match="say what to do"):
        safe_component("../x", what="alias", fix="say what to do")


@given(st.text(max_size=300))
def test_sanitized_component_is_always_one_safe_name(name: str) -> None:
    safe = sanitized_component(name)
    assert safe_component(safe, what="sanitized name") == safe
    assert safe.strip(".")
    assert sanitized_component(name) == safe  # deterministic


@given(st.text(max_size=30), st.text(max_size=30))
def test_sanitized_component_keeps_different_names_apart(first: str, second: str) -> None:
    if first != second:
        assert sanitized_component(first) != sanitized_component(second)


def test_sanitized_component_keeps_plain_names_as_they_are() -> None:
    assert sanitized_component("bao-sweep_1.v2") == "bao-sweep_1.v2"
    assert sanitized_component("../../etc").startswith("_.._etc-")
    assert "/" not in sanitized_component("/etc/passwd")


def test_inside_accepts_paths_below_the_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert inside(tmp_path, "a/b.json", what="file") == tmp_path.resolve() / "a" / "b.json"
    assert inside(tmp_path, ".", what="file") == tmp_path.resolve()
    assert inside(tmp_path, "a/../c", what="file") == tmp_path.resolve() / "c"


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "/etc/passwd"])
def test_inside_refuses_paths_that_leave_the_folder(tmp_path: Path, path: str) -> None:
    base = tmp_path / "base"
    base.mkdir()
    with pytest.raises(UnsafePathError, match="leads outside"):
        inside(base, path, what="artifact")


def test_inside_follows_symbolic_links(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", base / "link")
    with pytest.raises(UnsafePathError, match="leads outside"):
        inside(base, "link/file", what="cache file")


# --------------------------------------------------------------------------- call sites


@pytest.mark.parametrize("run_id", ["../escaped", "a/b", "/tmp/abs", "..", ""])
def test_a_verl_run_folder_refuses_a_run_id_that_is_a_path(tmp_path: Path, run_id: str) -> None:
    from bao.verl.config import VerlConfig
    from bao.verl.run import run_folder

    config = VerlConfig.model_validate({"model": {"path": "some/model"}})
    with pytest.raises(UnsafePathError, match="MLflow run id"):
        run_folder(config, tmp_path, run_id)
    folder = run_folder(config, tmp_path, "0123456789abcdef0123456789abcdef")
    assert folder.root == tmp_path / "verl" / "0123456789abcdef0123456789abcdef"


@pytest.mark.slow
def test_experiment_artifacts_stay_inside_the_workspace(tmp_path: Path) -> None:
    # `bao-pareto import DUMP --experiment ../../x` and `train --set name=../../x` reach here.
    from bao.tracking import experiment_id, mlflow_client

    workspace = tmp_path / "ws"
    client = mlflow_client(workspace)
    experiment = experiment_id(client, "../../escaped", workspace)
    run = client.create_run(experiment).info.run_id
    client.log_text(run, "hello", "note.txt")
    written = list(tmp_path.rglob("note.txt"))
    assert written
    assert all(workspace in p.parents for p in written), written
