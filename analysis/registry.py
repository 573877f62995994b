"""Deployment variants in the MLflow model registry: one registered model per sweep.

``register_variants`` gives each chosen trial a model version (its logged policy, or the
checkpoint its run points to), points an alias at it (``budget-1``, ``budget-3``, ``knee``,
...), and attaches a manifest: the evidence the choice was made on. Registering is
idempotent: a trial already registered keeps its version and only the aliases move, so a
re-run after more trials finished never duplicates versions.

Where the model comes from:

* the sim backend logs the trained policy as an MLflow model (``policy``) in each training
  run; a trial with several seeds registers the seed whose value on the deciding metric is
  closest to the trial's mean (ties to the lower seed): a typical run, not the luckiest;
* other backends (verl, command) set the run tag ``bao.checkpoint_uri`` to the checkpoint;
  that URI becomes the version's source.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from analysis.jsonable import finite_or_none, json_value
from analysis.pareto import AnalysisError
from bao import records

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from analysis.loader import SweepData
    from analysis.report import FrontAnalysis
    from analysis.selection import Variant

log = logging.getLogger(__name__)

MODEL_ARTIFACT: Final = records.MODEL_POLICY
CHECKPOINT_TAG: Final = records.TAG_CHECKPOINT_URI
TRIAL_RUN_TAG: Final = records.TAG_TRIAL_RUN
"""Model-version tag naming the trial's MLflow run: how a re-run finds the existing version."""
MANIFEST_FOLDER: Final = records.ARTIFACT_DEPLOYMENT


def registered_model_name(sweep: str) -> str:
    return f"bao-pareto-{sweep}"


@dataclass(frozen=True)
class Registered:
    """What ``register_variants`` did for one alias."""

    alias: str
    trial: int
    model_name: str
    version: str
    created: bool
    """False when the trial already had a version (the alias moved, nothing was added)."""
    previous_version: str | None
    """The version the alias pointed to before, if it moved."""
    source: str
    manifest_uri: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "trial": self.trial,
            "model": self.model_name,
            "version": self.version,
            "created": self.created,
            "previous_version": self.previous_version,
            "source": self.source,
            "manifest": self.manifest_uri,
        }


def register_variants(
    analysis: FrontAnalysis,
    variants: list[Variant],
    workspace: Path,
    *,
    client: MlflowClient | None = None,
) -> list[Registered]:
    """Registers every variant's model under the sweep's registered model (see module)."""
    from bao.tracking import fluent_tracking

    # MLflow's registry store resolves ``models:/`` sources through the global tracking URI,
    # so that must point at the sweep's store while versions are created.
    with fluent_tracking(analysis.data.tracking_uri):
        return _register(analysis, variants, workspace, client)


def _register(
    analysis: FrontAnalysis,
    variants: list[Variant],
    workspace: Path,
    client: MlflowClient | None,
) -> list[Registered]:
    from bao.tracking import mlflow_client

    data = analysis.data
    client = client or mlflow_client(workspace, data.tracking_uri, writing=True)
    name = registered_model_name(data.name)
    _ensure_registered_model(client, name, data)
    front_hash = analysis.front_hash()
    done: list[Registered] = []
    # Every version is resolved (found or created) before any alias moves: a trial without a
    # model stops the command with the registry's aliases as they were.
    versions: dict[int, tuple[str, bool, str]] = {}
    for variant in variants:
        if variant.number not in versions:
            trial = _trial_row(data, variant.number)
            versions[variant.number] = _version_for(client, name, data, trial, variant)
    for variant in variants:
        trial = _trial_row(data, variant.number)
        version, created, source = versions[variant.number]
        previous = _alias_version(client, name, variant.alias)
        manifest = build_manifest(analysis, variant, trial, source=source, front_hash=front_hash)
        trial_run = str(trial["mlflow_run_id"])
        artifact = f"{MANIFEST_FOLDER}/{_safe(variant.alias)}.json"
        client.log_text(trial_run, json.dumps(manifest, indent=2, sort_keys=False), artifact)
        manifest_uri = f"runs:/{trial_run}/{artifact}"
        if previous is not None and previous != version:
            _drop_tag(client, name, previous, f"{records.TAG_MANIFEST_PREFIX}{variant.alias}")
        client.set_registered_model_alias(name, variant.alias, version)
        tag = f"{records.TAG_MANIFEST_PREFIX}{variant.alias}"
        client.set_model_version_tag(name, version, tag, manifest_uri)
        log.info("%s -> %s version %s (trial %d)", variant.alias, name, version, variant.number)
        done.append(
            Registered(
                alias=variant.alias,
                trial=variant.number,
                model_name=name,
                version=version,
                created=created,
                previous_version=previous if previous != version else None,
                source=source,
                manifest_uri=manifest_uri,
            )
        )
    return done


