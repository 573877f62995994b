"""Evaluations done elsewhere: verl validation dumps and the BAO paper's Table 1.

**Validation dumps.** verl writes the validation generations of a step as JSON Lines when
``trainer.validation_data_dir`` is set (``<dir>/<step>.jsonl``): one object per sample with
``input`` (the decoded prompt), ``output`` (the decoded multi-turn response: the model's
``<tool_call>`` blocks and the environment's ``<tool_response>`` blocks), ``score``, ``step``
and the reward function's extra-info keys. :func:`import_validation_dump` turns the
Function-Gym rows of such a dump into :class:`~bao.trajectory.Trajectory` records and
:func:`bao.metrics.summarize` metrics.

Nothing is read off the free text but the tool calls themselves. Each row is matched to its
task (an id field, an id in the prompt, or, when asked, the row's position), and the calls are
replayed through :class:`~bao.envs.FunctionGymEnv`, so events, rewards and observations are the
environment's, never guessed from the dump's wording. The dump's own score is compared with
the replayed reward sum and every disagreement is reported, not resolved silently.

**Reference points.** :func:`load_reference_table` reads the paper's Table 1 (a CSV the user
supplies) and :func:`reference_points` gives its Pass@U-k values in long form for a frontier
chart. docs/imports.md describes the accepted formats and what could not be verified.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from bao.configuration import ConfigError
from bao.envs import FunctionGymEnv, format_action
from bao.errors import TaskDataError
from bao.metrics import DEFAULT_K_MAX, summarize
from bao.tasks import ANSWER_TOLERANCE, FunctionTask
from bao.trajectory import Trajectory, Turn
from bao.verl.data import TOOL_NAME  # the UserRL tool name, shared with the verl rows

if TYPE_CHECKING:
    # pandas ships no type information; unused-ignore keeps this line quiet once stubs or a
    # mypy override exist.
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

log = logging.getLogger(__name__)

MatchMode = Literal["id", "position"]

# Where a row may name its task, most specific first. UserRL's prompt rows keep the id in
# reward_model.id and in the tool's create_kwargs; a reward function's extra info lands at
# the top level of a verl dump row.
_ID_PATHS: Final[tuple[tuple[str, ...], ...]] = (
    ("task_id",),
    ("function_id",),
    ("extra_info", "task_id"),
    ("extra_info", "id"),
    ("extra_info", "tools_kwargs", TOOL_NAME, "create_kwargs", "id"),
    ("tools_kwargs", TOOL_NAME, "create_kwargs", "id"),
    ("reward_model", "id"),
    ("id",),
)
# A position in the task list, as UserRL's extra_info.index is a row's position in its split.
_INDEX_PATHS: Final[tuple[tuple[str, ...], ...]] = (("extra_info", "index"), ("index",))
_GROUND_TRUTH_PATHS: Final[tuple[tuple[str, ...], ...]] = (
    ("gts",),
    ("ground_truth",),
    ("reward_model", "ground_truth"),
)
_ENV_NAME_PATHS: Final[tuple[tuple[str, ...], ...]] = (
    ("env_name",),
    ("reward_model", "env_name"),
    ("extra_info", "tools_kwargs", TOOL_NAME, "create_kwargs", "env_name"),
)
_SCORE_KEYS: Final = ("score", "reward")

# Tags of Qwen/Hermes-style tool use. The environment's replies are scanned too, so that a
# tag echoed inside a reply is never taken for a call of the model.
_TAG: Final = re.compile(r"</?tool_call>|</?tool_response>|<\|im_start\|>tool\b")
_GYM_NAME: Final = re.compile(r"\b([A-Z][A-Za-z]*Gym)\b")
_FUNCTION_GYM_MENTION: Final = re.compile(r"function[\s_-]?gym", re.IGNORECASE)
# Raw text kept for a call that cannot be read: enough to recognise it, not a whole essay.
_RAW_CALL_CHARS: Final = 200

# What to do about the first problem when no row at all could be imported, by kind of skip.
_FIXES: Final = {
    "no_id": (
        "the rows carry no task id: add one to each row (e.g. a 'task_id' key returned in the "
        "reward function's extra info), or pass match='position' for a validation set run "
        "unshuffled (data.validation_shuffle=False); see docs/imports.md"
    ),
    "unknown_task": "pass the task file the validation set was made from",
    "ground_truth": "pass the task file the validation set was made from",
    "not_function_gym": "this dump has no Function-Gym rows; check the file",
    "no_output": "each row needs the 'output' string verl writes",
    "ambiguous": "give each row an explicit task id field",
    "no_step": "give every row a 'step' or none of them",
    "unread_calls": (
        "the responses use a tool-call format this importer does not read; "
        "see docs/imports.md for the accepted forms"
    ),
}


@dataclass
class ImportedDump:
    """The Function-Gym rows of a validation dump, replayed.

    Attributes:
        trajectories: one replayed trajectory per imported row, in file order.
        metrics: :func:`bao.metrics.summarize` of ``trajectories`` (keys without ``eval/``).
        n_rows: rows of the selected step that were considered; every one of them is either
            in ``trajectories`` or in ``skipped``.
        skipped: one line per row that was not imported: where it is and why.
        score_mismatches: one line per imported row whose own score differs from the
            replayed sum of rewards.
        source: the file or folder read.
        step: the validation step imported (``None`` when the rows carry no step).
        notes: per-row remarks that did not stop the import (calls that could not be read
            and were replayed as invalid turns, calls after the episode ended, ...).
        matched_by: how many rows were matched to their task by ``id_field``, ``index``,
            ``input_text`` or ``position``.
    """

    trajectories: list[Trajectory]
    metrics: dict[str, float]
    n_rows: int
    skipped: list[str]
    score_mismatches: list[str]
    source: str
    step: int | None = None
    notes: list[str] = field(default_factory=list)
    matched_by: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    """One tool call found in a response.

    ``choice``/``content`` are set when the call could be read as a call of
    ``interact_with_env``; otherwise ``problem`` says why not and ``raw`` keeps its text.
    """

    raw: str
    choice: str | None = None
    content: str = ""
    problem: str | None = None


@dataclass(frozen=True)
class ParsedOutput:
    """The tool calls of a response in order, and how many environment replies it holds."""

    calls: list[ToolCall]
    n_responses: int


@dataclass
class _Row:
    where: str
    data: dict[str, Any]
    step: int | None


class _SkipRowError(Exception):
    """A row that cannot be imported: ``kind`` selects the fix, ``reason`` is reported."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# ---------------------------------------------------------------------- the response text


