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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bao.metrics import summarize
from bao.verl.config import VerlConfig
from bao.verl.launch import (
    DataPlan,
    RunFolder,
    agent_loop_yaml,
    check_gpus,
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
    config: VerlConfig, folder: RunFolder, *, run_id: str | None, tracking_uri: str | None
) -> PreparedRun:
    """Loads the tasks, builds the overrides and validates them (writes nothing)."""
    data = plan_data(config, folder)
    env = worker_environment(run_id, tracking_uri, folder)
    overrides = hydra_overrides(
        config,
        data,
        folder,
        experiment=config.name,
        run_name=f"{config.name}-seed{config.seed}",
        environment=env,
    )
    loop_file = str(folder.agent_loop_file) if data.functions_path is not None else None
    validate_overrides(
        overrides,
        {
            "trainer.validation_data_dir": str(folder.validation_dir),
            "actor_rollout_ref.rollout.agent.agent_loop_config_path": loop_file,
        },
    )
    return PreparedRun(argv=command(overrides), env=env, folder=folder, data=data)


def run_folder(config: VerlConfig, workspace: Path, run_id: str) -> RunFolder:
    """``<workdir>/<run id>``, where workdir defaults to ``<workspace>/verl``: a run never
    shares its folder (checkpoints, validation dumps) with another."""
    return RunFolder((config.workdir or workspace / "verl") / run_id)


def dry_run(config: VerlConfig, workspace: Path) -> PreparedRun:
    """The command a run of ``config`` would start, checked by Hydra compose and verl's
    ``validate_config``; needs the ``verl`` extra but no GPU, and writes nothing (the data
    files it names are written by :func:`train`, and the run id is known only then)."""
    folder = run_folder(config, workspace, RUN_ID_PLACEHOLDER)
    return prepare(config, folder, run_id=None, tracking_uri=None)


def train(config: VerlConfig, workspace: Path, resolved: dict[str, Any]) -> TrainResult:
    """Runs verl and logs the evaluation into the MLflow run (``$MLFLOW_RUN_ID`` when a sweep
    started this run, else a new run in the experiment named after the config).

    Raises:
        VerlUnavailableError: verl or the GPUs are missing (before anything is written).
        VerlRunError, EvaluationMissingError: the run failed or left no evaluation.
    """
    from bao.configuration import flatten
    from bao.tasks import task_set_hash
    from bao.tracking import code_version, experiment_id, log_params, mlflow_client, tracking_uri
    from bao.trajectory import write_trajectories
    from bao.verl.evaluation import last_validation_dump, read_validation_trajectories

    require_verl()
    check_gpus(config)
    # Tasks are loaded, and the command validated, before any run is opened in MLflow.
    preview = dry_run(config, workspace)
    client = mlflow_client(workspace)
    attached = os.environ.get("MLFLOW_RUN_ID")
    if attached:
        run_id = attached
    else:
        run_id = client.create_run(
            experiment_id(client, config.name, workspace),
            run_name=f"{config.name}-seed{config.seed}",
            tags={"bao.backend": "verl", "bao.seed": str(config.seed)},
        ).info.run_id
    uri = tracking_uri(workspace)
    folder = run_folder(config, workspace, run_id)
    started = time.monotonic()
    try:
        prepared = prepare(config, folder, run_id=run_id, tracking_uri=uri)
        folder.root.mkdir(parents=True, exist_ok=True)
        prepared.data.write(config.env.max_turns)
        if prepared.data.functions_path is not None:
            folder.agent_loop_file.write_text(agent_loop_yaml(prepared.data.functions_path))
        log_params(client, run_id, flatten(resolved))
        client.set_tag(run_id, "bao.eval_set_hash", task_set_hash(preview.data.eval_tasks))
        client.set_tag(run_id, "bao.code_version", code_version())
        client.set_tag(run_id, "bao.verl_folder", str(folder.root))
        (folder.root / "command.txt").write_text(" ".join(prepared.argv) + "\n")
        # verl's MLflow logger ends the attached run as FINISHED even when verl fails; the
        # status set below (or by the sweep's runner) is the one that stays.
        run_verl(prepared.argv, prepared.env, folder.log_file)
        step, dump = last_validation_dump(folder.validation_dir)
        trajectories = read_validation_trajectories(dump)
        metrics = summarize(trajectories, k_max=config.eval.k_max)
        seconds = time.monotonic() - started
        client.log_batch(
            run_id,
            metrics=[_metric(f"eval/{key}", value, step) for key, value in metrics.items()]
            + [_metric("train/seconds", seconds, step)],
        )
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch)
            write_trajectories(trajectories, target / "trajectories.jsonl")
            (target / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
            for path in (target / "trajectories.jsonl", target / "config.yaml"):
                client.log_artifact(run_id, str(path))
        for path in (folder.log_file, folder.metrics_file):
            if path.is_file():
                client.log_artifact(run_id, str(path), artifact_path="verl")
        checkpoint = last_checkpoint(folder.checkpoints)
        if checkpoint is not None:  # what `select --register` registers (analysis.registry)
            client.set_tag(run_id, "bao.checkpoint_uri", str(checkpoint))
    except BaseException:
        if not attached:
            client.set_terminated(run_id, status="FAILED")
        raise
    if not attached:
        client.set_terminated(run_id, status="FINISHED")
    log.info("verl run %s evaluated at step %d on %d episodes", run_id, step, len(trajectories))
    return TrainResult(
        run_id=run_id, metrics=metrics, step=step, seconds=seconds, folder=folder.root
    )


def last_checkpoint(folder: Path) -> Path | None:
    """verl's newest ``global_step_<n>`` folder, if the run saved any."""
    steps = [
        (int(path.name.removeprefix("global_step_")), path)
        for path in folder.glob("global_step_*")
        if path.is_dir() and path.name.removeprefix("global_step_").isdigit()
    ]
    return max(steps)[1].resolve() if steps else None


def _metric(key: str, value: float, step: int) -> Any:
    from mlflow.entities import Metric

    return Metric(key=key, value=float(value), timestamp=int(time.time() * 1000), step=step)
