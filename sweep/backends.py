"""Backends: what one training run of a trial is, from the config's checks to its metrics.

One class per ``backend.kind``, in :data:`BACKENDS`; each owns every step that differs by
backend: :meth:`Backend.check` (the config against the backend, before anything starts),
:meth:`Backend.preflight` (the machine, before any trial), :meth:`Backend.dry_run` (the
command at the corners of the space), :meth:`Backend.launch` (the argv of one run) and
:meth:`Backend.collect` (its metrics). Adding a backend is its settings model in
:data:`sweep.config.BackendConfig` and its class here (tests/sweep/test_backends.py then runs
the conformance checks over it).

Every backend runs in a subprocess started by the runner (:mod:`sweep.execution`), which owns
the one failure model (exit status, timeout, kill, missing or non-finite metrics); the MLflow
run is the source of truth for the metrics in every backend.

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
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bao.configuration import ConfigError, apply_overrides, merge, read_yaml, validate
from sweep.config import CommandBackend, LoadedSweep, SimBackend, SweepConfig, VerlBackend

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from bao.sim.config import SimConfig
    from bao.verl.config import VerlConfig
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
    """Everything that differs by ``backend.kind``: checks, then launch and collect."""

    kind: ClassVar[str]
    logs_evaluations: ClassVar[bool] = False
    """Whether a run logs its intermediate evaluations into its MLflow run itself (``train``
    does); otherwise the runner logs those it reads from the progress file."""
    runs_ray_cluster: ClassVar[bool] = False
    """Whether a run on several nodes needs a Ray cluster over them (verl): a Slurm launcher
    then starts one inside the job's allocation (sweep/launchers.py)."""

    def __init__(self, loaded: LoadedSweep, train_config_path: Path, workspace: Path) -> None:
        self.loaded = loaded
        self.train_config_path = train_config_path
        self.workspace = workspace

    @classmethod
    @abstractmethod
    def check(
        cls, config: SweepConfig, base_dir: Path, source: str
    ) -> tuple[dict[str, Any], list[str]]:
        """Checks ``config`` (from ``source``, relative paths from ``base_dir``) against this
        backend; returns the training config every trial starts from (empty when there is
        none) and the metric names its runs log (empty: not known in advance)."""

    @classmethod
    def preflight(cls, loaded: LoadedSweep) -> None:
        """What must hold on this machine before any trial starts (default: nothing)."""
        return

    @classmethod
    def nodes_and_gpus(cls, train_config: dict[str, Any]) -> tuple[int, int] | None:
        """The nodes and GPUs per node a run of ``train_config`` asks for, where the training
        config says (a launcher's allocation must match them); None: it does not say."""
        return None

    @classmethod
    def dry_run(
        cls, loaded: LoadedSweep, corners: list[dict[str, Any]], workspace: str | None
    ) -> list[dict[str, Any]]:
        """Each corner of the space checked without running it; by default the checks of
        :meth:`check`, already made when the config was loaded, are all there is."""
        return [{"params": corner, "check": "config valid"} for corner in corners]

    @abstractmethod
    def launch(self, request: RunRequest) -> Launch:
        """The argv, extra environment and working directory of the run."""

    def progress_file(self, request: RunRequest) -> Path:
        """Where the run appends its intermediate evaluations while it trains (one JSON line
        each, :mod:`sweep.pruning`): the run's work folder, named to it in
        ``$BAO_PROGRESS_FILE``. The sim and verl ``train`` write it; a command writes it
        itself (docs/sweeps.md, "Early stopping")."""
        from bao.records import PROGRESS_FILE

        return request.workdir / PROGRESS_FILE

    def max_step(self) -> int | None:
        """The step a run ends at, where the training config says (the last rung is below
        it); None: not known."""
        return None

    @abstractmethod
    def collect(self, request: RunRequest, tracker: Tracker) -> dict[str, float]:
        """The run's metrics after it exited with status 0 (raises :class:`TrialError`, or
        :class:`sweep.tracking.TrackingUnavailableError` when MLflow does not answer)."""


