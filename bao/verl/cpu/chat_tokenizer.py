"""A small, locally built ChatML tokenizer with Hermes-style tool calls.

The smoke run uses it when the config's own tokenizer is not on this machine (nothing is ever
downloaded), and the verl tests use it throughout. It trains a byte-level BPE tokenizer (about
10 ms) and gives it a ChatML template of our own that verl's Qwen Continuous Token builder
(``hf_model_type="qwen2"``) and its ``hermes`` tool parser accept.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import (  # type: ignore[import-untyped]  # ships no stubs
    AddedToken,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    trainers,
)
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)
# Markup the model itself writes: single ids, but not special, so decode() always keeps them.
MARKUP_TOKENS = (
    *("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"),
    *("<think>", "</think>"),
)
# The Qwen builder is chosen from config.json's model_type; "qwen2" maps to it exactly.
HF_MODEL_TYPE = "qwen2"

# Each literal piece is emitted through an expression so Jinja's whitespace handling never
# changes the output. Every turn ends "<|im_end|>\n", and a turn renders the same whatever
# follows it, which is what makes a prefix conversation's tokens a prefix of the whole one's.
CHAT_TEMPLATE = r"""
{%- macro text(content) -%}
{%- if content is string -%}{{- content -}}
{%- elif content -%}
{%- for part in content -%}{{- part.text if part.text is defined else '' -}}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- set has_system = messages and messages[0].role == 'system' -%}
{%- if tools -%}
{{- '<|im_start|>system\n' -}}
{%- if has_system -%}{{- text(messages[0].content) + '\n\n' -}}{%- endif -%}
{{- '# Functions\n\nThese functions may be called; their JSON schemas are listed' -}}
{{- ' in <tools></tools>:\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}
{{- '\n</tools>\n\nTo call one, answer with a JSON object of its name and arguments in tags:\n' -}}
{{- '<tool_call>\n{"name": "function name", "arguments": {"arg": "value"}}\n</tool_call>' -}}
{{- '<|im_end|>\n' -}}
{%- elif has_system -%}
{{- '<|im_start|>system\n' + text(messages[0].content) + '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
{%- set previous = messages[loop.index0 - 1].role if not loop.first else none -%}
{%- set following = messages[loop.index0 + 1].role if not loop.last else none -%}
{%- if loop.first and has_system -%}
{%- elif message.role == 'tool' -%}
{#- A run of tool results is one user turn, one <tool_response> block per result. -#}
{%- if previous != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
{{- '\n<tool_response>\n' + text(message.content) + '\n</tool_response>' -}}
{%- if following != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
{%- elif message.role == 'assistant' -%}
{%- set body = text(message.content) -%}
{{- '<|im_start|>assistant\n' + body -}}
{%- for call in message.tool_calls or [] -%}
{%- set fn = call.function if call.function is defined else call -%}
{%- if body or not loop.first -%}{{- '\n' -}}{%- endif -%}
{{- '<tool_call>\n{"name": ' + (fn.name | tojson) + ', "arguments": ' -}}
{{- (fn.arguments if fn.arguments is string else fn.arguments | tojson) + '}\n</tool_call>' -}}
{%- endfor -%}
{{- '<|im_end|>\n' -}}
{%- else -%}
{{- '<|im_start|>' + message.role + '\n' + text(message.content) + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
"""

_CORPUS = (
    "You are a helpful assistant. Think step by step, then answer.",
    "Use the numbers 1 2 3 4 with + - * / and parentheses to make 24: (1 + 2 + 3) * 4 = 24.",
    '{"name": "interact_with_env", "arguments": {"choice": "action", "content": "1 2 3 4"}}',
    '{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}',
    "The user asked a question; the assistant replied with a tool call and waited.",
    "Observation: correct! Reward 1.0. Game over. Please try again.\n\n",
    "Which option do you prefer? Ask a clarifying question when the request is ambiguous.",
    "Travel planning: the hotel, the flight and the budget; persuade the user politely.",
    "<|im_start|>user\n<tool_response>\nThe cards are 3 8 8 1.\n</tool_response><|im_end|>\n",
    # Arithmetic so numbers and operators get merges of their own.
    *(f"{a} * {b} = {a * b}, ({a} - {b}) / 2 + 1" for a in range(13) for b in (3, 8)),
)


def _train_bpe() -> Tokenizer:
    """Train a byte-level BPE: every string maps to bytes, so any text round-trips exactly."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 8, trainer=trainer)
    # Not normalized and never stripped: the template's exact bytes must reach the model.
    tokenizer.add_special_tokens([AddedToken(t, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in MARKUP_TOKENS])
    return tokenizer


def build_chat_tokenizer(directory: Path) -> Path:
    """Build the tokenizer, ``save_pretrained`` it into ``directory`` and return ``directory``."""
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # untyped in transformers
        tokenizer_object=_train_bpe(),
        # Generation stops at <|im_end|>; padding uses a different id so it is never mistaken for
        # the end of a real turn (Qwen2.5's choice too).
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return directory


def assistant_reply_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids a server would return for the reply ``text``: the text then the stop token."""
    stop = tokenizer.convert_tokens_to_ids(IM_END)
    assert isinstance(stop, int)
    return [*tokenizer.encode(text, add_special_tokens=False), stop]
