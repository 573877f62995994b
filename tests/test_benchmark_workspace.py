"""benchmarks/workspace.py: synthetic sweeps that the loader reads like a real one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.loader import load_sweep
from benchmarks.workspace import (
    EVAL_SET_HASH,
    K_MAX,
    N_TASKS,
    WorkspaceExistsError,
    build_workspace,
    main,
    synthetic_trials,
)

N_TRIALS = 30
SEED_TWO = 10  # trial 8 fails and so does its retry, trial 9 (no retry left)
SEED_THREE = 0  # trials 2 and 23 fail, retried by 3 and 24
METRICS = [
    *(f"eval/pass_at_u_{k}{end}" for k in range(1, K_MAX + 1) for end in ("", "_lo", "_hi")),
    "eval/score",
    "eval/user_involvement_rate",
    "eval/exploration_ratio",
    "eval/mean_turns",
    "eval/invalid_rate",
    "eval/mean_user_actions",
    "eval/no_answer_rate",
    "eval/n_trajectories",
    "train/seconds",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workspace (one MLflow database to set up) holding every sweep of these tests."""
    root = tmp_path_factory.mktemp("synthetic")
    build_workspace(root, N_TRIALS, seed=SEED_TWO, name="two")
    build_workspace(root, N_TRIALS, seed=SEED_THREE, n_objectives=3, name="three")
    build_workspace(root, 12, seed=SEED_TWO, name="client", bulk=False)
    build_workspace(root, 12, seed=SEED_TWO, name="bulk")
    return root


@pytest.mark.parametrize(
    ("name", "seed", "n_objectives"), [("two", SEED_TWO, 2), ("three", SEED_THREE, 3)]
)
def test_loader_sees_the_trials_states_and_metrics(
    workspace: Path, name: str, seed: int, n_objectives: int
) -> None:
    expected = synthetic_trials(N_TRIALS, seed)
    failed = [t.number for t in expected if t.state == "FAIL"]
    assert failed, "the seeds were chosen to include failures"

    data = load_sweep(workspace, name, use_cache=False)
    trials = data.trials.set_index("number")
    assert len(trials) == N_TRIALS
    assert (trials["state"] == "COMPLETE").sum() == N_TRIALS - len(failed)
    assert sorted(trials.index[trials["state"] == "FAIL"]) == failed
    assert trials.loc[failed, "failure_reason"].str.contains(": ").all()
    retries = [t for t in expected if t.retry_of is not None]
    for retry in retries:
        assert trials.loc[retry.number, "retry_of"] == retry.retry_of
        assert trials.loc[retry.number, "attempt"] == 2
    assert len(data.metrics) == n_objectives
    assert data.metrics[:2] == ["eval/score", "eval/user_involvement_rate"]
    assert data.parent_run_id is not None
    assert trials["mlflow_run_id"].notna().all()

    complete = data.complete
    assert len(complete) == N_TRIALS - len(failed)
    assert set(METRICS) <= set(complete.columns)
    assert complete[METRICS].notna().all().all()
    assert (complete["eval/n_trajectories"] == N_TASKS).all()
    assert (complete["eval_set_hash"] == EVAL_SET_HASH).all()
    assert (complete["n_seeds"] == 1).all()
    assert data.trials.loc[data.trials["state"] == "FAIL", "eval/score"].isna().all()

    passes = complete[[f"eval/pass_at_u_{k}" for k in range(1, K_MAX + 1)]].to_numpy()
    assert (np.diff(passes, axis=1) >= 0).all()
    assert ((passes >= 0) & (passes <= 1)).all()
    assert (complete["eval/score"].to_numpy() >= passes[:, -1]).all()
    low, high = complete["eval/pass_at_u_1_lo"], complete["eval/pass_at_u_1_hi"]
    assert ((low <= complete["eval/pass_at_u_1"]) & (complete["eval/pass_at_u_1"] <= high)).all()
    for column in ("eval/user_involvement_rate", "eval/no_answer_rate", "eval/invalid_rate"):
        assert complete[column].between(0, 1).all()
    assert complete["eval/mean_turns"].between(1, 16).all()

    # The objectives the driver recorded are the run's metrics.
    by_number = {t.number: t for t in expected}
    for number, row in complete.set_index("number").iterrows():
        for metric in data.metrics:
            assert row[metric] == pytest.approx(by_number[int(number)].metrics[metric])


def test_the_front_of_a_synthetic_sweep(workspace: Path) -> None:
    from analysis.report import analyse_front

    data = load_sweep(workspace, "three")
    analysis = analyse_front(data, n_draws=50)
    assert analysis.front_numbers
    # No trajectories: Beta draws for the shares, eval/mean_turns held fixed.
    assert analysis.draws.methods[0] == ("beta", "beta", "fixed")


def test_bulk_rows_equal_the_clients_rows(workspace: Path) -> None:
    """The fast path writes what MlflowClient.log_batch and Study.add_trials write."""
    bulk = load_sweep(workspace, "bulk", use_cache=False)
    client = load_sweep(workspace, "client", use_cache=False)
    assert set(bulk.trials.columns) == set(client.trials.columns)
    columns = [c for c in bulk.trials.columns if c not in ("mlflow_run_id", "artifact_uri")]
    pd.testing.assert_frame_equal(bulk.trials[columns], client.trials[columns])
    seed_columns = [c for c in bulk.seeds.columns if c not in ("run_id", "artifact_uri")]
    pd.testing.assert_frame_equal(bulk.seeds[seed_columns], client.seeds[seed_columns])


def test_the_same_seed_gives_the_same_sweep() -> None:
    first, again = synthetic_trials(50, 3), synthetic_trials(50, 3)
    assert [(t.state, t.params, t.metrics, t.start) for t in first] == [
        (t.state, t.params, t.metrics, t.start) for t in again
    ]
    assert first[0].metrics != synthetic_trials(50, 4)[0].metrics


def test_an_existing_sweep_is_refused(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(WorkspaceExistsError, match="already holds a sweep named 'two'"):
        build_workspace(workspace, 5, name="two")
    assert main([str(workspace), "--trials", "5", "--name", "two"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "already holds a sweep named 'two'" in err
