"""benchmarks/bench_scale.py at a tiny size: the JSON it writes has every step, measured."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks import bench_scale

N_TRIALS = 60


def _measured(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_bench_scale_writes_every_step(tmp_path: Path) -> None:
    argv = ["--sizes", str(N_TRIALS), "--repeat", "1", "--out", str(tmp_path)]
    assert bench_scale.main(argv) == 0

    document = json.loads((tmp_path / "bench_scale.json").read_text())
    assert document["benchmark"] == "bench_scale"
    assert document["quick"] is False
    assert document["sizes"] == [N_TRIALS]
    assert document["machine"]["cores"]
    size = document["by_size"][str(N_TRIALS)]
    for key, _ in bench_scale.ROWS:
        assert _measured(size[key]), (key, size[key])
    assert size["trials"] == N_TRIALS
    assert 0 < size["front_size"] <= size["complete"] <= N_TRIALS
    assert 0 < size["hypervolume"] <= 1
    low, high = size["hypervolume_draws_interval"]
    assert 0 <= low <= high <= 1
    # The temporary workspaces are gone.
    assert not Path(size["workspace"]).exists()
