"""The ``bao`` package's subcommands (loaded lazily by ``sweep.cli``).

``train``: one training run of a config, logged to MLflow; ``--json`` prints the final metrics.
``baselines``: evaluate the scripted reference policies on generated or loaded tasks.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING, Final

from bao.configuration import add_override_option
from bao.metrics import DEFAULT_K_MAX, summarize
from bao.scripted import SCRIPTED_POLICIES, EpisodeSettings, evaluate_scripted
from bao.tasks import generate_function_tasks, load_function_tasks

if TYPE_CHECKING:
    from bao.sim.config import TaskSettings
    from bao.verl.config import VerlTaskSettings

log = logging.getLogger(__name__)

COMMANDS = {
    "train": "one training run (simulator, or verl on GPUs), logged to MLflow",
    "baselines": "evaluate scripted reference policies on Function-Gym tasks",
}


def build_parser(command: str) -> argparse.ArgumentParser:
    if command == "train":
        return _train_parser()
    parser = argparse.ArgumentParser(prog=f"bao-pareto {command}", description=COMMANDS[command])
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--n-tasks", type=int, default=200, help="generate this many tasks (default 200)"
    )
    source.add_argument(
        "--tasks", metavar="PATH", help="load tasks instead (UserRL .json, .jsonl or .parquet)"
    )
    parser.add_argument("--seed", type=int, default=0, help="task generation and policy seed")
    parser.add_argument("--max-turns", type=int, default=16, help="turn budget per episode")
    parser.add_argument("--k-max", type=int, default=DEFAULT_K_MAX, help="largest k of Pass@U-k")
    parser.add_argument(
        "--policy",
        action="append",
        choices=sorted(SCRIPTED_POLICIES),
        help="policy to evaluate (repeatable; default: all)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def run(command: str, argv: list[str]) -> int:
    if command == "train":
        return _train(_train_parser().parse_args(argv))
    args = build_parser(command).parse_args(argv)
    if args.tasks:
        tasks = load_function_tasks(args.tasks)
    else:
        if args.n_tasks < 1:
            parser = build_parser(command)
            parser.error(f"--n-tasks must be at least 1, got {args.n_tasks}")
        tasks = generate_function_tasks(args.n_tasks, args.seed)
    if args.max_turns < 1 or args.k_max < 1:
        build_parser(command).error("--max-turns and --k-max must be at least 1")
    settings = EpisodeSettings(max_turns=args.max_turns, seed=args.seed)
    results: dict[str, dict[str, float]] = {}
    for name in args.policy or list(SCRIPTED_POLICIES):
        log.info("evaluating %s on %d tasks", name, len(tasks))
        results[name] = summarize(evaluate_scripted(tasks, name, settings), k_max=args.k_max)
    if args.json:
        print(json.dumps({"n_tasks": len(tasks), "seed": args.seed, "policies": results}))
    else:
        _print_table(results, len(tasks), args.k_max)
    return 0


BASELINE_COLUMNS: Final = (
    ("Score", "score", ".3f", "mean reward of a trajectory (solved within the turn budget)"),
    ("UR", "user_involvement_rate", ".3f", "share of turns that ask the user (answer turns)"),
    ("explore", "exploration_ratio", ".2f", "(action + search turns) / max(1, answer turns)"),
    ("no-ans", "no_answer_rate", ".2f", "share of trajectories that never answer (collapse)"),
    ("turns", "mean_turns", ".1f", "mean turns per trajectory"),
)
"""The metric columns of the ``baselines`` table: header, ``bao.metrics`` key, format, and
the legend line printed under the table (docs/concepts.md, "Metrics")."""


def _print_table(results: dict[str, dict[str, float]], n_tasks: int, k_max: int) -> None:
    from rich.console import Console
    from rich.table import Table

    ks = sorted({1, min(3, k_max), k_max})
    table = Table(title=f"Scripted policies on {n_tasks} Function-Gym tasks")
    table.add_column("policy", no_wrap=True)
    for k in ks:
        table.add_column(f"P@U-{k}", justify="right")
    table.add_column(f"P@U-{k_max} 95% CI", justify="right")
    for header, *_ in BASELINE_COLUMNS:
        table.add_column(header, justify="right")
    for name, m in results.items():
        cells = [f"{m[f'pass_at_u_{k}']:.3f}" for k in ks]
        cells.append(f"{m[f'pass_at_u_{k_max}_lo']:.2f}-{m[f'pass_at_u_{k_max}_hi']:.2f}")
        cells += [format(m[key], spec) for _, key, spec, _ in BASELINE_COLUMNS]
        table.add_row(name, *cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # piped output: do not squeeze to 80 columns
    console.print(table)
    legend = [
        "P@U-k: share of trajectories solved within their first k answer turns (Pass@U-k), "
        "with its Wilson 95% interval",
        *(f"{header}: {meaning} ({key})" for header, key, _, meaning in BASELINE_COLUMNS),
    ]
    console.print("\n".join(legend), highlight=False)


# --------------------------------------------------------------------------------- train


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bao-pareto train", description=COMMANDS["train"])
    parser.add_argument(
        "config", help="YAML config, e.g. configs/sim.yaml or configs/verl/function_gym.yaml"
    )
    add_override_option(parser, "shaping.user_lambda=0.1")
    parser.add_argument(
        "--workspace", help="MLflow database and artifacts (default $BAO_PARETO_HOME or ./bao-runs)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="also write that JSON object to PATH (what the sweep's command backend reads)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="verl: print the command and validate it (Hydra compose + verl's validate_config) "
        "without starting anything; needs no GPU",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="verl: run the real verl pipeline for a step on this machine's CPU with a tiny "
        "random model of the config's family (sets smoke.enabled; docs/verl.md)",
    )
    return parser


def _train(args: argparse.Namespace) -> int:
    from bao.configuration import ConfigError, apply_overrides, read_yaml, validate
    from bao.sim.config import SimConfig, task_count_problem
    from bao.tracking import (
        MetricBuffer,
        log_run_inputs,
        log_run_record,
        mlflow_client,
        progress_sink,
        resolve_workspace,
        training_run,
    )

    raw = apply_overrides(read_yaml(args.config), args.overrides)
    if raw.get("backend") == "verl":
        if args.smoke:
            raw = apply_overrides(raw, ["smoke.enabled=true"])
        return _train_verl(args, raw)
    if args.smoke:
        raise ConfigError(
            f"{args.config}: --smoke runs a verl config on CPU; this is a "
            f"{raw.get('backend', 'sim')} config, which runs on CPU as it is",
            fix="drop --smoke",
        )
    if args.dry_run:
        raise ConfigError(
            f"{args.config}: --dry-run checks a verl launch; this is a {raw.get('backend', 'sim')} "
            "config, which `train` validates before it starts anyway",
            fix="drop --dry-run",
        )
    config = validate(SimConfig, raw, source=args.config, overrides=args.overrides)
    # Tasks are loaded (and so validated) before the workspace is created and any run is
    # opened in MLflow: a bad task file leaves nothing behind.
    _check_task_paths(config.tasks, args.config)
    from bao.sim.trainer import load_tasks, train

    tasks = load_tasks(config)
    if config.tasks.train_path is not None:
        problem = task_count_problem(config, len(tasks[0]), str(config.tasks.train_path))
        if problem:
            raise ConfigError(
                f"{args.config}: {problem}",
                fix="lower trainer.tasks_per_iteration or add training tasks",
            )
    workspace = resolve_workspace(args.workspace)
    client = mlflow_client(workspace, writing=True)
    resolved = config.model_dump(mode="json")
    with training_run(
        client, workspace, name=config.name, seed=config.seed, backend=config.backend
    ) as run_id:
        log_run_inputs(client, run_id, resolved, tasks[1])
        sink = MetricBuffer(client, run_id)
        result = train(config, progress_sink(sink), tasks=tasks)
        sink.flush()
        client.log_metric(run_id, "train/seconds", result.seconds)
        log_run_record(client, run_id, resolved, result.trajectories)
        _log_policy(client.tracking_uri, run_id, result.policy)
    if _report(args, run_id, result.seconds, result.metrics):
        print(f"untrained: {_summary(result.initial_metrics)}")
        print(f"trained:   {_summary(result.metrics)}")
        print(f"MLflow run {run_id} in {workspace} ({result.seconds:.1f} s)")
    return 0


def _train_verl(args: argparse.Namespace, raw: dict[str, object]) -> int:
    """``train`` on a verl config: a dry run, or a verl launch evaluated into MLflow."""
    from bao.configuration import validate
    from bao.tracking import resolve_workspace, workspace_path
    from bao.verl.config import VerlConfig
    from bao.verl.launch import printable

    config = validate(VerlConfig, raw, source=args.config, overrides=args.overrides)
    _check_task_paths(config.tasks, args.config)
    if args.dry_run:
        from bao.verl.run import dry_run

        # A dry run writes nothing, not even the workspace folder.
        prepared = dry_run(config, workspace_path(args.workspace).resolve())
        from bao.verl.run import dry_run_notes

        gpus = config.schedule.n_gpus_per_node * config.schedule.nnodes
        where = f"needs {gpus} GPU(s)"
        if config.smoke.enabled:
            where = "runs on this machine's CPU (smoke run)"
        notes = dry_run_notes(config, prepared)
        if args.json:
            document = {"argv": prepared.argv, "env": prepared.env, "valid": True}
            print(json.dumps({**document, "gym": config.gym, "notes": notes}))
            return 0
        print(printable(prepared.argv, prepared.env))
        print(
            f"valid: composed with Hydra and checked by verl's validate_config; {config.gym}, "
            f"{len(prepared.data.train_tasks)} training and {len(prepared.data.eval_tasks)} "
            f"validation tasks; {where}; train writes the data files and adds "
            "MLFLOW_RUN_ID"
        )
        for note in notes:
            print(f"note: {note}")
        return 0
    from bao.verl.launch import check_gpus, check_user_simulator, require_verl
    from bao.verl.run import dry_run, train

    # What train checks first (verl, the GPUs, the simulated user, the tasks and the
    # command), checked before the workspace is created: a launch that cannot start leaves
    # nothing behind. The second Hydra compose inside train costs seconds against a run of
    # hours.
    require_verl()
    check_gpus(config)
    check_user_simulator(config)
    dry_run(config, workspace_path(args.workspace).resolve())
    result = train(config, resolve_workspace(args.workspace), config.model_dump(mode="json"))
    if _report(args, result.run_id, result.seconds, result.metrics):
        print(f"evaluated after step {result.step}: {_summary(result.metrics)}")
        print(f"MLflow run {result.run_id}; verl files in {result.folder}")
    return 0


def _check_task_paths(settings: TaskSettings | VerlTaskSettings, source: str) -> None:
    """Each task file the config names exists: the loaders would say which file is missing,
    this also says which key of which config named it."""
    from pathlib import Path

    from bao.configuration import ConfigError

    for key in ("train_path", "eval_path", "functions_path", "records_path"):
        path = getattr(settings, key, None)
        if isinstance(path, Path) and not path.is_file():
            raise ConfigError(
                f"{source}: tasks.{key}: task file {str(path)!r} does not exist",
                fix="check the path (relative to the working directory)",
            )


def _report(
    args: argparse.Namespace, run_id: str, seconds: float, metrics: dict[str, float]
) -> bool:
    """Writes the final-metrics document (``--metrics-file``, ``--json``); True when the
    caller should print its human-readable lines instead."""
    from pathlib import Path

    final = {f"eval/{key}": value for key, value in metrics.items()}
    document = {"run_id": run_id, "seconds": round(seconds, 3), **final}
    if args.metrics_file:
        Path(args.metrics_file).write_text(json.dumps(document), encoding="utf-8")
    if args.json:
        print(json.dumps(document))
    return not args.json


def _summary(metrics: dict[str, float]) -> str:
    top = 3 if "pass_at_u_3" in metrics else 1
    keys = ["pass_at_u_1", f"pass_at_u_{top}", "score", "user_involvement_rate", "no_answer_rate"]
    return ", ".join(f"{key} {metrics[key]:.3f}" for key in dict.fromkeys(keys))


def _log_policy(uri: str, run_id: str, policy: object) -> None:
    """The trained policy as an MLflow PyTorch model (requirements given, not inferred)."""
    import mlflow
    import numpy as np
    import torch

    from bao.records import MODEL_POLICY
    from bao.sim.policy import N_FEATURES
    from bao.tracking import fluent_tracking

    with fluent_tracking(uri), mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(
            policy,
            name=MODEL_POLICY,
            # Pickled, not traced: a pt2 export fixes the batch size to the example's.
            serialization_format="pickle",
            input_example=np.zeros((2, N_FEATURES), dtype=np.float32),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
