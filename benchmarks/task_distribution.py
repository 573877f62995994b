"""Compares the generator's rule distribution with UserRL's 460 Function-Gym training rules.

    .venv/bin/python benchmarks/task_distribution.py [--userrl PATH] [--n 5000] [--seed 0]

Prints a markdown table (the one in docs/tasks.md) and the generation throughput.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bao.tasks import generate_function_tasks, load_function_tasks, task_distribution

DEFAULT_USERRL = (
    Path(__file__).resolve().parents[2] / "shared/data/userrl/function_gym/functions_train.json"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--userrl", type=Path, default=DEFAULT_USERRL)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    generated = generate_function_tasks(args.n, args.seed)
    elapsed = time.perf_counter() - start
    ours = task_distribution(generated)
    reference = task_distribution(load_function_tasks(args.userrl))
    print(f"| statistic | UserRL train ({int(reference['n_rules'])}) | generated ({args.n}) |")
    print("|---|---:|---:|")
    for key in ours:
        if key == "n_rules":
            continue
        print(f"| {key} | {reference[key]:.3f} | {ours[key]:.3f} |")
    print(f"\ngenerated {args.n} tasks in {elapsed:.2f} s ({args.n / elapsed:,.0f} tasks/s)")


if __name__ == "__main__":
    main()
