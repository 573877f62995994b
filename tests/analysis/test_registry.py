"""Deployment variants in a local MLflow registry: aliases set, moved, never duplicated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from analysis.loader import load_sweep
from analysis.registry import register_variants, registered_model_name
from analysis.report import analyse_front
from analysis.selection import select_budgets, select_knee
from tests.analysis.builders import real_workspace

UR = "eval/user_involvement_rate"


def curve(p: list[float], ur: float) -> dict[str, float]:
    metrics = {f"eval/pass_at_u_{k}": v for k, v in enumerate(p, start=1)}
    return {**metrics, UR: ur, "eval/n_trajectories": 200.0, "eval/no_answer_rate": 0.0}


def choose(workspace: Path):
    data = load_sweep(workspace, "made", use_cache=False)
    analysis = analyse_front(data, n_draws=100)
    variants = [*select_budgets(data, [1, 3], n_draws=100), select_knee(data)]
    return analysis, variants


def test_aliases_are_set_moved_and_versions_never_duplicated(tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    workspace = tmp_path / "ws"
    real_workspace(
        workspace,
        [
            {"metrics": curve([0.50, 0.52, 0.53], 0.05)},  # 0: best with one answer
            {"metrics": curve([0.40, 0.60, 0.70], 0.30)},  # 1: best with three
            {"metrics": curve([0.30, 0.35, 0.40], 0.40)},  # 2: dominated
            {"metrics": curve([0.56, 0.57, 0.58], 0.04), "state": "RUNNING"},  # 3: later
        ],
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    name = registered_model_name("made")

    analysis, variants = choose(workspace)
    done = register_variants(analysis, variants, workspace)
    by_alias = {entry.alias: entry for entry in done}
    assert by_alias["budget-1"].trial == 0
    assert by_alias["budget-3"].trial == 1
    assert by_alias["budget-1"].created
    assert by_alias["budget-3"].created
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 2  # the knee (trial 0) shares budget-1's version
    assert (
        str(client.get_model_version_by_alias(name, "knee").version) == by_alias["budget-1"].version
    )
    budget_3 = client.get_model_version_by_alias(name, "budget-3")
    assert budget_3.source == "file:///checkpoints/trial-1"
    assert budget_3.tags["bao.trial_number"] == "1"

    # The manifest holds the evidence the issue asks for.
    manifest_file = client.download_artifacts(
        budget_3.tags["bao.trial_run_id"], "deployment/budget-3.json", str(tmp_path)
    )
    manifest = json.loads(Path(manifest_file).read_text())
    assert manifest["trial"] == 1
    assert manifest["alias"] == "budget-3"
    assert manifest["params"] == {"shaping.user_lambda": pytest.approx(0.1)}
    assert manifest["metrics"]["eval/pass_at_u_3"]["value"] == pytest.approx(0.70)
    assert len(manifest["metrics"]["eval/pass_at_u_3"]["interval"]) == 2
    assert manifest["checkpoint_uri"] == "file:///checkpoints/trial-1"
    assert manifest["eval_set_hash"] == "evalhash"
    assert manifest["code_version"] == "0.1.0+gtest"
    assert manifest["front_hash"] == analysis.front_hash()
    assert manifest["margin"] == pytest.approx(0.17)

    # Re-running the same selection adds nothing.
    analysis, variants = choose(workspace)
    again = register_variants(analysis, variants, workspace)
    assert not any(entry.created for entry in again)
    assert len(client.search_model_versions(f"name = '{name}'")) == 2

    # Trial 3 finishes and beats trial 0 at k = 1: budget-1 moves to a new version.
    study = optuna.load_study(
        study_name="made", storage=f"sqlite:///{workspace / 'sweeps' / 'made' / 'optuna.db'}"
    )
    running = next(t for t in study.get_trials() if t.state == TrialState.RUNNING)
    study._storage.set_trial_state_values(running._trial_id, TrialState.COMPLETE, [0.56, 0.04])
    analysis, variants = choose(workspace)
    moved = {entry.alias: entry for entry in register_variants(analysis, variants, workspace)}
    assert moved["budget-1"].trial == 3
    assert moved["budget-1"].created
    assert moved["budget-1"].previous_version == by_alias["budget-1"].version
    assert not moved["budget-3"].created
    assert moved["budget-3"].previous_version is None
    assert len(client.search_model_versions(f"name = '{name}'")) == 3
    assert client.get_model_version_by_alias(name, "budget-1").tags["bao.trial_number"] == "3"
    old = client.get_model_version(name, by_alias["budget-1"].version)
    assert "bao.manifest.budget-1" not in old.tags  # the evidence moved with the alias


def test_a_trial_without_a_model_is_one_line(tmp_path: Path) -> None:
    from analysis.pareto import AnalysisError

    workspace = tmp_path / "ws"
    real_workspace(workspace, [{"metrics": curve([0.5, 0.5, 0.5], 0.1)}], checkpoint=False)
    analysis, variants = choose(workspace)
    with pytest.raises(AnalysisError, match="logged no 'policy' model and has no"):
        register_variants(analysis, variants, workspace)
