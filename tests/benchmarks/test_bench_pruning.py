"""benchmarks/bench_pruning.py at a tiny size: its sweeps stop where the rule says, and the
compute it reports is the compute its trials used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_pruning

pytestmark = [pytest.mark.slow]

ITERATIONS = 6


def test_bench_pruning_counts_what_the_pruned_trials_saved(tmp_path: Path) -> None:
    argv = ["--seeds", "1", "--trials", "3", "--iterations", str(ITERATIONS)]
    argv += ["--min-step", "2", "--reduction-factor", "2", "--rules", "collapse"]
    assert bench_pruning.main([*argv, "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "bench_pruning.json").read_text())
    assert document["benchmark"] == "bench_pruning"
    assert set(document["summary"]) == {"none", "collapse"}  # the baseline always runs
    for name, runs in document["sweeps"].items():
        assert len(runs) == 3, name
        for run in runs:
            if run["state"] == "PRUNED":
                # Stopped at a rung (2 or 4) by a no-answer rate at or above 0.9 there.
                assert run["iterations"] in (2, 4)
                assert run["eval/no_answer_rate"] >= 0.9
                assert str(run["iterations"]) in run["points"]
            else:
                assert run["state"] == "COMPLETE"
                assert run["iterations"] == ITERATIONS
        summary = document["summary"][name.split("/")[0]]
        assert summary["per_seed"]["iterations"] == [sum(r["iterations"] for r in runs)]
        assert summary["per_seed"]["seconds"] == [pytest.approx(sum(r["seconds"] for r in runs))]
        assert summary["per_seed"]["pruned"] == [sum(r["state"] == "PRUNED" for r in runs)]
    assert all(r["state"] == "COMPLETE" for r in document["sweeps"]["none/seed0"])
    fraction = document["summary"]["none"]["per_seed"]["hv_fraction"][0]
    assert 0.0 <= fraction <= 1.0
