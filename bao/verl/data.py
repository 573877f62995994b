"""verl parquet rows for the three gyms, with the project's own system prompts and tool schemas.

A row is what verl's ``RLHFDataset`` reads: ``prompt`` (chat messages), ``data_source``,
``ability``, ``reward_model``, ``extra_info`` and ``agent_name`` (the agent loop that plays it).
Rows made here carry the whole task in ``extra_info.bao_task``, so an episode needs nothing but
its row. UserRL's own rows (``../shared/data/userrl/function_gym/train.parquet``) are used as
they are: they name the task by id, and the agent loop looks it up in the functions file.
Telepathy-Gym and Turtle-Gym rows work alike: ours carry the entity or story inline (and the
gym's name in ``extra_info.bao_gym``), UserRL's name it by title.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from bao.envs.function_gym import DEFAULT_MAX_TURNS
from bao.envs.user_gyms import USER_GYM_CHOICES
from bao.errors import TaskDataError
from bao.gym_tasks import (
    TelepathyEntity,
    TurtleStory,
    entity_from_record,
    row_title,
    story_from_record,
)
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

GYM_KEY: Final = "bao_gym"
"""``extra_info`` key naming the gym of a row written here."""
EVAL_KEY: Final = "bao_eval"
"""``extra_info`` key marking a validation row (Telepathy/Turtle): its episodes meet the
evaluation's simulated user and judge. verl does not tell an agent loop whether it plays a
validation pass, and a row's ``split`` is whatever its file says."""


def _tool_schema(choices: Sequence[str], choice_help: str, content_help: str) -> dict[str, Any]:
    return {
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
                    "choice": {"type": "string", "enum": list(choices), "description": choice_help},
                    "content": {"type": "string", "description": content_help},
                },
                "required": ["choice", "content"],
            },
        },
    }


TOOL_SCHEMA: Final[dict[str, Any]] = _tool_schema(
    TOOL_CHOICES,
    "action: evaluate the hidden function at four integers; search: get the test case "
    "(content 'test'); answer: submit the function's value at the test case for the user to "
    "check; finish: give up.",
    "action: four integers separated by spaces, e.g. '1 2 3 4'; search: 'test'; answer: one "
    "number; finish: empty.",
)
"""Function-Gym's tool."""
GYM_TOOL_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "function_gym": TOOL_SCHEMA,
    "telepathy_gym": _tool_schema(
        USER_GYM_CHOICES,
        "action: ask the user a yes/no question about the hidden entity; answer: submit your "
        "guess for the user to check; finish: give up.",
        "action: one yes/no question; answer: the entity you guess; finish: empty.",
    ),
    "turtle_gym": _tool_schema(
        USER_GYM_CHOICES,
        "action: ask the user a yes/no question about what really happened; answer: tell the "
        "whole story for the user to check; finish: give up.",
        "action: one yes/no question; answer: the full story as you now think it happened; "
        "finish: empty.",
    ),
}
GYM_TOOL_CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "function_gym": TOOL_CHOICES,
    "telepathy_gym": USER_GYM_CHOICES,
    "turtle_gym": USER_GYM_CHOICES,
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
    rows = [task_row(task, index, split, max_turns) for index, task in enumerate(tasks)]
    return _write_rows(rows, path, split)


def _write_rows(rows: list[dict[str, Any]], path: str | Path, split: str) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not rows:
        raise TaskDataError(f"no {split} tasks to write to {path}", fix="give at least one task")
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


# ------------------------------------------------------------------ the LLM-user gyms

UserGymTask = TelepathyEntity | TurtleStory


