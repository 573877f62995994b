"""The simulator's trade-off, ablations and capacity sweep over seeds (docs/sim.md).

    .venv/bin/python benchmarks/sim_ablation.py [--seeds 3] [--jobs 2] [--only NAME ...]

Each row is configs/sim.yaml (full BAO: lambda 0.1, alpha 0.1, beta 0.02) with the changes
named; cells are mean +- std over seeds. Runs call the trainer directly (no MLflow).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bao.configuration import apply_overrides
from bao.sim.config import SimConfig

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, list[str]] = {
    "full BAO (lambda 0.1)": [],
    "w/o info-seeking penalty": ["shaping.info_seeking=0"],
    "w/o over-thinking penalty": ["shaping.over_thinking=0"],
    "w/o both (w/o BR)": ["shaping.info_seeking=0", "shaping.over_thinking=0"],
    "UserRL credit (equalized/mean)": ["advantage.credit=equalized", "advantage.score=mean"],
    "lambda 0": ["shaping.user_lambda=0"],
    # At lambda 0 nothing else discourages answering, so the penalties' effects show plainly.
    "lambda 0, w/o info-seeking": ["shaping.user_lambda=0", "shaping.info_seeking=0"],
    "lambda 0, w/o over-thinking": ["shaping.user_lambda=0", "shaping.over_thinking=0"],
    "lambda 0, w/o both": [
        "shaping.user_lambda=0",
        "shaping.info_seeking=0",
        "shaping.over_thinking=0",
    ],
    "lambda 0.3": ["shaping.user_lambda=0.3"],
    "capacity 16": ["reasoner.capacity=16"],
    "capacity 128": ["reasoner.capacity=128"],
}
COLUMNS = [
    ("pass_at_u_1", "Pass@U-1"),
    ("pass_at_u_3", "Pass@U-3"),
    ("score", "Score"),
    ("user_involvement_rate", "UR"),
    ("back_to_back", "b2b answers"),
    ("early_finish", "early finish"),
    ("mean_turns", "turns"),
    ("no_answer_rate", "no answer"),
]


def run_one(overrides: list[str], seed: int) -> dict[str, float]:
    from bao.sim.trainer import train

    base = yaml.safe_load((ROOT / "configs/sim.yaml").read_text())
    config = SimConfig.model_validate(apply_overrides(base, [*overrides, f"seed={seed}"]))
    result = train(config)
    metrics = dict(result.metrics)
    n = len(result.trajectories)
    # Behaviour the two penalties target: answering again without new information, and
    # giving up early.
    metrics["back_to_back"] = (
        sum(
            sum(a == b == "answer" for a, b in zip(t.choices, t.choices[1:], strict=False))
            for t in result.trajectories
        )
        / n
    )
    metrics["early_finish"] = (
        sum(bool(t.choices) and t.choices[-1] == "finish" for t in result.trajectories) / n
    )
    metrics["seconds"] = result.seconds
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="variant names to run")
    args = parser.parse_args()
    variants = {k: v for k, v in VARIANTS.items() if not args.only or k in args.only}
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {
            (name, seed): pool.submit(run_one, overrides, seed)
            for name, overrides in variants.items()
            for seed in range(args.seeds)
        }
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for (name, _), future in futures.items():
            results[name].append(future.result())
    header = " | ".join(label for _, label in COLUMNS)
    print(f"| variant | {header} |")
    print("|---|" + "---:|" * len(COLUMNS))
    for name, runs in results.items():
        cells = []
        for key, _ in COLUMNS:
            values = [run[key] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    seconds = [run["seconds"] for runs in results.values() for run in runs]
    median = statistics.median(seconds)
    print(
        f"\n{len(seconds)} runs, {args.jobs} in parallel: median {median:.1f} s per run, "
        f"{time.perf_counter() - started:.0f} s in all"
    )


if __name__ == "__main__":
    main()