def make_backend(loaded: LoadedSweep, train_config_path: Path, workspace: Path) -> Backend:
    return backend_class(loaded.config.backend.kind)(loaded, train_config_path, workspace)


def preflight(loaded: LoadedSweep) -> None:
    """What must hold before any trial starts, beyond the config itself (e.g. verl: the
    pinned verl imports and the GPUs are there, so a sweep on a machine without them stops
    at once with one line instead of queueing runs that would wait for GPUs until their
    timeout)."""
    backend_class(loaded.config.backend.kind).preflight(loaded)


def dry_run_commands(loaded: LoadedSweep, workspace: str | None) -> list[dict[str, Any]]:
    """The training command at each end of every range (one parameter moved at a time, the
    others at the training config's values), checked without running it."""
    from sweep.space import corner_values

    corners: list[dict[str, Any]] = []
    for path, spec in loaded.config.search_space.items():
        corners += [{path: value} for value in corner_values(spec)]
    return backend_class(loaded.config.backend.kind).dry_run(loaded, corners, workspace)


def _yaml_value(value: Any) -> str:
    """An override value that YAML reads back as the same number, string or boolean."""
    return json.dumps(value)


class TrainBackend(Backend):
    """``python -m sweep.cli train TRAIN.yaml --set path=value ...`` into the trial's run
    (the simulator, or a verl launch, by the training config's ``backend``)."""

    @classmethod
    @abstractmethod
    def train_model(cls) -> type[SimConfig] | type[VerlConfig]:
        """The pydantic model of this backend's training config."""

    @classmethod
    def check(
        cls, config: SweepConfig, base_dir: Path, source: str
    ) -> tuple[dict[str, Any], list[str]]:
        return _check_train_config(config, base_dir, source, cls.train_model())

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
        argv += self.pruner_overrides()
        return Launch(argv=[*argv, "--json"], env={})

    def pruner_overrides(self) -> list[str]:
        """Overrides that make a run evaluate at the pruner's rungs (none by default)."""
        return []

    def collect(self, request: RunRequest, tracker: Tracker) -> dict[str, float]:
        run = tracker.call("the run's metrics", tracker.client.get_run, request.run_id)
        return dict(run.data.metrics)


class SimTrainBackend(TrainBackend):
    """The CPU simulator."""

    kind = "sim"
    logs_evaluations = True  # each evaluation is an MLflow step metric of the run already

    @classmethod
    def train_model(cls) -> type[SimConfig]:
        from bao.sim.config import SimConfig

        return SimConfig

    def max_step(self) -> int | None:
        from bao.sim.config import SimConfig

        return SimConfig.model_validate(self.loaded.train_config).trainer.iterations

    def pruner_overrides(self) -> list[str]:
        """With a pruner the simulator evaluates every ``pruner.min_step`` iterations (every
        rung is a multiple of it); evaluation draws its own seeded randomness, so the
        training itself is the same as without (bao/sim/trainer.py)."""
        pruner = self.loaded.config.pruner
        if not pruner.enabled:
            return []
        return ["--set", f"eval.every={pruner.min_step}"]


class VerlTrainBackend(TrainBackend):
    """BAO GRPO on GPUs with verl (docs/verl.md)."""

    kind = "verl"
    runs_ray_cluster = True

    @classmethod
    def train_model(cls) -> type[VerlConfig]:
        from bao.verl.config import VerlConfig

        return VerlConfig

    @classmethod
    def nodes_and_gpus(cls, train_config: dict[str, Any]) -> tuple[int, int] | None:
        from bao.verl.config import VerlConfig

        schedule = VerlConfig.model_validate(train_config).schedule
        return schedule.nnodes, schedule.n_gpus_per_node

    def max_step(self) -> int | None:
        """verl's last step (``schedule.total_training_steps``): its final validation is the
        run's result, never a rung (None when verl derives it from the epochs)."""
        from bao.verl.config import VerlConfig

        return VerlConfig.model_validate(self.loaded.train_config).schedule.total_training_steps

    @classmethod
    def preflight(cls, loaded: LoadedSweep) -> None:
        """The pinned verl imports and the GPUs of the training config are there; on
        Telepathy/Turtle, the simulated user's server answers too."""
        from bao.verl.config import VerlConfig
        from bao.verl.launch import check_gpus, check_user_simulator, require_verl

        require_verl()
        config = VerlConfig.model_validate(loaded.train_config)
        check_gpus(config)
        check_user_simulator(config)

    @classmethod
    def dry_run(
        cls, loaded: LoadedSweep, corners: list[dict[str, Any]], workspace: str | None
    ) -> list[dict[str, Any]]:
        """Each corner's config built into the ``main_ppo`` command, composed and validated
        by verl (no GPU needed)."""
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


