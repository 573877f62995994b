"""The record format of a workspace: every name a writer stores and a reader looks up.

A sweep's records live in three stores, and each name below is spelled here and nowhere else
(docs/architecture.md, "Records", lists each one's writer and readers):

- the workspace's folders and files, given relative to the workspace so that a workspace
  can be moved (:func:`sweep_folder` and the ``*_FILE`` names);
- the Optuna study: study and trial attributes (``STUDY_*``, ``ATTR_*``, ``SYSTEM_*``);
- MLflow: tags (``TAG_*``, with the ``ROLE_*`` values of :data:`TAG_ROLE`) and artifact
  names (``ARTIFACT_*``).

This module sits in ``bao`` because the training side writes some of them too (a run's
provenance tags, its trajectories); it holds names only and imports nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

# ------------------------------------------------------------------------------ workspace

MLFLOW_DB: Final = "mlflow.db"
"""The workspace's MLflow tracking store (SQLite), unless ``MLFLOW_TRACKING_URI`` names one."""
ARTIFACT_ROOT: Final = "mlartifacts"
"""MLflow artifacts of the workspace's experiments: ``mlartifacts/<experiment>/``."""
SWEEPS: Final = "sweeps"
"""One folder per sweep: ``sweeps/<name>/``."""
MANIFEST_FILE: Final = "sweep.yaml"
"""In a sweep's folder: the resolved config, the storage URL and the training config."""
TRAIN_CONFIG_FILE: Final = "train.yaml"
"""In a sweep's folder: the training config every trial starts from (sim and verl)."""
OPTUNA_DB: Final = "optuna.db"
"""In a sweep's folder: the default Optuna storage (SQLite)."""
OUTBOX_FILE: Final = "mlflow-outbox.jsonl"
"""In a sweep's folder: MLflow writes kept through an outage, replayed in order."""
SUMMARY_FILE: Final = "summary.json"
"""In a sweep's folder: counts, driver state and front at the sweep's last stop."""
ANALYSIS_CACHE: Final = ".analysis"
"""In a sweep's folder: the analysis' parquet caches (safe to delete)."""
TRIALS_FOLDER: Final = "trials"
"""In a sweep's folder: ``trials/<number:05d>/seed-<seed>/``, one work folder per run."""
RUN_LOG: Final = "run.log"
"""In a run's work folder: the training process's stdout and stderr."""
PROGRESS_FILE: Final = "progress.jsonl"
"""In a run's work folder: the run's intermediate evaluations, one JSON line each
(``{"step": 10, "metrics": {"eval/score": 0.3, ...}}``), appended by the training process
while it trains and read by the sweep's pruner (docs/sweeps.md, "Early stopping")."""
PROGRESS_ENV: Final = "BAO_PROGRESS_FILE"
"""The environment variable that gives a run the path of its :data:`PROGRESS_FILE`."""


def sweep_folder(workspace: Path, name: str) -> Path:
    """``<workspace>/sweeps/<name>`` (``name`` unchecked: :func:`sweep.storage.sweep_dir`
    checks it)."""
    return workspace / SWEEPS / name


def run_workdir(folder: Path, number: int, seed: int) -> Path:
    """The work folder of one training seed of trial ``number`` in the sweep's ``folder``."""
    return folder / TRIALS_FOLDER / f"{number:05d}" / f"seed-{seed}"


# ------------------------------------------------------------------------- Optuna study

STUDY_FINGERPRINT: Final = "fingerprint"
"""Study attribute: :meth:`sweep.config.SweepConfig.fingerprint` of the config that made it."""
STUDY_N_TRIALS: Final = "n_trials"
"""Study attribute: the ``n_trials`` the sweep was last run to (``--n-trials`` included)."""
STUDY_PARENT_RUN: Final = "mlflow_parent_run_id"
"""Study attribute: the sweep's MLflow run."""

ATTR_RUN_ID: Final = "mlflow_run_id"
"""Trial attribute: the trial's MLflow run."""
ATTR_RETRY_OF: Final = "retry_of"
"""Trial attribute: the number of the failed trial this one retries."""
ATTR_ATTEMPT: Final = "attempt"
"""Trial attribute: 1 for a first attempt, +1 for each counted retry."""
ATTR_REASON: Final = "failure_reason"
"""Trial attribute: ``<code>: <detail>`` of a failed attempt (codes: sweep.backends.TrialError)."""
ATTR_GENERATION: Final = "generation"
"""Trial attribute (pymoo): the generation the trial belongs to."""
ATTR_INDEX: Final = "index"
"""Trial attribute (pymoo): the trial's place in its generation."""
ATTR_SEED_VALUES: Final = "seed_values"
"""Trial attribute: metric -> the value of each training seed."""
ATTR_STDERR: Final = "stderr"
"""Trial attribute: metric -> standard error of the mean over the seeds (0 for one seed)."""
ATTR_VIOLATIONS: Final = "constraint_violations"
"""Trial attribute: each constraint's violation (<= 0 when satisfied)."""
ATTR_COST: Final = "cost"
"""Trial attribute: what the attempt's runs held and for how long, summed over its seeds
(``COST_*`` keys; :mod:`sweep.cost`)."""
ATTR_JOB_IDS: Final = "job_ids"
"""Trial attribute: the scheduler's ids of the attempt's jobs (Slurm job ids, Ray
submission ids), one per seed; absent for local runs."""
ATTR_EVAL_PREFIX: Final = "eval@"
"""Trial attributes ``eval@<step>``: the attempt's intermediate evaluation at that step, as
``{"values": [one per objective], "no_answer_rate": x}`` (mean over its seeds)."""
ATTR_RUNGS: Final = "rungs"
"""Trial attribute: rung step -> the pruner's decision there (``continue`` or
``prune:<rule>``),
kept so that a resumed sweep and a retry of the attempt decide the same way."""
ATTR_PRUNED: Final = "pruned"
"""Trial attribute of a PRUNED trial: ``{"step", "rung", "rule", "values"}``, the rung it
stopped at, the rule that stopped it and its last evaluated objective values."""
ATTR_STEPS: Final = "steps"
"""Trial attribute: the furthest training step (iteration) the attempt's runs evaluated:
with ``cost``, what a pruned attempt saved (docs/sweeps.md, "Early stopping")."""

