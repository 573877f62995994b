"""benchmarks/bench_user_calls.py on the project's example tasks: sane, consistent numbers."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_user_calls


def test_bench_user_calls_counts_what_the_gyms_send(tmp_path: Path) -> None:
    # A data folder without UserRL's files: the examples in configs/data are used.
    assert bench_user_calls.main(["--quick", "--data", str(tmp_path), "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "bench_user_calls.quick.json").read_text())
    sizes = document["prompt_sizes"]
    assert sizes["telepathy question"]["requests"] == 24
    assert sizes["turtle story"]["requests"] == 8
    # A graded story carries the hidden story, the rubric and the answer: the longest request.
    assert sizes["turtle story"]["mean_chars"] > sizes["turtle question"]["mean_chars"]
    assert all(document["client"][key] > 0 for key in document["client"])
    rows = {(r["gym"], r["turns_per_episode"]): r for r in document["per_trial"]}
    # 24 entities are fewer than a batch of 128: no training step, only the bound's arithmetic.
    assert rows["telepathy_gym", 16]["steps"] == 0
    assert rows["turtle_gym", 8]["training_calls"] == 0


def test_calls_per_trial_follow_the_recipe() -> None:
    sizes = {
        kind: {"approx_tokens": 100.0}
        for kind in ("telepathy question", "telepathy guess", "turtle question", "turtle story")
    }
    rows = bench_user_calls.calls_per_trial(sizes, {"telepathy_gym": 360, "turtle_gym": 423})
    telepathy = next(
        r for r in rows if r["gym"] == "telepathy_gym" and r["turns_per_episode"] == 16
    )
    assert telepathy["steps"] == (360 // 128) * 15  # 2 steps an epoch, 15 epochs
    assert telepathy["training_calls"] == 30 * 128 * 8 * 16
    assert telepathy["validation_calls"] == 6 * 40 * 16  # every 5 steps, 40 held-out entities
    total = telepathy["training_calls"] + telepathy["validation_calls"]
    assert telepathy["prompt_tokens_millions"] == total * 100 / 1e6