def parse_tool_calls(output: str) -> ParsedOutput:
    """Finds the ``<tool_call>`` blocks of a decoded response, in order.

    Each opening tag is one call attempt. A block whose body is a JSON object naming
    ``interact_with_env`` (or naming no tool) with ``arguments`` (or ``parameters``) holding
    ``choice`` and ``content`` is read as a call; the arguments may be an object or a JSON
    string of one. Anything else (broken JSON, another tool, no choice, a block left open) is
    returned with ``problem`` set. Text inside ``<tool_response>`` blocks is the
    environment's and is never searched for calls.
    """
    calls: list[ToolCall] = []
    n_responses = 0
    state = "text"  # or "call" / "response"
    start = 0
    for match in _TAG.finditer(output):
        tag = match.group(0)
        if state == "response":
            if tag == "</tool_response>":
                state = "text"
            elif tag in ("<tool_response>", "<|im_start|>tool"):
                n_responses += 1  # the previous reply was never closed; a new one starts
            continue
        if state == "call":
            body = output[start : match.start()]
            if tag == "</tool_call>":
                calls.append(_read_call(body))
                state = "text"
                continue
            calls.append(ToolCall(raw=_clip(body), problem="the <tool_call> block is not closed"))
            state = "text"
        # state is "text" here
        if tag == "<tool_call>":
            state, start = "call", match.end()
        elif tag in ("<tool_response>", "<|im_start|>tool"):
            n_responses += 1
            # A chatml tool block has no closing tag of its own: it ends at the next tag.
            state = "response" if tag == "<tool_response>" else "text"
    if state == "call":
        calls.append(
            ToolCall(
                raw=_clip(output[start:]),
                problem="the <tool_call> block is not closed (the response was cut off?)",
            )
        )
    return ParsedOutput(calls=calls, n_responses=n_responses)


