"""Stand-ins for a model server: scripted replies through verl's ``generate`` contract."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from transformers import PreTrainedTokenizerBase
from verl.workers.rollout.replica import TokenOutput

from bao.scripted import SCRIPTED_POLICIES
from bao.tasks import FunctionTask
from tests.bao.verl.chat_tokenizer import assistant_reply_ids

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
