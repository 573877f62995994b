"""Stand-ins for a model server: scripted replies through verl's ``generate`` contract."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from transformers import PreTrainedTokenizerBase
from verl.workers.rollout.replica import TokenOutput

from bao.gym_tasks import TelepathyEntity, TurtleStory
from bao.scripted import SCRIPTED_POLICIES
from bao.tasks import FunctionTask
from bao.verl.cpu.chat_tokenizer import assistant_reply_ids

Reply = Callable[[int], str]  # turn number from 0 -> reply text


def tool_call(choice: str, content: str) -> str:
    arguments = {"choice": choice, "content": content}
    body = json.dumps({"name": "interact_with_env", "arguments": arguments})
    return f"<think>turn</think>\n<tool_call>\n{body}\n</tool_call>"


def scripted(task: FunctionTask, policy: str, seed: int = 0) -> Reply:
    """Replies playing one of bao.scripted's policies, with its own seeded rng."""
    rng = random.Random(seed)
    function = SCRIPTED_POLICIES[policy]
    return lambda turn: tool_call(*function(task, turn, rng))


USER_GYM_POLICIES = ("oracle", "guess_every_turn", "never_answer")


def solution(task: TelepathyEntity | TurtleStory) -> str:
    """What solves a task for ``tests.bao.envs.fake_openai.rule_based_user``'s judge."""
    if isinstance(task, TelepathyEntity):
        return task.target_entity.split(" - ", 1)[0]
    return " ".join(item.statement for item in task.rubric)


def user_gym_scripted(task: TelepathyEntity | TurtleStory, policy: str) -> Reply:
    """Telepathy/Turtle replies: ``oracle`` asks once then answers right; ``guess_every_turn``
    answers wrong every turn; ``never_answer`` only asks."""
    if policy == "oracle":
        return lambda turn: tool_call(
            *(("action", "Is it real?") if turn == 0 else ("answer", solution(task)))
        )
    if policy == "guess_every_turn":
        return lambda turn: tool_call("answer", f"a wrong guess number {turn}")
    return lambda turn: tool_call("action", f"Is it about thing {turn}?")


class FakeServer:
    """verl's ``LLMServerClient.generate`` contract, scripted turn by turn."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, reply: Reply) -> None:
        self.tokenizer = tokenizer
        self.reply = reply
        self.prompts: list[list[int]] = []
        self.replies: list[list[int]] = []
        self.request_ids: set[str] = set()

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **_: Any
    ) -> TokenOutput:
        turn = len(self.prompts)
        self.prompts.append(list(prompt_ids))
        self.request_ids.add(request_id)
        ids = assistant_reply_ids(self.tokenizer, self.reply(turn))
        self.replies.append(ids)
        return TokenOutput(
            token_ids=ids,
            log_probs=[-0.5] * len(ids),
            extra_fields={"min_global_steps": 4, "max_global_steps": 4 + turn, "engine": "fake"},
        )


async def play_row(
    composed: Any,
    tokenizer: PreTrainedTokenizerBase,
    server: FakeServer,
    row: dict[str, Any],
    **loop_kwargs: Any,
) -> Any:
    """One episode of ``row`` by the ``bao_agent`` loop on ``composed``'s settings, built
    inside the running event loop (its token merges run in that loop's executor)."""
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from bao.verl.agent_loop import BaoAgentLoop, BaoAgentLoopOutput
    from bao.verl.cpu.chat_tokenizer import HF_MODEL_TYPE

    loop = BaoAgentLoop(
        trainer_config=DictConfigWrap(composed),
        server_manager=server,
        tokenizer=tokenizer,
        processor=None,
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(composed.data),
        hf_model_type=HF_MODEL_TYPE,
        **loop_kwargs,
    )
    output = await loop.run({"temperature": 1.0}, **{**row, "raw_prompt": row["prompt"]})
    assert isinstance(output, BaoAgentLoopOutput)
    return output
