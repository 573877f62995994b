"""The locally built chat tokenizer works with verl's Continuous Token builder and Hermes parser."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("verl")

import huggingface_hub.constants
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from verl.experimental.agent_loop.tool_parser import ToolParser
from verl.utils.tokenizer.continuous_token import QwenContinuousTokenBuilder
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from bao.verl.cpu.chat_tokenizer import (
    HF_MODEL_TYPE,
    MARKUP_TOKENS,
    SPECIAL_TOKENS,
    assistant_reply_ids,
    build_chat_tokenizer,
)

SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "interact_with_env",
        "description": "Act in the environment or answer.",
        "parameters": {
            "type": "object",
            "properties": {"choice": {"type": "string"}, "content": {"type": "string"}},
            "required": ["choice", "content"],
        },
    },
}
TOOL_CALL_REPLY = (
    '<think>x</think>\n<tool_call>\n{"name": "interact_with_env", "arguments": '
    '{"choice": "action", "content": "1 2 3 4"}}\n</tool_call>'
)


def _call(choice: str, content: str) -> dict[str, Any]:
    arguments = {"choice": choice, "content": content}
    return {"type": "function", "function": {"name": "interact_with_env", "arguments": arguments}}


SEEN, SOLVED = "1 2 3 4", "Solved: (1 + 2 + 3) * 4 = 24."
# (reply text the fake server returns, the assistant message it stands for, the tool's answer)
TURNS: list[tuple[str, dict[str, Any], str | None]] = [
    (
        TOOL_CALL_REPLY,
        {"role": "assistant", "content": "<think>x</think>", "tool_calls": [_call("action", SEEN)]},
        "Wrong: 1 2 3 4 is not 24. Try again.",
    ),
    (
        '<tool_call>\n{"name": "interact_with_env", "arguments": '
        '{"choice": "answer", "content": "(1+2+3)*4"}}\n</tool_call>',
        {"role": "assistant", "content": "", "tool_calls": [_call("answer", "(1+2+3)*4")]},
        '{"correct": true, "reward": 1.0}\n',
    ),
    (SOLVED, {"role": "assistant", "content": SOLVED}, None),
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_tokenizer(tmp_path_factory.mktemp("chat_tokenizer"))


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]]) -> str:
    text = tokenizer.apply_chat_template(messages, tools=[SCHEMA], tokenize=False)
    assert isinstance(text, str)
    return text


@given(text=st.text())
def test_any_text_round_trips(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    assert tokenizer.decode(_encode(tokenizer, text)) == text


def test_chat_tokens_are_single_ids(tokenizer: PreTrainedTokenizerBase) -> None:
    for token in (*SPECIAL_TOKENS, *MARKUP_TOKENS, "\n"):
        assert len(_encode(tokenizer, token)) == 1, token
    assert set(SPECIAL_TOKENS) <= set(tokenizer.all_special_tokens)
    # The model writes the markup itself, so decode must keep it even when skipping specials.
    assert not set(MARKUP_TOKENS) & set(tokenizer.all_special_tokens)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")


def test_reloads_offline(tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    reloaded = AutoTokenizer.from_pretrained(tokenizer_dir)
    messages = [{"role": "user", "content": "hi"}]
    text = reloaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_template_renders_tools_and_tool_calls(tokenizer: PreTrainedTokenizerBase) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [_call("a", "1"), _call("b", "2")]},
        {"role": "tool", "content": "r1"},
        {"role": "tool", "content": "r2"},
    ]
    text = _render(tokenizer, messages)
    assert text.startswith("<|im_start|>system\n")
    assert json.dumps(SCHEMA) in text
    assert text.endswith(
        '<|im_start|>assistant\n<tool_call>\n{"name": "interact_with_env", "arguments": '
        '{"choice": "a", "content": "1"}}\n</tool_call>\n<tool_call>\n'
        '{"name": "interact_with_env", "arguments": {"choice": "b", "content": "2"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n"
        "</tool_response><|im_end|>\n"
    )
    # Arguments already serialised as a JSON string are written out unchanged.
    as_string = _call("a", "1")
    as_string["function"]["arguments"] = json.dumps(as_string["function"]["arguments"])
    messages[1]["tool_calls"] = [as_string, _call("b", "2")]
    assert _render(tokenizer, messages) == text


def test_hermes_parser_extracts_the_call(tokenizer: PreTrainedTokenizerBase) -> None:
    parser = ToolParser.get_tool_parser("hermes", tokenizer)
    ids = _encode(tokenizer, TOOL_CALL_REPLY + "<|im_end|>")
    assert ids == assistant_reply_ids(tokenizer, TOOL_CALL_REPLY)
    content, calls = asyncio.run(parser.extract_tool_calls(ids))
    assert [(call.name, json.loads(call.arguments)) for call in calls] == [
        ("interact_with_env", {"choice": "action", "content": "1 2 3 4"})
    ]
    # decode() keeps special tokens, so the left-over content still ends in <|im_end|>.
    assert content == "<think>x</think>\n<|im_end|>"


def test_continuous_tokens_equal_the_full_render(tokenizer: PreTrainedTokenizerBase) -> None:
    builder = create_continuous_token_builder(tokenizer, hf_model_type=HF_MODEL_TYPE)
    assert isinstance(builder, QwenContinuousTokenBuilder)
    parser = ToolParser.get_tool_parser("hermes", tokenizer)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Make 24 from the four numbers."},
        {"role": "user", "content": "The numbers are 1 2 3 4."},
    ]
    ids = builder.build_initial_tokens(messages, tools=[SCHEMA])
    prompt_length, mask = len(ids), list[int]()
    reply_ids: list[list[int]] = []
    for reply, assistant_message, tool_answer in TURNS:
        generated = assistant_reply_ids(tokenizer, reply)
        reply_ids.append(generated)
        merged = builder.merge_assistant_tokens(ids, generated)
        mask, _ = builder.align_response_metadata(merged, mask)
        ids = merged.token_ids
        _, calls = asyncio.run(parser.extract_tool_calls(generated))
        parsed = [{"name": c.name, "arguments": json.loads(c.arguments)} for c in calls]
        assert parsed == [c["function"] for c in assistant_message.get("tool_calls", [])]
        messages.append(assistant_message)
        if tool_answer is None:
            break
        previous = list(messages)
        messages.append({"role": "tool", "content": tool_answer})
        merged = builder.merge_context_tokens(previous, messages, ids, tools=[SCHEMA])
        # Generation stopped at <|im_end|>, so the builder restores the template's "\n" after it.
        assert merged.inserted_token_ids == _encode(tokenizer, "\n")
        mask, _ = builder.align_response_metadata(merged, mask)
        ids = merged.token_ids

    full = tokenizer.apply_chat_template(messages, tools=[SCHEMA], tokenize=True, return_dict=False)
    # The last reply ends at <|im_end|>; only the rendered conversation has the "\n" after it.
    assert [*ids, *_encode(tokenizer, "\n")] == full
    assert f"{tokenizer.decode(ids)}\n" == _render(tokenizer, messages)

    # Mask 1 on exactly the generated tokens; everything CT added in between has mask 0.
    response = ids[prompt_length:]
    assert len(mask) == len(response)
    expected_mask, cursor = [0] * len(response), 0
    for generated in reply_ids:
        start = next(
            i for i in range(cursor, len(response)) if response[i : i + len(generated)] == generated
        )
        expected_mask[start : start + len(generated)] = [1] * len(generated)
        cursor = start + len(generated)
    assert mask == expected_mask
    context = [t for t, m in zip(response, mask, strict=True) if not m]
    assert tokenizer.decode(context) == "".join(
        f"\n<|im_start|>user\n<tool_response>\n{answer}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
        for _, _, answer in TURNS[:-1]
    )


def test_parallel_tool_results_merge_as_one_turn(tokenizer: PreTrainedTokenizerBase) -> None:
    builder = create_continuous_token_builder(tokenizer, hf_model_type=HF_MODEL_TYPE)
    calls = [_call("action", "1 2"), _call("action", "3 4")]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Two moves."}]
    ids = builder.build_initial_tokens(messages, tools=[SCHEMA])
    messages.append({"role": "assistant", "content": "", "tool_calls": calls})
    # The generated reply is exactly the assistant turn's body as the template writes it.
    reply = _render(tokenizer, messages).rsplit("<|im_start|>assistant\n", 1)[1]
    ids = builder.merge_assistant_tokens(
        ids, _encode(tokenizer, reply.removesuffix("\n"))
    ).token_ids
    previous = list(messages)
    messages += [{"role": "tool", "content": "ok 1"}, {"role": "tool", "content": "ok 2"}]
    merged = builder.merge_context_tokens(previous, messages, ids, tools=[SCHEMA])
    rendered = tokenizer.apply_chat_template(
        messages, tools=[SCHEMA], tokenize=True, add_generation_prompt=True, return_dict=False
    )
    assert merged.token_ids == rendered
