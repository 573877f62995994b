"""Workspaces for the dashboard tests: real tiny simulator sweeps, run through the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# The shortest simulator runs that still learn to answer (about 50 iterations; fewer leave a
# greedy agent that never answers, and a front of collapsed trials tests little).
TINY_TRAIN: dict[str, Any] = {
    "trainer": {"iterations": 50},
    "tasks": {"n_eval": 24},
    "reasoner": {"library_size": 2000},
}
OBJECTIVES = [
    {"metric": "eval/score", "direction": "maximize", "threshold": 0.0},
    {"metric": "eval/user_involvement_rate", "direction": "minimize", "threshold": 1.0},
]


def write_sweep_config(folder: Path, name: str, *, n_trials: int, seed: int) -> Path:
    config = {
        "name": name,
        "seed": seed,
        "backend": {"kind": "sim", "train_config": str(REPO_ROOT / "configs" / "sim.yaml")},
        "train": TINY_TRAIN,
        "search_space": {
            "shaping.user_lambda": {"type": "float", "low": 0.0, "high": 0.3},
            "shaping.info_seeking": {"type": "float", "low": 0.0, "high": 0.5},
        },
        "objectives": OBJECTIVES,
        "driver": {"algorithm": "random", "n_trials": n_trials},
        "trial_timeout": 300,
        "jobs": 2,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def build_sim_workspace(folder: Path) -> Path:
    """Two short sim sweeps (``tiny-a``: 3 trials, ``tiny-b``: 2 trials) in ``folder/ws``.

    About 80 s on two cores; the runs log everything a real sweep logs (curves, evaluation
    metrics, trajectories, the policy)."""
    from sweep.cli import main

    workspace = folder / "ws"
    for name, n_trials, seed in (("tiny-a", 3, 0), ("tiny-b", 2, 1)):
        config = write_sweep_config(folder, name, n_trials=n_trials, seed=seed)
        status = main(["sweep", str(config), "--workspace", str(workspace)])
        if status != 0:
            raise RuntimeError(f"the {name} sweep failed with exit status {status}")
    return workspace
