"""The ``bao_agent`` loop plays whole Function-Gym episodes against a fake LLM server.

The server stands in for SGLang: it decodes nothing it does not need, answers each turn with
the token ids of a scripted reply (a Hermes tool call of ``bao.scripted``'s policies, or
malformed ones), and reports the ``extra_fields`` a real server attaches. The tokenizer is
built locally (``chat_tokenizer``), and the agent loop runs on verl's real ``ppo_trainer``
config composed with the launcher's overrides.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("verl")

import torch
from transformers import PreTrainedTokenizerBase
from verl.protocol import DataProto
from verl.trainer.ppo.ray_trainer import compute_advantage

import bao.verl.register  # noqa: F401  (what VERL_USE_EXTERNAL_MODULES imports)
from bao.advantage import turn_advantages
from bao.metrics import trajectory_values
from bao.scripted import SCRIPTED_POLICIES, play_episode
from bao.shaping import ShapingCoefficients, shape_turn_rewards
from bao.tasks import FunctionTask, generate_function_tasks
from bao.trajectory import Trajectory
from bao.verl.agent_loop import BaoAgentLoopOutput, place_turn_rewards
from bao.verl.config import VerlConfig
from bao.verl.data import TRAJECTORY_KEY, task_row
from bao.verl.launch import RunFolder, hydra_overrides, plan_data, validate_overrides
from tests.bao.verl.fakes import FakeServer, Reply, play_row, scripted, tool_call

MAX_TURNS = 8
COEFFICIENTS = ShapingCoefficients(
    user_lambda=0.1, info_seeking=0.2, over_thinking=0.05, min_turns=MAX_TURNS
)


def verl_config(tmp_path: Path, **changes: Any) -> Any:
    """verl's composed ppo_trainer config for a small BAO run."""
    raw: dict[str, Any] = {
        "model": {"path": "local-test-model"},
        "env": {"max_turns": MAX_TURNS},
        "shaping": {
            "user_lambda": COEFFICIENTS.user_lambda,
            "info_seeking": COEFFICIENTS.info_seeking,
            "over_thinking": COEFFICIENTS.over_thinking,
            "min_turns": COEFFICIENTS.min_turns,
        },
        "tasks": {"n_train": 4, "n_eval": 4},
        "schedule": {"n_gpus_per_node": 1},
        "optim": {"train_batch_size": 4, "ppo_mini_batch_size": 4},
    }
    for key, value in changes.items():
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    config = VerlConfig.model_validate(raw)
    folder = RunFolder(tmp_path / "run")
    overrides = hydra_overrides(
        config, plan_data(config, folder), folder, experiment="t", run_name="t", environment={}
    )
    return validate_overrides(overrides)


def play(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    row: dict[str, Any],
    reply: Reply,
    **loop_kwargs: Any,
) -> tuple[BaoAgentLoopOutput, FakeServer]:
    server = FakeServer(tokenizer, reply)
    return asyncio.run(play_row(composed, tokenizer, server, row, **loop_kwargs)), server


def runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        if not m and start is not None:
            spans.append((start, i))
            start = None
    return spans


def recorded(output: BaoAgentLoopOutput) -> Trajectory:
    return Trajectory.from_json(output.extra_fields["reward_extra_info"][TRAJECTORY_KEY])


@pytest.fixture(scope="module")
def tasks() -> list[FunctionTask]:
    return generate_function_tasks(6, seed=11)


@pytest.fixture
def composed(tmp_path: Path) -> Any:
    return verl_config(tmp_path)


@pytest.mark.parametrize("policy", ["oracle", "guess_every_turn", "never_answer", "random"])
def test_episodes_match_the_environment_turn_for_turn(
    composed: Any, tokenizer: PreTrainedTokenizerBase, tasks: list[FunctionTask], policy: str
) -> None:
    for index, task in enumerate(tasks):
        output, server = play(
            composed, tokenizer, task_row(task, index, "val", MAX_TURNS), scripted(task, policy)
        )
        expected = play_episode(task, SCRIPTED_POLICIES[policy], MAX_TURNS, random.Random(0))
        trajectory = recorded(output)
        assert [t.to_dict() | {"shaped_reward": None} for t in trajectory.turns] == [
            t.to_dict() for t in expected.turns
        ]
        shaped = shape_turn_rewards(expected.choices, expected.rewards, COEFFICIENTS)
        assert [t.shaped_reward for t in trajectory.turns] == pytest.approx(shaped)

        # One run of assistant tokens per turn; each turn's shaped reward on its last token.
        spans = runs(output.response_mask)
        assert len(spans) == len(expected.turns) == len(server.prompts)
        assert len(output.response_ids) == len(output.response_mask)
        nonzero = {i: r for i, r in enumerate(output.token_rewards) if r != 0.0}
        assert set(nonzero) <= {end - 1 for _, end in spans}
        assert [output.token_rewards[end - 1] for _, end in spans] == pytest.approx(shaped)
        assert output.reward_score == pytest.approx(sum(shaped))
        # Every turn's tokens are exactly the reply the server sent that turn.
        for (start, end), reply in zip(spans, server.replies, strict=True):
            assert output.response_ids[start:end] == reply
        assert len(server.request_ids) == 1  # one sticky session per episode

        # What evaluation reads back.
        info = output.extra_fields["reward_extra_info"]
        for key, value in trajectory_values(expected).items():
            assert info[f"bao_{key}"] == pytest.approx(value), key
        # Each turn's prompt is the last prompt, the model's reply as generated, and the
        # observation: nothing rendered twice.
        for turn in range(1, len(server.prompts)):
            before = server.prompts[turn - 1] + server.replies[turn - 1]
            assert server.prompts[turn][: len(before)] == before
        episode = (server.prompts[-1] + server.replies[-1])[len(server.prompts[0]) :]
        assert tokenizer.decode(episode).count("<tool_call>") == len(server.prompts)
        assert info["bao_task_id"] == task.id


