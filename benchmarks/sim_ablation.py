"""The simulator's trade-off, its ablations and capacity, over seeds (docs/sim.md).

    .venv/bin/python benchmarks/sim_ablation.py [--jobs 2] [--only lambda table1 lhs]

Three studies, each a set of trainings of configs/sim.yaml with named changes (the trainer is
called directly, without MLflow); cells are mean +- std over seeds:

* ``lambda``: the user-involvement weight at 0, 0.05, 0.1, 0.2 and 0.3 (2 seeds; 3 at 0):
  is the trade-off graded (user involvement falling at every step, the (score, UR) points
  mutually non-dominated) and do answers after the first pay at lambda 0?
* ``table1``: the BAO paper's Function-Gym comparisons, at lambda 0 as in the published BAO
  code (which has no lambda term): full BAO, without both behaviour penalties, UserRL's recipe
  (equalized credit, mean score, no penalties), and capacities 16 and 128 (2 seeds each);
* ``lhs``: a 16-point Latin hypercube over configs/quickstart.yaml's search box at its
  iterations (1 seed): how much of the box collapses to never answering.

The checks the design is held to are printed after the tables and written with the numbers to
benchmarks/results/sim_ablation.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, write_results

from bao.configuration import apply_overrides
from bao.sim.config import SimConfig

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = (0.0, 0.05, 0.1, 0.2, 0.3)
COLLAPSED_NO_ANSWER = 0.9
"""A trained agent that leaves at least this share of tasks unanswered has collapsed."""
LHS_POINTS = 16
LHS_SEED = 7

LAMBDA_0 = ["shaping.user_lambda=0"]
NO_PENALTIES = ["shaping.info_seeking=0", "shaping.over_thinking=0"]
TABLE1: dict[str, list[str]] = {
    "full BAO": LAMBDA_0,
    "w/o both penalties (w/o BR)": [*LAMBDA_0, *NO_PENALTIES],
    "UserRL recipe (equalized/mean, no penalties)": [
        *LAMBDA_0,
        *NO_PENALTIES,
        "advantage.credit=equalized",
        "advantage.score=mean",
    ],
    "full BAO, capacity 16": [*LAMBDA_0, "reasoner.capacity=16"],
    "full BAO, capacity 128": [*LAMBDA_0, "reasoner.capacity=128"],
}
COLUMNS = [
    ("pass_at_u_1", "Pass@U-1"),
    ("pass_at_u_2", "Pass@U-2"),
    ("pass_at_u_3", "Pass@U-3"),
    ("score", "Score"),
    ("user_involvement_rate", "UR"),
    ("mean_user_actions", "answers"),
    ("back_to_back", "b2b answers"),
    ("mean_turns", "turns"),
    ("no_answer_rate", "no answer"),
]


def run_one(overrides: list[str], seed: int) -> dict[str, float]:
    from bao.sim.trainer import train

    base = yaml.safe_load((ROOT / "configs/sim.yaml").read_text())
    config = SimConfig.model_validate(apply_overrides(base, [*overrides, f"seed={seed}"]))
    result = train(config)
    metrics = dict(result.metrics)
    # Answers right after an answer: what the information-seeking penalty targets.
    metrics["back_to_back"] = sum(
        sum(a == b == "answer" for a, b in zip(t.choices, t.choices[1:], strict=False))
        for t in result.trajectories
    ) / len(result.trajectories)
    metrics["seconds"] = result.seconds
    return metrics


def quickstart_box() -> tuple[dict[str, tuple[float, float]], list[str]]:
    """The quickstart sweep's float search box and its per-trial training overrides."""
    sweep = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    box = {
        key: (float(spec["low"]), float(spec["high"]))
        for key, spec in sweep["search_space"].items()
    }

    def flatten(prefix: str, value: Any) -> list[str]:
        if isinstance(value, dict):
            return [o for k, v in value.items() for o in flatten(f"{prefix}{k}.", v)]
        return [f"{prefix[:-1]}={value}"]

    return box, flatten("", sweep.get("train") or {})


def lhs_points() -> list[list[str]]:
    """A Latin hypercube over the quickstart box (scipy's, seeded), as override lists."""
    from scipy.stats import qmc

    box, train_overrides = quickstart_box()
    unit = qmc.LatinHypercube(d=len(box), seed=LHS_SEED).random(LHS_POINTS)
    lows = [low for low, _ in box.values()]
    highs = [high for _, high in box.values()]
    scaled = qmc.scale(unit, lows, highs)
    return [
        [*train_overrides, *(f"{key}={value:.4f}" for key, value in zip(box, row, strict=True))]
        for row in scaled
    ]


def summary(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "mean": statistics.mean(run[key] for run in runs),
            "std": statistics.stdev(run[key] for run in runs) if len(runs) > 1 else 0.0,
        }
        for key, _ in [*COLUMNS, ("seconds", "")]
    }


