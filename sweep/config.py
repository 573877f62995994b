"""The sweep config: what to train, what to vary, what to optimise, and who proposes.

A sweep config is YAML validated by :class:`SweepConfig` (pydantic v2, unknown keys
forbidden) and then checked against its backend (:func:`sweep.loading.load_sweep_config`):
every searched path must exist in the training config and accept both ends of its range, and
every objective and constraint must be a metric the backend logs. All of this happens before
the first trial starts; a bad config is one line naming the key and the fix. This module holds
the models only: it imports no backend.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from bao.configuration import ConfigError, read_yaml
from sweep.algorithms import AlgorithmSpec, algorithm, population_algorithms
from sweep.params import CategoricalParam, FloatParam, IntParam, ParamSpec, StrictModel
from sweep.pruning import PrunerKind, PrunerSettings

SWEEP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Sweep names become folder, study and experiment names: no separators, no traversal."""

DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "shaping.user_lambda": {"type": "float", "low": 0.0, "high": 0.5},
    "shaping.info_seeking": {"type": "float", "low": 0.0, "high": 0.3},
    "shaping.over_thinking": {"type": "float", "low": 0.0, "high": 0.1},
}
"""lambda, alpha and beta: the three BAO coefficients, over ranges that bracket the paper's."""


# ------------------------------------------------------------------------ objectives, driver


class Objective(StrictModel):
    """One metric of the trial's MLflow run, and whether more or less of it is better."""

    metric: str = Field(min_length=1)
    direction: Literal["maximize", "minimize"]
    threshold: float | None = None
    """The worst value still worth having: this objective's coordinate of the hypervolume
    reference point. ``None`` falls back to the metric's natural worst bound (rates: 0 when
    maximised, 1 when minimised) or, for unbounded metrics, to the observed nadir (see
    docs/analysis.md). The botorch driver aims at it too (docs/sweeps.md); every other
    driver ignores it."""

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("threshold must be a finite number")
        return value


CONSTRAINT_PATTERN = re.compile(r"^\s*(\S+)\s*(<=|>=)\s*(\S+)\s*$")


