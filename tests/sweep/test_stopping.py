"""The stopping rules and the seed aggregation as pure functions (no study, no process)."""

from __future__ import annotations

import math

import pytest

from sweep.stopping import (
    abort_message,
    aggregate_seeds,
    budget,
    counted_failures,
    eta,
    failure_limit,
    idle_too_long,
    metric_problem,
    surplus,
    too_many_failures,
)


def test_the_failure_limit_defaults_to_every_attempt_of_every_trial() -> None:
    assert failure_limit(None, n_trials=10, max_retries=1) == 20
    assert failure_limit(3, n_trials=10, max_retries=1) == 3


@pytest.mark.parametrize(
    ("complete", "failed", "limit", "max_retries", "stops"),
    [
        (5, 19, 20, 1, False),
        (5, 20, 20, 1, True),  # the limit
        (0, 3, 20, 1, False),
        (0, 4, 20, 1, True),  # nothing complete and the first 2 * (1 + 1) attempts failed
        (1, 4, 20, 1, False),  # one success: not hopeless
        (0, 5, 20, 2, False),
        (0, 6, 20, 2, True),
    ],
)
def test_too_many_failures(
    complete: int, failed: int, limit: int, max_retries: int, stops: bool
) -> None:
    assert too_many_failures(complete, failed, limit, max_retries) is stops


def test_mlflow_outages_do_not_count_as_failures() -> None:
    reasons = {
        0: "tracking: MLflow did not answer",
        1: "exit_code: exit status 3",
        2: "tracking: x",
    }
    assert counted_failures(3, reasons) == 1


def test_stops_of_the_sweep_do_not_count_as_failures() -> None:
    # Three Ctrl-Cs in a row, then a real failure (issue: new-user fixes, item 1).
    reasons = {
        0: "interrupted: the sweep was stopped during this trial",
        1: "interrupted: the sweep was stopped during this trial",
        2: "interrupted: the sweep was stopped during this trial",
        3: "exit_code: exit status 1: interrupted by the user",
    }
    assert counted_failures(4, reasons) == 1
    assert not too_many_failures(0, counted_failures(4, reasons), limit=4, max_retries=1)


def test_the_abort_message_names_the_last_reason() -> None:
    reasons = {4: "timeout: late", 9: "exit_code: exit status 3: boom", 2: "killed"}
    assert abort_message("s", 0, 3, reasons) == (
        "sweep 's' stopped after 3 failed trial attempts (0 complete); "
        "last reason: exit_code: exit status 3: boom"
    )
    assert abort_message("s", 0, 0, {}).endswith("last reason: ?")


def test_budget_surplus_and_idle() -> None:
    assert budget(10, complete=4, running=3, waiting=1) == 2
    assert budget(10, complete=8, running=3, waiting=0) == -1
    assert surplus(ahead=10, n_trials=10)
    assert not surplus(ahead=9, n_trials=10)
    assert idle_too_long(121.0, lease=120.0)
    assert not idle_too_long(120.0, lease=120.0)


def test_eta_is_the_mean_duration_per_job() -> None:
    assert eta(6, [], jobs=2) is None
    assert eta(6, [10.0, 30.0], jobs=2) == pytest.approx(60.0)


def test_metric_problems_name_the_seed_and_the_metric() -> None:
    wanted = ["a", "b"]
    assert metric_problem({"a": 1.0, "b": 2.0, "c": math.nan}, wanted, 0) is None
    assert metric_problem({"a": 1.0}, wanted, 3) == (
        "missing_metrics",
        "seed 3: the run logged no 'b'",
    )
    assert metric_problem({"a": math.inf, "b": math.nan}, wanted, 1) == (
        "bad_metrics",
        "seed 1: a=inf, b=nan",
    )


def test_one_seed_is_its_own_mean_with_no_error_and_nothing_extra_to_log() -> None:
    summary = aggregate_seeds([{"a": 0.25, "x": 7.0}], ["a"])
    assert summary.means == {"a": 0.25}
    assert summary.stderr == {"a": 0.0}
    assert summary.seed_values == {"a": [0.25]}
    assert summary.logged == {}


def test_several_seeds_give_mean_standard_error_and_the_shared_finite_metrics() -> None:
    per_seed = [
        {"a": 1.0, "b": 10.0, "only_first": 5.0, "flaky": math.nan},
        {"a": 3.0, "b": 20.0, "flaky": 1.0},
    ]
    summary = aggregate_seeds(per_seed, ["a", "b"])
    # mean (1 + 3) / 2 = 2; sample sd sqrt(((1-2)^2 + (3-2)^2) / 1) = sqrt(2); / sqrt(2) = 1
    assert summary.means == {"a": 2.0, "b": 15.0}
    assert summary.stderr == pytest.approx({"a": 1.0, "b": 5.0})
    assert summary.seed_values == {"a": [1.0, 3.0], "b": [10.0, 20.0]}
    # Shared by both seeds and finite in both: a and b; their standard errors beside them.
    assert summary.logged == pytest.approx({"a": 2.0, "b": 15.0, "a_stderr": 1.0, "b_stderr": 5.0})