def _ensure_registered_model(client: MlflowClient, name: str, data: SweepData) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name,
                tags={records.TAG_SWEEP: data.name},
                description=f"Deployment variants of the bao-pareto sweep {data.name!r}.",
            )
        except MlflowException:  # created meanwhile by another process
            client.get_registered_model(name)


def _trial_row(data: SweepData, number: int) -> pd.Series:
    rows = data.trials[data.trials["number"] == number]
    if rows.empty or not isinstance(rows.iloc[0]["mlflow_run_id"], str):
        raise AnalysisError(
            f"trial {number} of sweep {data.name!r} has no MLflow run to register",
            fix="choose a complete trial (bao-pareto status shows their runs)",
        )
    return rows.iloc[0]


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _drop_tag(client: MlflowClient, name: str, version: str, key: str) -> None:
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):
        client.delete_model_version_tag(name, version, key)


def _version_for(
    client: MlflowClient, name: str, data: SweepData, trial: pd.Series, variant: Variant
) -> tuple[str, bool, str]:
    """The trial's existing version, or a new one: ``(version, created, source)``."""
    trial_run = str(trial["mlflow_run_id"])
    existing = client.search_model_versions(f"name = '{name}'")
    for version in existing:
        if version.tags.get(TRIAL_RUN_TAG) == trial_run:
            return str(version.version), False, str(version.source)
    model_run = _model_run(data, trial, variant)
    source, model_id = _model_source(client, data, model_run)
    tags = {
        TRIAL_RUN_TAG: trial_run,
        records.TAG_SWEEP: data.name,
        records.TAG_TRIAL_NUMBER: str(variant.number),
        records.TAG_MODEL_RUN: model_run,
    }
    created = client.create_model_version(
        name,
        source=source,
        run_id=model_run,
        tags=tags,
        description=f"Trial {variant.number} of sweep {data.name!r}.",
        model_id=model_id,
    )
    return str(created.version), True, source


def _model_run(data: SweepData, trial: pd.Series, variant: Variant) -> str:
    """The training run whose model represents the trial (module docstring)."""
    seeds = data.seeds[data.seeds["number"] == variant.number]
    if len(seeds) <= 1:
        return str(trial["mlflow_run_id"])
    metric = variant.criterion.get("metric") or data.metrics[0]
    if metric not in seeds:
        return str(seeds.iloc[0]["run_id"])
    mean = float(seeds[metric].mean())
    distance = (seeds[metric].astype(float) - mean).abs()
    ordered = seeds.assign(_d=distance).sort_values(["_d", "seed"], kind="stable")
    return str(ordered.iloc[0]["run_id"])


def _model_source(client: MlflowClient, data: SweepData, run_id: str) -> tuple[str, str | None]:
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise AnalysisError(
            f"the MLflow run {run_id} of sweep {data.name!r} is gone",
            fix="restore it (mlflow gc removes deleted runs for good) or choose another trial",
        ) from None
    models = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_ARTIFACT}'",
        max_results=1,
    )
    if models:
        model_id = models[0].model_id
        return f"models:/{model_id}", model_id
    checkpoint = run.data.tags.get(CHECKPOINT_TAG)
    if checkpoint:
        return checkpoint, None
    raise AnalysisError(
        f"run {run_id} of sweep {data.name!r} logged no '{MODEL_ARTIFACT}' model and has no "
        f"{CHECKPOINT_TAG} tag",
        fix=f"have the backend log the model, or tag the run with {CHECKPOINT_TAG}",
    )


