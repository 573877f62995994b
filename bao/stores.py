"""The workspace's local stores: SQLite files checked before use, artifacts kept inside it.

A workspace holds two kinds of SQLite file, ``mlflow.db`` and each sweep's ``optuna.db``
(docs/architecture.md, "Workspace files"). Two things about them are owned here:

- :func:`check_sqlite_file`: a damaged file (a torn copy, a file that is not SQLite) is one
  line naming the file before anything else is opened or written, instead of SQLAlchemy's
  traceback half-way through a command (docs/reliability.md, "What a new user hit").
- :func:`relocate_artifacts`: MLflow records each experiment's and run's artifact location
  as an absolute path, so a workspace moved or copied elsewhere (``mv``, ``cp -a``, an rsync
  off a cluster) would still write its artifacts into the folder it was written in. Before a
  command writes to a workspace's own ``mlflow.db``, locations under the folder it was
  written in are rewritten to the same place under the workspace (docs/architecture.md,
  "Paths"). Readers never rewrite anything: they resolve the recorded paths instead
  (``sweep.records.local_artifact_dir``).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Final
from urllib.parse import urlparse
from urllib.request import url2pathname

from bao import records
from bao.configuration import ConfigError

log = logging.getLogger(__name__)

ARTIFACT_COLUMNS: Final = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)
"""Where MLflow's SQL store keeps absolute artifact paths (tables missing in an older schema
are skipped)."""


def sqlite_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable SQLite database, or ``None`` (also when it does not exist
    yet, or is only locked or unreadable for now: those are the store's own errors to report).
    Opened read-only: checking never creates or changes the file."""
    if not path.is_file():
        return None
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError:  # locked, or no permission: not damage
        return None
    except sqlite3.DatabaseError as error:  # "file is not a database", "malformed"
        return str(error)
    return None


def check_sqlite_file(path: Path, *, what: str, fix: str) -> None:
    """Raises one :class:`ConfigError` line when ``path`` exists but is not a usable SQLite
    database; ``what`` names the file's role ("the MLflow database")."""
    problem = sqlite_problem(path)
    if problem is not None:
        raise ConfigError(
            f"{what} {str(path)!r} is not a readable SQLite file ({problem})", fix=fix
        )


def local_path(location: str) -> Path | None:
    """The path of a ``file:`` URI or a plain absolute path; ``None`` for remote stores."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" and location.startswith("/"):
        return Path(location)
    return None


def written_in(artifact_locations: list[str]) -> set[Path]:
    """The workspace folders these experiment artifact locations were created in
    (``<workspace>/mlartifacts/<experiment>``, as :func:`bao.tracking.experiment_id` makes
    them)."""
    found = set()
    for location in artifact_locations:
        path = local_path(location)
        if path is not None and path.parent.name == records.ARTIFACT_ROOT:
            found.add(path.parent.parent)
    return found


def relocate_artifacts(database: Path, workspace: Path) -> int:
    """Rewrites the artifact locations in the MLflow database ``database`` (the workspace's
    own) that lie under another folder the workspace was written in, to the same place under
    ``workspace``; returns how many values changed (0 when the workspace has not moved)."""
    if not database.is_file():
        return 0
    here = workspace.resolve()
    changed = 0
    with contextlib.closing(sqlite3.connect(str(database), timeout=60)) as db, db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if "experiments" not in tables:
            return 0
        locations = [row[0] for row in db.execute("SELECT artifact_location FROM experiments")]
        for old in written_in([str(location) for location in locations if location]):
            if old == here or (old.exists() and old.samefile(here)):
                continue
            prefixes = [(old.as_uri() + "/", here.as_uri() + "/"), (f"{old}/", f"{here}/")]
            for table, column in ARTIFACT_COLUMNS:
                if table not in tables:
                    continue
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    continue
                for before, after in prefixes:
                    # substr, not LIKE: a path may hold '%' or '_'.
                    cursor = db.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE substr({column}, 1, ?) = ?",
                        (after, len(before) + 1, len(before), before),
                    )
                    changed += cursor.rowcount
            log.info("workspace %s was written in %s: artifact locations moved", here, old)
    return changed
