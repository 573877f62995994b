"""Simulator throughput: environment, rule evaluation, rollouts, GRPO updates, a whole run.

    .venv/bin/python benchmarks/bench_simulator.py [--quick] [--profile]

Measured on the default training config (configs/sim.yaml), one core (the trainer pins torch
to one thread; a sweep runs one trial per core):

* environment steps per second: ``FunctionGymEnv.step`` alone, on a fixed mix of queries,
  test-case searches and answers (what the text protocol and the scalar rule evaluator cost);
* rule evaluations per second: ``evaluate_many`` on the reasoner's hypothesis library at its
  probe points (the vectorised evaluator, as the library build uses it);
* rollout turns per second: ``play_episodes`` on one iteration's batch (16 tasks x 8 episodes)
  with the untrained policy, sampled as in training (reasoner, features, policy, environment);
* time per GRPO update: ``grpo_update`` on those episodes (2 PPO epochs);
* one training run's wall time, broken down: ``train`` with its phases timed in place (tasks,
  hypothesis library, test-value table, evaluations, rollouts, shaping and advantages, updates),
  and ``bao-pareto train`` as a process, whose extra time is start-up and MLflow logging.

``--profile`` also prints cProfile's top functions of one ``train`` (profiling slows it
about 1.7x, so timings come from the unprofiled runs). Results: results/bench_simulator.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import machine_line, median, print_table, timed, write_results  # noqa: E402

from bao.configuration import read_yaml  # noqa: E402
from bao.sim import trainer  # noqa: E402
from bao.sim.config import SimConfig  # noqa: E402

SIM_CONFIG = HERE.parent / "configs" / "sim.yaml"


def default_config(**changes: Any) -> SimConfig:
    raw = read_yaml(SIM_CONFIG)
    for path, value in changes.items():
        section, key = path.split(".")
        raw.setdefault(section, {})[key] = value
    return SimConfig.model_validate(raw)


# ------------------------------------------------------------------------------ pieces


def env_steps_per_second(config: SimConfig, n_steps: int) -> float:
    """Scalar environment steps on a fixed action mix (60% queries, 15% search, 25% answers)."""
    from bao.envs.function_gym import FunctionGymEnv, format_action

    train_tasks, _ = trainer.load_tasks(config)
    rng = np.random.default_rng(0)
    kinds = rng.choice(["action", "search", "answer"], size=n_steps, p=[0.6, 0.15, 0.25])
    points = rng.integers(1, 11, size=(n_steps, 4))
    actions = [
        format_action("action", " ".join(map(str, point)))
        if kind == "action"
        else format_action("search", "test")
        if kind == "search"
        else format_action("answer", "0")
        for kind, point in zip(kinds, points, strict=True)
    ]
    task_order = rng.integers(0, len(train_tasks), size=n_steps)
    env = FunctionGymEnv(train_tasks[0], max_turns=config.env.max_turns)
    env.reset()
    started = time.perf_counter()
    for action, task in zip(actions, task_order, strict=True):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env = FunctionGymEnv(train_tasks[int(task)], max_turns=config.env.max_turns)
            env.reset()
    return n_steps / (time.perf_counter() - started)


def rule_evaluations_per_second(config: SimConfig) -> tuple[float, float]:
    """``evaluate_many`` over the library's rules at its probes: (evaluations/s, seconds)."""
    from bao.expressions import compile_rules, evaluate_many
    from bao.sim.reasoner import HypothesisLibrary

    library = HypothesisLibrary.build(
        config.reasoner.library_size, config.reasoner.library_seed, config.reasoner.n_probes
    )
    compiled = compile_rules(library.rules)
    times, _ = timed(lambda: evaluate_many(compiled, library.probes), repeat=3)
    evaluations = library.size * len(library.probes)
    return evaluations / min(times), min(times)


def rollout_and_update(config: SimConfig, repeat: int) -> dict[str, float]:
    """One iteration's rollouts and GRPO update with the untrained policy, best of ``repeat``."""

    from bao.sim.reasoner import HypothesisLibrary

    torch.set_num_threads(1)
    train_tasks, _ = trainer.load_tasks(config)
    library = HypothesisLibrary.build(
        config.reasoner.library_size, config.reasoner.library_seed, config.reasoner.n_probes
    )
    test_values = trainer._test_value_table(library, train_tasks)
    settings = config.trainer
    rollout_s, update_s, turns = [], [], 0
    for round_ in range(repeat):
        policy = trainer.initial_policy(config)
        optimizer = torch.optim.Adam(policy.parameters(), lr=settings.learning_rate)
        rng = np.random.default_rng(round_)
        generator = torch.Generator().manual_seed(round_)
        started = time.perf_counter()
        episodes, groups = trainer.iteration_rollouts(
            policy,
            train_tasks,
            library=library,
            test_values=test_values,
            config=config,
            rng=rng,
            generator=generator,
        )
        rollout_s.append(time.perf_counter() - started)
        turns = sum(len(e.actions) for e in episodes)
        _, advantages = trainer.shaped_advantages(episodes, groups, config)
        started = time.perf_counter()
        trainer.grpo_update(
            policy,
            None,
            optimizer,
            episodes=episodes,
            advantages=advantages,
            config=config,
            generator=generator,
        )
        update_s.append(time.perf_counter() - started)
    return {
        "rollout_s": min(rollout_s),
        "turns": turns,
        "turns_per_s": turns / min(rollout_s),
        "update_s": min(update_s),
    }


