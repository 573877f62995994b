"""The launcher: one BAO GRPO run as ``python -m verl.trainer.main_ppo`` with verl 0.9.1 keys.

What one run does, in order:

1. load the tasks (so a bad task file fails before anything starts) and plan the run folder:
   the training and validation parquet files, the validation dumps, verl's metrics file, the
   checkpoints and the log;
2. translate the :class:`~bao.verl.config.VerlConfig` into Hydra overrides of verl's
   ``ppo_trainer`` config (:func:`hydra_overrides`): the recipe, the trial's BAO knobs under
   ``+algorithm.bao.*``, the ``bao_turn`` estimator and the ``bao_agent`` agent loop;
3. compose those overrides with Hydra and run verl's own ``validate_config`` on the result
   (:func:`validate_overrides`): this is all a dry run does, and it needs no GPU;
4. check that the GPUs the config asks for exist (:func:`check_gpus`): without them Ray would
   wait for resources forever;
5. start verl with ``VERL_USE_EXTERNAL_MODULES=bao.verl.register`` in every Ray process, attached
   to the trial's MLflow run (``MLFLOW_RUN_ID``), stream its log, and, once it exits with status
   0, compute the evaluation metrics from the last validation dump (:mod:`bao.verl.evaluation`).

verl is imported only inside the functions that need it, so this module loads without the
``verl`` extra (the dry run then says how to install it).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bao.configuration import ConfigError
from bao.errors import BaoError, TaskDataError, first_line
from bao.gym_tasks import load_user_gym_tasks, split_held_out
from bao.processes import die_with_parent
from bao.tasks import FunctionTask, load_task_splits
from bao.verl.config import USER_GYMS, VerlConfig
from bao.verl.data import (
    AGENT_NAME,
    write_marked_rows,
    write_task_parquet,
    write_user_gym_parquet,
)

log = logging.getLogger(__name__)

VERL_VERSION: Final = "0.9.1"
REGISTER_MODULE: Final = "bao.verl.register"
ESTIMATOR: Final = "bao_turn"
INSTALL_HINT: Final = 'pip install -e ".[verl]" (after pip install torch==2.13.0 on a CPU machine)'
# save_freq 0 means "only the final checkpoint": verl saves at the last step whenever its
# save_freq is positive, so a period longer than any run does exactly that.
_FINAL_ONLY: Final = 1_000_000_000
_SAFE_HYDRA_VALUE: Final = re.compile(r"[A-Za-z0-9_./@~+-]+")
_PROJECT_ROOT: Final = Path(__file__).resolve().parents[2]


# What the bao_turn estimator and the bao_agent loop need from verl's config.
BAO_WIRING: Final[Mapping[str, Any]] = {
    "trainer.use_v1": True,
    "algorithm.adv_estimator": ESTIMATOR,
    "actor_rollout_ref.rollout.multi_turn.enable": True,
    "actor_rollout_ref.rollout.agent.default_agent_loop": AGENT_NAME,
}


class VerlUnavailableError(BaoError):
    """verl, or the GPUs it needs, are not there."""


class VerlRunError(BaoError):
    """A verl run that exited with an error or produced no evaluation."""


@dataclass(frozen=True)
class RunFolder:
    """Where one run keeps its files."""

    root: Path

    @property
    def train_file(self) -> Path:
        return self.root / "data" / "train.parquet"

    @property
    def val_file(self) -> Path:
        return self.root / "data" / "val.parquet"

    @property
    def validation_dir(self) -> Path:
        return self.root / "validation"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics_file(self) -> Path:
        return self.root / "verl_metrics.jsonl"

    @property
    def functions_file(self) -> Path:
        return self.root / "data" / "functions.json"

    @property
    def gym_file(self) -> Path:
        """Telepathy/Turtle: the gym, its user simulator and the tasks rows name by title."""
        return self.root / "gym.json"

    @property
    def agent_loop_file(self) -> Path:
        return self.root / "agent_loop.yaml"

    @property
    def log_file(self) -> Path:
        return self.root / "verl.log"

    @property
    def smoke_model(self) -> Path:
        """A smoke run's tiny model and tokenizer (:func:`bao.verl.cpu.smoke.build_tiny_model`)."""
        return self.root / "smoke-model"