def print_table(title: str, rows: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"\n{title}\n")
    print("| variant | " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for name, cells in rows.items():
        text = [f"{cells[key]['mean']:.3f} ± {cells[key]['std']:.3f}" for key, _ in COLUMNS]
        print(f"| {name} | " + " | ".join(text) + " |")


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(score up, UR down): ``a`` is at least as good on both and better on one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def lambda_checks(rows: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    means = [
        (
            rows[f"lambda {lam:g}"]["score"]["mean"],
            rows[f"lambda {lam:g}"]["user_involvement_rate"]["mean"],
        )
        for lam in LAMBDAS
    ]
    ur = [point[1] for point in means]
    nondominated = [
        point[0] >= 0.2 and not any(dominates(other, point) for other in means if other != point)
        for point in means
    ]
    zero = rows["lambda 0"]
    return {
        "pass_at_u_3_minus_1_at_lambda_0": zero["pass_at_u_3"]["mean"]
        - zero["pass_at_u_1"]["mean"],
        "score_minus_pass_at_u_1_at_lambda_0": zero["score"]["mean"] - zero["pass_at_u_1"]["mean"],
        "ur_falls_at_every_step": all(b < a for a, b in itertools.pairwise(ur)),
        "ur_ratio_lambda_0_to_0.3": ur[0] / ur[-1] if ur[-1] > 0 else float("inf"),
        "nondominated_with_score_at_least_0.2": sum(nondominated),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=("lambda", "table1", "lhs"))
    args = parser.parse_args()
    studies = set(args.only or ("lambda", "table1", "lhs"))

    jobs: dict[tuple[str, str, int], list[str]] = {}
    if "lambda" in studies:
        for lam in LAMBDAS:
            for seed in range(3 if lam == 0 else 2):
                jobs[("lambda", f"lambda {lam:g}", seed)] = [f"shaping.user_lambda={lam}"]
    if "table1" in studies:
        for name, overrides in TABLE1.items():
            for seed in range(2):
                jobs[("table1", name, seed)] = overrides
    if "lhs" in studies:
        for index, overrides in enumerate(lhs_points()):
            jobs[("lhs", f"point {index}", 0)] = overrides

    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {key: pool.submit(run_one, overrides, key[2]) for key, overrides in jobs.items()}
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for (study, name, _), future in futures.items():
            runs.setdefault((study, name), []).append(future.result())

    results: dict[str, Any] = {}
    if "lambda" in studies:
        rows = {name: summary(r) for (study, name), r in runs.items() if study == "lambda"}
        print_table("The user-involvement weight (configs/sim.yaml otherwise)", rows)
        results["lambda"] = {"rows": rows, "checks": lambda_checks(rows)}
    if "table1" in studies:
        rows = {name: summary(r) for (study, name), r in runs.items() if study == "table1"}
        print_table("Table 1's Function-Gym comparisons, lambda 0", rows)
        full, plain = rows["full BAO"], rows["w/o both penalties (w/o BR)"]
        userrl = rows["UserRL recipe (equalized/mean, no penalties)"]
        results["table1"] = {
            "rows": rows,
            "checks": {
                "ur_without_penalties_over_full": plain["user_involvement_rate"]["mean"]
                / full["user_involvement_rate"]["mean"],
                "userrl_ur_higher": userrl["user_involvement_rate"]["mean"]
                > full["user_involvement_rate"]["mean"],
                "userrl_pass_at_u_2_lower": userrl["pass_at_u_2"]["mean"]
                < full["pass_at_u_2"]["mean"],
                "capacity_16_48_128_score": [
                    rows["full BAO, capacity 16"]["score"]["mean"],
                    full["score"]["mean"],
                    rows["full BAO, capacity 128"]["score"]["mean"],
                ],
            },
        }
    if "lhs" in studies:
        points = []
        for index, overrides in enumerate(lhs_points()):
            (run,) = runs[("lhs", f"point {index}")]
            points.append({"overrides": overrides, **{key: run[key] for key, _ in COLUMNS}})
        collapsed = sum(p["no_answer_rate"] >= COLLAPSED_NO_ANSWER for p in points)
        print(f"\nLatin hypercube over the quickstart box ({LHS_POINTS} points, seed {LHS_SEED})\n")
        for point in points:
            knobs = " ".join(o for o in point["overrides"] if o.startswith("shaping."))
            print(
                f"{knobs}: score {point['score']:.3f}, UR {point['user_involvement_rate']:.3f},"
                f" no answer {point['no_answer_rate']:.3f}"
            )
        results["lhs"] = {"points": points, "collapsed": collapsed, "share": collapsed / LHS_POINTS}

    seconds = [run["seconds"] for group in runs.values() for run in group]
    timing = {
        "runs": len(seconds),
        "median_seconds": statistics.median(seconds),
        "wall_seconds": time.perf_counter() - started,
        "jobs": args.jobs,
    }
    for study in studies:
        results[study]["timing"] = timing
    print("\nChecks:")
    for study in ("lambda", "table1"):
        for key, value in results.get(study, {}).get("checks", {}).items():
            print(f"  {study}: {key} = {value}")
    if "lhs" in results:
        print(f"  lhs: collapsed {results['lhs']['collapsed']} of {LHS_POINTS}")
    print(
        f"\n{len(seconds)} runs, {args.jobs} in parallel: median {timing['median_seconds']:.1f} s"
        f" per run, {timing['wall_seconds']:.0f} s in all"
    )
    # A run of some studies keeps the others' last results (each with its own timing).
    path = RESULTS_DIR / "sim_ablation.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    for study in studies:
        kept.pop(study, None)
    results = {
        **{key: kept[key] for key in ("lambda", "table1", "lhs") if key in kept},
        **results,
    }
    write_results("sim_ablation", results, quick=False)


if __name__ == "__main__":
    main()