# ---------------------------------------------------------------------- one training run

PHASES: dict[str, str] = {
    "load_tasks": "tasks (generate or load)",
    "build_library": "hypothesis library (20,000 rules)",
    "_test_value_table": "test-value table",
    "evaluate_policy": "evaluations (2 x 200 greedy episodes)",
    "play_episodes": "training rollouts",
    "shape_turn_rewards": "shaping",
    "turn_advantages": "advantages",
    "grpo_update": "GRPO updates",
}


@contextmanager
def phase_timers() -> Iterator[dict[str, float]]:
    """Wraps the trainer's phase functions with timers (rollouts inside an evaluation count
    as evaluation); the wrappers cost microseconds against calls of milliseconds."""
    from bao.sim.reasoner import HypothesisLibrary

    totals = dict.fromkeys(PHASES, 0.0)
    depth = {"evaluation": 0}
    originals: dict[str, Callable[..., Any]] = {
        name: getattr(trainer, name) for name in PHASES if name != "build_library"
    }
    original_build = HypothesisLibrary.build

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            nested = name == "play_episodes" and depth["evaluation"] > 0
            if name == "evaluate_policy":
                depth["evaluation"] += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if not nested:
                    totals[name] += time.perf_counter() - started
                if name == "evaluate_policy":
                    depth["evaluation"] -= 1

        return timed_call

    for name, function in originals.items():
        setattr(trainer, name, wrap(name, function))
    build = wrap("build_library", original_build.__func__)  # type: ignore[attr-defined]
    HypothesisLibrary.build = classmethod(build)  # type: ignore[method-assign, assignment]
    try:
        yield totals
    finally:
        for name, function in originals.items():
            setattr(trainer, name, function)
        HypothesisLibrary.build = original_build  # type: ignore[method-assign]


def training_breakdown(config: SimConfig, repeat: int) -> dict[str, Any]:
    """``train`` with its phases timed, median over ``repeat`` runs (the same seed)."""
    runs = []
    for _ in range(repeat):
        # A sweep trial is a process of its own: it builds the library every time.
        trainer._prepared.cache_clear()
        with phase_timers() as totals:
            started = time.perf_counter()
            result = trainer.train(config)
            wall = time.perf_counter() - started
        runs.append({"wall_s": wall, **totals})
    summary = {key: median([run[key] for run in runs]) for key in runs[0]}
    summary["other"] = summary["wall_s"] - sum(summary[name] for name in PHASES)
    summary["metrics"] = {
        "score": result.metrics["score"],
        "user_involvement_rate": result.metrics["user_involvement_rate"],
        "pass_at_u_1": result.metrics["pass_at_u_1"],
    }
    summary["runs_wall_s"] = [run["wall_s"] for run in runs]
    return summary


def process_wall(repeat: int) -> list[float]:
    """``bao-pareto train configs/sim.yaml`` as a process, into a fresh workspace."""
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-sim-") as workspace:
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sweep.cli",
                    "train",
                    str(SIM_CONFIG),
                    "--workspace",
                    workspace,
                ],
                check=True,
                capture_output=True,
                cwd=HERE.parent,
            )
            times.append(time.perf_counter() - started)
    return times


def profile_top(config: SimConfig, limit: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(trainer.train, config)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(limit)
    return out.getvalue()


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, a shorter run")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    args = parser.parse_args(argv)

    config = default_config()
    repeat = 1 if args.quick else 3
    # Quick mode times a 20-iteration run: the per-iteration costs are the same.
    run_config = default_config(**{"trainer.iterations": 20}) if args.quick else config
    results: dict[str, Any] = {"config": str(SIM_CONFIG.relative_to(HERE.parent))}
    results["env_steps_per_s"] = env_steps_per_second(config, 20_000 if args.quick else 100_000)
    rate, seconds = rule_evaluations_per_second(config)
    results["rule_evaluations_per_s"] = rate
    results["library_evaluation_s"] = seconds
    results["iteration"] = rollout_and_update(config, repeat=2 if args.quick else 5)
    results["training_run"] = training_breakdown(run_config, repeat)
    results["training_run"]["iterations"] = run_config.trainer.iterations
    results["process_wall_s"] = process_wall(1 if args.quick else repeat)
    path = write_results("bench_simulator", results, quick=args.quick, results_dir=args.out)

    iteration = results["iteration"]
    print_table(
        f"Simulator throughput ({machine_line()})",
        ["measure", "value"],
        [
            ("environment steps / s (scalar env)", results["env_steps_per_s"]),
            ("rule evaluations / s (vectorised, library at its probes)", rate),
            (
                f"rollout turns / s ({iteration['turns']} turns, 128 episodes)",
                iteration["turns_per_s"],
            ),
            ("rollouts of one iteration, s", iteration["rollout_s"]),
            ("one GRPO update (2 epochs), s", iteration["update_s"]),
        ],
    )
    run = results["training_run"]
    rows = [(label, run[name], run[name] / run["wall_s"]) for name, label in PHASES.items()]
    rows.append(("other (policy set-up, metrics)", run["other"], run["other"] / run["wall_s"]))
    rows.append((f"train(), {run['iterations']} iterations", run["wall_s"], 1.0))
    process = median(results["process_wall_s"])
    rows.append(("bao-pareto train (process: start-up, MLflow)", process, None))
    print_table("One training run, wall time", ["phase", "seconds", "share"], rows)
    if args.profile:
        print(profile_top(run_config))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
