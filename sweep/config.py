"""The sweep config: what to train, what to vary, what to optimise, and who proposes.

A sweep config is YAML validated by :class:`SweepConfig` (pydantic v2, unknown keys
forbidden) and then checked against its backend (:func:`load_sweep_config`): every searched
path must exist in the training config and accept both ends of its range, and every
objective and constraint must be a metric the backend logs. All of this happens before the
first trial starts; a bad config is one line naming the key and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bao.configuration import ConfigError, apply_overrides, read_yaml, validate

if TYPE_CHECKING:
    from bao.sim.config import SimConfig
    from bao.verl.config import VerlConfig

SWEEP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Sweep names become folder, study and experiment names: no separators, no traversal."""

DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "shaping.user_lambda": {"type": "float", "low": 0.0, "high": 0.5},
    "shaping.info_seeking": {"type": "float", "low": 0.0, "high": 0.3},
    "shaping.over_thinking": {"type": "float", "low": 0.0, "high": 0.1},
}
"""lambda, alpha and beta: the three BAO coefficients, over ranges that bracket the paper's."""

OPTUNA_ALGORITHMS = ("tpe", "nsga2", "nsga3", "gp", "random", "qmc", "grid")
PYMOO_ALGORITHMS = ("nsga2", "nsga3", "moead")
POPULATION_ALGORITHMS = ("nsga2", "nsga3", "moead")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------ search space


class FloatParam(_Model):
    """A real-valued parameter in ``[low, high]``."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    """Sample ``log(value)`` uniformly: for rates and weights spanning decades."""
    step: float | None = Field(None, gt=0)
    """Discretise to ``low + i * step`` (not with ``log``)."""

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined; drop one of them")
        return self


class IntParam(_Model):
    """An integer parameter in ``[low, high]`` (both included)."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be combined; drop one of them")
        return self


