"""One verl training run from a :class:`~bao.verl.config.VerlConfig`, end to end.

``bao-pareto train configs/verl/function_gym.yaml`` comes here (``bao.cli`` dispatches on the
config's ``backend``). :func:`dry_run` builds and validates the command without a GPU;
:func:`train` runs it and logs the evaluation to the run's MLflow run, the same metric names
(``eval/pass_at_u_k``, ``eval/score``, ...) and artifacts (``trajectories.jsonl``,
``config.yaml``) as the simulator, so sweeps, analysis and the dashboard read both alike.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bao.metrics import summarize
from bao.paths import safe_component
from bao.records import PROGRESS_ENV, TAG_CHECKPOINT_URI
from bao.verl.config import USER_GYMS, VerlConfig
from bao.verl.launch import (
    DataPlan,
    RunFolder,
    agent_loop_yaml,
    check_gpus,
    check_user_simulator,
    command,
    hydra_overrides,
    plan_data,
    require_verl,
    run_verl,
    validate_overrides,
    worker_environment,
)

log = logging.getLogger(__name__)

RUN_ID_PLACEHOLDER = "dry-run"


@dataclass(frozen=True)
class PreparedRun:
    """A run's command, environment and tasks, validated by Hydra and verl."""

    argv: list[str]
    env: dict[str, str]
    folder: RunFolder
    data: DataPlan
    config: VerlConfig
    """The config that runs: the one given, or its smoke run (:func:`effective_config`)."""


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    metrics: dict[str, float]
    """Evaluation metrics without the ``eval/`` prefix (``bao.metrics.summarize``)."""
    step: int
    """The training step the evaluated validation pass ran after."""
    seconds: float
    folder: Path


def prepare(
    config: VerlConfig,
    folder: RunFolder,
    *,
    run_id: str | None,
    tracking_uri: str | None,
    workspace: Path | None = None,
) -> PreparedRun:
    """Loads the tasks, builds the overrides and validates them (writes nothing)."""
    config = effective_config(config, folder)
    data = plan_data(config, folder, workspace)
    smoke_env: dict[str, str] | None = None
    if config.smoke.enabled:
        from bao.verl.cpu.smoke import smoke_environment

        smoke_env = smoke_environment(config)
    env = worker_environment(run_id, tracking_uri, folder, cpu=smoke_env)
    overrides = hydra_overrides(
        config,
        data,
        folder,
        experiment=config.name,
        run_name=f"{config.name}-seed{config.seed}",
        environment=env,
    )
    loop_file = str(folder.agent_loop_file) if data.needs_agent_loop_file else None
    validate_overrides(
        overrides,
        {
            "trainer.validation_data_dir": str(folder.validation_dir),
            "actor_rollout_ref.rollout.agent.agent_loop_config_path": loop_file,
        },
    )
    return PreparedRun(argv=command(overrides), env=env, folder=folder, data=data, config=config)


def effective_config(config: VerlConfig, folder: RunFolder) -> VerlConfig:
    """A smoke run's config (``smoke.enabled``: a step or two on CPU with the tiny model in
    the run folder, :mod:`bao.verl.cpu.smoke`), else ``config`` itself."""
    if not config.smoke.enabled:
        return config
    from bao.verl.cpu.smoke import smoke_config

    return smoke_config(config, folder.smoke_model)


def run_folder(config: VerlConfig, workspace: Path, run_id: str) -> RunFolder:
    """``<workdir>/<run id>``, where workdir defaults to ``<workspace>/verl``: a run never
    shares its folder (checkpoints, validation dumps) with another.

    The id comes from MLflow or, under a sweep, from ``$MLFLOW_RUN_ID``: one with a ``/``
    or ``..`` (or an absolute one, which would replace the workdir) is refused."""
    safe_component(
        run_id,
        what="MLflow run id",
        fix="run ids are MLflow's hexadecimal ids; check $MLFLOW_RUN_ID",
    )
    return RunFolder((config.workdir or workspace / "verl") / run_id)


