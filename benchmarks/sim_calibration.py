"""How often the simulator's reasoner is right, by what it believes and when (docs/sim.md).

    .venv/bin/python benchmarks/sim_calibration.py [--repeats 3] [--turns 4 8 12 15]

No policy and no training: a scripted agent looks up the test case on turn 1 and queries the
reasoner's chosen probe on every later turn, as long as the turn budget allows. At the chosen
turns it records the reasoner's belief (its confidence in its best value) and whether that
value, computed without a slip, is the expected result. The table gives, per confidence bin,
the share of episodes in it and how often its value is right there.

Why it matters: a user-involvement weight lambda makes an answer worth giving when its chance
of being right exceeds lambda (plus what a retry could still bring). How the trained agents'
involvement responds to lambda is therefore set by how the chance of being right spreads over
episodes: where it is either near 0 or near 1, every lambda between the two gives the same
policy. The numbers go to benchmarks/results/sim_calibration.json.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results

from bao.envs.function_gym import FunctionGymEnv, format_action
from bao.sim.config import SimConfig
from bao.sim.reasoner import HypothesisLibrary, Reasoner, test_value_codes
from bao.sim.trainer import load_tasks
from bao.tasks import ANSWER_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
CONFIDENCE_BINS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Bin edges; the chance of being right at lambda in the quickstart box (0-0.5) is what the
finer bins below 0.3 resolve."""


def scripted_beliefs(
    config: SimConfig, turns: list[int], repeats: int, seed: int
) -> dict[int, list[tuple[float, bool]]]:
    """``(confidence, right)`` at each of ``turns`` for every held-out task, ``repeats`` times
    (the reasoner's draws differ per episode)."""
    _, eval_tasks = load_tasks(config)
    settings = config.reasoner
    library = HypothesisLibrary.build(
        settings.library_size, settings.library_seed, settings.n_probes
    )
    values, errors = library.test_values(np.array([t.test_case for t in eval_tasks], dtype=float))
    values = np.where(errors, np.nan, values)
    rng = np.random.default_rng(seed)
    max_turns = config.env.max_turns
    recorded: dict[int, list[tuple[float, bool]]] = {turn: [] for turn in turns}
    for _ in range(repeats):
        for column, task in enumerate(eval_tasks):
            env = FunctionGymEnv(task, max_turns=max_turns)
            env.reset()
            reasoner = Reasoner(
                library,
                values[:, column],
                capacity=settings.capacity,
                rng=rng,
                max_turns=max_turns,
                test_case=task.test_case,
                test_codes=test_value_codes(values[:, column]),
                fallibility=settings.fallibility(),
            )
            for turn in range(1, max(turns) + 1):
                reasoner.think()  # as the trainer does: one turn's thought before acting
                if turn in recorded:
                    belief = reasoner.belief()
                    right = belief.value is not None and (
                        abs(belief.value - task.expected_result) <= ANSWER_TOLERANCE
                    )
                    recorded[turn].append((belief.confidence, right))
                if turn == 1:
                    env.step(format_action("search", "test"))
                    continue
                probe = reasoner.choose_query()
                if probe is None:
                    break  # every probe used: nothing more to learn
                _, _, _, _, info = env.step(format_action("action", library.probe_texts[probe]))
                value = info["value"] if info["event"] == "query_result" else None
                reasoner.observe_query(probe, value)
    return recorded


def table(recorded: dict[int, list[tuple[float, bool]]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for turn, points in recorded.items():
        confidence = np.array([c for c, _ in points])
        right = np.array([r for _, r in points], dtype=float)
        bins = []
        for low, high in itertools.pairwise(CONFIDENCE_BINS):
            inside = (confidence >= low) & (
                confidence <= high if high == CONFIDENCE_BINS[-1] else confidence < high
            )
            bins.append(
                {
                    "confidence": [low, high],
                    "share": float(inside.mean()),
                    "right": float(right[inside].mean()) if inside.any() else None,
                }
            )
        rows[str(turn)] = {"episodes": len(points), "right": float(right.mean()), "bins": bins}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="episodes per held-out task")
    parser.add_argument("--turns", type=int, nargs="+", default=[4, 8, 12, 15])
    parser.add_argument("--seed", type=int, default=0, help="seed of the reasoner's draws")
    args = parser.parse_args()
    config = SimConfig.model_validate(yaml.safe_load((ROOT / "configs/sim.yaml").read_text()))
    rows = table(scripted_beliefs(config, sorted(args.turns), args.repeats, args.seed))
    print(
        "| turn | right, all | "
        + " | ".join(f"conf {low:g}-{high:g}" for low, high in itertools.pairwise(CONFIDENCE_BINS))
        + " |"
    )
    print("|---:|---:|" + "---:|" * (len(CONFIDENCE_BINS) - 1))
    for turn, row in rows.items():
        cells = [
            "-" if b["share"] == 0 else f"{b['share']:.3f} / {b['right']:.3f}" for b in row["bins"]
        ]
        print(f"| {turn} | {row['right']:.3f} | " + " | ".join(cells) + " |")
    print("\ncells: share of episodes in the bin / share of those whose value is right")
    path = write_results(
        "sim_calibration", {"repeats": args.repeats, "seed": args.seed, "turns": rows}
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
