"""Backends: how one training run of a trial is launched, and where its metrics come from.

Every backend runs in a subprocess started by the runner (:mod:`sweep.runner`), which owns
the one failure model (exit status, timeout, kill, missing or non-finite metrics). A backend
only says which argv to start and, once it exited with status 0, collects the metrics; the
MLflow run is the source of truth for them in every backend.

- :class:`TrainBackend` (``sim`` and ``verl``): ``bao-pareto train`` on the sweep's training
  config with the trial's parameters as ``--set`` overrides, logging straight into the trial's
  MLflow run (``MLFLOW_RUN_ID``); ``train`` runs the simulator, or launches verl.
- :class:`CommandBackend`: any command, as an argv list with placeholders (never a shell
  string); it writes a metrics JSON that the runner logs into the MLflow run.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.config import PLACEHOLDER, CommandBackend, LoadedSweep, SimBackend, VerlBackend

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sweep.tracking import Tracker


class TrialError(Exception):
    """A training run that did not produce usable metrics.

    ``code`` is one of ``exit_code``, ``killed``, ``timeout``, ``interrupted``,
    ``missing_metrics``, ``bad_metrics``, ``stale``, ``tracking`` (MLflow did not answer
    for ``tracking_patience`` seconds), ``error``; ``detail`` is one line.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class RunRequest:
    """One training run: a trial's parameters with one training seed."""

    params: dict[str, Any]
    seed: int
    trial_number: int
    run_id: str
    workdir: Path
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None


class Backend(ABC):
    """Launch and collect for one kind of training run."""

    def __init__(self, loaded: LoadedSweep, train_config_path: Path, workspace: Path) -> None:
        self.loaded = loaded
        self.train_config_path = train_config_path
        self.workspace = workspace

    @abstractmethod
    def launch(self, request: RunRequest) -> Launch:
        """The argv, extra environment and working directory of the run."""

    @abstractmethod
    def collect(self, request: RunRequest, tracker: Tracker) -> dict[str, float]:
        """The run's metrics after it exited with status 0 (raises :class:`TrialError`, or
        :class:`sweep.tracking.TrackingUnavailableError` when MLflow does not answer)."""


def make_backend(loaded: LoadedSweep, train_config_path: Path, workspace: Path) -> Backend:
    if isinstance(loaded.config.backend, SimBackend | VerlBackend):
        return TrainBackend(loaded, train_config_path, workspace)
    return CommandLineBackend(loaded, train_config_path, workspace)


def preflight(loaded: LoadedSweep) -> None:
    """What must hold before any trial starts, beyond the config itself.

    verl: the pinned verl imports and the GPUs of the training config are there, so a
    sweep on a machine without them stops at once with one line instead of queueing runs
    that would wait for GPUs until their timeout; on Telepathy/Turtle, the simulated user's
    server answers too.
    """
    if isinstance(loaded.config.backend, VerlBackend):
        from bao.verl.config import VerlConfig
        from bao.verl.launch import check_gpus, check_user_simulator, require_verl

        require_verl()
        config = VerlConfig.model_validate(loaded.train_config)
        check_gpus(config)
        check_user_simulator(config)


def dry_run_commands(loaded: LoadedSweep, workspace: str | None) -> list[dict[str, Any]]:
    """The training command at each end of every range (one parameter moved at a time, the
    others at the training config's values), checked without running it.

    verl: each corner's config is built into the ``main_ppo`` command and composed and
    validated by verl (no GPU needed). sim and command: the config checks already made by
    :func:`sweep.config.load_sweep_config` are all there is; their corners are listed.
    """
    from bao.configuration import apply_overrides
    from sweep.space import corner_values

    corners: list[dict[str, Any]] = []
    for path, spec in loaded.config.search_space.items():
        corners += [{path: value} for value in corner_values(spec)]
    if not isinstance(loaded.config.backend, VerlBackend):
        return [{"params": corner, "check": "config valid"} for corner in corners]
    from bao.tracking import workspace_path
    from bao.verl.config import VerlConfig
    from bao.verl.run import dry_run

    root = workspace_path(workspace).resolve()
    checked = []
    for corner in corners:
        raw = apply_overrides(
            loaded.train_config, [f"{path}={_yaml_value(v)}" for path, v in corner.items()]
        )
        prepared = dry_run(VerlConfig.model_validate(raw), root)
        checked.append(
            {
                "params": corner,
                "check": "verl command composed and validated",
                "argv": prepared.argv,
            }
        )
    return checked