def dry_run(config: VerlConfig, workspace: Path) -> PreparedRun:
    """The command a run of ``config`` would start, checked by Hydra compose and verl's
    ``validate_config``; needs the ``verl`` extra but no GPU, and writes nothing (the data
    files it names are written by :func:`train`, and the run id is known only then)."""
    folder = run_folder(config, workspace, RUN_ID_PLACEHOLDER)
    return prepare(config, folder, run_id=None, tracking_uri=None, workspace=workspace)


def dry_run_notes(config: VerlConfig, prepared: PreparedRun) -> list[str]:
    """What a dry run cannot check but a user should know before launching."""
    notes: list[str] = []
    config = prepared.config
    batch = config.optim.train_batch_size
    if len(prepared.data.train_tasks) < batch:
        notes.append(
            f"{len(prepared.data.train_tasks)} training tasks are fewer than "
            f"optim.train_batch_size ({batch}): verl would train no step; point "
            "tasks.train_path at a larger set (UserRL's training split)"
        )
    if config.gym in USER_GYMS:
        users = config.user_simulator
        if config.schedule.nnodes > 1 and users.cache:
            notes.append(
                "the user-simulator cache is a SQLite file in the workspace: on several nodes, "
                "set user_simulator.cache_path to a local disk of each node (SQLite's locking "
                "does not span machines)"
            )
        judge = users.judge_endpoint()
        notes.append(
            f"the simulated user ({users.simulator.model} at {users.simulator.base_url}) and "
            f"the judge ({judge.model} at {judge.base_url}) are not contacted by a dry run; "
            "train checks them first"
        )
    return notes


def train(config: VerlConfig, workspace: Path, resolved: dict[str, Any]) -> TrainResult:
    """Runs verl and logs the evaluation into the MLflow run (``$MLFLOW_RUN_ID`` when a sweep
    started this run, else a new run in the experiment named after the config).

    Raises:
        VerlUnavailableError: verl or the GPUs are missing (before anything is written).
        VerlRunError, EvaluationMissingError: the run failed or left no evaluation.
    """
    from bao.tracking import (
        MetricBuffer,
        log_run_inputs,
        log_run_record,
        mlflow_client,
        tracking_uri,
        training_run,
    )
    from bao.verl.evaluation import last_validation_dump, read_validation_dump

    require_verl()
    check_gpus(config)
    check_user_simulator(config)
    # Tasks are loaded, and the command validated, before any run is opened in MLflow.
    preview = dry_run(config, workspace)
    client = mlflow_client(workspace, writing=True)
    started = time.monotonic()
    with training_run(
        client, workspace, name=config.name, seed=config.seed, backend="verl"
    ) as run_id:
        folder = run_folder(config, workspace, run_id)
        prepared = prepare(
            config,
            folder,
            run_id=run_id,
            tracking_uri=tracking_uri(workspace),
            workspace=workspace,
        )
        folder.root.mkdir(parents=True, exist_ok=True)
        if config.smoke.enabled:
            from bao.verl.cpu.smoke import build_tiny_model

            built = build_tiny_model(config, folder.smoke_model)
            log.info("smoke run on CPU: %s", built)
            client.set_tag(run_id, "bao.smoke_model", built)
        prepared.data.write(prepared.config.env.max_turns)
        if prepared.data.needs_agent_loop_file:
            folder.agent_loop_file.write_text(agent_loop_yaml(prepared.data))
        log_run_inputs(client, run_id, resolved, preview.data.eval_tasks)
        client.set_tag(run_id, "bao.verl_folder", str(folder.root))
        (folder.root / "command.txt").write_text(" ".join(prepared.argv) + "\n")
        # verl's MLflow logger ends the attached run as FINISHED even when verl fails; the
        # status training_run sets (or the sweep's runner does) is the one that stays.
        watcher = ValidationWatcher.from_environment(
            folder.validation_dir, len(preview.data.eval_tasks), prepared.config.eval.k_max
        )
        try:
            run_verl(prepared.argv, prepared.env, folder.log_file)
        finally:
            if watcher is not None:
                watcher.close()
        step, dump = last_validation_dump(folder.validation_dir)
        trajectories, user_costs = read_validation_dump(dump)
        metrics = summarize(trajectories, k_max=prepared.config.eval.k_max)
        seconds = time.monotonic() - started
        sink = MetricBuffer(client, run_id)
        sink({f"eval/{key}": value for key, value in metrics.items()}, step)
        sink({"train/seconds": seconds}, step)
        # Telepathy/Turtle: what the evaluation's simulated-user calls cost (docs/gyms.md).
        sink({f"eval/{key}": value for key, value in user_costs.items()}, step)
        sink.flush()
        log_run_record(client, run_id, resolved, trajectories)
        for path in (folder.log_file, folder.metrics_file):
            if path.is_file():
                client.log_artifact(run_id, str(path), artifact_path="verl")
        checkpoint = last_checkpoint(folder.checkpoints)
        if checkpoint is not None:  # what `select --register` registers (analysis.registry)
            client.set_tag(run_id, TAG_CHECKPOINT_URI, str(checkpoint))
    log.info("verl run %s evaluated at step %d on %d episodes", run_id, step, len(trajectories))
    return TrainResult(
        run_id=run_id, metrics=metrics, step=step, seconds=seconds, folder=folder.root
    )