def _json_object(text: str, not_json: str, not_object: str) -> tuple[dict[str, Any], str | None]:
    """``text`` parsed as a JSON object, or the problem: ``not_json`` with the parser's
    reason, ``not_object`` for JSON of another type."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return {}, f"{not_json} ({error.msg})"
    return (data, None) if isinstance(data, dict) else ({}, not_object)


def _read_call(body: str) -> ToolCall:
    raw = _clip(body.strip())
    data, problem = _json_object(
        body, "the tool call is not valid JSON", "the tool call is not a JSON object"
    )
    name = data.get("name")
    if problem is None and name is not None and name != TOOL_NAME:
        problem = f"the call is to tool {name!r}, not {TOOL_NAME!r}"
    if problem is not None:
        return ToolCall(raw=raw, problem=problem)
    arguments = data.get("arguments", data.get("parameters"))
    if arguments is None and "choice" in data:
        arguments = data  # the arguments written without the name/arguments envelope
    no_arguments = "the call has no arguments object"
    if isinstance(arguments, str):
        # OpenAI-style tool calls carry the arguments as a JSON string, and chat templates
        # that run them through tojson keep them that way.
        arguments, problem = _json_object(
            arguments, "the arguments string is not JSON", no_arguments
        )
    if problem is not None or not isinstance(arguments, dict):
        return ToolCall(raw=raw, problem=problem or no_arguments)
    choice = arguments.get("choice")
    if not isinstance(choice, str) or not choice.strip():
        return ToolCall(raw=raw, problem="the call's arguments have no 'choice'")
    content = arguments.get("content")
    # UserRL's tool applies str() to whatever the model put in content; so does the replay.
    text = "" if content is None else content if isinstance(content, str) else str(content)
    return ToolCall(raw=raw, choice=choice, content=text)


def _clip(text: str) -> str:
    return text if len(text) <= _RAW_CALL_CHARS else text[: _RAW_CALL_CHARS - 3] + "..."


def replay_calls(
    task: FunctionTask, calls: Sequence[ToolCall], max_turns: int = 16
) -> tuple[Trajectory, list[str]]:
    """Plays ``calls`` through a fresh :class:`FunctionGymEnv` on ``task``.

    A readable call becomes ``"[choice] content"`` (:func:`bao.envs.format_action`); a call
    that could not be read still uses its turn and is played as an action with no known
    prefix, so the environment records it as ``invalid_action``. Calls after the episode has
    ended (a correct answer, ``[finish]`` or the turn budget) are not played.

    Returns:
        the trajectory and remarks about calls that were unreadable or not played.
    """
    env = FunctionGymEnv(task, max_turns=max_turns)
    env.reset()
    trajectory = Trajectory(task_id=task.id)
    remarks: list[str] = []
    for number, call in enumerate(calls, start=1):
        if env.done:
            remarks.append(
                f"{len(calls) - number + 1} call(s) after the episode ended at turn "
                f"{env.turn} were not replayed"
            )
            break
        if call.choice is None:
            remarks.append(f"call {number} replayed as an invalid turn: {call.problem}")
            action, content = "", call.raw
        else:
            action, content = format_action(call.choice, call.content), call.content
        observation, reward, _, _, info = env.step(action)
        trajectory.turns.append(Turn.from_step(content, observation, reward, info))
    return trajectory, remarks


# ----------------------------------------------------------------------- validation dumps


def import_validation_dump(
    path: str | Path,
    tasks: Sequence[FunctionTask],
    *,
    max_turns: int = 16,
    k_max: int = DEFAULT_K_MAX,
    step: int | None = None,
    match: MatchMode = "id",
    samples_per_task: int = 1,
) -> ImportedDump:
    """Replays the Function-Gym rows of a verl validation dump.

    Args:
        path: a dump file (JSON Lines) or a ``validation_data_dir`` folder of
            ``<step>.jsonl`` files.
        tasks: the tasks the validation set was made from (see
            :func:`bao.tasks.load_function_tasks`).
        max_turns: the turn budget of the replay (the training run's).
        k_max: the largest k of Pass@U-k in the metrics.
        step: the validation step to import when the dump holds several; default the last.
        match: ``"id"`` matches each row by a task id field (``task_id``,
            ``extra_info.id``, ``reward_model.id``, the tool's ``create_kwargs.id``, ...), then
            by ``extra_info.index``/``index`` as a position in ``tasks``, then by a single
            task id found in the row's ``input``. ``"position"`` matches the n-th row of the
            step to ``tasks[n // samples_per_task]``: only right for a validation set run
            unshuffled (``data.validation_shuffle=False``) and loaded in the same order.
        samples_per_task: for ``match="position"``: samples per prompt
            (``actor_rollout_ref.rollout.val_kwargs.n``), which verl keeps adjacent.

    Returns:
        the trajectories, their metrics and what was skipped or disagreed.

    Raises:
        TaskDataError: a missing or unreadable dump, a line that is not a JSON object, an
            absent step, rows out of line with ``tasks`` in position mode, or no importable
            row (naming the first problem and its fix).
        ConfigError: invalid arguments.
    """
    _check_arguments(
        tasks,
        max_turns=max_turns,
        k_max=k_max,
        step=step,
        match=match,
        samples_per_task=samples_per_task,
    )
    source = Path(path)
    rows = list(_read_dump(source))
    if not rows:
        raise TaskDataError(
            f"{source}: the dump holds no rows", fix="point to a non-empty validation dump"
        )
    selected, chosen_step, unplaced = _select_step(source, rows, step)
    skipped = list(unplaced)
    by_id = {task.id: task for task in tasks}
    if match == "position":
        _check_positions(source, selected, tasks, samples_per_task)
    id_pattern = _id_pattern(by_id)

    trajectories: list[Trajectory] = []
    mismatches: list[str] = []
    notes: list[str] = []
    matched_by: Counter[str] = Counter()
    first_skip: tuple[str, str] | None = None
    if skipped:
        first_skip = ("no_step", skipped[0])
    for position, row in enumerate(selected):
        try:
            if match == "position":
                task, how = tasks[position // samples_per_task], "position"
            else:
                task, how = _match_row(row, tasks, by_id, id_pattern)
            _check_ground_truth(row, task)
            output = row.data.get("output")
            if not isinstance(output, str):
                raise _SkipRowError("no_output", "no 'output' string")
            parsed = parse_tool_calls(output)
            if parsed.n_responses > len(parsed.calls):
                # More replies than calls means calls in a form this parser does not read:
                # replaying the rest would give a trajectory with turns missing.
                raise _SkipRowError(
                    "unread_calls",
                    f"{parsed.n_responses} environment replies but only {len(parsed.calls)} "
                    "tool calls could be found",
                )
        except _SkipRowError as skip:
            line = f"{row.where}: {skip.reason}"
            skipped.append(line)
            first_skip = first_skip or (skip.kind, line)
            continue
        trajectory, remarks = replay_calls(task, parsed.calls, max_turns)
        if not parsed.calls:
            remarks.append("the output holds no tool call: a trajectory with no turns")
        notes.extend(f"{row.where} (task {task.id}): {remark}" for remark in remarks)
        mismatch = _score_mismatch(row, trajectory)
        if mismatch:
            mismatches.append(f"{row.where} (task {task.id}): {mismatch}")
        matched_by[how] += 1
        trajectories.append(trajectory)

    if not trajectories:
        kind, line = first_skip or ("", f"{source}: no rows")
        raise TaskDataError(
            f"{source}: no row could be imported; first problem at {line}",
            fix=_FIXES.get(kind, "see docs/imports.md"),
        )
    _log_summary(
        source,
        step=chosen_step,
        trajectories=trajectories,
        skipped=skipped,
        mismatches=mismatches,
        notes=notes,
    )
    return ImportedDump(
        trajectories=trajectories,
        metrics=summarize(trajectories, k_max),
        n_rows=len(selected) + len(unplaced),
        skipped=skipped,
        score_mismatches=mismatches,
        source=str(source),
        step=chosen_step,
        notes=notes,
        matched_by=dict(matched_by),
    )


def _check_arguments(
    tasks: Sequence[FunctionTask],
    *,
    max_turns: int,
    k_max: int,
    step: int | None,
    match: str,
    samples_per_task: int,
) -> None:
    def positive(name: str, value: object, minimum: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"{name} must be an integer >= {minimum}", value=value, fix=f"e.g. {name}=16"
            )

    positive("max_turns", max_turns)
    positive("k_max", k_max)
    positive("samples_per_task", samples_per_task)
    if step is not None:
        positive("step", step, minimum=0)
    if match not in ("id", "position"):
        raise ConfigError("match must be 'id' or 'position'", value=match, fix="e.g. match='id'")
    if not tasks:
        raise ConfigError(
            "no tasks given to match the dump against",
            fix="pass the tasks of the validation set (bao.tasks.load_function_tasks)",
        )
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise TaskDataError(
                f"the task list has the id {task.id!r} twice", fix="give every task a unique id"
            )
        seen.add(task.id)


def _read_dump(source: Path) -> Iterator[_Row]:
    from bao.dumps import json_lines, step_files, step_of

    if source.is_dir():
        files = step_files(source)
        if not files:
            raise TaskDataError(
                f"{source}: no *.jsonl files in this folder",
                fix="point to verl's trainer.validation_data_dir or to one of its files",
            )
    elif source.is_file():
        files = [source]
    else:
        raise TaskDataError(f"validation dump {str(source)!r} does not exist", fix="check the path")
    for file in files:
        # verl names each file after its step; rows without a step field take it from there.
        file_step = step_of(file)
        label = f"{file.name} line" if source.is_dir() else "line"
        for number, data in json_lines(file):
            yield _Row(f"{label} {number}", data, _row_step(data, file_step))


def _row_step(data: Mapping[str, Any], file_step: int | None) -> int | None:
    value = data.get("step")
    if isinstance(value, bool):
        return file_step
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return file_step


def _select_step(
    source: Path, rows: list[_Row], step: int | None
) -> tuple[list[_Row], int | None, list[str]]:
    steps = sorted({row.step for row in rows if row.step is not None})
    if not steps:
        if step is not None:
            raise TaskDataError(
                f"{source}: step {step} was asked for but the rows carry no step",
                fix="leave step unset for this dump",
            )
        return rows, None, []
    chosen = steps[-1] if step is None else step
    if chosen not in steps:
        raise TaskDataError(
            f"{source}: no rows of validation step {chosen}",
            value=step,
            fix=f"choose one of the steps present: {steps}",
        )
    # Rows without a step cannot be placed; they are reported, not guessed into a step.
    unplaced = [f"{row.where}: no 'step' (other rows have one)" for row in rows if row.step is None]
    selected = [row for row in rows if row.step == chosen]
    log.debug("%s: importing step %s of %s", source, chosen, steps)
    return selected, chosen, unplaced


def _check_positions(
    source: Path, rows: list[_Row], tasks: Sequence[FunctionTask], samples_per_task: int
) -> None:
    expected = len(tasks) * samples_per_task
    if len(rows) != expected:
        raise TaskDataError(
            f"{source}: match='position' needs {len(tasks)} tasks x {samples_per_task} "
            f"samples = {expected} rows in the step, found {len(rows)}",
            fix="pass the validation set's own task list (in its order) and val_kwargs.n",
        )
    for position, row in enumerate(rows):
        task = tasks[position // samples_per_task]
        named = {value for value in _values(row.data, _ID_PATHS)}
        if named and task.id not in named:
            raise TaskDataError(
                f"{source}: {row.where} names task {sorted(named)} but its position gives "
                f"{task.id!r}",
                fix="use match='id' for this dump",
            )
        truth = _ground_truth(row.data)
        if truth is not None and abs(truth - task.expected_result) > ANSWER_TOLERANCE:
            raise TaskDataError(
                f"{source}: {row.where} has ground truth {truth!r} but its position gives task "
                f"{task.id!r} (expected {task.expected_result!r}): the rows are not in task order",
                fix="run validation with data.validation_shuffle=False, or give rows a task id",
            )


def _id_pattern(by_id: Mapping[str, FunctionTask]) -> re.Pattern[str] | None:
    # Only ids with both a letter and a digit (func-486, gen-1-0) are looked for in prose: a
    # bare number or word would be found in any prompt. Longer ids first, so that func-48
    # never claims the start of func-486.
    searchable = sorted(
        (
            task_id
            for task_id in by_id
            if re.search(r"[A-Za-z]", task_id) and re.search(r"\d", task_id)
        ),
        key=len,
        reverse=True,
    )
    if not searchable:
        return None
    alternatives = "|".join(re.escape(task_id) for task_id in searchable)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w]|[-.]\w)")


def _match_row(
    row: _Row,
    tasks: Sequence[FunctionTask],
    by_id: Mapping[str, FunctionTask],
    id_pattern: re.Pattern[str] | None,
) -> tuple[FunctionTask, str]:
    _check_function_gym(row.data)
    named = _values(row.data, _ID_PATHS)
    known = sorted({value for value in named if value in by_id})
    if len(known) > 1:
        raise _SkipRowError("ambiguous", f"the row names several tasks {known}")
    if known:
        return by_id[known[0]], "id_field"
    if named:
        raise _SkipRowError(
            "unknown_task", f"task id {named[0]!r} is not in the task list ({len(by_id)} tasks)"
        )
    for path in _INDEX_PATHS:
        index = _get(row.data, path)
        if isinstance(index, int) and not isinstance(index, bool):
            if 0 <= index < len(tasks):
                return tasks[index], "index"
            raise _SkipRowError(
                "unknown_task",
                f"{'.'.join(path)} {index} is outside the task list (0..{len(tasks) - 1})",
            )
    text = row.data.get("input")
    if isinstance(text, str) and id_pattern is not None:
        found = sorted(set(id_pattern.findall(text)))
        if len(found) > 1:
            raise _SkipRowError("ambiguous", f"the input names several task ids {found[:5]}")
        if found:
            return by_id[found[0]], "input_text"
    if isinstance(text, str):
        gyms = set(_GYM_NAME.findall(text))
        if not _FUNCTION_GYM_MENTION.search(text) and gyms:
            raise _SkipRowError(
                "not_function_gym", f"not a Function-Gym row (its prompt is {sorted(gyms)})"
            )
    raise _SkipRowError("no_id", "no task id (no id field, no index, no known id in the input)")


def _check_function_gym(data: Mapping[str, Any]) -> None:
    source = data.get("data_source")
    if isinstance(source, str) and source and "function" not in source.lower():
        raise _SkipRowError("not_function_gym", f"not a Function-Gym row (data_source {source!r})")
    for path in _ENV_NAME_PATHS:
        name = _get(data, path)
        if isinstance(name, str) and name and re.sub(r"[\W_]", "", name.lower()) != "functiongym":
            raise _SkipRowError(
                "not_function_gym", f"not a Function-Gym row ({'.'.join(path)} {name!r})"
            )


def _check_ground_truth(row: _Row, task: FunctionTask) -> None:
    truth = _ground_truth(row.data)
    if truth is not None and abs(truth - task.expected_result) > ANSWER_TOLERANCE:
        raise _SkipRowError(
            "ground_truth",
            f"ground truth {truth!r} disagrees with task {task.id!r}'s expected result "
            f"{task.expected_result!r}",
        )


def _ground_truth(data: Mapping[str, Any]) -> float | None:
    for path in _GROUND_TRUTH_PATHS:
        value = _get(data, path)
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue  # another gym's ground truth is text; it says nothing about this task
        if math.isfinite(number):
            return number
    return None


def _score_mismatch(row: _Row, trajectory: Trajectory) -> str | None:
    replayed = math.fsum(trajectory.rewards)
    for key in _SCORE_KEYS:
        value = row.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value) or abs(value - replayed) > ANSWER_TOLERANCE:
            return f"dump {key} {value!r} but the replayed rewards sum to {replayed!r}"
        return None
    return None


def _get(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _values(data: Mapping[str, Any], paths: Sequence[Sequence[str]]) -> list[str]:
    found: list[str] = []
    for path in paths:
        value = _get(data, path)
        if isinstance(value, bool) or value is None or isinstance(value, Mapping | list):
            continue
        text = str(value).strip()
        if text and text not in found:
            found.append(text)
    return found


def _log_summary(
    source: Path,
    *,
    step: int | None,
    trajectories: list[Trajectory],
    skipped: list[str],
    mismatches: list[str],
    notes: list[str],
) -> None:
    log.info(
        "%s (step %s): %d rows imported, %d skipped, %d score mismatches, %d notes",
        source,
        step,
        len(trajectories),
        len(skipped),
        len(mismatches),
        len(notes),
    )
    if skipped:
        log.warning("%s: %d rows skipped, first: %s", source, len(skipped), skipped[0])
    if mismatches:
        log.warning(
            "%s: %d rows disagree with the replay, first: %s",
            source,
            len(mismatches),
            mismatches[0],
        )


# --------------------------------------------------------------------- reference table

REFERENCE_COLUMNS: Final = (
    "model",
    "group",
    "gym",
    "pass_at_u_1",
    "pass_at_u_2",
    "score",
    "user_involvement_rate",
)
_TEXT_COLUMNS: Final = ("model", "group", "gym")
_PASS_COLUMN: Final = re.compile(r"pass_at_u_(\d+)")
REFERENCE_POINT_COLUMNS: Final = ("model", "group", "k", "pass_rate")


def load_reference_table(path: str | Path) -> pd.DataFrame:
    """Reads and checks a table of published results such as the BAO paper's Table 1.

    The CSV needs the columns ``model, group, gym, pass_at_u_1, pass_at_u_2, score,
    user_involvement_rate``; more ``pass_at_u_K`` columns are accepted (their cells may be
    empty where a paper did not report them) and other columns are ignored. Rates must be
    numbers in [0, 1] and each ``(model, gym)`` pair must appear once.

    Returns:
        one row per (model, gym) with ``model, group, gym``, the pass columns in order of
        k, ``score`` and ``user_involvement_rate`` (floats).

    Raises:
        TaskDataError: naming the file, the row (and its line) and the column, with the fix.
    """
    import pandas as pd

    source = Path(path)
    if not source.is_file():
        raise TaskDataError(
            f"reference table {str(source)!r} does not exist",
            fix="pass the path of the CSV (e.g. bao_paper_table1.csv)",
        )
    try:
        with source.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            lines = [(reader.line_num, cells) for cells in reader if any(c.strip() for c in cells)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise TaskDataError(
            f"{source}: not a readable CSV ({error})", fix="save it as UTF-8 CSV"
        ) from None
    if header is None:
        raise TaskDataError(f"{source}: the file is empty", fix="add a header and rows")
    columns = [name.strip() for name in header]
    missing = [name for name in REFERENCE_COLUMNS if name not in columns]
    if missing:
        raise TaskDataError(
            f"{source}: line 1 (the header) lacks column(s) {', '.join(missing)}",
            value=columns,
            fix=f"the header needs {', '.join(REFERENCE_COLUMNS)}",
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise TaskDataError(
            f"{source}: line 1 (the header) repeats column(s) {', '.join(repeated)}",
            fix="name each column once",
        )
    pass_ks = _pass_columns(source, columns)
    numeric = [f"pass_at_u_{k}" for k in pass_ks] + ["score", "user_involvement_rate"]
    required = {"pass_at_u_1", "pass_at_u_2", "score", "user_involvement_rate"}
    if not lines:
        raise TaskDataError(f"{source}: no rows under the header", fix="add the table's rows")

    records: list[dict[str, Any]] = []
    first_seen: dict[tuple[str, str], int] = {}
    for row_number, (line, cells) in enumerate(lines, start=1):
        where = f"{source}: row {row_number} (line {line})"
        if len(cells) != len(columns):
            raise TaskDataError(
                f"{where} has {len(cells)} fields, the header {len(columns)}",
                fix="quote values that contain commas",
            )
        values = {name: cell.strip() for name, cell in zip(columns, cells, strict=True)}
        record: dict[str, Any] = {}
        for name in _TEXT_COLUMNS:
            if not values[name]:
                raise TaskDataError(f"{where}, column {name!r} is empty", fix="fill it in")
            record[name] = values[name]
        for name in numeric:
            record[name] = _rate(values[name], f"{where}, column {name!r}", name in required)
        key = (record["model"], record["gym"])
        if key in first_seen:
            raise TaskDataError(
                f"{where} repeats model {key[0]!r} on gym {key[1]!r} (first in row "
                f"{first_seen[key]})",
                fix="keep one row per (model, gym)",
            )
        first_seen[key] = row_number
        _warn_if_not_monotone(where, record, pass_ks)
        records.append(record)
    ordered = ["model", "group", "gym", *numeric]
    return pd.DataFrame.from_records(records, columns=ordered)


def _pass_columns(source: Path, columns: Sequence[str]) -> list[int]:
    ks: list[int] = []
    for name in columns:
        match = _PASS_COLUMN.fullmatch(name)
        if match is None:
            continue
        k = int(match.group(1))
        if k < 1 or name != f"pass_at_u_{k}":
            raise TaskDataError(
                f"{source}: line 1 (the header) has column {name!r}",
                fix="pass columns are pass_at_u_1, pass_at_u_2, ... (k >= 1, no leading zeros)",
            )
        ks.append(k)
    return sorted(ks)


def _rate(text: str, where: str, required: bool) -> float:
    if not text:
        if required:
            raise TaskDataError(f"{where} is empty", fix="write a number in [0, 1]")
        return math.nan  # an extra Pass@U-k the paper did not report
    try:
        value = float(text)
    except ValueError:
        raise TaskDataError(
            f"{where} is not a number", value=text, fix="write a number in [0, 1], e.g. 0.4103"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise TaskDataError(
            f"{where} is outside [0, 1]",
            value=text,
            fix="write rates as fractions (41.03% is 0.4103)",
        )
    return value


def _warn_if_not_monotone(where: str, record: Mapping[str, Any], pass_ks: Sequence[int]) -> None:
    # Pass@U-k cannot fall as k grows, nor exceed the score (solved within the turn budget);
    # a published table can still carry a typo, so this is worth a warning, not a refusal.
    rates = [record[f"pass_at_u_{k}"] for k in pass_ks]
    rates = [rate for rate in rates if not math.isnan(rate)]
    if any(later < earlier for earlier, later in itertools.pairwise(rates)):
        log.warning("%s: Pass@U-k decreases with k: %s", where, rates)
    if rates and rates[-1] > record["score"]:
        log.warning(
            "%s: Pass@U-%d %s exceeds the score %s", where, pass_ks[-1], rates[-1], record["score"]
        )


def reference_points(
    table: pd.DataFrame, gym: str = "function_gym", k_max: int | None = None
) -> pd.DataFrame:
    """The Pass@U-k values of one gym in long form, for a Pass@U-k frontier chart.

    Args:
        table: a frame from :func:`load_reference_table`.
        gym: the ``gym`` value to keep.
        k_max: keep k <= k_max (default: every pass column of the table).

    Returns:
        columns ``model, group, k, pass_rate``: one row per model and reported k, in the
        table's model order and increasing k (cells left empty in the table are left out).

    Raises:
        ConfigError: an unknown gym, a bad ``k_max`` or a table without the needed columns.
    """
    import pandas as pd

    if k_max is not None and (isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1):
        raise ConfigError("k_max must be a positive integer or None", value=k_max, fix="e.g. 9")
    lacking = [name for name in ("model", "group", "gym") if name not in table.columns]
    ks = sorted(
        int(match.group(1))
        for name in table.columns
        if (match := _PASS_COLUMN.fullmatch(str(name))) is not None
    )
    if lacking or not ks:
        raise ConfigError(
            "the reference table lacks " + (", ".join(lacking) or "pass_at_u_K columns"),
            fix="load it with analysis.imports.load_reference_table",
        )
    rows = table[table["gym"] == gym]
    if rows.empty:
        raise ConfigError(
            f"gym {gym!r} is not in the reference table",
            fix=f"choose one of {sorted(set(table['gym']))}",
        )
    if k_max is not None:
        ks = [k for k in ks if k <= k_max]
    points: list[dict[str, Any]] = []
    for record in rows.to_dict("records"):
        for k in ks:
            rate = float(record[f"pass_at_u_{k}"])
            if not math.isnan(rate):
                points.append(
                    {"model": record["model"], "group": record["group"], "k": k, "pass_rate": rate}
                )
    frame = pd.DataFrame.from_records(points, columns=list(REFERENCE_POINT_COLUMNS))
    return frame.astype({"k": "int64", "pass_rate": "float64"})
