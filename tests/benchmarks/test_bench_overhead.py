"""benchmarks/bench_overhead.py at a tiny size: the JSON it writes holds sane numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_overhead

# A simulator run of a few seconds (the benchmark itself trains at the default size).
TINY_SIM = [
    "trainer.iterations=2",
    "trainer.tasks_per_iteration=4",
    "trainer.group_size=4",
    "tasks.n_train=20",
    "tasks.n_eval=20",
    "reasoner.library_size=2000",
]


def _measured(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_bench_overhead_writes_sane_numbers(tmp_path: Path) -> None:
    argv = ["--trials", "3", "--drivers", "random", "--sim-trials", "1", "--out", str(tmp_path)]
    for override in TINY_SIM:
        argv += ["--sim-set", override]
    assert bench_overhead.main(argv) == 0

    document = json.loads((tmp_path / "bench_overhead.json").read_text())
    assert document["benchmark"] == "bench_overhead"
    assert document["drivers"] == ["random"]
    assert document["sim"]["train_overrides"]["trainer"]["iterations"] == 2
    assert _measured(document["backend_alone_s"])
    sweep = document["sweeps"]["random"]
    assert sweep["trials"] == 3
    for key in ("wall_s", "startup_s", "finish_s", "per_trial_s", "overhead_per_trial_s"):
        assert _measured(sweep[key]), (key, sweep[key])
    assert sweep["per_trial_s"] > document["backend_alone_s"]
    assert sweep["wall_s"] > sweep["startup_s"] + sweep["finish_s"]
    assert _measured(sweep["share"])
    assert isinstance(sweep["target_met"], bool)
    breakdown = document["breakdown"]
    assert breakdown["trials"] == 3
    assert _measured(breakdown["overhead_per_trial_s"])
    assert all(math.isfinite(v) for v in breakdown["phases_per_trial_s"].values())
    assert _measured(document["sim"]["trial_s"])
    assert len(document["sim"]["durations_s"]) == 1
    assert document["share"] == sweep["share"]