class CommandLineBackend(Backend):
    """A user's command with placeholders substituted; metrics from the JSON it writes."""

    kind = "command"

    @classmethod
    def check(
        cls, config: SweepConfig, base_dir: Path, source: str
    ) -> tuple[dict[str, Any], list[str]]:
        assert isinstance(config.backend, CommandBackend)
        _check_command(config, source)
        return {}, list(config.backend.metrics)

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
            "progress_file": str(self.progress_file(request)),
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
        # Logged at the run's last evaluated step or after it: MLflow reads a metric's value
        # at its highest step, and the intermediate evaluations the runner logged from the
        # progress file share the objectives' names.
        from sweep.pruning import read_progress

        evaluated = [e.step for e in read_progress(self.progress_file(request))[0]]
        tracker.log_metrics(
            request.run_id,
            {k: v for k, v in metrics.items() if math.isfinite(v)},
            step=max(evaluated, default=0),
        )
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


BACKENDS: dict[str, type[Backend]] = {
    backend.kind: backend for backend in (SimTrainBackend, VerlTrainBackend, CommandLineBackend)
}
"""``backend.kind`` -> its class: the one place a backend is chosen."""


def backend_class(kind: str) -> type[Backend]:
    try:
        return BACKENDS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown backend kind {kind!r}", fix=f"use one of {', '.join(BACKENDS)}"
        ) from None


# ---------------------------------------------------------------------------------- checks


def _check_train_config(
    config: SweepConfig, base_dir: Path, source: str, model: type[SimConfig] | type[VerlConfig]
) -> tuple[dict[str, Any], list[str]]:
    """Validates the backend's training config with ``train`` applied, and with each end of
    every range of the search space; returns it with the metric names its runs log."""
    from bao.metrics import metric_names

    assert isinstance(config.backend, SimBackend | VerlBackend)
    train_path = base_dir / config.backend.train_config
    if not train_path.is_file():
        raise ConfigError(
            f"{source}: backend.train_config: {str(train_path)!r} does not exist",
            fix=f"give a {config.backend.kind} config path relative to the sweep config",
        )
    base = merge(read_yaml(train_path), config.train)
    base.pop("seed", None)  # every trial sets its own training seed
    checked = [validate(model, base, source=f"{source}: train")]
    # Both ends of every range (and every choice) must give a valid training config.
    from sweep.space import corner_values

    for path, spec in config.search_space.items():
        for value in corner_values(spec):
            trial = apply_overrides(base, [f"{path}={json.dumps(value)}"])
            try:
                checked.append(validate(model, trial, source=source))
            except ConfigError as error:
                raise ConfigError(
                    f"{source}: search_space.{path} = {value!r} is not a valid training value "
                    f"({error.what.split(': ', 1)[-1]})",
                    fix=f"check the path and range against {config.backend.train_config}",
                ) from None
    _check_task_files(checked, source)
    _check_rungs(config, checked, source)
    k_max = model.model_validate(base).eval.k_max
    names = [f"eval/{name}" for name in metric_names(k_max)] + ["train/seconds"]
    return base, names


