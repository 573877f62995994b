"""Sweeps made to order: in memory for the statistics, or in a real workspace (an Optuna
SQLite storage and an MLflow SQLite database) for the loader, the CLI and the registry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.loader import SweepData, load_sweep
from sweep.config import LoadedSweep, SweepConfig

OBJECTIVES = [
    {"metric": "eval/pass_at_u_1", "direction": "maximize"},
    {"metric": "eval/user_involvement_rate", "direction": "minimize"},
]


def sweep_config(
    name: str = "made",
    objectives: Sequence[dict[str, Any]] = OBJECTIVES,
    constraints: Sequence[str] = (),
) -> LoadedSweep:
    config = SweepConfig.model_validate(
        {
            "name": name,
            "search_space": {"shaping.user_lambda": {"type": "float", "low": 0.0, "high": 0.5}},
            "objectives": list(objectives),
            "constraints": list(constraints),
            "driver": {"algorithm": "random", "n_trials": 4},
        }
    )
    return LoadedSweep(config=config, source="made.yaml", base_dir="/")


def trial_row(
    number: int,
    metrics: dict[str, float],
    *,
    state: str = "COMPLETE",
    n_eval: int = 200,
    seeds: int = 1,
    lam: float = 0.1,
) -> dict[str, Any]:
    """A trial as the loader lays it out; pass rates get their Wilson bounds."""
    from bao.metrics import wilson_interval

    row: dict[str, Any] = {
        "number": number,
        "state": state,
        "params.shaping.user_lambda": lam,
        "mlflow_run_id": f"run-{number}",
        "eval/n_trajectories": float(n_eval),
        "n_seeds": seeds,
        "feasible": True,
        "violation": math.nan,
        "datetime_complete": pd.Timestamp("2026-11-22") + pd.Timedelta(minutes=number),
    }
    for name, value in metrics.items():
        row[name] = value
        if name.startswith("eval/pass_at_u_") and name[15:].isdigit() and math.isfinite(value):
            total = n_eval * seeds
            row[f"{name}_lo"], row[f"{name}_hi"] = wilson_interval(round(value * total), total)
    return row


def made_sweep(
    rows: Sequence[dict[str, Any]],
    seeds: Sequence[dict[str, Any]] = (),
    loaded: LoadedSweep | None = None,
) -> SweepData:
    """An in-memory :class:`SweepData` (no storage), for the statistics and selection."""
    trials = pd.DataFrame(list(rows))
    seed_frame = (
        pd.DataFrame(list(seeds)) if seeds else pd.DataFrame(columns=["number", "seed", "run_id"])
    )
    return SweepData(
        loaded=loaded or sweep_config(),
        trials=trials,
        seeds=seed_frame,
        storage_url="memory",
        tracking_uri="memory",
        signature="made",
    )


def real_workspace(
    workspace: Path,
    trials: Sequence[dict[str, Any]],
    *,
    loaded: LoadedSweep | None = None,
    checkpoint: bool = True,
) -> SweepData:
    """Writes a sweep the way the runner leaves one: manifest, Optuna trials with the
    runner's attributes, MLflow parent and trial runs (metrics, tags), then loads it.

    Each entry of ``trials``: ``metrics`` (dict), optional ``state`` (default COMPLETE),
    ``lam`` (the parameter), ``seeds`` (list of per-seed metric dicts: nested seed runs).
    """
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from bao.records import ATTR_RUN_ID
    from bao.records import STUDY_PARENT_RUN as PARENT_RUN_ATTR
    from bao.tracking import experiment_id, mlflow_client
    from sweep.storage import open_study, storage_url, write_manifest

    loaded = loaded or sweep_config()
    config = loaded.config
    workspace.mkdir(parents=True, exist_ok=True)
    url = storage_url(loaded, workspace)
    write_manifest(loaded, workspace, url)
    study = open_study(loaded, workspace, optuna.samplers.RandomSampler(seed=0))
    client = mlflow_client(workspace)
    experiment = experiment_id(client, config.name, workspace)
    parent = client.create_run(experiment, tags={"bao.role": "sweep"}).info.run_id
    study.study.set_user_attr(PARENT_RUN_ATTR, parent)
    for number, spec in enumerate(trials):
        state = TrialState[spec.get("state", "COMPLETE")]
        metrics = spec["metrics"]
        tags = {
            "mlflow.parentRunId": parent,
            "bao.role": "trial",
            "bao.trial_number": str(number),
            "bao.eval_set_hash": "evalhash",
            "bao.code_version": "0.1.0+gtest",
        }
        if checkpoint:
            tags["bao.checkpoint_uri"] = f"file:///checkpoints/trial-{number}"
        run_id = client.create_run(experiment, tags=tags).info.run_id
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        for seed, seed_metrics in enumerate(spec.get("seeds", [])):
            seed_tags = {
                **tags,
                "bao.role": "seed",
                "mlflow.parentRunId": run_id,
                "bao.seed": str(seed),
            }
            seed_run = client.create_run(experiment, tags=seed_tags).info.run_id
            for key, value in seed_metrics.items():
                client.log_metric(seed_run, key, value)
        values = None
        if state == TrialState.COMPLETE:
            values = [metrics[o.metric] for o in config.objectives]
        study.study.add_trial(
            create_trial(
                state=state,
                params={"shaping.user_lambda": spec.get("lam", 0.1 * number)},
                distributions={"shaping.user_lambda": FloatDistribution(0.0, 0.5)},
                values=values,
                user_attrs={ATTR_RUN_ID: run_id},
            )
        )
    return load_sweep(workspace, config.name, use_cache=False)
