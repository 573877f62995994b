"""Reading and writing a sweep's records: the one place that knows how they fit together.

The names are :mod:`bao.records`'; this module owns their use across the sweep's stores:

- the writer's half: the tags of the sweep's, a trial's and a seed's MLflow runs
  (:func:`sweep_run_tags`, :func:`trial_run_tags`, :func:`seed_run_tags`), used by the runner
  and by anything else that writes a sweep (benchmarks/workspace.py);
- the reader's half: :func:`open_sweep` finds a sweep of a workspace by its manifest and opens
  its study without creating anything, and :func:`local_artifact_dir` finds a run's artifacts
  on disk. Both resolve what the records say against the workspace they are read from, so a
  moved workspace (a copy, another mount) still reads: a default SQLite storage and a relative
  journal are found in the workspace itself, and a local artifact path recorded under the
  folder the sweep was written in is read from the same place under the workspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from bao import records

if TYPE_CHECKING:
    from sweep.config import LoadedSweep
    from sweep.storage import SweepStudy


# ---------------------------------------------------------------------------------- writer


def sweep_run_tags(name: str, storage_url: str, fingerprint: str) -> dict[str, str]:
    """The tags of a sweep's own MLflow run (the parent of its trial runs)."""
    return {
        records.TAG_ROLE: records.ROLE_SWEEP,
        records.TAG_SWEEP: name,
        records.TAG_STORAGE: storage_url,
        records.TAG_FINGERPRINT: fingerprint,
    }


def trial_run_tags(
    name: str, parent_run_id: str, number: int, attrs: dict[str, Any], backend: str
) -> dict[str, str]:
    """The tags of a trial's MLflow run, from its Optuna attributes (``attrs``)."""
    tags = {
        records.TAG_PARENT: parent_run_id,
        records.TAG_ROLE: records.ROLE_TRIAL,
        records.TAG_SWEEP: name,
        records.TAG_TRIAL_NUMBER: str(number),
        records.TAG_ATTEMPT: str(attrs.get(records.ATTR_ATTEMPT, 1)),
        records.TAG_BACKEND: backend,
    }
    if records.ATTR_RETRY_OF in attrs:
        tags[records.TAG_RETRY_OF] = str(attrs[records.ATTR_RETRY_OF])
    if records.ATTR_GENERATION in attrs:
        tags[records.TAG_GENERATION] = str(attrs[records.ATTR_GENERATION])
    return tags


def seed_run_tags(name: str, trial_run_id: str, number: int, seed: int) -> dict[str, str]:
    """The tags of one training seed's run, nested under its trial's run."""
    return {
        records.TAG_PARENT: trial_run_id,
        records.TAG_ROLE: records.ROLE_SEED,
        records.TAG_SWEEP: name,
        records.TAG_TRIAL_NUMBER: str(number),
        records.TAG_SEED: str(seed),
    }


def role_filter(role: str) -> str:
    """An MLflow search filter for the runs of one ``role``."""
    return f"tags.`{records.TAG_ROLE}` = '{role}'"


def children_filter(run_id: str) -> str:
    """An MLflow search filter for the runs nested under ``run_id``."""
    return f"tags.`{records.TAG_PARENT}` = '{run_id}'"


# ---------------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class OpenedSweep:
    """A sweep as found in a workspace: its config, its study, and where it was written."""

    loaded: LoadedSweep
    study: SweepStudy
    workspace: Path
    written_at: Path | None
    """The workspace folder the records were written in, where the manifest tells it (the
    default SQLite storage lies in it); ``None`` otherwise."""


def open_sweep(workspace: Path, name: str) -> OpenedSweep:
    """The sweep called ``name`` in ``workspace``, for reading: never creates a study."""
    from sweep.drivers import make_driver
    from sweep.storage import open_study, read_manifest

    loaded, recorded = read_manifest(workspace, name)
    url = storage_in(loaded, workspace, recorded)
    driver = make_driver(loaded.config)
    study = open_study(loaded, workspace, driver.sampler(), create=False, url=url)
    return OpenedSweep(loaded, study, workspace, written_in(loaded, recorded))


def storage_in(loaded: LoadedSweep, workspace: Path, recorded: str) -> str:
    """The storage URL of a sweep read from ``workspace``: the recorded one, except where the
    config puts the storage inside the workspace (the default SQLite file, a relative
    journal), which is then found in the workspace it is read from."""
    from sweep.storage import storage_url

    configured = loaded.config.storage
    if configured is None:
        return storage_url(loaded, workspace)
    if configured.startswith("journal:"):
        path = Path(configured.removeprefix("journal:").removeprefix("//"))
        if not path.is_absolute():
            return storage_url(loaded, workspace)
    return recorded


def written_in(loaded: LoadedSweep, recorded: str) -> Path | None:
    """The workspace a sweep was written in, told by its default SQLite storage's path."""
    prefix = "sqlite:///"
    if loaded.config.storage is not None or not recorded.startswith(prefix):
        return None
    path = Path(recorded.removeprefix(prefix))
    expected = Path(records.SWEEPS) / loaded.config.name / records.OPTUNA_DB
    if path.parts[-3:] != expected.parts:
        return None
    return path.parents[2]


def local_artifact_dir(
    artifact_uri: object, workspace: Path | None, written_at: Path | None
) -> Path | None:
    """The folder of a run's artifacts when they are on this machine's disk, ``None`` for
    remote stores. A path under the folder the sweep was written in is read under
    ``workspace`` instead when the workspace has moved."""
    if not isinstance(artifact_uri, str) or not artifact_uri:
        return None
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        path = Path(url2pathname(parsed.path))
    elif parsed.scheme == "":
        path = Path(artifact_uri)
    else:
        return None
    if workspace is None or written_at is None or written_at == workspace:
        return path
    try:
        return workspace / path.relative_to(written_at)
    except ValueError:  # outside the workspace it was written in: as recorded
        return path