@dataclass(frozen=True)
class DataPlan:
    """The run's tasks and the files verl reads them from."""

    train_tasks: list[Any]
    """Function-Gym tasks, Telepathy entities or Turtle stories."""
    eval_tasks: list[Any]
    train_file: Path
    val_file: Path
    functions_path: Path | None
    """The functions JSON that parquet rows (UserRL's, naming tasks by id) are looked up in,
    written into the run folder from the tasks of every parquet split; None: no parquet."""
    to_write: list[tuple[Path, str, list[Any]]] = field(default_factory=list)
    by_id: list[Any] = field(default_factory=list)
    gym: str = "function_gym"
    gym_file: Path | None = None
    """Telepathy/Turtle: the file the agent loop reads its gym settings (and the records
    that UserRL rows name by title) from."""
    gym_settings: dict[str, Any] = field(default_factory=dict)
    marked_copies: list[tuple[Path, Path]] = field(default_factory=list)
    """Telepathy/Turtle: (UserRL validation parquet, its copy in the run folder with every row
    marked ``extra_info.bao_eval``, so its episodes meet the evaluation's user)."""

    @property
    def needs_agent_loop_file(self) -> bool:
        """Whether the agent loop needs a file of this run's (the functions UserRL's
        Function-Gym rows name, or a Telepathy/Turtle gym file): :func:`agent_loop_yaml`."""
        return self.functions_path is not None or self.gym_file is not None

    def write(self, max_turns: int) -> None:
        for source, target in self.marked_copies:
            write_marked_rows(source, target)
        for path, split, tasks in self.to_write:
            if self.gym in USER_GYMS:
                write_user_gym_parquet(tasks, self.gym, path, split=split, max_turns=max_turns)
            else:
                write_task_parquet(tasks, path, split=split, max_turns=max_turns)
        if self.functions_path is not None:
            records = [task.to_dict() for task in self.by_id]
            self.functions_path.write_text(json.dumps(records, indent=1), encoding="utf-8")
        if self.gym_file is not None:
            self.gym_file.parent.mkdir(parents=True, exist_ok=True)
            document = {**self.gym_settings, "records": [task.to_dict() for task in self.by_id]}
            self.gym_file.write_text(json.dumps(document, indent=1), encoding="utf-8")


def plan_data(config: VerlConfig, folder: RunFolder, workspace: Path | None = None) -> DataPlan:
    """Loads and checks the tasks; parquet inputs are used as they are, others are planned
    as parquet files in the run folder (written by :meth:`DataPlan.write`). ``workspace``
    holds the user simulator's default response cache (Telepathy/Turtle)."""
    if config.gym in USER_GYMS:
        return _plan_user_gym_data(config, folder, workspace)
    settings = config.tasks
    train_tasks, eval_tasks = load_task_splits(
        train_path=settings.train_path,
        eval_path=settings.eval_path,
        n_train=settings.n_train,
        n_eval=settings.n_eval,
        generator_seed=settings.generator_seed,
        functions_path=settings.functions_path,
    )
    to_write: list[tuple[Path, str, list[FunctionTask]]] = []
    by_id: dict[str, FunctionTask] = {}

    def source(path: Path | None, planned: Path, split: str, tasks: list[FunctionTask]) -> Path:
        if path is None or path.suffix.lower() != ".parquet":
            to_write.append((planned, split, tasks))
            return planned
        # Rows name their tasks by id; the splits may come from different functions files,
        # so the agent loop gets one file with every task of both.
        for task in tasks:
            if by_id.setdefault(task.id, task) != task:
                raise TaskDataError(
                    f"task id {task.id!r} names different tasks in the training and the "
                    "validation files",
                    fix="use functions files whose ids do not clash",
                )
        return path.resolve()

    train_file = source(settings.train_path, folder.train_file, "train", train_tasks)
    val_file = source(settings.eval_path, folder.val_file, "val", eval_tasks)
    return DataPlan(
        train_tasks=train_tasks,
        eval_tasks=eval_tasks,
        train_file=train_file,
        val_file=val_file,
        functions_path=folder.functions_file if by_id else None,
        to_write=to_write,
        by_id=list(by_id.values()),
    )