SYSTEM_OWNER: Final = "bao:owner"
"""Trial system attribute: the process running it (host, pid, start ticks, token)."""
SYSTEM_HEARTBEAT: Final = "bao:heartbeat"
"""Trial system attribute: the owner's last heartbeat (Unix time)."""
SYSTEM_CONSTRAINTS: Final = "constraints"
"""Trial system attribute that Optuna's ``Trial.set_constraint`` writes (Optuna's name)."""

# ---------------------------------------------------------------------------- MLflow tags

TAG_PARENT: Final = "mlflow.parentRunId"
"""MLflow's own tag for a nested run's parent."""
TAG_ROLE: Final = "bao.role"
"""What a run is: one of the ``ROLE_*`` values."""
ROLE_SWEEP: Final = "sweep"
ROLE_TRIAL: Final = "trial"
ROLE_SEED: Final = "seed"
ROLE_IMPORT: Final = "import"
TAG_SWEEP: Final = "bao.sweep"
TAG_STORAGE: Final = "bao.storage"
TAG_FINGERPRINT: Final = "bao.fingerprint"
TAG_TRIAL_NUMBER: Final = "bao.trial_number"
TAG_ATTEMPT: Final = "bao.attempt"
TAG_BACKEND: Final = "bao.backend"
TAG_RETRY_OF: Final = "bao.retry_of"
TAG_GENERATION: Final = "bao.generation"
TAG_SEED: Final = "bao.seed"
TAG_FAILURE_REASON: Final = "bao.failure_reason"
TAG_PRUNED: Final = "bao.pruned"
"""A pruned trial's (and its seed runs') run: the rule, rung and step that stopped it."""
TAG_DRIVER_STATE: Final = "bao.driver_state"
TAG_EVAL_SET_HASH: Final = "bao.eval_set_hash"
TAG_CODE_VERSION: Final = "bao.code_version"
TAG_CHECKPOINT_URI: Final = "bao.checkpoint_uri"
TAG_SOURCE: Final = "bao.source"
"""An imported run: the validation dump it was read from."""
TAG_TRIAL_RUN: Final = "bao.trial_run_id"
TAG_MODEL_RUN: Final = "bao.model_run_id"
TAG_MANIFEST_PREFIX: Final = "bao.manifest."
"""Registered model versions: ``bao.manifest.<alias>`` -> the deployment manifest's URI."""

# --------------------------------------------------------------------------- cost metrics

COST_WALL_S: Final = "wall_s"
"""Seconds the runs held their allocation (a Slurm job's elapsed time, not its queue wait)."""
COST_GPU_HOURS: Final = "gpu_hours"
"""GPUs allocated x hours held."""
COST_CPU_SECONDS: Final = "cpu_seconds"
"""CPUs allocated x seconds held."""
COST_KEYS: Final = (COST_WALL_S, COST_GPU_HOURS, COST_CPU_SECONDS)
"""The keys of :data:`ATTR_COST`; a trial run's MLflow metrics are ``cost/<key>``, the sweep
run's ``sweep/cost/<key>`` (all attempts, failed ones included)."""
TRIAL_COST_PREFIX: Final = "cost/"
SWEEP_COST_PREFIX: Final = "sweep/cost/"

# ------------------------------------------------------------------------------ artifacts

ARTIFACT_TRAJECTORIES: Final = "trajectories.jsonl"
"""A run's evaluation trajectories (every evaluation metric can be recomputed from them)."""
ARTIFACT_RUN_CONFIG: Final = "config.yaml"
"""A training run's resolved config."""
ARTIFACT_LOGS: Final = "logs"
"""Artifact folder of a trial run's ``run.log`` files."""
ARTIFACT_IMPORT_REPORT: Final = "import_report.json"
"""An imported run's report: rows skipped, score mismatches, notes."""
MODEL_POLICY: Final = "policy"
"""The MLflow logged model of a sim run's trained policy (what ``select --register`` ships)."""
ARTIFACT_DEPLOYMENT: Final = "deployment"
"""Artifact folder of a trial run's deployment manifests, ``deployment/<alias>.json``."""
