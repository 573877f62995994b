"""The workspace's SQLite files: damage found without writing, artifact locations moved
with the workspace (bao/stores.py; issue: new-user fixes, items 2 and 5)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bao.configuration import ConfigError
from bao.stores import check_sqlite_file, relocate_artifacts, sqlite_problem


def make_store(path: Path, experiments: list[str], runs: list[str]) -> None:
    """A database with the two tables of MLflow's schema that hold artifact locations."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE experiments (experiment_id INTEGER, artifact_location TEXT)")
        db.execute("CREATE TABLE runs (run_uuid TEXT, artifact_uri TEXT)")
        db.executemany("INSERT INTO experiments VALUES (?, ?)", enumerate(experiments))
        db.executemany("INSERT INTO runs VALUES (?, ?)", [(str(i), r) for i, r in enumerate(runs)])
    db.close()


def column(path: Path, query: str) -> list[str]:
    with sqlite3.connect(path) as db:
        values = [row[0] for row in db.execute(query)]
    db.close()
    return values


def test_damage_is_found_and_the_file_left_as_it_was(tmp_path: Path) -> None:
    garbage = tmp_path / "mlflow.db"
    garbage.write_bytes(b"not a database\n" * 100)
    before = garbage.read_bytes()
    assert sqlite_problem(garbage) == "file is not a database"
    with pytest.raises(ConfigError, match=r"the MLflow database '.*mlflow.db' is not a readable"):
        check_sqlite_file(garbage, what="the MLflow database", fix="restore it")
    assert garbage.read_bytes() == before


def test_a_missing_or_valid_file_has_no_problem_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "optuna.db"
    assert sqlite_problem(missing) is None
    assert not missing.exists()
    make_store(missing, [], [])
    assert sqlite_problem(missing) is None
    empty = tmp_path / "empty.db"
    empty.touch()  # what SQLite makes of a new database: valid
    assert sqlite_problem(empty) is None


def test_locations_under_the_old_workspace_move_and_others_stay(tmp_path: Path) -> None:
    old, new = tmp_path / "old 100%_ws", tmp_path / "new"
    new.mkdir()
    database = new / "mlflow.db"
    elsewhere = "s3://bucket/artifacts/7"
    make_store(
        database,
        [(old / "mlartifacts" / "tiny").as_uri(), elsewhere, "mlruns/0"],
        [
            (old / "mlartifacts" / "tiny" / "r1" / "artifacts").as_uri(),
            f"{old}/mlartifacts/tiny/r2/artifacts",
            f"{elsewhere}/r3/artifacts",
        ],
    )
    assert relocate_artifacts(database, new) == 3
    assert column(database, "SELECT artifact_location FROM experiments") == [
        (new / "mlartifacts" / "tiny").as_uri(),
        elsewhere,
        "mlruns/0",
    ]
    assert column(database, "SELECT artifact_uri FROM runs") == [
        (new / "mlartifacts" / "tiny" / "r1" / "artifacts").as_uri(),
        f"{new}/mlartifacts/tiny/r2/artifacts",
        f"{elsewhere}/r3/artifacts",
    ]
    assert relocate_artifacts(database, new) == 0  # once moved, nothing left to do


def test_a_workspace_in_its_own_folder_is_not_rewritten(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    make_store(database, [(tmp_path / "mlartifacts" / "tiny").as_uri()], [])
    before = database.read_bytes()
    assert relocate_artifacts(database, tmp_path) == 0
    assert database.read_bytes() == before