def other_aliases(analysis: FrontAnalysis, aliases: list[str], workspace: Path) -> dict[str, str]:
    """Aliases of the sweep's registered model that ``aliases`` did not include (set by an
    earlier selection, e.g. ``hv-3`` after ``--hv-subset 2``): alias -> version."""
    from mlflow.exceptions import MlflowException

    from bao.tracking import mlflow_client

    client = mlflow_client(workspace, analysis.data.tracking_uri)
    try:
        model = client.get_registered_model(registered_model_name(analysis.data.name))
    except MlflowException:
        return {}
    return {
        alias: str(version)
        for alias, version in sorted(model.aliases.items())
        if alias not in aliases
    }


# ------------------------------------------------------------------------------ manifest


def build_manifest(
    analysis: FrontAnalysis,
    variant: Variant,
    trial: pd.Series,
    *,
    source: str,
    front_hash: str,
) -> dict[str, Any]:
    """The evidence for one variant: what was chosen, on what numbers, from which front."""
    from bao.tracking import code_version

    data = analysis.data
    index = {int(n): i for i, n in enumerate(analysis.frame["number"])}.get(variant.number)
    from analysis.uncertainty import wilson_pass_intervals

    metrics: dict[str, Any] = {}
    for column in sorted(c for c in data.trials.columns if str(c).startswith("eval/")):
        name = str(column)
        value = finite_or_none(trial.get(name))
        if value is not None and not name.endswith(("_lo", "_hi", "_stderr")):
            metrics[name] = {"value": value}
    # Pass rates: Wilson 95% over the seeds' pooled trajectories (the logged _lo/_hi of a
    # multi-seed trial are averages of per-seed bounds, not an interval of the mean).
    wilson = wilson_pass_intervals(trial.to_frame().T, data.k_values())
    for row in wilson.itertuples(index=False):
        entry = metrics.get(f"eval/pass_at_u_{row.k}")
        if entry is not None and math.isfinite(row.lo):
            entry["interval"] = [float(row.lo), float(row.hi)]
            entry["interval_method"] = f"wilson (n={row.n})"
    if index is not None:
        for j, metric in enumerate(data.metrics):
            metrics.setdefault(metric, {"value": float(analysis.values[index, j])})
            metrics[metric]["interval"] = [
                float(analysis.low[index, j]),
                float(analysis.high[index, j]),
            ]
            metrics[metric]["interval_method"] = analysis.draws.methods[index][j]
    seeds = data.seeds[data.seeds["number"] == variant.number]
    code = trial.get("code_version")
    return {
        "sweep": data.name,
        "alias": variant.alias,
        "trial": variant.number,
        "mlflow_run_id": str(trial["mlflow_run_id"]),
        "reason": variant.reason,
        "criterion": variant.criterion,
        "runner_up": variant.runner_up,
        "margin": variant.margin,
        "p_chosen": variant.p_chosen,
        "params": {
            path: json_value(trial.get(f"params.{path}"))
            for path in data.loaded.config.search_space
        },
        "metrics": metrics,
        "seeds": [int(s) for s in seeds["seed"].dropna()] if not seeds.empty else [],
        "checkpoint_uri": source,
        "eval_set_hash": json_value(trial.get("eval_set_hash")),
        "code_version": json_value(code) if isinstance(code, str) else None,
        "code_version_at_selection": code_version(),
        "front_hash": front_hash,
        "front": analysis.front_numbers,
        "reference_point": analysis.reference.to_dict(),
        "objectives": [
            {"metric": m, "direction": d}
            for m, d in zip(data.metrics, data.directions, strict=True)
        ],
        "sweep_fingerprint": data.loaded.config.fingerprint(),
        "selected_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _safe(alias: str) -> str:
    """Aliases become artifact file names: letters, digits, '-', '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", alias)
