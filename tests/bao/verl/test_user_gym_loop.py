"""The ``bao_agent`` loop plays whole Telepathy-Gym and Turtle-Gym episodes.

Two fake servers: the policy's (verl's ``generate`` contract, scripted tool calls, the locally
built tokenizer) and the simulated user's (an OpenAI-compatible HTTP server on localhost,
answering as ``rule_based_user``). The loop reads its gym from a gym file, as the launcher
writes it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("verl")

from transformers import PreTrainedTokenizerBase

from bao.gym_tasks import TelepathyEntity, TurtleStory, load_telepathy_entities, load_turtle_stories
from bao.metrics import trajectory_values
from bao.shaping import shape_turn_rewards
from bao.trajectory import Trajectory
from bao.verl.agent_loop import BaoAgentLoopOutput, _user_gym
from bao.verl.data import GYM_TOOL_SCHEMAS, TRAJECTORY_KEY, user_gym_row
from tests.bao.envs.fake_openai import FakeOpenAI, Script, fake_openai, rule_based_user
from tests.bao.verl.fakes import FakeServer, Reply, play_row, tool_call, user_gym_scripted
from tests.bao.verl.test_agent_loop import COEFFICIENTS, MAX_TURNS, runs, verl_config
from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "configs" / "data"


@pytest.fixture(scope="module")
def entities() -> list[TelepathyEntity]:
    return load_telepathy_entities(EXAMPLES / "telepathy_entities.json")


@pytest.fixture(scope="module")
def stories() -> list[TurtleStory]:
    return load_turtle_stories(EXAMPLES / "turtle_stories.json")


@pytest.fixture
def user_server() -> Iterator[FakeOpenAI]:
    with fake_openai(rule_based_user) as server:
        yield server


@pytest.fixture
def composed(tmp_path: Path) -> Any:
    return verl_config(tmp_path)


def gym_file(
    tmp_path: Path,
    gym: str,
    server: FakeOpenAI,
    records: list[Any] = (),  # type: ignore[assignment]
    **endpoint: Any,
) -> str:
    """A gym file as bao.verl.launch writes it; a new path per call (the loop caches files)."""
    settings = {
        "base_url": server.base_url,
        "model": "user-model",
        "max_attempts": 2,
        "backoff_s": 0.0,
        "timeout_s": 5.0,
        **endpoint,
    }
    document = {
        "gym": gym,
        "success_threshold": 1.0,
        "user_simulator": {
            "simulator": settings,
            "judge": {**settings, "model": "judge-model"},
            "cache": True,
            "cache_path": str(tmp_path / "cache.sqlite"),
        },
        "records": [record.to_dict() for record in records],
    }
    path = tmp_path / f"gym-{len(list(tmp_path.glob('gym-*.json')))}.json"
    path.write_text(json.dumps(document))
    return str(path)


def play(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict[str, Any]],
    replies: list[Reply],
    path: str,
) -> list[tuple[BaoAgentLoopOutput, FakeServer]]:
    """Plays ``rows`` concurrently, as an agent-loop worker does."""
    servers = [FakeServer(tokenizer, reply) for reply in replies]

    async def everything() -> list[BaoAgentLoopOutput]:
        return await asyncio.gather(
            *(
                play_row(composed, tokenizer, server, row, gym_path=path)
                for row, server in zip(rows, servers, strict=True)
            )
        )

    return list(zip(asyncio.run(everything()), servers, strict=True))


def recorded(output: BaoAgentLoopOutput) -> Trajectory:
    return Trajectory.from_json(output.extra_fields["reward_extra_info"][TRAJECTORY_KEY])


def check_rewards(output: BaoAgentLoopOutput, trajectory: Trajectory) -> None:
    """One token run per turn; each turn's shaped reward on its last token."""
    shaped = shape_turn_rewards(trajectory.choices, trajectory.rewards, COEFFICIENTS)
    assert [t.shaped_reward for t in trajectory.turns] == pytest.approx(shaped)
    spans = runs(output.response_mask)
    assert len(spans) == len(trajectory.turns)
    assert [output.token_rewards[end - 1] for _, end in spans] == pytest.approx(shaped)
    assert output.reward_score == pytest.approx(sum(shaped))