def _check_rungs(
    config: SweepConfig, trials: Sequence[SimConfig | VerlConfig], source: str
) -> None:
    """A pruner that could never decide is one line now: rungs at or past a run's last step
    (its final evaluation is its result), a collapse rule from a rung the runs never reach,
    or (verl) rungs between the validations verl makes every ``schedule.test_freq`` steps."""
    from bao.sim.config import SimConfig
    from sweep.pruning import rung_steps

    pruner = config.pruner
    if not pruner.enabled:
        return
    for trial in trials:
        if isinstance(trial, SimConfig):
            last: int | None = trial.trainer.iterations
            step_name = "trainer.iterations"
        else:
            last, step_name = trial.schedule.total_training_steps, "schedule.total_training_steps"
            test_freq = trial.schedule.test_freq
            if pruner.min_step % test_freq:
                raise ConfigError(
                    f"{source}: pruner.min_step {pruner.min_step} is not a multiple of "
                    f"schedule.test_freq {test_freq}: verl validates every test_freq steps, "
                    "so the rungs would have no evaluation to decide on",
                    fix=f"set pruner.min_step to a multiple of {test_freq}",
                )
        if last is None:
            continue
        rungs = rung_steps(pruner.min_step, pruner.reduction_factor, last)
        if not rungs:
            raise ConfigError(
                f"{source}: pruner.min_step {pruner.min_step} is not below the run's last "
                f"step ({step_name} {last}): the pruner would never decide",
                fix="lower pruner.min_step, or set pruner.kind: none",
            )
        if pruner.kind == "collapse" and pruner.collapse_from_rung >= len(rungs):
            raise ConfigError(
                f"{source}: pruner.collapse_from_rung {pruner.collapse_from_rung} is past the "
                f"last rung before {step_name} {last} (rungs at steps {rungs})",
                fix=f"set pruner.collapse_from_rung below {len(rungs)}",
            )


def _check_task_files(trials: Sequence[SimConfig | VerlConfig], source: str) -> None:
    """Reads the task files the trials' training configs name, as each trial will (relative
    paths from this process's working directory, which trials inherit): a bad file or record
    is one line now, not the same failure in every trial."""
    from bao.errors import TaskDataError
    from bao.gym_tasks import load_user_gym_tasks
    from bao.sim.config import SimConfig, task_count_problem
    from bao.tasks import load_function_tasks

    counted: dict[tuple[str, str, Path, Path | None], int] = {}
    for trial in trials:
        settings = trial.tasks
        gym = getattr(trial, "gym", "function_gym")
        functions = getattr(settings, "functions_path", None) or getattr(
            settings, "records_path", None
        )
        for key in ("train_path", "eval_path"):
            path: Path | None = getattr(settings, key)
            if path is None:
                continue
            if (gym, key, path, functions) not in counted:
                try:
                    if gym == "function_gym":
                        tasks: Sequence[object] = load_function_tasks(path, functions)
                    else:
                        tasks = load_user_gym_tasks(gym, path, functions)
                except TaskDataError as error:
                    raise TaskDataError(f"{source}: train tasks.{key}: {error}") from None
                counted[gym, key, path, functions] = len(tasks)
            problem = (
                task_count_problem(trial, counted[gym, key, path, functions], str(path))
                if isinstance(trial, SimConfig) and key == "train_path"
                else None
            )
            if problem:
                raise ConfigError(
                    f"{source}: train: {problem}",
                    fix="lower trainer.tasks_per_iteration or add training tasks",
                )


PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
RUN_PLACEHOLDERS = (
    "seed",
    "trial",
    "run_id",
    "workdir",
    "metrics_file",
    "progress_file",
    "python",
)


def _check_command(config: SweepConfig, source: str) -> None:
    """Every placeholder of the argv is known; the metrics file is a plain name."""
    assert isinstance(config.backend, CommandBackend)
    known = {*config.search_space, *RUN_PLACEHOLDERS}
    for index, item in enumerate(config.backend.argv):
        for name in PLACEHOLDER.findall(item.replace("{{", "").replace("}}", "")):
            if name not in known:
                raise ConfigError(
                    f"{source}: backend.argv[{index}]: unknown placeholder {{{name}}}",
                    fix=f"use a search_space path or one of {', '.join(RUN_PLACEHOLDERS)}",
                )
    if "/" in config.backend.metrics_file or config.backend.metrics_file in ("", ".", ".."):
        raise ConfigError(
            f"{source}: backend.metrics_file must be a plain file name",
            value=config.backend.metrics_file,
            fix="e.g. metrics.json; it is created inside {workdir}",
        )
