"""Workspace and MLflow plumbing shared by every backend.

A workspace (``--workspace``, else ``$BAO_PARETO_HOME``, else ``./bao-runs``) holds the MLflow
database (``mlflow.db``, SQLite) and artifacts (``mlartifacts/``), so one dashboard sees every
run. ``MLFLOW_TRACKING_URI`` points elsewhere (a tracking server, for distributed sweeps), and
``MLFLOW_RUN_ID`` makes a run log into an existing run (a sweep's trial) instead of a new one.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bao import records
from bao.configuration import ConfigError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEFAULT_WORKSPACE = "bao-runs"


def workspace_path(workspace: str | Path | None) -> Path:
    """The workspace a command means (``--workspace``, else ``$BAO_PARETO_HOME``, else
    ``./bao-runs``), without creating it: what a dry run names."""
    return Path(workspace or os.environ.get("BAO_PARETO_HOME") or DEFAULT_WORKSPACE)


def resolve_workspace(workspace: str | Path | None) -> Path:
    """The workspace folder, created and checked for writing before any work starts."""
    chosen = workspace_path(workspace)
    try:
        chosen.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=chosen, prefix=".write-check-"):
            pass
    except OSError as error:
        raise ConfigError(
            f"workspace {str(chosen)!r} is not writable ({error.strerror or error})",
            fix="pass --workspace DIR with a writable folder, or set BAO_PARETO_HOME",
        ) from None
    return chosen.resolve()


def tracking_uri(workspace: Path) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else the workspace's SQLite database."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workspace / records.MLFLOW_DB}"


def mlflow_client(
    workspace: Path, uri: str | None = None, *, writing: bool = False
) -> MlflowClient:
    """A client on the workspace's tracking store (quiet: no MLflow banners on stdout).

    The first use of a SQLite store creates and migrates its tables; processes that start
    together (a sweep's workers) would race on that, so it happens under a workspace lock.
    A damaged SQLite file is one line before anything is opened. ``writing``: the caller
    writes runs or artifacts, so a workspace that was moved or copied has its artifact
    locations brought inside it first (:func:`bao.stores.relocate_artifacts`); readers
    resolve them instead and never rewrite the database.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Usage telemetry would try the network on every run; trials must not depend on it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    from bao.stores import relocate_artifacts

    uri = uri or tracking_uri(workspace)
    check_tracking_store(workspace, uri)
    if not uri.startswith("sqlite:"):
        return MlflowClient(tracking_uri=uri)
    database = Path(uri.removeprefix("sqlite:///"))
    with workspace_lock(workspace):  # creating the client creates the tables
        own = database.resolve() == (workspace / records.MLFLOW_DB).resolve()
        if writing and own and relocate_artifacts(database, workspace):
            _forget_artifact_repositories()
        return MlflowClient(tracking_uri=uri)


def check_tracking_store(workspace: Path, uri: str | None = None) -> None:
    """One line when the tracking store is a SQLite file that is damaged; reads only."""
    from bao.stores import check_sqlite_file

    uri = uri or tracking_uri(workspace)
    if uri.startswith("sqlite:"):
        check_sqlite_file(
            Path(uri.removeprefix("sqlite:///")),
            what="the MLflow database",
            fix="restore it from a backup or a copy of the workspace, or move it aside to "
            "start a new one (the sweeps' trials are kept apart, in sweeps/NAME/optuna.db)",
        )


def _forget_artifact_repositories() -> None:
    """Drops MLflow's per-process cache of each run's artifact store (kept by run id in
    ``mlflow.tracking._tracking_service.utils``): a process that wrote a run's artifacts
    before the workspace's locations were rewritten (a test session, the dashboard) would
    otherwise go on writing them where the workspace used to be."""
    from mlflow.tracking._tracking_service import utils

    cache = getattr(utils, "_artifact_repos_cache", None)
    if cache is not None:
        cache.clear()


@contextmanager
def fluent_tracking(uri: str) -> Iterator[None]:
    """Points MLflow's fluent API (``mlflow.start_run``...) at ``uri`` for a block.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` to the environment;
    both are restored afterwards, so a long-lived process (a sweep, a test session) does not
    send later runs to this store.
    """
    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def code_version() -> str:
    """The package version, with the git commit when running from a checkout.

    ``0.1.0+g1a2b3c4`` (``.dirty`` when the tree has uncommitted changes); an installed
    package without git gives just the version. Runs record it so that a deployed variant
    names the code that trained it.
    """
    import subprocess

    from bao import __version__

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return __version__

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


def workspace_lock(workspace: Path, name: str = "setup") -> Any:
    """An inter-process lock file in the workspace, for one-time set-up steps."""
    from filelock import FileLock

    return FileLock(str(workspace / f".{name}.lock"), timeout=300)


def experiment_id(client: MlflowClient, name: str, workspace: Path) -> str:
    """The id of experiment ``name``, created with its artifacts inside the workspace."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    from bao.paths import sanitized_component

    # The name is the user's (`--set name=...`, `import --experiment`): never a path.
    location = (workspace / records.ARTIFACT_ROOT / sanitized_component(name)).as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:  # another process created it meanwhile
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(key, str(value)[:6000]) for key, value in params.items()]
    for start in range(0, len(items), 100):  # MLflow's per-request limit
        client.log_batch(run_id, params=items[start : start + 100])


@contextmanager
def training_run(
    client: MlflowClient, workspace: Path, *, name: str, seed: int, backend: str
) -> Iterator[str]:
    """The MLflow run one ``train`` logs into, as a block that yields its id.

    Under a sweep that is the trial's run (``$MLFLOW_RUN_ID``), which the sweep's runner
    closes; otherwise a new run in experiment ``name``, closed here as FINISHED, or FAILED
    when the block raises.
    """
    attached = os.environ.get("MLFLOW_RUN_ID")
    if attached:
        yield attached
        return
    run_id = client.create_run(
        experiment_id(client, name, workspace),
        run_name=f"{name}-seed{seed}",
        tags={records.TAG_BACKEND: backend, records.TAG_SEED: str(seed)},
    ).info.run_id
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")


def log_run_inputs(
    client: MlflowClient, run_id: str, resolved: Mapping[str, Any], eval_tasks: Iterable[Any]
) -> None:
    """The resolved config as params, and what a deployment manifest needs to say which code
    and which evaluation tasks made the run's numbers."""
    from bao.configuration import flatten
    from bao.tasks import task_set_hash

    log_params(client, run_id, flatten(resolved))
    client.set_tag(run_id, records.TAG_EVAL_SET_HASH, task_set_hash(eval_tasks))
    client.set_tag(run_id, records.TAG_CODE_VERSION, code_version())


def log_run_record(
    client: MlflowClient, run_id: str, resolved: Mapping[str, Any], trajectories: Iterable[Any]
) -> None:
    """The evaluation's trajectories (``trajectories.jsonl``: every metric can be recomputed)
    and the resolved config (``config.yaml``) as the run's artifacts."""
    import yaml

    from bao.trajectory import write_trajectories

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        paths = folder / records.ARTIFACT_TRAJECTORIES, folder / records.ARTIFACT_RUN_CONFIG
        write_trajectories(trajectories, paths[0])
        paths[1].write_text(yaml.safe_dump(dict(resolved), sort_keys=False))
        for path in paths:
            client.log_artifact(run_id, str(path))


def append_progress(path: Path, step: int, metrics: Mapping[str, float]) -> None:
    """Appends one intermediate evaluation to a run's progress file, as one JSON line
    ``{"step": N, "metrics": {name: number}}`` written in one call (the format of
    :data:`bao.records.PROGRESS_FILE`, read by ``sweep.pruning.read_progress``; non-finite
    values are left out, as JSON has no spelling for them)."""
    import json
    import math

    clean = {str(k): float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    line = json.dumps({"step": int(step), "metrics": clean}) + "\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)


def progress_sink(sink: MetricBuffer) -> Callable[[Mapping[str, float], int], None]:
    """``sink`` that also appends each evaluation (``eval/`` metrics) to the progress file
    ``$BAO_PROGRESS_FILE`` names, when a sweep named one. The MLflow buffer is flushed first,
    so a run the sweep stops after reading the line has its evaluations in MLflow too."""
    target = os.environ.get(records.PROGRESS_ENV)
    if not target:
        return sink
    path = Path(target)

    def write(metrics: Mapping[str, float], step: int) -> None:
        sink(metrics, step)
        evaluated = {k: v for k, v in metrics.items() if k.startswith("eval/")}
        if evaluated:
            sink.flush()
            append_progress(path, step, evaluated)

    return write


class MetricBuffer:
    """Collects ``(metrics, step)`` from a trainer and writes them to MLflow in batches."""

    def __init__(self, client: MlflowClient, run_id: str, flush_every: int = 500) -> None:
        self.client = client
        self.run_id = run_id
        self.flush_every = flush_every
        self._pending: list[Any] = []

    def __call__(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=chunk)
