"""verl parquet rows for Function-Gym, with the project's own system prompt and tool schema.

A row is what verl's ``RLHFDataset`` reads: ``prompt`` (chat messages), ``data_source``,
``ability``, ``reward_model``, ``extra_info`` and ``agent_name`` (the agent loop that plays it).
Rows made here carry the whole task in ``extra_info.bao_task``, so an episode needs nothing but
its row. UserRL's own rows (``../shared/data/userrl/function_gym/train.parquet``) are used as
they are: they name the task by id, and the agent loop looks it up in the functions file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from bao.envs.function_gym import DEFAULT_MAX_TURNS
from bao.errors import TaskDataError
from bao.tasks import FunctionTask, parquet_task_id, task_from_record

DATA_SOURCE: Final = "function_gym"
AGENT_NAME: Final = "bao_agent"
TOOL_NAME: Final = "interact_with_env"
TOOL_CHOICES: Final = ("action", "search", "answer", "finish")
TRAJECTORY_KEY: Final = "bao_trajectory"
"""``reward_extra_info`` key of an episode's trajectory JSON (a string, which verl's metric
averaging skips); the launcher reads it back from the validation dump."""
TASK_ID_KEY: Final = "bao_task_id"
METRIC_PREFIX: Final = "bao_"
"""Prefix of the per-episode metric values in ``reward_extra_info`` (``bao_pass_at_u_1``...)."""

TOOL_SCHEMA: Final[dict[str, Any]] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": (
            "Take one turn in the environment. Every call uses one turn of the budget; "
            "'answer' is checked by the user, the other choices are not."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "choice": {
                    "type": "string",
                    "enum": list(TOOL_CHOICES),
                    "description": (
                        "action: evaluate the hidden function at four integers; search: get "
                        "the test case (content 'test'); answer: submit the function's value "
                        "at the test case for the user to check; finish: give up."
                    ),
                },
                "content": {
                    "type": "string",
                    "description": (
                        "action: four integers separated by spaces, e.g. '1 2 3 4'; search: "
                        "'test'; answer: one number; finish: empty."
                    ),
                },
            },
            "required": ["choice", "content"],
        },
    },
}


def system_prompt(max_turns: int = DEFAULT_MAX_TURNS) -> str:
    """The project's Function-Gym instructions (the rules are UserRL's, the words ours)."""
    return (
        "You are solving a puzzle by interacting with an environment through the tool "
        f"`{TOOL_NAME}`.\n\n"
        "The environment hides a function f(a, b, c, d) of four numbers, built from "
        "addition, subtraction, multiplication, division and powers. Your goal is the "
        "value of f at a hidden test case.\n\n"
        "Each turn, think briefly inside <think></think>, then make exactly one tool call:\n"
        "- choice 'action', content 'a b c d' (four integers): the environment returns "
        "f(a, b, c, d). Querying the test case itself is refused.\n"
        "- choice 'search', content 'test': the environment shows the test case.\n"
        "- choice 'answer', content one number: the user checks your value of f at the "
        "test case. A correct answer ends the task; a wrong one costs the user's time, so "
        "answer when you are confident.\n"
        "- choice 'finish': give up.\n\n"
        f"You have at most {max_turns} turns in total. Vary one input at a time to see how "
        "each position enters the function, then answer."
    )


OPENING_MESSAGE: Final = (
    "I have chosen a hidden function and a test case. Start whenever you are ready."
)


def task_row(task: FunctionTask, index: int, split: str, max_turns: int) -> dict[str, Any]:
    """One verl row for ``task``: the messages, and the task itself for the agent loop."""
    return {
        "data_source": DATA_SOURCE,
        "agent_name": AGENT_NAME,
        "prompt": [
            {"role": "system", "content": system_prompt(max_turns)},
            {"role": "user", "content": OPENING_MESSAGE},
        ],
        "ability": "interaction",
        "reward_model": {
            "style": "rule",
            "ground_truth": repr(task.expected_result),
            "id": task.id,
        },
        "extra_info": {
            "index": index,
            "split": split,
            # A JSON string keeps the parquet schema flat and the numbers exact.
            "bao_task": json.dumps(task.to_dict()),
        },
    }


def write_task_parquet(
    tasks: Sequence[FunctionTask], path: str | Path, *, split: str, max_turns: int
) -> Path:
    """Writes ``tasks`` as verl rows to ``path`` (parent folders are created)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not tasks:
        raise TaskDataError(f"no {split} tasks to write to {path}", fix="give at least one task")
    rows = [task_row(task, index, split, max_turns) for index, task in enumerate(tasks)]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), target)
    return target


def task_from_row(
    row: Mapping[str, Any], functions: Mapping[str, FunctionTask] | None = None
) -> FunctionTask:
    """The task a verl row stands for: inline (rows made here) or by id (UserRL rows).

    Raises:
        TaskDataError: the row carries neither, or names a task ``functions`` lacks.
    """
    extra = row.get("extra_info")
    inline = extra.get("bao_task") if isinstance(extra, Mapping) else None
    if inline is not None:
        record = json.loads(inline) if isinstance(inline, str) else inline
        return task_from_record(record, where="extra_info.bao_task")
    task_id = parquet_task_id(row)
    if task_id is None:
        raise TaskDataError(
            "a verl row has neither extra_info.bao_task nor a task id "
            "(reward_model.id or extra_info.tools_kwargs.interact_with_env.create_kwargs.id)",
            fix="write rows with bao.verl.data.write_task_parquet or use UserRL's rows",
        )
    if not functions:
        raise TaskDataError(
            f"row names task {task_id!r} by id but no functions file was given",
            fix="set tasks.functions_path to the UserRL functions JSON",
        )
    if task_id not in functions:
        raise TaskDataError(
            f"task id {task_id!r} is not in the functions file",
            fix="set tasks.functions_path to the file these rows were made from",
        )
    return functions[task_id]