def test_the_conversation_carries_each_observation_to_the_next_turn(
    composed: Any, tokenizer: PreTrainedTokenizerBase, tasks: list[FunctionTask]
) -> None:
    task = tasks[0]
    output, server = play(
        composed, tokenizer, task_row(task, 0, "val", MAX_TURNS), scripted(task, "oracle")
    )
    second_prompt = tokenizer.decode(server.prompts[1])
    assert "<tool_response>" in second_prompt
    assert recorded(output).turns[0].observation in second_prompt  # the revealed test case
    assert second_prompt.rstrip().endswith("<|im_start|>assistant")
    # The prompt part of the output is the opening prompt, untouched.
    assert output.prompt_ids == server.prompts[0]


def test_server_extra_fields_are_kept_with_the_latest_weight_version(
    composed: Any, tokenizer: PreTrainedTokenizerBase, tasks: list[FunctionTask]
) -> None:
    task = tasks[1]
    output, server = play(
        composed, tokenizer, task_row(task, 0, "val", MAX_TURNS), scripted(task, "never_answer")
    )
    fields = output.extra_fields
    assert fields["engine"] == "fake"
    assert fields["min_global_steps"] == 4
    assert fields["max_global_steps"] == 4 + len(server.prompts) - 1
    assert fields["turn_scores"] == pytest.approx([t.shaped_reward for t in recorded(output).turns])
    assert output.response_logprobs is not None
    assert len(output.response_logprobs) == len(output.response_ids)


def test_as_dict_writes_rm_scores_turn_by_turn(
    composed: Any, tokenizer: PreTrainedTokenizerBase, tasks: list[FunctionTask]
) -> None:
    task = tasks[2]
    output, _ = play(
        composed, tokenizer, task_row(task, 0, "val", MAX_TURNS), scripted(task, "random", 3)
    )
    fields = output.as_dict()
    assert "token_rewards" not in fields
    scores = fields["rm_scores"]
    assert scores.shape == fields["responses"].shape == fields["response_mask"].shape
    assert scores.tolist() == pytest.approx(output.token_rewards)
    assert float(scores.sum()) == pytest.approx(output.reward_score)
    assert fields["extra_fields"]["reward_extra_info"][TRAJECTORY_KEY]


def test_a_reply_without_a_tool_call_is_an_invalid_last_turn(
    composed: Any, tokenizer: PreTrainedTokenizerBase, tasks: list[FunctionTask]
) -> None:
    task = tasks[0]
    answer = repr(task.expected_result)
    replies = [tool_call("search", "test"), f"The value is [answer] {answer}"]
    output, server = play(
        composed, tokenizer, task_row(task, 0, "val", MAX_TURNS), lambda turn: replies[turn]
    )
    trajectory = recorded(output)
    assert [t.choice for t in trajectory.turns] == ["search", "invalid"]
    assert trajectory.turns[1].event == "invalid_action"
    assert trajectory.turns[1].content == f"The value is [answer] {answer}"
    assert trajectory.n_answers == 0  # plain text is never taken as an answer
    assert len(server.prompts) == 2
    assert len(runs(output.response_mask)) == 2


@pytest.mark.parametrize(
    "bad",
    [
        '<tool_call>\n{"name": "interact_with_env", "arguments": {"choice": "ask"}}\n</tool_call>',
        '<tool_call>\n{"name": "other_tool", "arguments": {"choice": "answer", "content": "1"}}'
        "\n</tool_call>",
        '<tool_call>\n{"name": "interact_with_env", "arguments": {"choice": "answer", '
        '"content": 3}}\n</tool_call>',
        '<tool_call>\n{"name": "interact_with_env", "arguments": {choice: answer}\n</tool_call>',
    ],
)
def test_a_malformed_call_uses_a_turn_and_says_how_to_call(
    composed: Any, tokenizer: PreTrainedTokenizerBase, tasks: list[FunctionTask], bad: str
) -> None:
    task = tasks[0]
    replies = [bad, tool_call("search", "test"), tool_call("answer", repr(task.expected_result))]
    output, server = play(
        composed, tokenizer, task_row(task, 0, "val", MAX_TURNS), lambda turn: replies[turn]
    )
    trajectory = recorded(output)
    assert [t.event for t in trajectory.turns] == [
        "invalid_action",
        "search_test_case",
        "answer_correct",
    ]
    assert "Invalid tool call" in trajectory.turns[0].observation
    assert trajectory.turns[0].content  # what the model sent is recorded
    assert "Invalid tool call" in tokenizer.decode(server.prompts[1])