def user_gym_system_prompt(gym: str, max_turns: int) -> str:
    """The project's Telepathy/Turtle instructions (the rules are UserRL's, the words ours)."""
    if gym == "telepathy_gym":
        task = (
            "The user is thinking of an entity (a person, a thing, a place...). Your goal is "
            "to name it.\n\n"
            "- choice 'action', content one yes/no question: the user answers Yes, No or "
            "Maybe.\n"
            "- choice 'answer', content your guess: the user checks it. A correct guess ends "
            "the task; a wrong one costs the user's time, so guess when you are confident.\n"
        )
        advice = "Narrow the possibilities down with questions that split them, then guess."
    else:
        task = (
            "You are told the surface of a puzzle story; the user knows what really happened. "
            "Your goal is to tell the whole hidden story.\n\n"
            "- choice 'action', content one yes/no question: the user answers Yes, No or "
            "Maybe.\n"
            "- choice 'answer', content your full account of what happened: the user grades "
            "it against the key facts and tells you which ones you got right. Covering all "
            "of them ends the task; every answer costs the user's time.\n"
        )
        advice = "Test your hypotheses with questions first, then tell one complete story."
    return (
        f"You are solving a puzzle by talking to a user through the tool `{TOOL_NAME}`.\n\n"
        + task
        + "- choice 'finish': give up.\n\n"
        "Each turn, think briefly inside <think></think>, then make exactly one tool call. "
        f"You have at most {max_turns} turns in total. {advice}"
    )


def user_gym_opening(task: UserGymTask) -> str:
    """The first user message: what the agent is told about its task."""
    if isinstance(task, TelepathyEntity):
        return f"{task.description}\nFind out what I am thinking of."
    return (
        f"Title: {task.title}\nSurface: {task.surface}\n"
        "Find out what really happened behind this story."
    )


def user_gym_row(
    task: UserGymTask, gym: str, index: int, split: str, max_turns: int
) -> dict[str, Any]:
    """One verl row for a Telepathy entity or a Turtle story, the task inline."""
    truth = task.target_entity if isinstance(task, TelepathyEntity) else task.bottom
    return {
        "data_source": gym,
        "agent_name": AGENT_NAME,
        "prompt": [
            {"role": "system", "content": user_gym_system_prompt(gym, max_turns)},
            {"role": "user", "content": user_gym_opening(task)},
        ],
        "ability": "interaction",
        "reward_model": {"style": "rule", "ground_truth": truth, "title": task.title},
        "extra_info": {
            "index": index,
            "split": split,
            "bao_task": json.dumps(task.to_dict()),
            GYM_KEY: gym,
            EVAL_KEY: split == "val",
        },
    }


def write_user_gym_parquet(
    tasks: Sequence[UserGymTask], gym: str, path: str | Path, *, split: str, max_turns: int
) -> Path:
    """Writes Telepathy/Turtle ``tasks`` as verl rows to ``path``."""
    rows = [user_gym_row(task, gym, index, split, max_turns) for index, task in enumerate(tasks)]
    return _write_rows(rows, path, split)


def write_marked_rows(source: Path, target: Path) -> Path:
    """A copy of a validation parquet file with every row marked ``extra_info.bao_eval``
    (the rest of each row, UserRL's prompt included, as it is)."""
    from bao.tasks import read_parquet_rows

    rows = read_parquet_rows(source)
    for row in rows:
        extra = row.get("extra_info")
        row["extra_info"] = {**(extra if isinstance(extra, Mapping) else {}), EVAL_KEY: True}
    return _write_rows(rows, target, "val")


def user_gym_task_from_row(
    row: Mapping[str, Any], gym: str, by_title: Mapping[str, UserGymTask] | None = None
) -> UserGymTask:
    """The entity or story a verl row stands for: inline (rows made here) or by title
    (UserRL rows, looked up case-insensitively in ``by_title``, keyed by case-folded title).

    Raises:
        TaskDataError: the row carries neither, or names a title ``by_title`` lacks.
    """
    extra = row.get("extra_info")
    inline = extra.get("bao_task") if isinstance(extra, Mapping) else None
    if inline is not None:
        record = json.loads(inline) if isinstance(inline, str) else inline
        if gym == "telepathy_gym":
            return entity_from_record(record, where="extra_info.bao_task")
        return story_from_record(record, where="extra_info.bao_task")
    title = row_title(row)
    if title is None:
        raise TaskDataError(
            f"a {gym} verl row has neither extra_info.bao_task nor a title (reward_model.title "
            "or extra_info.tools_kwargs.interact_with_env.create_kwargs.title)",
            fix="write rows with bao.verl.data.write_user_gym_parquet or use UserRL's rows",
        )
    task = (by_title or {}).get(title.casefold())
    if task is None:
        raise TaskDataError(
            f"a {gym} row names {title!r}, which is not among the run's entities/stories",
            fix="set tasks.records_path to the file these rows were made from",
        )
    return task
