"""Whole Telepathy-Gym and Turtle-Gym episodes against a fake OpenAI-compatible server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bao.envs.user_gyms import TelepathyGymEnv, TurtleGymEnv
from bao.envs.user_simulator import SimulatedUser, UserSimulatorSettings
from bao.errors import EpisodeError
from bao.gym_tasks import RubricItem, TelepathyEntity, TurtleStory
from bao.metrics import summarize
from bao.shaping import ShapingCoefficients, shape_trajectory
from bao.trajectory import Trajectory, Turn
from tests.bao.envs.fake_openai import FakeOpenAI, Script, fake_openai, rule_based_user

PIANO = TelepathyEntity(
    id="e1",
    title="Piano",
    description="I am thinking of a musical instrument.",
    goal="Guess the instrument.",
    target_entity="Piano - a large keyboard instrument whose keys make hammers strike strings",
    category="musical_instrument",
)
SNOWMAN = TurtleStory(
    id="s1",
    title="The Snowman",
    surface="Children built a snowman and the next day the police came.",
    bottom="A thief had hidden a stolen purse in the snow; it appeared when the snowman melted.",
    rubric=(
        RubricItem("stolen purse hidden inside snow", 0.5),
        RubricItem("snowman melted revealing", 0.3),
        RubricItem("police questioned children", 0.2),
    ),
)


def user_for(server: FakeOpenAI, tmp_path: Path, **settings: Any) -> SimulatedUser:
    endpoint = {
        "base_url": server.base_url,
        "model": "user-model",
        "max_attempts": 2,
        "backoff_s": 0.0,
        "timeout_s": 2.0,
    }
    raw = {
        "simulator": endpoint,
        "judge": {**endpoint, "model": "judge-model"},
        "cache_path": str(tmp_path / "cache.sqlite"),
        **settings,
    }
    return SimulatedUser.from_settings(UserSimulatorSettings.model_validate(raw))


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with fake_openai(rule_based_user) as running:
        yield running


def play(env: Any, actions: list[str]) -> tuple[Trajectory, list[dict[str, Any]]]:
    env.reset()
    trajectory, infos = Trajectory(task_id="t"), []
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        trajectory.turns.append(Turn.from_step(action, observation, reward, info))
        infos.append(info)
        if terminated or truncated:
            break
    return trajectory, infos


def test_a_telepathy_episode_asks_guesses_and_is_solved(server: FakeOpenAI, tmp_path: Path) -> None:
    env = TelepathyGymEnv(PIANO, user_for(server, tmp_path), max_turns=8)
    opening = env.reset()
    assert "musical instrument" in opening
    assert "8 turns" in opening
    trajectory, infos = play(
        env,
        [
            "[action] Does it have keys?",
            "[action] Is it made of glass?",
            "[action] Is it lovely?!",
            "[answer] a violin",
            "[answer] The piano",
            "[action] never played: the episode ended",
        ],
    )
    assert [i["event"] for i in infos] == [
        "question_answered",
        "question_answered",
        "question_answered",
        "answer_wrong",
        "answer_correct",
    ]
    assert [i["value"] for i in infos] == ["Yes", "No", "Maybe", False, True]
    assert [t.observation for t in trajectory.turns[:3]] == ["Yes.", "No.", "Maybe."]
    assert trajectory.rewards == [0.0, 0.0, 0.0, 0.0, 1.0]  # once, on the correct guess
    assert env.done
    with pytest.raises(EpisodeError):
        env.step("[answer] piano")
    metrics = summarize([trajectory], k_max=3)
    assert (metrics["pass_at_u_1"], metrics["pass_at_u_2"]) == (0.0, 1.0)
    assert metrics["user_involvement_rate"] == pytest.approx(2 / 5)
    assert metrics["score"] == 1.0
    assert metrics["user_error_rate"] == 0.0
    # Questions went to the user model, guesses to the judge model; the hidden entity is in
    # their system message, the agent's text in the user message.
    questions, verdicts = server.completions("user-model"), server.completions("judge-model")
    assert next(r["messages"][-1]["content"] for r in questions) == "Does it have keys?"
    assert len(questions) == 3
    assert len(verdicts) == 2
    assert all(PIANO.target_entity in r["messages"][0]["content"] for r in server.requests)
    assert env.stats.calls == 5
    assert env.stats.requests == 5
    assert env.stats.cache_hits == 0


def test_telepathy_budget_finish_invalid_and_empty_turns(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    user = user_for(server, tmp_path)
    trajectory, infos = play(
        TelepathyGymEnv(PIANO, user, max_turns=4),
        ["[search] test", "[action]", "[answer]  ", "[action] Is it an animal?"],
    )
    assert [i["event"] for i in infos] == [
        "invalid_action",
        "question_empty",
        "answer_empty",
        "question_answered",
    ]
    assert [i["choice"] for i in infos] == ["invalid", "action", "answer", "action"]
    assert "turn budget of 4" in trajectory.turns[-1].observation
    assert summarize([trajectory])["invalid_rate"] == pytest.approx(3 / 4)
    assert len(server.requests) == 1  # empty turns ask nobody
    _, infos = play(TelepathyGymEnv(PIANO, user), ["[finish]"])
    assert infos[0]["event"] == "finish"


def test_a_turtle_episode_rewards_each_improvement_until_the_threshold(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    env = TurtleGymEnv(SNOWMAN, user_for(server, tmp_path), max_turns=10)
    assert "Surface: Children built a snowman" in env.reset()
    trajectory, infos = play(
        env,
        [
            "[action] Was something stolen?",
            "[action] Was it about a dog?",
            "[answer] A stolen purse was hidden inside the snow.",  # 0.5
            "[answer] The purse was hidden in the snow.",  # 0.25: no improvement
            "[answer] A stolen purse hidden inside the snow; the snowman melted, revealing it.",
            "[answer] A stolen purse hidden inside the snow; the snowman melted, revealing "
            "it, and the police questioned the children.",  # 1.0: solved
        ],
    )
    assert [i["event"] for i in infos] == [
        "question_answered",
        "question_answered",
        "answer_scored",
        "answer_scored",
        "answer_scored",
        "answer_correct",
    ]
    assert [i["value"] for i in infos[:2]] == ["Yes", "No"]
    assert [i["value"] for i in infos[2:]] == pytest.approx([0.5, 0.25, 0.8, 1.0])
    assert trajectory.rewards == pytest.approx([0, 0, 0.5, 0.0, 0.3, 0.2])
    assert "0.50 of 1.00" in trajectory.turns[2].observation
    assert "stolen purse hidden inside snow" in trajectory.turns[2].observation
    assert env.done
    assert env.best_score == pytest.approx(1.0)
    metrics = summarize([trajectory], k_max=4)
    assert metrics["score"] == pytest.approx(1.0)  # the rewards sum to the best score
    assert (metrics["pass_at_u_3"], metrics["pass_at_u_4"]) == (0.0, 1.0)
    # The rubric went to the judge without its weights.
    grading = server.completions("judge-model")[0]["messages"][0]["content"]
    assert "1. stolen purse hidden inside snow" in grading
    assert "0.3" not in grading
    assert "0.2" not in grading


def test_turtle_success_threshold_is_configurable(server: FakeOpenAI, tmp_path: Path) -> None:
    env = TurtleGymEnv(SNOWMAN, user_for(server, tmp_path), success_threshold=0.8)
    trajectory, infos = play(
        env,
        ["[answer] A stolen purse hidden inside the snow; the snowman melted, revealing it."],
    )
    assert infos[0]["event"] == "answer_correct"
    assert env.done
    assert trajectory.rewards == pytest.approx([0.8])
    assert summarize([trajectory])["pass_at_u_1"] == 1.0
    with pytest.raises(ValueError, match="success_threshold"):
        TurtleGymEnv(SNOWMAN, user_for(server, tmp_path), success_threshold=0.0)


def test_an_unsolved_turtle_episode_is_a_failure_for_shaping(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    env = TurtleGymEnv(SNOWMAN, user_for(server, tmp_path), max_turns=3)
    trajectory, _ = play(env, ["[answer] nothing", "[answer] nothing again", "[finish]"])
    assert sum(trajectory.rewards) == 0.0
    coefficients = ShapingCoefficients(user_lambda=0.1, info_seeking=0.2, over_thinking=0.0)
    shape_trajectory(trajectory, coefficients)
    # Two answers (-0.1 each), the second right after the first in a failed episode (-0.2).
    assert [t.shaped_reward for t in trajectory.turns] == pytest.approx([-0.1, -0.3, 0.0])


def test_an_outage_degrades_turns_without_ending_the_episode(tmp_path: Path) -> None:
    down = {"down": True}

    def flaky(request: dict[str, Any]) -> Script:
        return Script(status=503) if down["down"] else rule_based_user(request)

    with fake_openai(flaky) as server:
        env = TelepathyGymEnv(PIANO, user_for(server, tmp_path), max_turns=6)
        env.reset()
        first = env.step("[action] Does it have keys?")
        second = env.step("[answer] piano")
        down["down"] = False
        third = env.step("[action] Does it have keys?")
        fourth = env.step("[answer] piano")
    assert [step[4]["event"] for step in (first, second, third, fourth)] == [
        "user_unavailable",
        "answer_unjudged",
        "question_answered",
        "answer_correct",
    ]
    assert first[1] == second[1] == 0.0
    assert not first[2]
    assert not second[2]
    assert env.stats.failures == 2
    assert env.stats.requests == 2 * 2 + 2
    trajectory = Trajectory(
        "t", [Turn.from_step("", s[0], s[1], s[4]) for s in (first, second, third, fourth)]
    )
    metrics = summarize([trajectory], k_max=2)
    assert metrics["user_error_rate"] == pytest.approx(0.5)
    # The unjudged guess still asked the user: it counts towards Pass@U-k's k.
    assert (metrics["pass_at_u_1"], metrics["pass_at_u_2"]) == (0.0, 1.0)


def test_malformed_replies_from_the_judge_are_an_unjudged_answer(tmp_path: Path) -> None:
    with fake_openai(lambda request: Script("The story is great, 10/10")) as server:
        env = TurtleGymEnv(SNOWMAN, user_for(server, tmp_path))
        env.reset()
        observation, reward, terminated, _, info = env.step("[answer] some story")
    assert info["event"] == "answer_unjudged"
    assert reward == 0.0
    assert not terminated
    assert "not scored" in observation
    assert len(server.requests) == 2  # max_attempts


def test_a_second_evaluation_is_answered_from_the_cache(server: FakeOpenAI, tmp_path: Path) -> None:
    actions = ["[action] Does it have keys?", "[answer] violin", "[answer] piano"]
    first, _ = play(TelepathyGymEnv(PIANO, user_for(server, tmp_path)), actions)
    sent = len(server.requests)
    env = TelepathyGymEnv(PIANO, user_for(server, tmp_path))  # a new process's client
    again, _ = play(env, actions)
    assert len(server.requests) == sent  # nothing new asked
    assert [t.to_dict() for t in again.turns] == [t.to_dict() for t in first.turns]
    assert env.stats.cache_hits == env.stats.calls == 3
    assert env.stats.requests == 0
    assert json.loads(json.dumps(env.stats.as_dict()))["user_cache_hits"] == 3.0
