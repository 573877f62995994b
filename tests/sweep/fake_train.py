"""A stand-in training script for the command backend: fast, and able to fail on request.

Objectives of a two-variable problem with a known front (f1 = x, f2 = 1 - sqrt(x) + y) and a
constraint metric g = y; ``--mode`` picks a behaviour: ok, fail (exit 3), hang, nan,
no-metrics, not-json, flaky (fails the first attempt of each trial, then works), slow
($FAKE_TRAIN_SECONDS, 2 s by default; with $FAKE_TRAIN_GATE set, it then waits until that file
exists, so a test decides when the first training ends),
fill (writes a $FAKE_TRAIN_FILL_MB checkpoint first),
hang-once (the first run hangs, every later one works), MODE-poisoned (the
first parameter set it sees behaves as MODE on every attempt, every other one is ok), and
progress (appends an evaluation of the final metrics at steps 1..$FAKE_TRAIN_STEPS, 6 by
default, to $BAO_PROGRESS_FILE, $FAKE_TRAIN_STEP_SECONDS apart (0.3 by default), then waits
$FAKE_TRAIN_TAIL_SECONDS (2 by default) before it writes its metrics, with f1 shifted by
$FAKE_TRAIN_PROGRESS_SHIFT (0 by default) in those lines and
eval/no_answer_rate = y: the early evidence is the final answer, so a pruner's decisions
can be computed by hand).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("--mode", "--x", "--y", "--seed", "--trial", "--out", "--state"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    x, y, seed = float(args.x), float(args.y), int(args.seed)
    print(f"training x={x} y={y} seed={seed}", flush=True)
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    if args.mode.endswith("-poisoned"):
        poisoned = state / "poisoned"
        if not poisoned.exists():
            poisoned.write_text(f"{x} {y}")
        args.mode = args.mode.removesuffix("-poisoned")
        if poisoned.read_text() != f"{x} {y}":
            args.mode = "ok"
    if args.mode == "hang-once":
        marker = state / "hung"
        if not marker.exists():
            marker.touch()
            time.sleep(3600)
    if args.mode == "fail":
        print("CUDA error: out of memory (simulated)", file=sys.stderr)
        return 3
    if args.mode == "hang":
        time.sleep(3600)
    if args.mode == "flaky":
        marker = state / f"params-{x}-{y}"
        if not marker.exists():
            marker.touch()
            print("first attempt crashes (simulated)", file=sys.stderr)
            return 1
    if args.mode == "slow":
        time.sleep(float(os.environ.get("FAKE_TRAIN_SECONDS", "2")))
        gate = os.environ.get("FAKE_TRAIN_GATE")
        deadline = time.monotonic() + 600
        while gate and not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    if args.mode == "fill":  # a checkpoint that takes most of a small disk
        size = int(float(os.environ["FAKE_TRAIN_FILL_MB"]) * 2**20)
        (Path(args.out).parent / "checkpoint.bin").write_bytes(b"\0" * size)
    if args.mode == "no-metrics":
        return 0
    out = Path(args.out)
    if args.mode == "not-json":
        out.write_text("{not json")
        return 0
    noise = 0.01 * seed
    metrics = {"f1": x + noise, "f2": 1.0 - math.sqrt(x) + y + noise, "g": y}
    if args.mode == "progress":
        progress = Path(os.environ["BAO_PROGRESS_FILE"])
        pause = float(os.environ.get("FAKE_TRAIN_STEP_SECONDS", "0.3"))
        shift = float(os.environ.get("FAKE_TRAIN_PROGRESS_SHIFT", "0"))
        for step in range(1, int(os.environ.get("FAKE_TRAIN_STEPS", "6")) + 1):
            time.sleep(pause)
            early = {**metrics, "f1": metrics["f1"] + shift, "eval/no_answer_rate": y}
            line = {"step": step, "metrics": early}
            with progress.open("a") as handle:
                handle.write(json.dumps(line) + "\n")
            print(f"evaluated step {step}", flush=True)
        # The run goes on a while after its last evaluation (saving, say), so that a rung
        # decided on the last lines reaches it before it exits, however loaded the machine.
        time.sleep(float(os.environ.get("FAKE_TRAIN_TAIL_SECONDS", "2")))
    if args.mode == "nan":
        metrics["f1"] = float("nan")
    out.write_text(json.dumps(metrics))  # NaN is written as NaN, which json reads back
    return 0


if __name__ == "__main__":
    sys.exit(main())