def test_userrl_rows_are_played_by_task_id(
    tmp_path: Path, composed: Any, tokenizer: PreTrainedTokenizerBase, tasks: list[FunctionTask]
) -> None:
    functions = tmp_path / "functions_train.json"  # UserRL's format: one JSON list
    functions.write_text(json.dumps([task.to_dict() for task in tasks]))
    task = tasks[3]
    row = {
        "data_source": "interact_function",
        "prompt": [{"role": "system", "content": "rules"}, {"role": "user", "content": "go"}],
        "reward_model": {"ground_truth": repr(task.expected_result), "id": task.id},
        "extra_info": {
            "index": 0,
            "tools_kwargs": {"interact_with_env": {"create_kwargs": {"id": task.id}}},
        },
    }
    output, _ = play(
        composed, tokenizer, row, scripted(task, "oracle"), functions_path=str(functions)
    )
    assert recorded(output).task_id == task.id
    assert output.extra_fields["reward_extra_info"]["bao_pass_at_u_1"] == 1.0


def test_the_response_length_limit_stops_the_episode_and_keeps_the_rewards(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, tasks: list[FunctionTask]
) -> None:
    composed = verl_config(tmp_path, **{"rollout.max_response_length": 160})
    task = tasks[4]
    output, _ = play(
        composed, tokenizer, task_row(task, 0, "val", MAX_TURNS), scripted(task, "never_answer")
    )
    trajectory = recorded(output)
    assert 1 <= len(trajectory.turns) < MAX_TURNS
    assert len(output.response_mask) == len(output.response_ids) <= 160
    shaped = [t.shaped_reward for t in trajectory.turns]
    assert sum(output.token_rewards) == pytest.approx(sum(shaped))


def test_place_turn_rewards_folds_turns_without_tokens_into_the_last_run() -> None:
    assert place_turn_rewards([1, 1, 0, 1, 0], [0.5, -0.25]) == [0, 0.5, 0, -0.25, 0]
    assert place_turn_rewards([1, 0, 0], [0.5, -0.25, 1.0]) == [1.25, 0, 0]
    assert place_turn_rewards([0, 0], [0.5]) == [0, 0]


def test_group_of_episodes_through_verl_compute_advantage_equals_bao_advantage(
    composed: Any, tokenizer: PreTrainedTokenizerBase, tasks: list[FunctionTask]
) -> None:
    """The whole path: agent-loop outputs -> verl's padded batch -> bao_turn advantages."""
    outputs: list[BaoAgentLoopOutput] = []
    groups: list[str] = []
    for group, task in enumerate(tasks[:2]):
        for seed, policy in enumerate(["oracle", "random", "guess_every_turn", "random"]):
            output, _ = play(
                composed,
                tokenizer,
                task_row(task, group, "train", MAX_TURNS),
                scripted(task, policy, seed),
            )
            outputs.append(output)
            groups.append(f"uid-{group}")
    width = max(len(o.response_ids) for o in outputs)
    scores = torch.zeros(len(outputs), width)
    mask = torch.zeros(len(outputs), width, dtype=torch.int64)
    for row, output in enumerate(outputs):
        fields = output.as_dict()
        scores[row, : len(output.response_ids)] = fields["rm_scores"]
        mask[row, : len(output.response_ids)] = fields["response_mask"]
    data = DataProto.from_dict(
        tensors={"token_level_rewards": scores, "response_mask": mask},
        non_tensors={"uid": np.array(groups, dtype=object)},
    )
    result = compute_advantage(
        data,
        adv_estimator="bao_turn",  # type: ignore[arg-type]
        config=composed.algorithm,
    )
    shaped = [[t.shaped_reward for t in recorded(o).turns] for o in outputs]
    counts = [[end - start for start, end in runs(o.response_mask)] for o in outputs]
    expected = turn_advantages(
        shaped, groups, gamma=0.8, credit="r2g", score="sum", token_counts=counts
    )
    advantages = result.batch["advantages"]
    for row, output in enumerate(outputs):
        for turn, (start, end) in enumerate(runs(output.response_mask)):
            assert advantages[row, start:end].tolist() == pytest.approx(
                [expected[row][turn]] * (end - start), rel=1e-5, abs=1e-6
            )
        assert float(advantages[row][mask[row] == 0].abs().sum()) == 0.0
