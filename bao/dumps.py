"""Reading verl validation dumps: the ``<step>.jsonl`` files of ``trainer.validation_data_dir``.

verl writes each validation pass as JSON Lines, one object per sample, in a file named after
its step. This is the one reader of that layout: which files a dump folder holds, in step order
(:func:`step_files`), and each file's objects with their line numbers (:func:`json_lines`).
What a row *means* is its reader's business: :mod:`analysis.imports` replays the tool calls of
any verl dump, :mod:`bao.verl.evaluation` reads the trajectories the ``bao_agent`` loop
attached to its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bao.errors import TaskDataError


def step_of(file: Path) -> int | None:
    """The step a dump file is named after (``12.jsonl`` -> 12), or None."""
    return int(file.stem) if file.stem.isdigit() else None


def step_files(folder: Path) -> list[Path]:
    """The ``*.jsonl`` files of a dump folder: those named after a step first, by step, then
    the others by name. Empty when the folder holds none (or is not there)."""

    def order(file: Path) -> tuple[int, int, str]:
        step = step_of(file)
        return (0, step, "") if step is not None else (1, 0, file.name)

    return sorted(folder.glob("*.jsonl"), key=order) if folder.is_dir() else []


def json_lines(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of ``file``; one line naming the
    file and the line for anything that is not a JSON object per line."""
    try:
        handle = file.open(encoding="utf-8")
    except OSError as error:
        raise TaskDataError(f"{file}: cannot be read ({error})", fix="check the file") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as error:
                    raise TaskDataError(
                        f"{file}: line {number} is not valid JSON ({error.msg})",
                        fix="repair or delete that line (an interrupted write cuts off "
                        "the last one)",
                    ) from None
                if not isinstance(data, dict):
                    raise TaskDataError(
                        f"{file}: line {number} is not a JSON object",
                        value=data,
                        fix="a validation dump has one JSON object per line",
                    )
                yield number, data
        except UnicodeDecodeError:
            raise TaskDataError(f"{file}: not UTF-8 text", fix="check the file") from None