def _plan_user_gym_data(config: VerlConfig, folder: RunFolder, workspace: Path | None) -> DataPlan:
    settings = config.tasks
    assert settings.train_path is not None  # VerlConfig requires it for these gyms
    train_tasks: list[Any] = list(
        load_user_gym_tasks(config.gym, settings.train_path, settings.records_path)
    )
    if settings.eval_path is not None:
        eval_tasks: list[Any] = list(
            load_user_gym_tasks(config.gym, settings.eval_path, settings.records_path)
        )
    else:
        # A parquet file may name a task twice; held out, it must be on one side only.
        unique = list({task.id: task for task in train_tasks}.values())
        train_tasks, eval_tasks = split_held_out(unique, settings.n_eval, settings.generator_seed)
    to_write: list[tuple[Path, str, list[Any]]] = []
    marked: list[tuple[Path, Path]] = []
    by_title: dict[str, Any] = {}

    def source(path: Path | None, planned: Path, split: str, tasks: list[Any]) -> Path:
        # A held-out split of a parquet file cannot be handed to verl as it is: its rows
        # are written again, the tasks inline.
        if path is None or path.suffix.lower() != ".parquet" or settings.eval_path is None:
            to_write.append((planned, split, tasks))
            return planned
        for task in tasks:
            if by_title.setdefault(task.title.casefold(), task) != task:
                raise TaskDataError(
                    f"title {task.title!r} names different tasks in the training and the "
                    "validation files",
                    fix="use records files whose titles do not clash",
                )
        if split == "val":  # UserRL's rows as they are, marked as validation (EVAL_KEY)
            marked.append((path.resolve(), planned))
            return planned
        return path.resolve()

    train_file = source(settings.train_path, folder.train_file, "train", train_tasks)
    val_file = source(settings.eval_path, folder.val_file, "val", eval_tasks)
    users = config.user_simulator
    # Absolute: Ray workers may run in another working directory.
    cache = (users.cache_path or (workspace or folder.root) / "user-cache.sqlite").resolve()
    gym_settings = {
        "gym": config.gym,
        "success_threshold": config.env.success_threshold,
        "user_simulator": users.model_copy(update={"cache_path": cache}).model_dump(mode="json"),
    }
    return DataPlan(
        train_tasks=train_tasks,
        eval_tasks=eval_tasks,
        train_file=train_file,
        val_file=val_file,
        functions_path=None,
        to_write=to_write,
        by_id=list(by_title.values()),
        gym=config.gym,
        gym_file=folder.gym_file,
        gym_settings=gym_settings,
        marked_copies=marked,
    )


