"""Telepathy-Gym and Turtle-Gym: the UserRL gyms whose user is a language model.

Both play like Function-Gym (one ``step`` is one turn, the action text is dispatched on a
case-sensitive prefix, the episode is truncated at ``max_turns``), with UserRL's semantics:

* ``[action] question``: a yes/no question the simulated user answers ``Yes``, ``No`` or
  ``Maybe`` (``question_answered``; ``info["value"]`` is the reply). An empty question is
  ``question_empty`` and asks nobody.
* ``[answer] text``: submitted for the user to check, the only user-involved action.
  Telepathy: the judge decides whether the guess names the hidden entity; a correct guess
  pays 1.0 and ends the episode (``answer_correct``), a wrong one pays 0 (``answer_wrong``).
  Turtle: the judge scores the story against each rubric statement (0, 0.5 or 1 times its
  weight); the reward is the improvement over the best score so far, so an episode's
  rewards sum to its best score, and reaching ``success_threshold`` ends the episode as
  ``answer_correct``; any other scored story is ``answer_scored`` (``info["value"]`` is the
  score). An empty answer is ``answer_empty``.
* ``[finish]`` gives up (reward 0); anything else is ``invalid_action``.

When the simulated user or the judge gives no usable reply (an outage, malformed replies
after every retry), the turn is still played: ``user_unavailable`` for a question,
``answer_unjudged`` for an answer (reward 0; it still counts as a user-involved action, the
user was asked). The episode goes on, and ``bao.metrics`` reports the share of such turns as
``user_error_rate``, so a degraded evaluation is visible as what it is.

The prompts are the project's own; the replies they ask for are JSON objects parsed strictly
(:mod:`bao.envs.user_simulator`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

from bao.envs.function_gym import TurnBudget
from bao.envs.user_simulator import (
    CallStats,
    ChatJSONClient,
    MalformedReplyError,
    SimulatedUser,
    UserSimulatorError,
    parse_json_object,
)
from bao.gym_tasks import RUBRIC_SCORES, TelepathyEntity, TurtleStory

log = logging.getLogger(__name__)

USER_REPLIES: Final = ("Yes", "No", "Maybe")
USER_GYM_EVENTS: Final = (
    "question_answered",
    "question_empty",
    "user_unavailable",
    "answer_correct",
    "answer_wrong",
    "answer_scored",
    "answer_empty",
    "answer_unjudged",
    "finish",
    "invalid_action",
)
DEFAULT_SUCCESS_THRESHOLD: Final = 1.0
"""Turtle-Gym: the story score that solves a puzzle (UserRL trains and evaluates with 1.0)."""
USER_GYM_CHOICES: Final = ("action", "answer", "finish")
"""The prefixes these gyms play (no ``search``: there is no test case to look up)."""


def _reply(value: Any) -> str:
    if value not in USER_REPLIES:
        raise MalformedReplyError(f"'reply' must be one of {list(USER_REPLIES)}, got {value!r}")
    return str(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise MalformedReplyError(f"'correct' must be true or false, got {value!r}")
    return value


def parse_user_reply(text: str) -> str:
    """``{"reply": "Yes" | "No" | "Maybe"}`` -> the reply."""
    return parse_json_object(text, {"reply": _reply})["reply"]


def parse_verdict(text: str) -> bool:
    """``{"correct": true | false}`` -> the verdict."""
    return parse_json_object(text, {"correct": _flag})["correct"]


def rubric_parser(n_items: int) -> Any:
    """A parser of ``{"scores": [s_1, ..., s_n]}`` with each score 0, 0.5 or 1."""

    def scores(value: Any) -> list[float]:
        if not isinstance(value, list) or len(value) != n_items:
            raise MalformedReplyError(
                f"'scores' must be a list of {n_items} numbers, got {value!r}"
            )
        for score in value:
            if isinstance(score, bool) or score not in RUBRIC_SCORES:
                raise MalformedReplyError(f"every score must be 0, 0.5 or 1, got {score!r}")
        return [float(score) for score in value]

    def parse(text: str) -> list[float]:
        return parse_json_object(text, {"scores": scores})["scores"]

    return parse


class _UserGymEnv(TurnBudget):
    """What both gyms share: the turn protocol, questions to the simulated user, the budget."""

    gym: str = ""

    def __init__(self, user: SimulatedUser, max_turns: int) -> None:
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive integer, got {max_turns!r}")
        self.user = user
        self.max_turns = max_turns
        self.turn = 0
        self.done = True  # until reset()
        self.stats = CallStats()
        """What this episode's calls to the user and the judge cost."""

    def _opening(self) -> str:
        raise NotImplementedError

    def _question_messages(self, question: str) -> list[dict[str, str]]:
        raise NotImplementedError

    def _answer(self, content: str) -> tuple[str, str, float, Any]:
        """(observation, event, reward, value) of a non-empty answer."""
        raise NotImplementedError

    def reset(self) -> str:
        """Starts a new episode and returns the opening observation."""
        self.turn = 0
        self.done = False
        self.stats = CallStats()
        return self._opening()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Plays one turn. Raises :class:`EpisodeError` before ``reset`` or after the end."""
        choice, content = self._begin_turn(action)
        value: Any = None
        reward = 0.0
        if choice not in USER_GYM_CHOICES:
            choice = "invalid"
            observation = "Unrecognised action: start it with [action], [answer] or [finish]."
            event = "invalid_action"
        elif choice == "action":
            observation, event, value = self._question(content)
        elif choice == "answer":
            if content:
                observation, event, reward, value = self._answer(content)
            else:
                observation = "An [answer] needs content; nothing was submitted."
                event = "answer_empty"
        else:
            observation, event = "You finished the episode without solving it.", "finish"
        return self._end_turn(observation, reward, event, choice, value)

    def _question(self, question: str) -> tuple[str, str, str | None]:
        if not question:
            return "An [action] needs a yes/no question.", "question_empty", None
        reply = self._ask(
            self.user.simulator, self._question_messages(question), parse_user_reply, "question"
        )
        if reply is None:
            return "The user did not reply to this question.", "user_unavailable", None
        return f"{reply}.", "question_answered", reply

    def _ask(
        self, client: ChatJSONClient, messages: list[dict[str, str]], parse: Any, purpose: str
    ) -> Any:
        """The parsed reply, or None when the user or judge could not be reached."""
        try:
            reply = client.request(messages, parse, purpose=f"{self.gym} {purpose}")
        except UserSimulatorError as error:
            log.warning("%s", error)
            self.stats.add_failure(error)
            return None
        except Exception:  # a bug of ours or the client's must not end a training run
            log.exception(
                "%s %s call failed unexpectedly; the turn goes unanswered", self.gym, purpose
            )
            self.stats.add_failure(UserSimulatorError("unexpected error"))
            return None
        self.stats.add(reply)
        return reply.value


def _json_only(shape: str) -> str:
    return f"Reply with nothing but the JSON object {shape}."


class TelepathyGymEnv(_UserGymEnv):
    """One Telepathy-Gym episode: guess ``entity`` with yes/no questions, then answer."""

    gym = "telepathy_gym"

    def __init__(self, entity: TelepathyEntity, user: SimulatedUser, max_turns: int = 16) -> None:
        super().__init__(user, max_turns)
        self.entity = entity
        self.task_id = entity.id

    def _opening(self) -> str:
        return (
            f"{self.entity.description} You have {self.max_turns} turns. Ask a yes/no "
            "question with '[action] question', submit a guess with '[answer] guess' (the "
            "user checks every guess), or give up with '[finish]'."
        )

    def _question_messages(self, question: str) -> list[dict[str, str]]:
        system = (
            "You are the host of a guessing game. You are thinking of this: "
            f"{self.entity.target_entity}\n"
            "The player asks yes/no questions about it. Answer each one truthfully for that "
            "thing: Yes if it is true, No if it is false, Maybe only if it cannot be answered "
            "with yes or no or the truth is genuinely uncertain. Never name the thing. "
            + _json_only('{"reply": "Yes"}, {"reply": "No"} or {"reply": "Maybe"}')
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": question}]

    def _answer(self, content: str) -> tuple[str, str, float, Any]:
        system = (
            "You judge a guessing game. The hidden thing is: "
            f"{self.entity.target_entity}\n"
            "Decide whether the player's guess names that same thing: the same entity, or an "
            "unmistakable other name for it. A related, broader or partly right guess is not "
            "correct. " + _json_only('{"correct": true} or {"correct": false}')
        )
        messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
        verdict = self._ask(self.user.judge, messages, parse_verdict, "judge")
        if verdict is None:
            return (
                "The user could not check this guess; it is not scored.",
                "answer_unjudged",
                0.0,
                None,
            )
        if verdict:
            return "Correct: that is what I was thinking of.", "answer_correct", 1.0, True
        return "No, that is not what I am thinking of.", "answer_wrong", 0.0, False


class TurtleGymEnv(_UserGymEnv):
    """One Turtle-Gym episode: uncover the story behind ``story.surface``, then tell it."""

    gym = "turtle_gym"

    def __init__(
        self,
        story: TurtleStory,
        user: SimulatedUser,
        max_turns: int = 16,
        success_threshold: float = DEFAULT_SUCCESS_THRESHOLD,
    ) -> None:
        super().__init__(user, max_turns)
        if not 0.0 < success_threshold <= 1.0:
            raise ValueError(f"success_threshold must be in (0, 1], got {success_threshold!r}")
        self.story = story
        self.task_id = story.id
        # A rubric whose weights sum to less than the threshold could never be solved.
        self.success_threshold = min(success_threshold, story.max_score)
        self.best_score = 0.0

    def reset(self) -> str:
        self.best_score = 0.0
        return super().reset()

    def _opening(self) -> str:
        return (
            f"Title: {self.story.title}\nSurface: {self.story.surface}\n"
            f"Uncover what really happened. You have {self.max_turns} turns. Ask a yes/no "
            "question with '[action] question', tell the whole story with '[answer] story' "
            "(the user checks every answer), or give up with '[finish]'."
        )

    def _question_messages(self, question: str) -> list[dict[str, str]]:
        system = (
            "You host a lateral-thinking puzzle. The player was told:\n"
            f"{self.story.surface}\nWhat really happened:\n{self.story.bottom}\n"
            "Answer the player's yes/no question by what really happened: Yes if it agrees, "
            "No if it contradicts it, Maybe if the story does not decide it or it does not "
            "matter. Be decisive and never tell the story. "
            + _json_only('{"reply": "Yes"}, {"reply": "No"} or {"reply": "Maybe"}')
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": question}]

    def _answer(self, content: str) -> tuple[str, str, float, Any]:
        items = self.story.rubric
        statements = "\n".join(f"{n}. {item.statement}" for n, item in enumerate(items, start=1))
        system = (
            "You grade a player's explanation of a lateral-thinking puzzle.\n"
            f"Puzzle: {self.story.surface}\nWhat really happened: {self.story.bottom}\n"
            "For each numbered statement, decide whether the player's story makes it: 1 if it "
            "does, 0.5 if it partly does, 0 if it does not. Judge the meaning, not the words.\n"
            f"{statements}\n"
            + _json_only('{"scores": [...]}')
            + f" It holds exactly {len(items)} numbers, in the statements' order."
        )
        messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
        scores = self._ask(self.user.judge, messages, rubric_parser(len(items)), "judge")
        if scores is None:
            return (
                "The user could not check this story; it is not scored.",
                "answer_unjudged",
                0.0,
                None,
            )
        score = math.fsum(item.weight * s for item, s in zip(items, scores, strict=True))
        reward = max(0.0, score - self.best_score)
        self.best_score = max(self.best_score, score)
        covered = [item.statement for item, s in zip(items, scores, strict=True) if s == 1.0]
        observation = f"Your story scores {score:.2f} of {self.story.max_score:.2f}."
        if covered:
            observation += " It gets right: " + " ".join(covered)
        if self.best_score >= self.success_threshold - 1e-9:
            return observation + " That is what happened.", "answer_correct", reward, score
        return observation + " Something is still missing.", "answer_scored", reward, score