class Constraint(StrictModel):
    """``metric <= bound`` or ``metric >= bound``; written in YAML as that string."""

    metric: str
    op: Literal["<=", ">="]
    bound: float

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 when satisfied, the amount of violation otherwise."""
        return value - self.bound if self.op == "<=" else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def _parse_constraint(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = CONSTRAINT_PATTERN.match(value)
    if match is None:
        raise ValueError(f"constraint {value!r} is not 'metric <= number' or 'metric >= number'")
    metric, op, bound = match.groups()
    try:
        number = float(bound)
    except ValueError:
        raise ValueError(f"constraint {value!r}: {bound!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"constraint {value!r}: the bound must be finite")
    return {"metric": metric, "op": op, "bound": number}


class DriverConfig(StrictModel):
    """Who proposes the parameters of each trial."""

    library: Literal["optuna", "pymoo"] = "optuna"
    """``optuna`` samplers (each process samples from the shared storage) or ``pymoo``
    algorithms (generation by generation through pymoo's ask/tell interface)."""
    algorithm: str = "tpe"
    """One of :mod:`sweep.algorithms`' registry: optuna: tpe, nsga2, nsga3, gp, random, qmc,
    botorch, grid; pymoo: nsga2, nsga3, moead."""
    n_trials: int = Field(24, ge=1)
    """Complete trials the sweep runs to (failed attempts are retried, not counted)."""
    seed: int | None = None
    """Seed of the proposals; ``None`` uses the sweep's top-level ``seed``."""
    batch_size: int | None = Field(None, ge=2)
    """Population per generation of nsga2, nsga3 and moead (default 8); not used otherwise."""
    n_startup_trials: int = Field(8, ge=1)
    """tpe, gp and botorch: random proposals before the model takes over."""
    grid_points: int = Field(5, ge=2)
    """grid: values per float (or wide int) parameter, evenly spaced (log-spaced with log)."""

    @model_validator(mode="after")
    def _check(self) -> DriverConfig:
        spec = algorithm(self.library, self.algorithm)  # one line with the choices if unknown
        if self.batch_size is not None and not spec.population_based:
            raise ValueError(
                f"batch_size sets the population of {', '.join(population_algorithms())}; "
                f"remove it for {self.algorithm}"
            )
        return self

    @property
    def spec(self) -> AlgorithmSpec:
        """The registry's entry for this driver's algorithm."""
        return algorithm(self.library, self.algorithm)

    @property
    def population(self) -> int:
        return self.batch_size or 8


# --------------------------------------------------------------------------------- backends


class SimBackend(StrictModel):
    """The CPU simulator: each run is ``bao-pareto train`` on a simulator config."""

    kind: Literal["sim"]
    train_config: str = "sim.yaml"
    """The simulator config every trial starts from, relative to this sweep config."""


class CommandBackend(StrictModel):
    """Any training command: an argv list with ``{placeholders}``, never a shell string.

    Placeholders: each search-space path (``{shaping.user_lambda}``), ``{seed}``,
    ``{trial}`` (the trial number), ``{run_id}`` (the MLflow run to log into, also in
    ``$MLFLOW_RUN_ID``), ``{workdir}`` (a fresh folder for this run) and ``{metrics_file}``
    (where the command writes a JSON object of metric name -> number), ``{python}`` (the
    interpreter running the sweep). ``{{``/``}}`` are literal braces.
    """

    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    metrics_file: str = "metrics.json"
    """File name (inside ``{workdir}``) of the metrics JSON the command writes."""
    metrics: list[str] = Field(default_factory=list)
    """Metric names the command writes; when given, objectives are checked against them."""
    cwd: str | None = None
    """Working directory of the command, relative to this sweep config (default: here)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the command."""


class VerlBackend(StrictModel):
    """BAO GRPO on GPUs with verl 0.9.1: each run is ``bao-pareto train`` on a verl config,
    which launches ``python -m verl.trainer.main_ppo`` (see docs/verl.md)."""

    kind: Literal["verl"]
    train_config: str
    """The verl training config every trial starts from, relative to this sweep config
    (e.g. ``function_gym.yaml`` beside ``configs/verl/sweep_function_gym.yaml``)."""


BackendConfig = Annotated[SimBackend | VerlBackend | CommandBackend, Field(discriminator="kind")]


# -------------------------------------------------------------------------------- launchers


class LocalLauncher(StrictModel):
    """Each run a subprocess of the sweep's process, on this machine (the default)."""

    kind: Literal["local"]
    gpus_per_node: int = Field(0, ge=0)
    """GPUs a run holds here; only counted in its cost (GPU-hours)."""
    cpus_per_node: int = Field(1, ge=1)
    """CPUs a run holds here; only counted in its cost (CPU-seconds)."""

    @property
    def nodes(self) -> int:
        return 1


class SlurmLauncher(StrictModel):
    """Each run one Slurm batch job (``sbatch``), tracked with ``scontrol``/``sacct`` and
    cancelled with ``scancel`` (docs/clusters.md)."""

    kind: Literal["slurm"]
    nodes: int = Field(1, ge=1, le=4096)
    """``--nodes``; a verl trial on several starts its Ray cluster inside the allocation."""
    gpus_per_node: int = Field(0, ge=0, le=64)
    """``--gpus-per-node`` (0: none asked for)."""
    cpus_per_node: int = Field(1, ge=1)
    """``--cpus-per-task`` of the one task per node."""
    memory: str | None = Field(None, pattern=r"^[0-9]+[KMGT]?$")
    """``--mem`` per node, e.g. ``64G``; ``None``: the partition's default."""
    time_limit_minutes: int | None = Field(None, ge=1)
    """``--time``; ``None``: ``trial_timeout`` rounded up to minutes, so Slurm ends a run the
    sweep would stop anyway."""
    partition: str | None = None
    account: str | None = None
    sbatch: list[str] = Field(default_factory=list)
    """Further ``#SBATCH`` options, e.g. ``["--qos=high", "--constraint=h100"]``."""
    poll_interval: float = Field(2.0, gt=0, le=300)
    """Seconds between two looks at a job's state."""

    @field_validator("sbatch")
    @classmethod
    def _options(cls, lines: list[str]) -> list[str]:
        for line in lines:
            if not line.startswith("-") or "\n" in line:
                raise ValueError(f"sbatch option {line!r} must be one option like --qos=high")
        return lines


class RayLauncher(StrictModel):
    """Each run one Ray job on an existing cluster, through Ray's Jobs API
    (``JobSubmissionClient``; docs/clusters.md)."""

    kind: Literal["ray"]
    address: str | None = None
    """The cluster's dashboard, e.g. ``http://head:8265``; ``None``: ``$RAY_ADDRESS``."""
    nodes: int = Field(1, ge=1, le=4096)
    """Nodes a run uses on the cluster; counted in its cost."""
    gpus_per_node: int = Field(0, ge=0, le=64)
    """GPUs per node a run uses on the cluster; counted in its cost."""
    cpus_per_node: int = Field(1, ge=1)
    """CPUs per node a run uses on the cluster; counted in its cost."""
    entrypoint_num_cpus: float = Field(1.0, ge=0)
    """CPUs reserved for the run's entrypoint (its driver process)."""
    entrypoint_num_gpus: float = Field(0.0, ge=0)
    """GPUs reserved for the entrypoint (0 for verl: its workers take the GPUs)."""
    poll_interval: float = Field(2.0, gt=0, le=300)
    """Seconds between two looks at a job's status."""


LauncherConfig = Annotated[LocalLauncher | SlurmLauncher | RayLauncher, Field(discriminator="kind")]


# ----------------------------------------------------------------------------------- pruner


class PrunerConfig(StrictModel):
    """Early stopping of trials on their intermediate evaluations (docs/sweeps.md, "Early
    stopping"; the rules are :mod:`sweep.pruning`). Decisions are taken at rungs, the
    training steps ``min_step * reduction_factor ** k`` before the run's last step."""

    kind: PrunerKind = "none"
    """``none`` (every trial trains to its end), ``rungs`` (successive halving by
    non-dominated rank at each rung), ``collapse`` (stop a trial that no longer answers),
    or ``rungs+collapse``."""
    min_step: int = Field(10, ge=1)
    """The first rung: the training step (simulator iteration, verl step, the command's own
    step) of the first decision. The simulator then evaluates every ``min_step`` iterations."""
    reduction_factor: int = Field(3, ge=2, le=100)
    """eta: rungs are ``reduction_factor`` times apart, and at each rung a trial goes on only
    in the top ``1 / reduction_factor`` of the trials that reached it (``rungs``)."""
    min_trials: int | None = Field(None, ge=1)
    """``rungs``: trials that must have reached a rung before it stops any (default
    ``reduction_factor``); until then every trial goes on."""
    collapse_threshold: float = Field(0.9, gt=0.0, le=1.0)
    """``collapse``: a trial whose ``eval/no_answer_rate`` is at or above this at a rung
    stops (docs/sim.md calls a run collapsed at 0.9)."""
    collapse_from_rung: int = Field(0, ge=0)
    """``collapse``: the first rung (0 = ``min_step``) where the collapse rule applies."""

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    @property
    def rung_min_trials(self) -> int:
        return self.min_trials or self.reduction_factor

    def settings(self) -> PrunerSettings:
        """What the decision (:func:`sweep.pruning.decide`) reads of this section."""
        return PrunerSettings(
            kind=self.kind,
            reduction_factor=self.reduction_factor,
            min_trials=self.rung_min_trials,
            collapse_threshold=self.collapse_threshold,
            collapse_from_rung=self.collapse_from_rung,
        )


# ------------------------------------------------------------------------------------ sweep


class SweepConfig(StrictModel):
    """One sweep: the YAML of ``configs/quickstart.yaml`` and friends."""

    name: str = Field(pattern=SWEEP_NAME_PATTERN)
    """The sweep's name: its Optuna study, its MLflow experiment, its folder in the workspace."""
    seed: int = 0
    """Training seeds are ``seed, seed + 1, ...`` (the same for every trial, so that
    parameter sets are compared on common random numbers); also the driver's default seed."""
    backend: BackendConfig = SimBackend(kind="sim")
    launcher: LauncherConfig = LocalLauncher(kind="local")
    """Where each run goes: a local subprocess, a Slurm job or a Ray job (docs/clusters.md)."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Overrides applied to the backend's training config for every trial (nested keys)."""
    search_space: dict[str, ParamSpec] = Field(
        default_factory=lambda: {
            path: _param_from(spec) for path, spec in DEFAULT_SEARCH_SPACE.items()
        }
    )
    """Config path -> parameter; default: lambda, alpha and beta of ``shaping``."""
    objectives: list[Objective] = Field(min_length=2, max_length=3)
    constraints: list[Constraint] = Field(default_factory=list)
    driver: DriverConfig = DriverConfig()
    seeds_per_trial: int = Field(1, ge=1, le=32)
    """Training runs per parameter set; objectives are their mean (standard error logged)."""
    max_retries: int = Field(1, ge=0, le=10)
    """Attempts after the first when a trial fails (crash, timeout, missing metrics)."""
    trial_timeout: float = Field(3600.0, gt=0)
    """Seconds a trial (all its seeds) may run before it is stopped and failed."""
    jobs: int = Field(1, ge=1, le=256)
    """Trials this process runs at once (``--jobs`` overrides)."""
    storage: str | None = None
    """Optuna storage: ``sqlite:///...``, ``postgresql://...``, ``mysql://...`` or
    ``journal:PATH``; default ``sqlite`` in the workspace's ``sweeps/NAME/`` folder."""
    tracking_uri: str | None = None
    """MLflow tracking URI (a server for many machines); default ``$MLFLOW_TRACKING_URI``,
    else the workspace's SQLite database."""
    max_failures: int | None = Field(None, ge=1)
    """Stop the sweep after this many failed attempts (default ``n_trials * (max_retries + 1)``;
    a sweep whose first ``2 * (max_retries + 1)`` attempts all fail stops at once)."""
    heartbeat_interval: float = Field(10.0, gt=0)
    """Seconds between a running trial's heartbeats in the storage."""
    lease: float = Field(120.0, gt=0)
    """A running trial whose heartbeat is older than this is taken as dead and retried."""
    tracking_patience: float = Field(300.0, gt=0, le=86400)
    """Seconds the runner keeps retrying an MLflow call that fails (server down, database
    locked, artifact store unreachable). A write still failing then waits in the sweep's
    MLflow outbox, replayed in order once MLflow answers; a read or a run it cannot create
    fails the trial with reason ``tracking`` (retried like any failure)."""
    pruner: PrunerConfig = PrunerConfig()
    """Early stopping of trials (default ``kind: none``); docs/sweeps.md, "Early stopping"."""
    min_free_disk_mb: float = Field(512.0, ge=0)
    """Free space the workspace's file system must have before a sweep starts and before
    each new trial; below it the sweep stops with one line instead of failing trials on a
    full disk (0 turns the check off)."""

    @field_validator("constraints", mode="before")
    @classmethod
    def _parse_constraints(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_parse_constraint(item) for item in value]
        return value

    @field_validator("search_space")
    @classmethod
    def _non_empty(cls, space: dict[str, Any]) -> dict[str, Any]:
        if not space:
            raise ValueError("the search space is empty; add at least one parameter")
        for path in space:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", path):
                raise ValueError(f"{path!r} is not a config path like shaping.user_lambda")
        return space

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        metrics = [objective.metric for objective in self.objectives]
        duplicated = sorted({m for m in metrics if metrics.count(m) > 1})
        if duplicated:
            raise ValueError(f"objective {duplicated[0]!r} is listed twice; keep one")
        if self.driver.spec.aims_at_thresholds:
            for index, objective in enumerate(self.objectives):
                if objective.threshold is None:
                    raise ValueError(
                        f"driver {self.driver.algorithm} aims at the objectives' thresholds "
                        f"(the hypervolume's reference point): set objectives[{index}]"
                        f".threshold for {objective.metric}"
                    )
        if self.pruner.enabled and self.driver.library != "optuna":
            raise ValueError(
                f"pruner.kind {self.pruner.kind!r} needs driver.library optuna (a pymoo "
                "generation waits for every member's values); set pruner.kind: none"
            )
        if self.lease <= 2 * self.heartbeat_interval:
            raise ValueError("lease must exceed twice heartbeat_interval, or live trials expire")
        return self

    @property
    def driver_seed(self) -> int:
        return self.seed if self.driver.seed is None else self.driver.seed

    @property
    def training_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds_per_trial)]

    def fingerprint(self) -> str:
        """A hash of :meth:`identity`: a changed one is a different sweep."""
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def identity(self) -> dict[str, Any]:
        """What defines the study's trials; runtime knobs (n_trials, jobs, timeouts,
        retries) are left out, so changing them resumes the same sweep."""
        data = self.model_dump(mode="json")
        # Where trials run is not what they are: a sweep moves to a cluster and resumes.
        runtime = ("jobs", "trial_timeout", "max_retries", "max_failures", "tracking_uri")
        placement = ("launcher",)
        recovery = ("heartbeat_interval", "lease", "tracking_patience", "min_free_disk_mb")
        for key in (*runtime, *placement, *recovery):
            data.pop(key)
        data["driver"].pop("n_trials")
        # The pruner decides which trials end PRUNED: a resumed sweep under another pruner
        # would decide differently, so it is part of what the sweep is. Without one it is
        # left out, and sweeps made before pruners existed keep their fingerprint.
        if data["pruner"]["kind"] == "none":
            data.pop("pruner")
        for objective in data["objectives"]:
            # Thresholds are the reference point (the analysis', the botorch driver's aim),
            # not what a trial is; sweeps made before they existed keep their fingerprint.
            objective.pop("threshold")
        return data