class CategoricalParam(_Model):
    """One of a list of values (numbers, strings or booleans)."""

    type: Literal["categorical"]
    choices: list[str | bool | int | float] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: list[Any]) -> list[Any]:
        seen = [json.dumps(choice) for choice in choices]
        if len(set(seen)) != len(seen):
            raise ValueError("choices must be distinct")
        return choices


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def _check_range(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("low and high must be finite numbers")
    if low >= high:
        raise ValueError(f"low ({low}) must be below high ({high}); swap them")
    if log and low <= 0:
        raise ValueError(f"a log-scale range needs low > 0 (got {low}); raise low or drop log")


# ------------------------------------------------------------------------ objectives, driver


class Objective(_Model):
    """One metric of the trial's MLflow run, and whether more or less of it is better."""

    metric: str = Field(min_length=1)
    direction: Literal["maximize", "minimize"]
    threshold: float | None = None
    """The worst value still worth having: this objective's coordinate of the hypervolume
    reference point. ``None`` falls back to the metric's natural worst bound (rates: 0 when
    maximised, 1 when minimised) or, for unbounded metrics, to the observed nadir (see
    docs/analysis.md). Analysis only: changing it never changes the sweep's trials."""

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("threshold must be a finite number")
        return value


CONSTRAINT_PATTERN = re.compile(r"^\s*(\S+)\s*(<=|>=)\s*(\S+)\s*$")


class Constraint(_Model):
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


class DriverConfig(_Model):
    """Who proposes the parameters of each trial."""

    library: Literal["optuna", "pymoo"] = "optuna"
    """``optuna`` samplers (each process samples from the shared storage) or ``pymoo``
    algorithms (generation by generation through pymoo's ask/tell interface)."""
    algorithm: str = "tpe"
    """optuna: tpe, nsga2, nsga3, gp, random, qmc, grid; pymoo: nsga2, nsga3, moead."""
    n_trials: int = Field(24, ge=1)
    """Complete trials the sweep runs to (failed attempts are retried, not counted)."""
    seed: int | None = None
    """Seed of the proposals; ``None`` uses the sweep's top-level ``seed``."""
    batch_size: int | None = Field(None, ge=2)
    """Population per generation of nsga2, nsga3 and moead (default 8); not used otherwise."""
    n_startup_trials: int = Field(8, ge=1)
    """tpe and gp: random proposals before the model takes over."""
    grid_points: int = Field(5, ge=2)
    """grid: values per float (or wide int) parameter, evenly spaced (log-spaced with log)."""

    @model_validator(mode="after")
    def _check(self) -> DriverConfig:
        allowed = OPTUNA_ALGORITHMS if self.library == "optuna" else PYMOO_ALGORITHMS
        if self.algorithm not in allowed:
            raise ValueError(
                f"unknown {self.library} algorithm {self.algorithm!r}; "
                f"choose one of {', '.join(allowed)}"
            )
        if self.batch_size is not None and self.algorithm not in POPULATION_ALGORITHMS:
            raise ValueError(
                f"batch_size sets the population of {', '.join(POPULATION_ALGORITHMS)}; "
                f"remove it for {self.algorithm}"
            )
        return self

    @property
    def population(self) -> int:
        return self.batch_size or 8


# --------------------------------------------------------------------------------- backends


class SimBackend(_Model):
    """The CPU simulator: each run is ``bao-pareto train`` on a simulator config."""

    kind: Literal["sim"]
    train_config: str = "sim.yaml"
    """The simulator config every trial starts from, relative to this sweep config."""


class CommandBackend(_Model):
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


class VerlBackend(_Model):
    """BAO GRPO on GPUs with verl 0.9.1: each run is ``bao-pareto train`` on a verl config,
    which launches ``python -m verl.trainer.main_ppo`` (see docs/verl.md)."""

    kind: Literal["verl"]
    train_config: str
    """The verl training config every trial starts from, relative to this sweep config
    (e.g. ``function_gym.yaml`` beside ``configs/verl/sweep_function_gym.yaml``)."""


BackendConfig = Annotated[SimBackend | VerlBackend | CommandBackend, Field(discriminator="kind")]


# ------------------------------------------------------------------------------------ sweep


class SweepConfig(_Model):
    """One sweep: the YAML of ``configs/quickstart.yaml`` and friends."""

    name: str = Field(pattern=SWEEP_NAME_PATTERN)
    """The sweep's name: its Optuna study, its MLflow experiment, its folder in the workspace."""
    seed: int = 0
    """Training seeds are ``seed, seed + 1, ...`` (the same for every trial, so that
    parameter sets are compared on common random numbers); also the driver's default seed."""
    backend: BackendConfig = SimBackend(kind="sim")
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
        """A hash of what defines the study's trials; runtime knobs (n_trials, jobs,
        timeouts, retries) are left out, so changing them resumes the same sweep."""
        data = self.model_dump(mode="json")
        runtime = ("jobs", "trial_timeout", "max_retries", "max_failures", "tracking_uri")
        recovery = ("heartbeat_interval", "lease", "tracking_patience", "min_free_disk_mb")
        for key in (*runtime, *recovery):
            data.pop(key)
        data["driver"].pop("n_trials")
        for objective in data["objectives"]:
            # Thresholds only govern the analysis' reference point; sweeps made before they
            # existed keep their fingerprint.
            objective.pop("threshold")
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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


class LoadedSweep(_Model):
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


def load_sweep_config(path: str | Path, overrides: Sequence[str] = ()) -> LoadedSweep:
    """Reads, overrides and validates a sweep config and checks it against its backend."""
    source = Path(path)
    raw = apply_overrides(read_yaml(source), list(overrides))
    config = validate(SweepConfig, raw, source=str(source))
    return check_against_backend(config, source)


def check_against_backend(config: SweepConfig, source: Path) -> LoadedSweep:
    base_dir = source.resolve().parent
    if isinstance(config.backend, SimBackend | VerlBackend):
        train_config, names = _check_train_config(config, base_dir, str(source))
    else:
        train_config, names = {}, list(config.backend.metrics)
        _check_command(config, str(source))
    if names:
        known = set(names)
        wanted = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(config.objectives)]
        wanted += [(f"constraints[{i}]", c.metric) for i, c in enumerate(config.constraints)]
        for key, metric in wanted:
            if metric not in known:
                raise ConfigError(
                    f"{source}: {key}: the {config.backend.kind} backend does not log {metric!r}",
                    fix=f"use one of {_suggest(metric, names)}",
                )
    if config.driver.algorithm == "moead" and config.constraints:
        raise ConfigError(
            f"{source}: constraints: pymoo's moead does not handle constraints",
            fix="use driver.algorithm nsga2 or nsga3, or remove the constraints",
        )
    if config.driver.algorithm == "grid":
        from sweep.space import grid_size

        size = grid_size(config.search_space, config.driver.grid_points)
        if config.driver.n_trials > size:
            raise ConfigError(
                f"{source}: driver.n_trials ({config.driver.n_trials}) exceeds the grid's "
                f"{size} points",
                fix="lower driver.n_trials or raise driver.grid_points",
            )
    return LoadedSweep(
        config=config,
        source=str(source.resolve()),
        base_dir=str(base_dir),
        train_config=train_config,
        metric_names=names,
    )


def _check_train_config(
    config: SweepConfig, base_dir: Path, source: str
) -> tuple[dict[str, Any], list[str]]:
    """Validates the backend's training config with ``train`` applied, and with each end of
    every range of the search space; returns it with the metric names its runs log."""
    from bao.metrics import metric_names

    assert isinstance(config.backend, SimBackend | VerlBackend)
    model = train_config_model(config.backend)
    train_path = base_dir / config.backend.train_config
    if not train_path.is_file():
        raise ConfigError(
            f"{source}: backend.train_config: {str(train_path)!r} does not exist",
            fix=f"give a {config.backend.kind} config path relative to the sweep config",
        )
    base = _merge(read_yaml(train_path), config.train)
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
    k_max = model.model_validate(base).eval.k_max
    names = [f"eval/{name}" for name in metric_names(k_max)] + ["train/seconds"]
    return base, names


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


def train_config_model(backend: SimBackend | VerlBackend) -> type[SimConfig] | type[VerlConfig]:
    """The pydantic model of a backend's training config."""
    if isinstance(backend, VerlBackend):
        from bao.verl.config import VerlConfig

        return VerlConfig
    from bao.sim.config import SimConfig

    return SimConfig


PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
RUN_PLACEHOLDERS = ("seed", "trial", "run_id", "workdir", "metrics_file", "python")


def _check_command(config: SweepConfig, source: str) -> None:
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


def _suggest(metric: str, names: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(metric, names, n=3, cutoff=0.5)
    shown = close or [n for n in names if not n.endswith(("_lo", "_hi"))][:6]
    return ", ".join(shown) + ("" if close else ", ...")


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