# ------------------------------------------------------------------------------- overrides


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar (strings quoted when they need it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(item) for item in value) + "]"
    text = str(value)
    if (
        _SAFE_HYDRA_VALUE.fullmatch(text)
        and text.lower() not in ("true", "false", "null")
        and not _looks_numeric(text)  # "1" must stay a string (environment values)
    ):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def worker_environment(
    run_id: str | None,
    tracking_uri: str | None,
    folder: RunFolder,
    *,
    cpu: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Variables every Ray process of the run needs: the module that registers ``bao_turn``
    and ``bao_agent``, this project on the import path, and the MLflow run to log into; with
    ``cpu`` (a smoke run's own) also the CPU platform's (:data:`bao.verl.cpu.ENVIRONMENT`)."""
    pythonpath = os.pathsep.join(
        p for p in (str(_PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env = {
        "VERL_USE_EXTERNAL_MODULES": REGISTER_MODULE,
        "PYTHONPATH": pythonpath,
        "VERL_FILE_LOGGER_PATH": str(folder.metrics_file),
    }
    if cpu is not None:
        from bao.verl.cpu import ENVIRONMENT

        env.update(ENVIRONMENT)
        env.update(cpu)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if run_id:
        env["MLFLOW_RUN_ID"] = run_id
    return env


def hydra_overrides(
    config: VerlConfig,
    data: DataPlan,
    folder: RunFolder,
    *,
    experiment: str,
    run_name: str,
    environment: Mapping[str, str],
) -> list[str]:
    """The ``key=value`` overrides of verl's ``ppo_trainer`` config for this run."""
    rollout, optim, schedule = config.rollout, config.optim, config.schedule
    shaping, advantage = config.shaping, config.advantage
    pairs: list[tuple[str, Any]] = [
        # BAO: the estimator, its knobs, and the agent loop that writes per-turn rewards.
        ("algorithm.adv_estimator", ESTIMATOR),
        ("algorithm.gamma", advantage.gamma),
        ("algorithm.use_kl_in_reward", False),
        ("+algorithm.bao.user_lambda", shaping.user_lambda),
        ("+algorithm.bao.info_seeking", shaping.info_seeking),
        ("+algorithm.bao.over_thinking", shaping.over_thinking),
        ("+algorithm.bao.min_turns", shaping.min_turns),
        ("+algorithm.bao.credit", advantage.credit),
        ("+algorithm.bao.score", advantage.score),
        ("+algorithm.bao.estimator", advantage.estimator),
        ("+algorithm.bao.k_max", config.eval.k_max),
        # Data.
        ("data.train_files", str(data.train_file)),
        ("data.val_files", str(data.val_file)),
        ("data.train_batch_size", optim.train_batch_size),
        ("data.max_prompt_length", rollout.max_prompt_length),
        ("data.max_response_length", rollout.max_response_length),
        ("data.return_raw_chat", True),
        ("data.seed", config.seed),
        # Model and update.
        ("actor_rollout_ref.model.path", config.model.path),
        ("actor_rollout_ref.model.trust_remote_code", config.model.trust_remote_code),
        (
            "actor_rollout_ref.model.enable_gradient_checkpointing",
            config.model.gradient_checkpointing,
        ),
        ("actor_rollout_ref.actor.optim.lr", optim.learning_rate),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", optim.ppo_mini_batch_size),
        (
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
            optim.ppo_micro_batch_size_per_gpu,
        ),
        ("actor_rollout_ref.actor.entropy_coeff", optim.entropy_coeff),
        ("actor_rollout_ref.actor.use_kl_loss", optim.use_kl_loss),
        ("actor_rollout_ref.actor.kl_loss_coef", optim.kl_loss_coef),
        ("actor_rollout_ref.actor.clip_ratio", optim.clip_ratio),
        (
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
            optim.log_prob_micro_batch_size_per_gpu,
        ),
        # Rollout: multi-turn episodes played by the bao_agent loop.
        ("actor_rollout_ref.rollout.name", rollout.engine),
        ("actor_rollout_ref.rollout.n", rollout.n),
        ("actor_rollout_ref.rollout.temperature", rollout.temperature),
        ("actor_rollout_ref.rollout.top_p", rollout.top_p),
        ("actor_rollout_ref.rollout.seed", config.seed),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", rollout.gpu_memory_utilization),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", rollout.tensor_parallel_size),
        (
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
            optim.log_prob_micro_batch_size_per_gpu,
        ),
        ("actor_rollout_ref.rollout.multi_turn.enable", True),
        ("actor_rollout_ref.rollout.multi_turn.max_assistant_turns", config.env.max_turns),
        ("actor_rollout_ref.rollout.multi_turn.format", config.model.tool_format),
        (
            "actor_rollout_ref.rollout.multi_turn.max_tool_response_length",
            rollout.max_observation_length,
        ),
        ("actor_rollout_ref.rollout.agent.default_agent_loop", AGENT_NAME),
        ("actor_rollout_ref.rollout.agent.num_workers", rollout.agent_workers),
        ("actor_rollout_ref.rollout.val_kwargs.n", 1),
        ("actor_rollout_ref.rollout.val_kwargs.temperature", rollout.eval_temperature),
        ("actor_rollout_ref.rollout.val_kwargs.do_sample", rollout.eval_temperature > 0),
        # Trainer: the v1 trainer (the legacy one keeps only the last token's reward).
        ("trainer.use_v1", True),
        ("trainer.logger", ["console", "file", "mlflow"]),
        ("trainer.project_name", experiment),
        ("trainer.experiment_name", run_name),
        ("trainer.n_gpus_per_node", schedule.n_gpus_per_node),
        ("trainer.nnodes", schedule.nnodes),
        ("trainer.total_epochs", schedule.total_epochs),
        ("trainer.total_training_steps", schedule.total_training_steps),
        ("trainer.test_freq", schedule.test_freq),
        ("trainer.save_freq", _FINAL_ONLY if schedule.save_freq == 0 else schedule.save_freq),
        ("trainer.val_before_train", schedule.val_before_train),
        ("trainer.validation_data_dir", str(folder.validation_dir)),
        ("trainer.default_local_dir", str(folder.checkpoints)),
        # Every run has a folder of its own; a retried trial starts over, it never resumes
        # another attempt's checkpoint.
        ("trainer.resume_mode", "disable"),
        # Hydra's own output (the composed config, main_ppo.log) in the run folder, not in an
        # outputs/ folder of whatever directory verl was started from.
        ("hydra.run.dir", str(folder.root / "hydra")),
    ]
    if config.model.tokenizer_path:
        pairs.append(("actor_rollout_ref.model.tokenizer_path", config.model.tokenizer_path))
    if config.smoke.enabled:  # the CPU platform, the hf rollout, one rank (bao.verl.cpu)
        from bao.verl.cpu.smoke import cpu_overrides

        pairs += cpu_overrides()
    if data.needs_agent_loop_file:
        pairs.append(
            ("actor_rollout_ref.rollout.agent.agent_loop_config_path", str(folder.agent_loop_file))
        )
    # Ray processes on other nodes do not inherit this process's environment.
    for key, value in environment.items():
        pairs.append((f"+ray_kwargs.ray_init.runtime_env.env_vars.{key}", value))
    return [f"{key}={hydra_value(value)}" for key, value in pairs] + list(config.verl_overrides)


def agent_loop_yaml(data: DataPlan) -> str:
    """verl's agent-loop config file: ``bao_agent`` with the functions file UserRL's
    Function-Gym rows need, or the gym file of Telepathy/Turtle (written when
    :attr:`DataPlan.needs_agent_loop_file`)."""
    entry: dict[str, Any] = {"name": AGENT_NAME, "_target_": "bao.verl.agent_loop.BaoAgentLoop"}
    if data.functions_path is not None:
        entry["functions_path"] = str(data.functions_path)
    if data.gym_file is not None:
        entry["gym_path"] = str(data.gym_file)
    return json.dumps([entry], indent=2) + "\n"  # JSON is YAML


def command(overrides: Sequence[str]) -> list[str]:
    """The argv of the run (an argv list: no shell ever sees the values)."""
    return [sys.executable, "-m", "verl.trainer.main_ppo", *overrides]


# ------------------------------------------------------------------------------ validation


def require_verl() -> None:
    """Raises :class:`VerlUnavailableError` unless the pinned verl imports."""
    try:
        import verl
    except ImportError as error:
        raise VerlUnavailableError(
            f"the verl backend needs verl {VERL_VERSION}, which is not installed ({error})",
            fix=f"install it with {INSTALL_HINT}",
        ) from None
    version = getattr(verl, "__version__", "unknown")
    if version != VERL_VERSION:
        raise VerlUnavailableError(
            f"the verl backend is written for verl {VERL_VERSION}; found verl {version}",
            fix=f'pip install "verl[verl-core]=={VERL_VERSION}"',
        )


def validate_overrides(overrides: Sequence[str], expected: Mapping[str, Any] | None = None) -> Any:
    """Composes ``overrides`` onto verl's ``ppo_trainer`` config with Hydra and runs verl's
    ``validate_config`` on it, as ``main_ppo`` would before asking for any GPU.

    Returns the composed config (an OmegaConf ``DictConfig``).

    Raises:
        ConfigError: a key verl does not have, a value of the wrong type, or a setting verl
            rejects (batch sizes that do not divide, ...), in one line.
    """
    require_verl()
    import verl
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    try:
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            composed = compose(config_name="ppo_trainer", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(
            f"verl rejects the generated command: {first_line(error)}",
            fix="check verl_overrides and the verl config keys (docs/verl.md)",
        ) from None
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    chatter = io.StringIO()  # validate_config prints and warns; only the CLI may print
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            validate_config(
                config=composed,
                use_reference_policy=need_reference_policy(composed),
                use_critic=need_critic(composed),
            )
        for warning in caught:
            log.info("verl validate_config: %s", warning.message)
    except (AssertionError, ValueError, TypeError, OmegaConfBaseException) as error:
        raise ConfigError(
            f"verl's validate_config rejects the run: {first_line(error)}",
            fix="adjust the batch sizes, GPU counts or verl_overrides it names",
        ) from None
    _check_bao_wiring(composed, {**BAO_WIRING, **(expected or {})})
    OmegaConf.set_readonly(composed, True)
    return composed


def _check_bao_wiring(composed: Any, expected: Mapping[str, Any]) -> None:
    """Overrides may change anything; these settings are what BAO's rewards and the
    evaluation rely on, so a run is refused before it starts rather than after it trained."""
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.tool_parser import ToolParser

    for key, value in expected.items():
        found = OmegaConf.select(composed, key)
        if found != value:
            raise ConfigError(
                f"verl_overrides set {key} to {found!r}; the BAO run needs {value!r} "
                "(per-turn rewards reach the estimator only through the bao_agent loop and "
                "the v1 trainer, and the evaluation reads the last validation pass)",
                fix=f"remove the override of {key}",
            )
    if not composed.trainer.test_freq or composed.trainer.test_freq < 1:
        raise ConfigError(
            f"trainer.test_freq is {composed.trainer.test_freq!r}: the run would never validate, "
            "and its evaluation comes from the last validation pass",
            fix="keep schedule.test_freq >= 1 and leave trainer.test_freq alone",
        )
    tool_format = composed.actor_rollout_ref.rollout.multi_turn.format
    parsers = sorted(ToolParser._registry)
    if tool_format not in parsers:
        raise ConfigError(
            f"model.tool_format {tool_format!r} is not a verl tool-call parser",
            fix=f"use one of {', '.join(parsers)}",
        )


def check_gpus(config: VerlConfig) -> None:
    """Fails fast when the run's GPUs are not there (Ray would otherwise wait forever).

    With ``RAY_ADDRESS`` set the run joins that Ray cluster, and the cluster's GPUs count;
    otherwise this machine's CUDA devices do, and ``schedule.nnodes`` must be 1.
    """
    if config.smoke.enabled:  # a smoke run trains on this machine's CPU
        return
    schedule = config.schedule
    needed = schedule.n_gpus_per_node * schedule.nnodes
    fix = (
        "run on a GPU node (docs/verl.md), check the config on CPU with `train --smoke`, or use "
        "the sim backend on a CPU machine"
    )
    if os.environ.get("RAY_ADDRESS"):
        found = _ray_cluster_gpus(os.environ["RAY_ADDRESS"])
        where = f"the Ray cluster at {os.environ['RAY_ADDRESS']}"
    else:
        if schedule.nnodes > 1:
            raise VerlUnavailableError(
                f"schedule.nnodes is {schedule.nnodes} but RAY_ADDRESS is not set",
                fix="start a Ray cluster over the nodes and export RAY_ADDRESS (docs/verl.md)",
            )
        found = _local_gpus()
        where = "this machine"
    if found < needed:
        raise VerlUnavailableError(
            f"the verl backend needs {needed} GPU(s) (schedule.n_gpus_per_node x "
            f"schedule.nnodes) and {where} has {found}",
            fix=fix,
        )


def check_user_simulator(config: VerlConfig) -> None:
    """Telepathy/Turtle: the simulated user's and the judge's servers answer and serve their
    models, before any GPU is asked for (a run against a missing server would train on
    nothing but ``user_unavailable`` turns). Function-Gym has no simulated user."""
    if config.gym not in USER_GYMS:
        return
    from bao.envs.user_simulator import SimulatedUser, UserSimulatorError

    settings = config.user_simulator.model_copy(update={"cache": False})
    try:
        SimulatedUser.from_settings(settings).check()
        if settings.for_evaluation() is not settings:
            SimulatedUser.from_settings(settings.for_evaluation()).check()
    except UserSimulatorError as error:
        raise VerlUnavailableError(str(error)) from None


def _local_gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def _ray_cluster_gpus(address: str) -> int:
    import ray

    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        return int(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
    except (ConnectionError, RuntimeError) as error:
        raise VerlUnavailableError(
            f"cannot reach the Ray cluster at {address}: {first_line(error)}",
            fix="start it (ray start --head) or unset RAY_ADDRESS",
        ) from None
    finally:
        if ray.is_initialized():
            ray.shutdown()


# ------------------------------------------------------------------------------------- run


def run_verl(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
    """Runs verl, streaming its output to ``log_path`` and this process's log; returns its
    exit status. SIGTERM/SIGINT to this process are passed on, so a stopped trial stops verl.

    Raises:
        VerlRunError: the run exited with an error; the message holds its last error line.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=40)
    with log_path.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            text=True,
            errors="replace",
            # Its own session: a signal to this process's group reaches verl once, through
            # the forwarding below; and verl dies with this process, GPU servers and all.
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - async-signal-safe prctl
        )
        forward = _forward_signals(process)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                tail.append(line.rstrip())
                log.info("verl | %s", line.rstrip())
            code = process.wait()
        finally:
            forward.restore()
    if code != 0:
        raise VerlRunError(
            f"verl exited with status {code}: {_error_line(tail)}",
            fix=f"see the full log in {log_path}",
        )
    return code


def _error_line(lines: Sequence[str]) -> str:
    """The most telling line of a failed run's output: its last exception, else its last line."""
    for line in reversed(lines):
        if re.match(r"^\s*[\w.]*(Error|Exception)\b", line):
            return line.strip()[:300]
    shown = [line for line in lines if line.strip()]
    return shown[-1].strip()[:300] if shown else "(no output)"


@dataclass
class _SignalForwarding:
    previous: dict[int, Any]

    def restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for number, handler in self.previous.items():
                signal.signal(number, handler)


def _forward_signals(process: subprocess.Popen[str]) -> _SignalForwarding:
    if threading.current_thread() is not threading.main_thread():
        return _SignalForwarding({})

    def forward(number: int, frame: object) -> None:
        if process.poll() is None:
            process.send_signal(number)

    previous: dict[int, Any] = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        previous[number] = signal.signal(number, forward)
    return _SignalForwarding(previous)


def printable(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The command as a shell line a user can copy (environment first)."""
    head = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    return head + " \\\n  " + " \\\n    ".join(shlex.quote(part) for part in argv)
