"""The ``bao`` package's subcommands (loaded lazily by ``sweep.cli``).

``baselines``: evaluate the scripted reference policies on generated or loaded tasks.
"""

from __future__ import annotations

import argparse
import json
import logging

from bao.metrics import DEFAULT_K_MAX, summarize
from bao.scripted import SCRIPTED_POLICIES, EpisodeSettings, evaluate_scripted
from bao.tasks import generate_function_tasks, load_function_tasks

log = logging.getLogger(__name__)

COMMANDS = {"baselines": "evaluate scripted reference policies on Function-Gym tasks"}


def build_parser(command: str) -> argparse.ArgumentParser:
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


def _print_table(results: dict[str, dict[str, float]], n_tasks: int, k_max: int) -> None:
    from rich.console import Console
    from rich.table import Table

    ks = sorted({1, min(3, k_max), k_max})
    table = Table(title=f"Scripted policies on {n_tasks} Function-Gym tasks")
    table.add_column("policy", no_wrap=True)
    for k in ks:
        table.add_column(f"P@U-{k}", justify="right")
    table.add_column(f"P@U-{k_max} 95% CI", justify="right")
    for column in ("Score", "UR", "explore", "no-ans", "turns"):
        table.add_column(column, justify="right")
    for name, m in results.items():
        cells = [f"{m[f'pass_at_u_{k}']:.3f}" for k in ks]
        cells += [
            f"{m[f'pass_at_u_{k_max}_lo']:.2f}-{m[f'pass_at_u_{k_max}_hi']:.2f}",
            f"{m['score']:.3f}",
            f"{m['user_involvement_rate']:.3f}",
            f"{m['exploration_ratio']:.2f}",
            f"{m['no_answer_rate']:.2f}",
            f"{m['mean_turns']:.1f}",
        ]
        table.add_row(name, *cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # piped output: do not squeeze to 80 columns
    console.print(table)