class ValidationWatcher:
    """Turns each validation pass verl dumps while it trains into a line of the sweep's
    progress file (``$BAO_PROGRESS_FILE``, docs/sweeps.md "Early stopping"): the same
    ``eval/`` metrics the run's final evaluation logs, at the dump's step, so a sweep's
    pruner reads verl runs as it reads the simulator's."""

    POLL_S = 5.0

    def __init__(self, folder: Path, target: Path, expected: int, k_max: int) -> None:
        self.folder = folder
        self.target = target
        self.expected = expected
        self.k_max = k_max
        self.done: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="verl-validation", daemon=True)
        self._thread.start()

    @classmethod
    def from_environment(cls, folder: Path, expected: int, k_max: int) -> ValidationWatcher | None:
        """A watcher when a sweep named a progress file (none for a run started by hand)."""
        target = os.environ.get(PROGRESS_ENV)
        return None if not target else cls(folder, Path(target), expected, k_max)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL_S):
            try:
                self.poll()
            except Exception as error:  # evidence for the pruner; the run goes on without it
                log.warning("validation progress not written: %s", error)

    def poll(self) -> None:
        """Writes every complete dump not written yet. A dump with fewer episodes than the
        validation set, or one that does not read, is still being written: next time."""
        from bao.dumps import step_files, step_of
        from bao.errors import BaoError
        from bao.tracking import append_progress
        from bao.verl.evaluation import read_validation_dump

        for path in step_files(self.folder):
            step = step_of(path)
            if step is None or step in self.done:
                continue
            try:
                trajectories, _ = read_validation_dump(path)
            except BaoError:
                continue
            if len(trajectories) < self.expected:
                continue
            metrics = summarize(trajectories, k_max=self.k_max)
            append_progress(self.target, step, {f"eval/{k}": v for k, v in metrics.items()})
            self.done.add(step)

    def close(self) -> None:
        """Stops watching, after a last look (the final pass is dumped as verl exits)."""
        self._stop.set()
        self._thread.join()
        try:
            self.poll()
        except OSError as error:  # the progress file is evidence for the pruner, no more
            log.warning("validation progress not written: %s", error)


def last_checkpoint(folder: Path) -> Path | None:
    """verl's newest ``global_step_<n>`` folder, if the run saved any."""
    steps = [
        (int(path.name.removeprefix("global_step_")), path)
        for path in folder.glob("global_step_*")
        if path.is_dir() and path.name.removeprefix("global_step_").isdigit()
    ]
    return max(steps)[1].resolve() if steps else None
