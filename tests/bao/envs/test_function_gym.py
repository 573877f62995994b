"""Function-Gym semantics (docs/concepts.md), event by event, plus a battery over UserRL."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bao.envs import CHOICES, EVENTS, FunctionGymEnv, format_action, parse_action
from bao.errors import EpisodeError
from bao.expressions import RuleEvaluationError, evaluate, evaluate_many, round4
from bao.tasks import FunctionTask, load_function_tasks

# f = (a - d) - b - c, test case (5, 8, 7, 6) -> -16
TASK = FunctionTask("func-486", "(a - d) - b - c", (5, 8, 7, 6), -16.0)


def step(env: FunctionGymEnv, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
    result = env.step(action)
    info = result[4]
    assert set(info) == {"event", "choice", "value", "turn"}
    assert info["event"] in EVENTS
    assert info["choice"] in CHOICES
    return result


def fresh(task: FunctionTask = TASK, max_turns: int = 16) -> FunctionGymEnv:
    env = FunctionGymEnv(task, max_turns=max_turns)
    assert isinstance(env.reset(), str)
    return env


@pytest.mark.parametrize(
    ("action", "event", "choice", "value"),
    [
        ("[action] 1 2 3 4", "query_result", "action", (1 - 4) - 2 - 3),
        ("  [action]   1, 2, 3, 4  ", "query_result", "action", -8.0),  # commas are ignored
        ("[action] a=1 b=2 c=3 d=4 please", "query_result", "action", -8.0),
        ("[action] 1e5 2 3", "query_result", "action", (1 - 3) - 5 - 2),  # 1e5 is 1 and 5
        ("[action] 1e5 2 3 4", "query_wrong_arity", "action", None),
        ("[action] 1.5 2 3 4.25", "query_result", "action", (1.5 - 4.25) - 2 - 3),
        ("[action] -1 -2 -3 -4", "query_result", "action", (-1 + 4) + 2 + 3),
        ("[action] 1 2 3", "query_wrong_arity", "action", None),
        ("[action]", "query_empty", "action", None),
        ("[action]    ", "query_empty", "action", None),
        ("[action] 5 8 7 6", "query_test_case_refused", "action", None),
        ("[action] 5.0 8 7.00 6", "query_test_case_refused", "action", None),
        ("[search] test", "search_test_case", "search", None),
        ("[search]  TEST ", "search_test_case", "search", None),
        ("[search] tests", "search_bad_query", "search", None),
        ("[search]", "search_bad_query", "search", None),
        ("[answer] -16", "answer_correct", "answer", -16.0),
        ("[answer] -1.6e1", "answer_correct", "answer", -16.0),
        ("[answer]   -16.0000005 ", "answer_correct", "answer", -16.0000005),  # within 1e-6
        # -15.999999 + 16 is 9.99999999e-07 in floats: within the inclusive 1e-6 tolerance.
        ("[answer] -15.999999", "answer_correct", "answer", -15.999999),
        ("[answer] -15.9999985", "answer_wrong", "answer", -15.9999985),  # 1.5e-6 away
        ("[answer] -16.000002", "answer_wrong", "answer", -16.000002),
        ("[answer] 3", "answer_wrong", "answer", 3.0),
        ("[answer] nan", "answer_wrong", "answer", None),  # nan is a number, never correct
        ("[answer] ", "answer_unparsable", "answer", None),
        ("[answer] -16 or 16", "answer_unparsable", "answer", None),
        ("[answer] sixteen", "answer_unparsable", "answer", None),
        ("[finish]", "finish", "finish", None),
        ("[finish] I give up", "finish", "finish", None),
        ("[ANSWER] -16", "invalid_action", "invalid", None),  # prefixes are case-sensitive
        ("answer -16", "invalid_action", "invalid", None),
        ("", "invalid_action", "invalid", None),
    ],
)
def test_every_event(action: str, event: str, choice: str, value: float | None) -> None:
    env = fresh()
    observation, reward, terminated, truncated, info = step(env, action)
    assert (info["event"], info["choice"], info["turn"]) == (event, choice, 1)
    if value is None and event == "answer_wrong":
        assert math.isnan(info["value"])
    elif value is None:
        assert info["value"] is None
    else:
        assert info["value"] == pytest.approx(value, abs=0)
    assert reward == (1.0 if event == "answer_correct" else 0.0)
    assert terminated == (event in ("answer_correct", "finish"))
    assert not truncated
    assert observation


def test_search_reveals_the_test_case() -> None:
    observation, *_ = step(fresh(), "[search] test")
    assert "a=5, b=8, c=7, d=6" in observation


@pytest.mark.parametrize(
    ("rule", "action", "event", "value"),
    [
        ("a / (b - c) + d", "[action] 1 2 2 3", "query_error", None),  # division by zero
        ("a ** (b - c) + d", "[action] 0 1 2 3", "query_error", None),  # 0 to a negative power
        ("a ** (b / c) + d", "[action] -8 1 3 0", "query_error", None),  # complex result
        ("a ** b + c + d", "[action] 10 400 1 1", "query_error", None),  # overflowing power
        ("a * b + c + d", "[action] " + "1" + "0" * 308 + " 10 1 1", "query_result", math.inf),
        ("a * b - c * d", "[action] 1e308 10 1e308 10", "query_wrong_arity", None),  # 6 numbers
        ("a / b + c + d", "[action] 1 3 0 0", "query_result", 0.3333),  # rounded to 4 decimals
        ("a / b + c + d", "[action] 2 3 0 0", "query_result", 0.6667),
    ],
)
def test_query_arithmetic(rule: str, action: str, event: str, value: float | None) -> None:
    task = FunctionTask("t", rule, (1, 1, 1, 1), evaluate_or_nan(rule, (1, 1, 1, 1)))
    _, _, _, _, info = step(fresh(task), action)
    assert info["event"] == event
    if value is not None:
        assert info["value"] == value


def evaluate_or_nan(rule: str, point: tuple[int, ...]) -> float:
    task = FunctionTask("probe", rule, (1, 1, 1, 1), 0.0)
    try:
        return evaluate(task.expression, point)
    except RuleEvaluationError:
        return math.nan


def test_nan_query_result_is_reported() -> None:
    task = FunctionTask("t", "a * b - c * d", (1, 1, 1, 1), 0.0)
    env = fresh(task)
    big = "1" + "0" * 308
    _, _, _, _, info = step(env, f"[action] {big} 10 {big} 10")
    assert info["event"] == "query_result"
    assert math.isnan(info["value"])


def test_wrong_answer_continues_and_correct_answer_terminates() -> None:
    env = fresh()
    assert step(env, "[answer] 1")[2:4] == (False, False)
    assert step(env, "[answer] 2")[2:4] == (False, False)
    _, reward, terminated, truncated, info = step(env, "[answer] -16")
    assert (reward, terminated, truncated, info["turn"]) == (1.0, True, False, 3)


def test_truncation_at_max_turns_and_no_step_after_the_end() -> None:
    env = fresh(max_turns=3)
    assert step(env, "[action] 1 2 3 4")[2:4] == (False, False)
    assert step(env, "garbage")[2:4] == (False, False)  # invalid actions use turns too
    observation, reward, terminated, truncated, info = step(env, "[answer] 0")
    assert (reward, terminated, truncated, info["turn"]) == (0.0, False, True, 3)
    assert "budget" in observation
    with pytest.raises(EpisodeError, match="finished episode"):
        env.step("[answer] -16")


def test_correct_answer_on_the_last_turn_is_terminated_and_truncated() -> None:
    # UserRL reports both when the step that ends the episode also uses up the budget.
    env = fresh(max_turns=1)
    assert step(env, "[answer] -16")[1:4] == (1.0, True, True)


def test_finish_on_the_last_turn_is_terminated_and_truncated() -> None:
    env = fresh(max_turns=2)
    assert step(env, "[search] test")[2:4] == (False, False)
    assert step(env, "[finish]")[1:4] == (0.0, True, True)


def test_step_before_reset_raises_and_reset_restarts() -> None:
    env = FunctionGymEnv(TASK)
    with pytest.raises(EpisodeError):
        env.step("[search] test")
    env.reset()
    step(env, "[finish]")
    env.reset()
    assert step(env, "[search] test")[4]["turn"] == 1


def test_max_turns_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_turns"):
        FunctionGymEnv(TASK, max_turns=0)


@pytest.mark.parametrize(
    ("choice", "content", "text"),
    [
        ("answer", "12", "[answer] 12"),
        ("answer", "[answer] 12", "[answer] 12"),
        ("action", " 1 2 3 4 ", "[action] 1 2 3 4"),
        ("finish", "", "[finish]"),
        ("search", "[answer] 3", "[search] [answer] 3"),
    ],
)
def test_format_action(choice: str, content: str, text: str) -> None:
    assert format_action(choice, content) == text
    assert parse_action(text)[0] == choice


def test_battery_over_all_userrl_training_functions(userrl_functions_path: Path) -> None:
    """Every rule: queries (cross-checked with the vectorised evaluator), search, answers."""
    tasks = load_function_tasks(userrl_functions_path)
    probes = np.array(
        [[1, 1, 1, 1], [2, 3, 4, 5], [0, 0, 0, 0], [10, 9, 8, 7], [-2, 3, -4, 5], [1.5, 2, 0.5, 3]]
    )
    values, errors = evaluate_many([task.expression for task in tasks], probes)
    expected_values = round4(values)
    counts: dict[str, int] = {}
    for index, task in enumerate(tasks):
        env = fresh(task)
        for j, probe in enumerate(probes.tolist()):
            action = "[action] " + " ".join(repr(v) for v in probe)
            _, reward, terminated, truncated, info = step(env, action)
            counts[info["event"]] = counts.get(info["event"], 0) + 1
            assert (reward, terminated, truncated) == (0.0, False, False)
            if list(map(float, task.test_case)) == probe:
                assert info["event"] == "query_test_case_refused"
            elif errors[index, j]:
                assert info["event"] == "query_error"
            else:
                assert info["event"] == "query_result"
                got, want = info["value"], float(expected_values[index, j])
                assert got == want or (math.isnan(got) and math.isnan(want)), (task.rule, probe)
        test_case_query = "[action] " + " ".join(map(str, task.test_case))
        assert step(env, test_case_query)[4]["event"] == "query_test_case_refused"
        assert step(env, "[search] test")[4]["event"] == "search_test_case"
        assert step(env, f"[answer] {task.expected_result + 1}")[4]["event"] == "answer_wrong"
        _, reward, terminated, _, info = step(env, f"[answer] {task.expected_result!r}")
        assert (info["event"], reward, terminated, info["turn"]) == (
            "answer_correct",
            1.0,
            True,
            10,
        )
    assert counts["query_result"] > 2000
    assert counts["query_error"] > 0
