"""The verl tests' chat tokenizer, built locally once per session (no download)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("verl")
    from transformers import AutoTokenizer

    from bao.verl.cpu.chat_tokenizer import build_chat_tokenizer

    folder = build_chat_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    return AutoTokenizer.from_pretrained(folder)