def test_telepathy_episodes_play_against_the_simulated_user(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    entities: list[TelepathyEntity],
    user_server: FakeOpenAI,
    tmp_path: Path,
) -> None:
    chosen = entities[:3]
    rows = [user_gym_row(e, "telepathy_gym", i, "val", MAX_TURNS) for i, e in enumerate(chosen)]
    policies = ("oracle", "guess_every_turn", "never_answer")
    replies = [user_gym_scripted(e, p) for e, p in zip(chosen, policies, strict=True)]
    played = play(
        composed, tokenizer, rows, replies, gym_file(tmp_path, "telepathy_gym", user_server)
    )
    (oracle, _), (guesser, _), (silent, silent_server) = played

    first = recorded(oracle)
    assert [t.event for t in first.turns] == ["question_answered", "answer_correct"]
    assert first.rewards == [0.0, 1.0]
    assert first.task_id == chosen[0].id
    check_rewards(oracle, first)
    wrong = recorded(guesser)
    assert [t.event for t in wrong.turns] == ["answer_wrong"] * MAX_TURNS
    check_rewards(guesser, wrong)
    asking = recorded(silent)
    assert [t.event for t in asking.turns] == ["question_answered"] * MAX_TURNS
    # Each user reply reached the policy's next prompt.
    second_prompt = tokenizer.decode(silent_server.prompts[1])
    assert f"<tool_response>\n{asking.turns[0].observation}" in second_prompt
    # What evaluation and the cost report read back.
    info = oracle.extra_fields["reward_extra_info"]
    for key, value in trajectory_values(first).items():
        assert info[f"bao_{key}"] == pytest.approx(value), key
    assert info["bao_user_calls"] == 2.0
    assert info["bao_user_requests"] == 2.0
    assert info["bao_user_prompt_tokens"] > 0
    assert silent.extra_fields["reward_extra_info"]["bao_user_calls"] == MAX_TURNS
    assert len(user_server.completions("judge-model")) == 1 + MAX_TURNS


def test_the_policy_sees_the_gyms_own_tool(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    entities: list[TelepathyEntity],
    user_server: FakeOpenAI,
    tmp_path: Path,
) -> None:
    row = user_gym_row(entities[0], "telepathy_gym", 0, "val", MAX_TURNS)
    search = lambda turn: tool_call("search", "test")  # noqa: E731  (Function-Gym's choice)
    [(output, server)] = play(
        composed, tokenizer, [row], [search], gym_file(tmp_path, "telepathy_gym", user_server)
    )
    opening = tokenizer.decode(server.prompts[0])
    schema = GYM_TOOL_SCHEMAS["telepathy_gym"]["function"]["parameters"]["properties"]
    assert schema["choice"]["enum"] == ["action", "answer", "finish"]
    assert "yes/no question" in opening
    assert "'search'" not in opening
    trajectory = recorded(output)
    assert {t.event for t in trajectory.turns} == {"invalid_action"}
    assert "one of action, answer, finish" in trajectory.turns[0].observation
    assert not user_server.requests


def test_turtle_episodes_are_scored_on_the_rubric(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    stories: list[TurtleStory],
    user_server: FakeOpenAI,
    tmp_path: Path,
) -> None:
    story = stories[0]
    halves = [item.statement for item in story.rubric]

    def partial_then_full(turn: int) -> str:
        if turn == 0:
            return tool_call("answer", halves[0])
        return tool_call("answer", " ".join(halves))

    row = user_gym_row(story, "turtle_gym", 0, "val", MAX_TURNS)
    [(output, _)] = play(
        composed,
        tokenizer,
        [row],
        [partial_then_full],
        gym_file(tmp_path, "turtle_gym", user_server),
    )
    trajectory = recorded(output)
    assert [t.event for t in trajectory.turns] == ["answer_scored", "answer_correct"]
    # The first story makes the first statement (and parts of others); the second all.
    assert story.rubric[0].weight <= trajectory.rewards[0] < 1.0
    assert sum(trajectory.rewards) == pytest.approx(1.0)
    check_rewards(output, trajectory)
    info = output.extra_fields["reward_extra_info"]
    assert info["bao_score"] == pytest.approx(1.0)
    assert info["bao_pass_at_u_2"] == 1.0
    assert info["bao_pass_at_u_1"] == 0.0


