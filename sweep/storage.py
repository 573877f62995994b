"""Where a sweep lives: its Optuna storage and its folder in the workspace.

``<workspace>/sweeps/<name>/`` holds ``sweep.yaml`` (the resolved config, the storage URL
and the training config every trial starts from) and, by default, the SQLite Optuna storage
``optuna.db``. Other storages: ``postgresql://``/``mysql://`` URLs (many machines), or
``journal:PATH`` (an append-only file, on a shared file system for many machines; relative
paths are inside the workspace). ``status``, ``front`` and the dashboard find a sweep by
its name through ``sweep.yaml``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bao.configuration import ConfigError
from bao.errors import first_line
from bao.records import MANIFEST_FILE, OPTUNA_DB, STUDY_FINGERPRINT, SWEEPS, sweep_folder
from bao.stores import check_sqlite_file

if TYPE_CHECKING:
    import optuna
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from sweep.config import LoadedSweep

log = logging.getLogger(__name__)

SQLITE_TIMEOUT_S = 60
"""SQLite waits this long for a lock: several processes write one file during a sweep."""


def sweep_dir(workspace: Path, name: str) -> Path:
    """``<workspace>/sweeps/<name>``; ``name`` must be a sweep name, not a path.

    Names also arrive from the command line (``status NAME``) and the dashboard's URL, where
    ``../x`` or ``/abs`` would otherwise read (and the analysis cache write) outside the
    workspace; configs are held to the same pattern when they are loaded.
    """
    from bao.paths import safe_component
    from sweep.config import SWEEP_NAME_PATTERN

    safe_component(
        name,
        what="sweep name",
        pattern=SWEEP_NAME_PATTERN,
        fix="a sweep is named by its config's `name` (letters, digits, '.', '_', '-'; "
        "no '/' or '..'); bao-pareto status lists the sweeps of a workspace",
    )
    return sweep_folder(workspace, name)


def storage_url(loaded: LoadedSweep, workspace: Path) -> str:
    """The configured storage, or the workspace's SQLite file for this sweep."""
    url = loaded.config.storage
    if url is None:
        return f"sqlite:///{sweep_dir(workspace, loaded.config.name) / OPTUNA_DB}"
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        return f"journal:{path if path.is_absolute() else (workspace / path).resolve()}"
    return url


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage for ``url``; one line naming the URL when it cannot be opened."""
    import optuna

    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url.removeprefix("journal:"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        url = _with_installed_driver(url)
        engine_kwargs: dict[str, Any] = {}
        if url.startswith("sqlite:"):
            database = Path(url.removeprefix("sqlite:///"))
            check_sqlite_file(
                database,
                what="the Optuna storage",
                fix="restore it from a backup or a copy of the workspace (it holds the sweep's "
                "trials); to start the sweep over, give it a new name (--set name=...)",
            )
            database.parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        else:
            engine_kwargs["pool_pre_ping"] = True  # servers drop idle connections
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except (ImportError, ValueError, OSError) as error:
        raise ConfigError(
            f"cannot open the Optuna storage {url!r} ({error})",
            fix="check the storage URL and that its database driver is installed "
            "(PostgreSQL: pip install 'bao-pareto[postgres]')",
        ) from None
    except ConfigError:
        raise
    except Exception as error:  # SQLAlchemy's OperationalError and friends
        local = url.startswith(("sqlite:", "journal:"))
        raise ConfigError(
            f"cannot open the Optuna storage {url!r} ({first_line(error)})",
            fix="check that the file and its folder are readable and writable, or restore the "
            "file from a backup"
            if local
            else "check that the database server is up and the URL's credentials",
        ) from None


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3; the project's ``postgres``
    extra installs psycopg2, so without psycopg 3 the URL is given psycopg2 explicitly.
    """
    import importlib.util

    if not url.startswith("postgresql://"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


@dataclass
class SweepStudy:
    """The sweep's Optuna study with the storage handle the sweep needs alongside it."""

    study: optuna.Study
    storage: BaseStorage
    url: str

    @cached_property
    def study_id(self) -> int:
        return self.storage.get_study_id_from_name(self.study.study_name)

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def counts(self) -> Counter[str]:
        """Trials by state name (COMPLETE, RUNNING, WAITING, FAIL, PRUNED)."""
        return Counter(trial.state.name for trial in self.trials())

    def failure_reasons(self) -> dict[int, str]:
        """Failed trial number -> its ``failure_reason``."""
        from bao.records import ATTR_REASON

        return {
            trial.number: str(trial.user_attrs.get(ATTR_REASON, ""))
            for trial in self.trials()
            if trial.state.name == "FAIL"
        }


def open_study(
    loaded: LoadedSweep,
    workspace: Path,
    sampler: BaseSampler,
    *,
    create: bool = True,
    url: str | None = None,
) -> SweepStudy:
    """Creates or joins the sweep's study; refuses a study made from a different config."""
    import optuna

    config = loaded.config
    url = url or storage_url(loaded, workspace)
    if not create and url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///"))
        if not database.is_file():  # SQLite would create it: reading writes nothing
            raise ConfigError(
                f"sweep {config.name!r} has a manifest but no Optuna storage: "
                f"{str(database)!r} is missing",
                fix="copy the whole workspace, sweeps/NAME/optuna.db included, or re-run the sweep",
            )
    storage = open_storage(url)
    directions = [objective.direction for objective in config.objectives]
    try:
        if create:
            study = optuna.create_study(
                study_name=config.name,
                storage=storage,
                sampler=sampler,
                directions=directions,
                load_if_exists=True,
            )
        else:
            study = optuna.load_study(study_name=config.name, storage=storage, sampler=sampler)
    except KeyError:
        raise ConfigError(
            f"no sweep named {config.name!r} in {url}", fix="start it with bao-pareto sweep"
        ) from None
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(
            f"sweep {config.name!r} already exists in {url} with other objectives",
            fix="give the new sweep another name, or restore the old objectives",
        )
    fingerprint = config.fingerprint()
    stored = study.user_attrs.get(STUDY_FINGERPRINT)
    if stored is None:
        study.set_user_attr(STUDY_FINGERPRINT, fingerprint)
    elif stored != fingerprint:
        raise ConfigError(
            f"sweep {config.name!r} already exists in {url} with "
            f"{config_differences(loaded, workspace)}",
            fix="give the changed sweep a new name, e.g. --set name=" + f"{config.name}-2 "
            "(only n_trials, jobs, timeouts, retries, the launcher and the objectives' "
            "thresholds may change on resume)",
        )
    return SweepStudy(study=study, storage=storage, url=url)


def config_differences(loaded: LoadedSweep, workspace: Path, shown: int = 3) -> str:
    """What differs between ``loaded`` and the config the sweep of that name was started
    with (its manifest): ``driver.algorithm 'tpe' there, 'nsga2' here``; the parts that
    could differ when the manifest cannot be read."""
    from bao.configuration import flatten
    from sweep.config import SweepConfig

    generic = "a different search space, objectives, driver or training config"
    try:
        _, manifest = _manifest_data(workspace, loaded.config.name)
        before = flatten(SweepConfig.model_validate(manifest["config"]).identity())
    except Exception:  # no manifest here (a shared storage), or an unreadable one
        return generic
    now = flatten(loaded.config.identity())
    changed = sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))
    if not changed:
        return generic
    listed = "; ".join(
        f"{key} {before.get(key, '(unset)')!r} there, {now.get(key, '(unset)')!r} here"
        for key in changed[:shown]
    )
    more = f" and {len(changed) - shown} more" if len(changed) > shown else ""
    return f"another config: {listed}{more}"


