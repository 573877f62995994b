"""benchmarks/bench_simulator.py: the phase timers account for a run and leave no trace."""

from __future__ import annotations

from bao.sim import trainer
from bao.sim.reasoner import HypothesisLibrary
from benchmarks import bench_simulator

SMALL = {"trainer.iterations": 2, "tasks.n_train": 40, "tasks.n_eval": 20}


def test_phases_add_up_to_the_run_and_the_timers_are_removed() -> None:
    originals = {
        name: getattr(trainer, name) for name in bench_simulator.PHASES if name != "build_library"
    }
    build = HypothesisLibrary.build
    summary = bench_simulator.training_breakdown(bench_simulator.default_config(**SMALL), repeat=1)

    phases = [summary[name] for name in bench_simulator.PHASES]
    assert all(seconds > 0 for seconds in phases), summary
    # Disjoint slices of one run: together they cannot exceed it.
    assert 0 <= summary["other"] < summary["wall_s"]
    assert sum(phases) + summary["other"] == summary["wall_s"]
    assert summary["metrics"]["score"] >= 0
    for name, function in originals.items():
        assert getattr(trainer, name) is function
    assert HypothesisLibrary.build == build


def test_throughput_pieces_measure_real_work() -> None:
    config = bench_simulator.default_config(**SMALL)
    assert bench_simulator.env_steps_per_second(config, 2_000) > 0
    iteration = bench_simulator.rollout_and_update(config, repeat=1)
    # 16 tasks x 8 episodes, at least one turn each and at most the turn budget.
    assert 128 <= iteration["turns"] <= 128 * config.env.max_turns
    assert iteration["rollout_s"] > 0
    assert iteration["update_s"] > 0