def test_userrl_rows_name_their_task_by_title(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    stories: list[TurtleStory],
    user_server: FakeOpenAI,
    tmp_path: Path,
) -> None:
    story = stories[1]
    row = {
        "data_source": "interact_turtlegym",
        "prompt": [{"role": "system", "content": "rules"}, {"role": "user", "content": "go"}],
        "reward_model": {"title": story.title.upper(), "surface": story.surface},
        "extra_info": {"index": 0, "split": "test"},
    }
    path = gym_file(tmp_path, "turtle_gym", user_server, records=stories)
    [(output, _)] = play(composed, tokenizer, [row], [user_gym_scripted(story, "oracle")], path)
    trajectory = recorded(output)
    assert trajectory.task_id == story.id
    assert trajectory.turns[-1].event == "answer_correct"


def test_an_outage_of_the_simulated_user_does_not_crash_an_episode(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    entities: list[TelepathyEntity],
    tmp_path: Path,
) -> None:
    with fake_openai(lambda request: Script(status=503)) as server:
        row = user_gym_row(entities[0], "telepathy_gym", 0, "val", MAX_TURNS)
        [(output, _)] = play(
            composed,
            tokenizer,
            [row],
            [user_gym_scripted(entities[0], "oracle")],
            gym_file(tmp_path, "telepathy_gym", server),
        )
    trajectory = recorded(output)
    # Played to the turn budget: the question unanswered, every guess unjudged.
    assert [t.event for t in trajectory.turns] == ["user_unavailable"] + ["answer_unjudged"] * (
        MAX_TURNS - 1
    )
    info = output.extra_fields["reward_extra_info"]
    assert info["bao_user_error_rate"] == 1.0
    assert info["bao_user_failures"] == MAX_TURNS
    # The user's one question and the judge's first three guesses tried max_attempts (2)
    # times each; then the judge counted as down and the other guesses failed at once.
    assert info["bao_user_requests"] == (1 + 3) * 2
    check_rewards(output, trajectory)


def test_concurrent_episodes_share_the_endpoints_limit(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    entities: list[TelepathyEntity],
    tmp_path: Path,
) -> None:
    def slow(request: dict[str, Any]) -> Script:
        script = rule_based_user(request)
        script.delay = 0.1
        return script

    with fake_openai(slow) as server:
        chosen = entities[:8]
        rows = [user_gym_row(e, "telepathy_gym", i, "val", MAX_TURNS) for i, e in enumerate(chosen)]
        path = gym_file(tmp_path, "telepathy_gym", server, concurrency=3)
        played = play(
            composed, tokenizer, rows, [user_gym_scripted(e, "oracle") for e in chosen], path
        )
    assert all(recorded(output).turns[-1].event == "answer_correct" for output, _ in played)
    assert len(server.requests) == 16
    # Episodes overlapped (the event loop was not blocked by one episode's HTTP wait), and
    # never more than each endpoint's limit at once; the pool has a thread for each slot.
    assert server.max_in_flight > 1
    assert max(server.max_in_flight_by_model.values()) <= 3
    assert _user_gym(path).executor._max_workers == 3 + 3


def test_validation_rows_meet_the_eval_user(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    entities: list[TelepathyEntity],
    user_server: FakeOpenAI,
    tmp_path: Path,
) -> None:
    path = Path(gym_file(tmp_path, "telepathy_gym", user_server))
    document = json.loads(path.read_text())
    users = document["user_simulator"]
    users["eval_simulator"] = {**users["simulator"], "model": "eval-model"}
    path.write_text(json.dumps(document))
    rows = [
        user_gym_row(entities[0], "telepathy_gym", 0, "train", MAX_TURNS),
        user_gym_row(entities[1], "telepathy_gym", 1, "val", MAX_TURNS),
    ]
    play(
        composed, tokenizer, rows, [user_gym_scripted(e, "oracle") for e in entities[:2]], str(path)
    )
    # Training: the user and the judge; validation (the row marked bao_eval): the eval model
    # plays both.
    assert rows[1]["extra_info"]["bao_eval"] is True
    assert rows[0]["extra_info"]["bao_eval"] is False
    assert {request["model"] for request in user_server.requests} == {
        "eval-model",
        "judge-model",
        "user-model",
    }
    assert all(
        entities[1].target_entity in r["messages"][0]["content"]
        for r in user_server.completions("eval-model")
    )
    assert len(user_server.completions("eval-model")) == 2
