"""Function-Gym: guess a hidden arithmetic rule, then answer its value at a test case.

The rules are UserRL's (docs/concepts.md, "Function-Gym"). One ``step`` is one turn; the action
text is stripped and dispatched on a case-sensitive prefix:

* ``[action] 1 2 3 4`` queries the rule at four numbers (any text around them is ignored);
* ``[search] test`` reveals the test case;
* ``[answer] 42`` submits an answer for the user to verify: the only user-involved action;
* ``[finish]`` gives up.

Reward is 1.0 for a correct answer (which ends the episode) and 0.0 otherwise. The wording of
observations is this project's; the events in ``info["event"]`` are what callers rely on.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

from bao.errors import EpisodeError
from bao.expressions import RuleEvaluationError, evaluate
from bao.tasks import ANSWER_TOLERANCE, FunctionTask

CHOICES: Final = ("action", "search", "answer", "finish", "invalid")
EVENTS: Final = (
    "query_result",
    "query_test_case_refused",
    "query_error",
    "query_wrong_arity",
    "query_empty",
    "search_test_case",
    "search_bad_query",
    "answer_correct",
    "answer_wrong",
    "answer_unparsable",
    "finish",
    "invalid_action",
)
# The user verifies answers; queries and searches involve only the environment.
USER_INVOLVED_CHOICES: Final = frozenset({"answer"})

# "optional minus, digits, optional dot, optional digits": 1e5 reads as 1 and 5, commas split.
_NUMBER: Final = re.compile(r"-?\d+\.?\d*")
_PREFIXED_CHOICES: Final = ("action", "search", "answer", "finish")
DEFAULT_MAX_TURNS: Final = 16


def format_action(choice: str, content: str = "") -> str:
    """The action text of a tool call ``(choice, content)``: ``"[choice] content"``.

    Content that already starts with the prefix is passed through unchanged, so a model that
    writes ``[answer] 3`` into the content field is not double-prefixed.
    """
    prefix = f"[{choice}]"
    text = content.strip()
    if text.startswith(prefix):
        return text
    return f"{prefix} {text}" if text else prefix


def parse_action(action: str) -> tuple[str, str]:
    """Splits action text into ``(choice, content)``; unknown prefixes give ``"invalid"``."""
    text = action.strip()
    for choice in _PREFIXED_CHOICES:
        prefix = f"[{choice}]"
        if text.startswith(prefix):
            return choice, text[len(prefix) :].strip()
    return "invalid", text


class TurnBudget:
    """The start and the end of a turn, the same in every gym: a step is refused before
    ``reset`` and after the end; a correct answer or ``finish`` terminates; the turn that
    reaches ``max_turns`` truncates, also when it terminated too (a correct answer or
    ``finish`` on the last turn reports both, as UserRL does), and the observation says so."""

    turn: int
    max_turns: int
    done: bool

    def _begin_turn(self, action: str) -> tuple[str, str]:
        """Counts the turn and splits its action into ``(choice, content)``."""
        if self.done:
            raise EpisodeError(
                "step() called on a finished episode (or before reset()); call reset() first"
            )
        self.turn += 1
        return parse_action(action)

    def _end_turn(
        self, observation: str, reward: float, event: str, choice: str, value: Any
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        terminated = event in ("answer_correct", "finish")
        truncated = self.turn >= self.max_turns
        if truncated:
            observation += f" The turn budget of {self.max_turns} is used up."
        self.done = terminated or truncated
        info = {"event": event, "choice": choice, "value": value, "turn": self.turn}
        return observation, reward, terminated, truncated, info


def _show(value: float) -> str:
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class FunctionGymEnv(TurnBudget):
    """One Function-Gym episode over ``task``, truncated after ``max_turns`` turns.

    ``step`` returns ``(observation, reward, terminated, truncated, info)``, with ``info``
    holding ``event`` (one of :data:`EVENTS`), ``choice`` (one of :data:`CHOICES`), ``value``
    (the rounded query result or the parsed answer, else ``None``) and ``turn`` (1-based).
    """

    def __init__(self, task: FunctionTask, max_turns: int = DEFAULT_MAX_TURNS) -> None:
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive integer, got {max_turns!r}")
        self.task = task
        self.max_turns = max_turns
        self.turn = 0
        self.done = True  # until reset()
        self._expression = task.expression  # parse once, before the episode starts

    def reset(self) -> str:
        """Starts a new episode and returns the opening observation."""
        self.turn = 0
        self.done = False
        return (
            "I have a hidden function f(a, b, c, d) built from +, -, *, / and powers. "
            f"You have {self.max_turns} turns. Query it with '[action] a b c d', get the test "
            "case with '[search] test', submit f at the test case with '[answer] value' "
            "(the user checks every answer), or give up with '[finish]'."
        )

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Plays one turn. Raises :class:`EpisodeError` before ``reset`` or after the end."""
        choice, content = self._begin_turn(action)
        if choice == "action":
            observation, event, value = self._query(content)
        elif choice == "search":
            observation, event, value = self._search(content)
        elif choice == "answer":
            observation, event, value = self._answer(content)
        elif choice == "finish":
            observation, event, value = (
                "You finished the episode without a correct answer.",
                "finish",
                None,
            )
        else:
            observation = (
                "Unrecognised action: start it with [action], [search], [answer] or [finish]."
            )
            event, value = "invalid_action", None
        reward = 1.0 if event == "answer_correct" else 0.0
        return self._end_turn(observation, reward, event, choice, value)

    def _query(self, content: str) -> tuple[str, str, float | None]:
        if not content:
            return "An [action] needs four numbers, e.g. '[action] 1 2 3 4'.", "query_empty", None
        numbers = [float(match) for match in _NUMBER.findall(content)]
        if len(numbers) != 4:
            return (
                f"An [action] needs exactly four numbers; I read {len(numbers)}.",
                "query_wrong_arity",
                None,
            )
        shown = ", ".join(_show(number) for number in numbers)
        if numbers == [float(value) for value in self.task.test_case]:
            return (
                "That input is the test case; it cannot be queried. Work out the rule instead.",
                "query_test_case_refused",
                None,
            )
        try:
            result = round(evaluate(self._expression, numbers), 4)
        except RuleEvaluationError:
            return (
                f"f({shown}) is undefined (division by zero, a non-real or an overflowing power).",
                "query_error",
                None,
            )
        return f"f({shown}) = {_show(result)}", "query_result", result

    def _search(self, content: str) -> tuple[str, str, float | None]:
        if content.strip().lower() == "test":
            a, b, c, d = self.task.test_case
            return (
                f"The test case is a={a}, b={b}, c={c}, d={d}. Answer f at these values.",
                "search_test_case",
                None,
            )
        return "The only search is '[search] test'.", "search_bad_query", None

    def _answer(self, content: str) -> tuple[str, str, float | None]:
        try:
            value = float(content.strip())
        except ValueError:
            return (
                f"An [answer] must be a single number; I could not read {content!r}.",
                "answer_unparsable",
                None,
            )
        if abs(value - self.task.expected_result) <= ANSWER_TOLERANCE:
            return f"{_show(value)} is correct.", "answer_correct", value
        return f"{_show(value)} is not correct.", "answer_wrong", value