def _yaml_value(value: Any) -> str:
    """An override value that YAML reads back as the same number, string or boolean."""
    return json.dumps(value)


class TrainBackend(Backend):
    """``python -m sweep.cli train TRAIN.yaml --set path=value ...`` into the trial's run
    (the simulator, or a verl launch, by the training config's ``backend``)."""

    def launch(self, request: RunRequest) -> Launch:
        argv = [
            sys.executable,
            "-m",
            "sweep.cli",
            "train",
            str(self.train_config_path),
            "--workspace",
            str(self.workspace),
            "--set",
            f"seed={request.seed}",
        ]
        for path, value in request.params.items():
            argv += ["--set", f"{path}={_yaml_value(value)}"]
        return Launch(argv=[*argv, "--json"], env={})

    def collect(self, request: RunRequest, tracker: Tracker) -> dict[str, float]:
        run = tracker.call("the run's metrics", tracker.client.get_run, request.run_id)
        return dict(run.data.metrics)


class CommandLineBackend(Backend):
    """A user's command with placeholders substituted; metrics from the JSON it writes."""

    @property
    def settings(self) -> CommandBackend:
        backend = self.loaded.config.backend
        assert isinstance(backend, CommandBackend)
        return backend

    def metrics_path(self, request: RunRequest) -> Path:
        return request.workdir / self.settings.metrics_file

    def launch(self, request: RunRequest) -> Launch:
        values = {
            **{path: str(value) for path, value in request.params.items()},
            "seed": str(request.seed),
            "trial": str(request.trial_number),
            "run_id": request.run_id,
            "workdir": str(request.workdir),
            "metrics_file": str(self.metrics_path(request)),
            "python": sys.executable,
        }
        argv = [substitute(item, values) for item in self.settings.argv]
        cwd = Path(self.loaded.base_dir) / (self.settings.cwd or ".")
        return Launch(argv=argv, env=dict(self.settings.env), cwd=cwd)

    def collect(self, request: RunRequest, tracker: Tracker) -> dict[str, float]:
        from sweep.tracking import TrackingUnavailableError

        path = self.metrics_path(request)
        if not path.is_file():
            raise TrialError(
                "missing_metrics", f"the command exited 0 but wrote no metrics file {path}"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TrialError("bad_metrics", f"{path} is not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise TrialError("bad_metrics", f"{path} must hold a JSON object of metric: number")
        # Other entries (a run id, a checkpoint path) may sit beside the numbers; an
        # objective that is not a number is then reported as missing.
        metrics = {
            str(key): float(value)
            for key, value in data.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        # Non-finite values cannot go through MLflow reliably; they stay for the check only.
        tracker.log_metrics(request.run_id, {k: v for k, v in metrics.items() if math.isfinite(v)})
        try:  # what the command logged into its run itself (MLFLOW_RUN_ID)
            run = tracker.call("the run's metrics", tracker.client.get_run, request.run_id)
            logged = dict(run.data.metrics)
        except TrackingUnavailableError as error:
            logged = {}  # the file's metrics may be all the trial needs
            log.warning("trial %d: %s; using %s only", request.trial_number, error, path)
        return {**logged, **metrics}


def substitute(template: str, values: dict[str, str]) -> str:
    """Replaces ``{name}`` placeholders; ``{{`` and ``}}`` stand for literal braces."""
    parts = template.split("{{")
    out = []
    for part in parts:
        pieces = part.split("}}")
        out.append("}".join(PLACEHOLDER.sub(lambda m: values[m.group(1)], p) for p in pieces))
    return "{".join(out)
