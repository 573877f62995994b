"""Throughput of the rule evaluators: scalar tree walk versus the vectorised stack machine.

    .venv/bin/python benchmarks/bench_evaluator.py [--rules 2000] [--points 16] [--repeat 5]

The simulator's reasoner filters pools of candidate rules against every observation, so
``evaluate_many`` on (pool size x a few points) is its hot path. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from collections.abc import Callable

import numpy as np

from bao import expressions
from bao.expressions import RuleEvaluationError, compile_rules, evaluate, evaluate_many, round4
from bao.tasks import generate_function_tasks


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=2000)
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    trees = [task.expression for task in generate_function_tasks(args.rules, seed=0)]
    rng = np.random.default_rng(0)
    grid = rng.integers(-10, 11, size=(args.points, 4)).astype(float)
    points = grid.tolist()
    evaluations = args.rules * args.points

    def scalar() -> None:
        for tree in trees:
            for point in points:
                with contextlib.suppress(RuleEvaluationError):
                    round(evaluate(tree, point), 4)

    compiled = compile_rules(trees)

    def vectorised() -> None:
        values, _ = evaluate_many(compiled, grid)
        round4(values)

    def numpy_power_variant() -> None:
        # The first design: numpy's own power. Rejected: 1-ulp drift from Python's ** on a
        # few percent of inputs. Timed here to show what exactness costs.
        exact = expressions._python_pow_ufunc
        expressions._python_pow_ufunc = np.power  # type: ignore[assignment]
        try:
            vectorised()
        finally:
            expressions._python_pow_ufunc = exact

    n_pow = int((compiled.codes == 7).sum())
    timings = {
        "scalar tree walk + round()": (best_of(args.repeat, scalar), True),
        "compile_rules (once per pool)": (
            best_of(args.repeat, lambda: compile_rules(trees)),
            False,
        ),
        "evaluate_many + round4, exact ** (shipped)": (best_of(args.repeat, vectorised), True),
        "evaluate_many + round4, numpy power (rejected)": (
            best_of(args.repeat, numpy_power_variant),
            True,
        ),
    }
    print(
        f"{args.rules} rules x {args.points} points = {evaluations:,} evaluations, "
        f"{n_pow} '**' nodes; Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"| step | best of {args.repeat} (ms) | evaluations/s |")
    print("|---|---:|---:|")
    for name, (seconds, counts) in timings.items():
        rate = f"{evaluations / seconds:,.0f}" if counts else "-"
        print(f"| {name} | {seconds * 1e3:.1f} | {rate} |")
    scalar_time = timings["scalar tree walk + round()"][0]
    shipped = timings["evaluate_many + round4, exact ** (shipped)"][0]
    print(f"\nvectorised vs scalar: {scalar_time / shipped:.1f}x faster")


if __name__ == "__main__":
    main()