def sweep_name_of(path: str | Path) -> str:
    """The ``name`` of a sweep config, read without checking the rest: ``status``, ``front``
    and ``select`` accept a config in place of a name, from any directory, even after the
    task files it names have moved."""
    data = read_yaml(path)
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(SWEEP_NAME_PATTERN, name):
        raise ConfigError(
            f"{path}: key 'name' must be a sweep name (got {name!r})",
            fix="give the sweep's name, or the config it was started with",
        )
    return name


def _param_from(spec: Mapping[str, Any]) -> FloatParam | IntParam | CategoricalParam:
    if spec["type"] == "float":
        return FloatParam.model_validate(spec)
    if spec["type"] == "int":
        return IntParam.model_validate(spec)
    return CategoricalParam.model_validate(spec)


# ---------------------------------------------------------------------------------- loading


class LoadedSweep(StrictModel):
    """A validated sweep config with what its backend needs, resolved to absolute paths."""

    config: SweepConfig
    source: str
    """The YAML file it came from."""
    base_dir: str
    """The YAML's folder: relative paths in the config are resolved against it."""
    train_config: dict[str, Any] = Field(default_factory=dict)
    """The backend's training config with ``train`` applied (sim); empty for ``command``."""
    metric_names: list[str] = Field(default_factory=list)
    """Metrics the backend is known to log (empty: not known in advance)."""