def _manifest_data(workspace: Path, name: str) -> tuple[Path, Any]:
    """The manifest's path and its parsed YAML (raises when it is missing or unreadable)."""
    path = sweep_dir(workspace, name) / MANIFEST_FILE
    return path, yaml.safe_load(path.read_text(encoding="utf-8"))


def write_atomically(path: Path, text: str) -> None:
    """Readers never see half a file, and concurrent writers (a sweep and its workers
    starting together) each use their own temporary file."""
    import tempfile

    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        handle.write(text)
    Path(handle.name).replace(path)


def write_manifest(loaded: LoadedSweep, workspace: Path, url: str) -> Path:
    """``sweeps/<name>/sweep.yaml``: everything ``status`` and ``front`` need to find it."""
    folder = sweep_dir(workspace, loaded.config.name)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": loaded.config.name,
        "storage": url,
        "source": loaded.source,
        "base_dir": loaded.base_dir,
        "config": loaded.config.model_dump(mode="json"),
        "train_config": loaded.train_config,
        "metric_names": loaded.metric_names,
    }
    path = folder / MANIFEST_FILE
    write_atomically(path, yaml.safe_dump(manifest, sort_keys=False))
    return path


def read_manifest(workspace: Path, name: str) -> tuple[LoadedSweep, str]:
    """The sweep called ``name`` in ``workspace``: its config and its storage URL."""
    from sweep.config import LoadedSweep, SweepConfig

    path = sweep_dir(workspace, name) / MANIFEST_FILE
    if not path.is_file():
        known = sorted(p.parent.name for p in (workspace / SWEEPS).glob(f"*/{MANIFEST_FILE}"))
        raise ConfigError(
            f"no sweep named {name!r} in workspace {str(workspace)!r}",
            fix=f"known sweeps: {', '.join(known)}" if known else "run bao-pareto sweep first",
        )
    from pydantic import ValidationError

    try:
        _, data = _manifest_data(workspace, name)
        loaded = LoadedSweep(
            config=SweepConfig.model_validate(data["config"]),
            source=data["source"],
            base_dir=data["base_dir"],
            train_config=data.get("train_config") or {},
            metric_names=data.get("metric_names") or [],
        )
        return loaded, str(data["storage"])
    except (OSError, yaml.YAMLError, ValidationError, KeyError, TypeError) as error:
        # Written by the runner, so damage means an edit or a torn copy: say which file.
        raise ConfigError(
            f"the manifest {str(path)!r} of sweep {name!r} is unreadable ({first_line(error)})",
            fix="restore it, or re-run `bao-pareto sweep CONFIG` with the sweep's config to "
            "rewrite it",
        ) from None
