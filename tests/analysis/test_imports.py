"""Validation dumps are replayed through Function-Gym; the paper's table loads and checks."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from analysis.imports import (
    REFERENCE_COLUMNS,
    import_validation_dump,
    load_reference_table,
    parse_tool_calls,
    reference_points,
)
from bao.configuration import ConfigError
from bao.envs import FunctionGymEnv, format_action
from bao.errors import TaskDataError
from bao.metrics import summarize
from bao.tasks import FunctionTask, generate_function_tasks, load_function_tasks
from bao.trajectory import Trajectory, Turn

REFERENCE_CSV = Path(
    os.environ.get(
        "BAO_REFERENCE_TABLE",
        Path(__file__).resolve().parents[3] / "shared" / "reference" / "bao_paper_table1.csv",
    )
)
TASKS = generate_function_tasks(12, seed=3)
# The first words of UserRL's Function-Gym system prompt, as the decoded dump input has it.
PROMPT = (
    "system\nYou are an agent that actively interact with a specific environment.\n\n"
    "- Environment Description: FunctionGym is a mapping function guessing game.\n"
    "user\nMy mapping function is settled and ready.\nassistant\n"
)

Script = Sequence[tuple[str, str]]


# --------------------------------------------------------------------------- builders


def call(choice: str, content: Any, *, arguments_as_string: bool = False) -> str:
    """A Qwen/Hermes tool call as the chat template renders it."""
    arguments: Any = {"choice": choice, "content": content}
    if arguments_as_string:
        arguments = json.dumps(arguments)
    payload = {"name": "interact_with_env", "arguments": arguments}
    return f"<tool_call>\n{json.dumps(payload)}\n</tool_call>"


def reply(text: str) -> str:
    """An environment reply decoded with special tokens skipped, as verl dumps it."""
    return f"\nuser\n<tool_response>\n{text}\nReward: 0.0\n</tool_response>\nassistant\n"


def response(script: Script, *, last_reply: bool = True) -> str:
    parts = []
    for number, (choice, content) in enumerate(script, start=1):
        parts.append(f"<think>\nstep {number}\n</think>\n\n{call(choice, content)}")
        if last_reply or number < len(script):
            parts.append(reply("some feedback"))
    return "".join(parts)


def direct_run(task: FunctionTask, script: Script, max_turns: int = 16) -> Trajectory:
    """The trajectory of playing ``script`` on the environment directly."""
    env = FunctionGymEnv(task, max_turns=max_turns)
    env.reset()
    trajectory = Trajectory(task.id)
    for choice, content in script:
        if env.done:
            break
        observation, reward, _, _, info = env.step(format_action(choice, content))
        trajectory.turns.append(
            Turn(info["choice"], content, info["event"], reward, observation=observation)
        )
    return trajectory


def row(task: FunctionTask | None, output: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"input": PROMPT, "output": output, "step": 10}
    if task is not None:
        data["task_id"] = task.id
    data.update(fields)
    return data


def write_dump(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    lines = [item if isinstance(item, str) else json.dumps(item) for item in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def query_for(task: FunctionTask, offset: int = 0) -> str:
    """Four numbers that are not the task's test case."""
    numbers = [2 + offset, 3, 5, 7]
    if tuple(numbers) == task.test_case:
        numbers[0] += 1
    return " ".join(map(str, numbers))


def answer(task: FunctionTask, wrong_by: float = 0.0) -> str:
    return repr(task.expected_result + wrong_by)


def events(trajectory: Trajectory) -> list[str]:
    return [turn.event for turn in trajectory.turns]


# ----------------------------------------------------------------- replaying responses


def test_correct_answer_after_queries_matches_a_direct_run(tmp_path: Path) -> None:
    task = TASKS[0]
    script = [
        ("search", "test"),
        ("action", query_for(task)),
        ("action", query_for(task, 1)),
        ("answer", answer(task)),
    ]
    dump = write_dump(tmp_path / "10.jsonl", [row(task, response(script), score=1.0)])

    imported = import_validation_dump(dump, TASKS)

    assert imported.trajectories == [direct_run(task, script)]
    trajectory = imported.trajectories[0]
    assert events(trajectory)[0] == "search_test_case"
    assert events(trajectory)[-1] == "answer_correct"
    assert trajectory.rewards == [0.0, 0.0, 0.0, 1.0]
    assert imported.metrics["pass_at_u_1"] == 1.0
    assert imported.metrics["score"] == 1.0
    assert imported.metrics["user_involvement_rate"] == 0.25
    assert imported.n_rows == 1
    assert imported.skipped == []
    assert imported.score_mismatches == []
    assert imported.step == 10
    assert imported.matched_by == {"id_field": 1}
    assert imported.source == str(dump)


def test_every_answer_counts_towards_pass_at_u(tmp_path: Path) -> None:
    task = TASKS[1]
    script = [
        ("search", "test"),
        ("answer", answer(task, 1.0)),
        ("answer", answer(task, -3.0)),
        ("answer", answer(task)),
    ]
    dump = write_dump(tmp_path / "d.jsonl", [row(task, response(script), score=1.0)])

    imported = import_validation_dump(dump, TASKS)

    trajectory = imported.trajectories[0]
    assert events(trajectory) == [
        "search_test_case",
        "answer_wrong",
        "answer_wrong",
        "answer_correct",
    ]
    assert trajectory.answers_to_solve == 3
    metrics = imported.metrics
    assert (metrics["pass_at_u_1"], metrics["pass_at_u_2"], metrics["pass_at_u_3"]) == (0, 0, 1)
    assert metrics["mean_user_actions"] == 3.0


def test_finish_ends_the_episode_and_later_calls_are_reported(tmp_path: Path) -> None:
    task = TASKS[2]
    script = [("action", query_for(task)), ("finish", ""), ("answer", answer(task))]
    dump = write_dump(tmp_path / "d.jsonl", [row(task, response(script), score=0.0)])

    imported = import_validation_dump(dump, TASKS)

    trajectory = imported.trajectories[0]
    assert events(trajectory)[1:] == ["finish"]
    assert trajectory.rewards == [0.0, 0.0]
    assert imported.metrics["no_answer_rate"] == 1.0
    assert len(imported.notes) == 1
    assert "1 call(s) after the episode ended at turn 2" in imported.notes[0]


def test_malformed_tool_call_uses_a_turn_as_an_invalid_action(tmp_path: Path) -> None:
    task = TASKS[3]
    output = (
        call("action", query_for(task))
        + reply("ok")
        + '<tool_call>\n{"name": "interact_with_env", "arguments": {"choice": "answer",'
        + "\n</tool_call>"
        + reply("error")
        + call("answer", answer(task))
        + reply("correct")
    )
    dump = write_dump(tmp_path / "d.jsonl", [row(task, output, score=1.0)])

    imported = import_validation_dump(dump, TASKS)

    trajectory = imported.trajectories[0]
    assert events(trajectory)[1:] == ["invalid_action", "answer_correct"]
    assert trajectory.turns[1].choice == "invalid"
    assert trajectory.turns[1].content.startswith('{"name": "interact_with_env"')
    assert imported.metrics["invalid_rate"] == pytest.approx(1 / 3)
    assert imported.metrics["pass_at_u_1"] == 1.0
    assert any("call 2 replayed as an invalid turn" in note for note in imported.notes)


def test_arguments_string_and_kept_special_tokens_read_the_same(tmp_path: Path) -> None:
    task = TASKS[4]
    script = [("search", "test"), ("action", query_for(task)), ("answer", answer(task))]
    output = "".join(
        "<|im_start|>assistant\n<think>\nhm\n</think>\n\n"
        + call(choice, content, arguments_as_string=True)
        + "<|im_end|>\n<|im_start|>user\n<tool_response>\nfeedback\n</tool_response><|im_end|>\n"
        for choice, content in script
    )
    dump = write_dump(tmp_path / "d.jsonl", [row(task, output, score=1.0)])

    imported = import_validation_dump(dump, TASKS)

    assert imported.trajectories == [direct_run(task, script)]
    assert imported.notes == []


def test_missing_reply_after_the_last_call_and_a_cut_off_call(tmp_path: Path) -> None:
    task = TASKS[5]
    script = [("action", query_for(task)), ("answer", answer(task, 2.0))]
    complete = response(script, last_reply=False)
    cut_off = complete + reply("wrong") + '<think>\nx\n</think>\n<tool_call>\n{"name": "inter'
    dump = write_dump(
        tmp_path / "d.jsonl",
        [row(task, complete, score=0.0), row(task, cut_off, score=0.0)],
    )

    imported = import_validation_dump(dump, TASKS)

    first, second = imported.trajectories
    assert first == direct_run(task, script)
    assert events(second) == [*events(first), "invalid_action"]
    assert any("not closed" in note for note in imported.notes)


def test_choice_names_and_content_types(tmp_path: Path) -> None:
    task = TASKS[6]
    output = (
        call("query", query_for(task))  # not a Function-Gym choice
        + reply("?")
        + call("Answer", answer(task))  # prefixes are case-sensitive
        + reply("?")
        + call("action", [2, 3, 5, 8])  # content written as a list: str() of it
        + reply("ok")
        + call("answer", task.expected_result)  # content written as a number
        + reply("correct")
    )
    dump = write_dump(tmp_path / "d.jsonl", [row(task, output)])

    imported = import_validation_dump(dump, TASKS)

    trajectory = imported.trajectories[0]
    assert events(trajectory)[:2] == ["invalid_action", "invalid_action"]
    assert trajectory.turns[2].choice == "action"
    assert trajectory.turns[2].event != "query_wrong_arity"
    assert events(trajectory)[3] == "answer_correct"


def test_a_call_echoed_inside_a_reply_is_not_a_call() -> None:
    echoed = reply('You wrote <tool_call>{"arguments": {"choice": "answer", "content": "1"}}')
    parsed = parse_tool_calls(call("search", "test") + echoed + call("finish", ""))

    assert [(c.choice, c.content) for c in parsed.calls] == [("search", "test"), ("finish", "")]
    assert parsed.n_responses == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"name": "python", "arguments": {"choice": "answer"}}', "tool 'python'"),
        ('{"name": "interact_with_env", "arguments": "{oops"}', "arguments string"),
        ('{"name": "interact_with_env", "arguments": {"content": "1"}}', "no 'choice'"),
        ('{"name": "interact_with_env"}', "no arguments"),
    ],
)
def test_unreadable_calls_say_why(body: str, problem: str) -> None:
    parsed = parse_tool_calls(f"<tool_call>\n{body}\n</tool_call>")

    assert len(parsed.calls) == 1
    assert parsed.calls[0].choice is None
    assert problem in (parsed.calls[0].problem or "")


def test_bare_arguments_and_parameters_key_are_read() -> None:
    bare = '<tool_call>{"choice": "search", "content": "test"}</tool_call>'
    llama = (
        '<tool_call>{"name": "interact_with_env", "parameters": {"choice": "finish"}}</tool_call>'
    )
    parsed = parse_tool_calls(bare + llama)

    assert [(c.choice, c.content) for c in parsed.calls] == [("search", "test"), ("finish", "")]


def test_output_without_tool_calls_is_an_empty_trajectory(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "d.jsonl", [row(TASKS[0], "<think>\nI give up\n</think>")])

    imported = import_validation_dump(dump, TASKS)

    assert imported.trajectories == [Trajectory(TASKS[0].id, [])]
    assert imported.metrics["no_answer_rate"] == 1.0
    assert any("no tool call" in note for note in imported.notes)


def test_more_replies_than_calls_skips_the_row(tmp_path: Path) -> None:
    task = TASKS[0]
    unreadable = "<function=interact_with_env>{}</function>" + reply("a") + reply("b")
    dump = write_dump(
        tmp_path / "d.jsonl",
        [row(task, unreadable), row(task, response([("finish", "")]))],
    )

    imported = import_validation_dump(dump, TASKS)

    assert len(imported.trajectories) == 1
    assert imported.skipped == [
        "line 1: 2 environment replies but only 0 tool calls could be found"
    ]


def test_turn_budget_truncates_the_replay(tmp_path: Path) -> None:
    task = TASKS[7]
    script = [("action", query_for(task, offset)) for offset in range(5)]
    dump = write_dump(tmp_path / "d.jsonl", [row(task, response(script), score=0.0)])

    imported = import_validation_dump(dump, TASKS, max_turns=3)

    assert imported.trajectories == [direct_run(task, script, max_turns=3)]
    assert len(imported.trajectories[0].turns) == 3
    assert "2 call(s) after the episode ended at turn 3" in imported.notes[0]


# ------------------------------------------------------------------- matching rows


def test_rows_that_cannot_be_matched_are_skipped_with_their_line(tmp_path: Path) -> None:
    task = TASKS[0]
    good = response([("answer", answer(task))])
    rows: list[dict[str, Any] | str] = [
        row(task, good, score=1.0),
        row(None, good, task_id="func-99999"),
        row(None, good, data_source="interact_telepathy"),
        "",
        row(None, good),
        row(None, good, input="system\nTelepathyGym is a guessing game.\nuser\nGo"),
        row(task, good, gts="123456.0"),
        {"input": PROMPT, "step": 10, "task_id": task.id},
        row(task, good, score=1.0),
    ]
    dump = write_dump(tmp_path / "d.jsonl", rows)

    imported = import_validation_dump(dump, TASKS)

    assert len(imported.trajectories) == 2
    assert imported.n_rows == 8
    assert imported.n_rows == len(imported.trajectories) + len(imported.skipped)
    reasons = dict(line.split(": ", 1) for line in imported.skipped)
    assert set(reasons) == {"line 2", "line 3", "line 5", "line 6", "line 7", "line 8"}
    assert "'func-99999' is not in the task list" in reasons["line 2"]
    assert "data_source 'interact_telepathy'" in reasons["line 3"]
    assert reasons["line 5"].startswith("no task id")
    assert "TelepathyGym" in reasons["line 6"]
    assert "ground truth 123456.0 disagrees" in reasons["line 7"]
    assert "no 'output'" in reasons["line 8"]


def test_task_id_fields_of_userrl_rows_are_found(tmp_path: Path) -> None:
    output = response([("finish", "")])
    tools = {"tools_kwargs": {"interact_with_env": {"create_kwargs": {"id": TASKS[1].id}}}}
    rows: list[dict[str, Any] | str] = [
        row(None, output, extra_info={"id": TASKS[0].id}),
        row(None, output, extra_info=tools),
        row(None, output, reward_model={"id": TASKS[2].id, "env_name": "FunctionGym"}),
        row(None, output, reward_model={"id": TASKS[3].id, "env_name": "TurtleGym"}),
    ]
    dump = write_dump(tmp_path / "d.jsonl", rows)

    imported = import_validation_dump(dump, TASKS)

    assert [t.task_id for t in imported.trajectories] == [TASKS[0].id, TASKS[1].id, TASKS[2].id]
    assert "TurtleGym" in imported.skipped[0]


def test_task_id_found_in_the_input_text(tmp_path: Path) -> None:
    # gen-3-1 is a prefix of gen-3-11: only the whole id may match.
    assert TASKS[1].id == "gen-3-1"
    assert TASKS[11].id == "gen-3-11"
    output = response([("answer", answer(TASKS[11]))])
    rows: list[dict[str, Any] | str] = [
        row(None, output, input=PROMPT + "(task gen-3-11)"),
        row(None, output, input=PROMPT + "tasks gen-3-11 and gen-3-2"),
    ]
    dump = write_dump(tmp_path / "d.jsonl", rows)

    imported = import_validation_dump(dump, TASKS)

    assert [t.task_id for t in imported.trajectories] == ["gen-3-11"]
    assert imported.trajectories[0].turns[0].event == "answer_correct"
    assert imported.matched_by == {"input_text": 1}
    assert "several task ids" in imported.skipped[0]


def test_index_is_a_position_in_the_task_list(tmp_path: Path) -> None:
    output = response([("answer", answer(TASKS[4]))])
    rows: list[dict[str, Any] | str] = [
        row(None, output, extra_info={"index": 4}),
        row(None, output, extra_info={"index": 40}),
    ]
    dump = write_dump(tmp_path / "d.jsonl", rows)

    imported = import_validation_dump(dump, TASKS)

    assert [t.task_id for t in imported.trajectories] == [TASKS[4].id]
    assert imported.matched_by == {"index": 1}
    assert "outside the task list" in imported.skipped[0]


def test_position_matching_for_unshuffled_validation(tmp_path: Path) -> None:
    tasks = TASKS[:3]
    rows: list[dict[str, Any] | str] = []
    for task in tasks:
        for wrong_by in (0.0, 1.0):  # two samples per prompt, kept adjacent by verl
            output = response([("answer", answer(task, wrong_by))])
            rows.append(row(None, output, gts=str(task.expected_result)))
    dump = write_dump(tmp_path / "d.jsonl", rows)

    imported = import_validation_dump(dump, tasks, match="position", samples_per_task=2)

    assert [t.task_id for t in imported.trajectories] == [t.id for t in tasks for _ in "ab"]
    assert imported.metrics["pass_at_u_1"] == 0.5
    assert imported.matched_by == {"position": 6}
    with pytest.raises(TaskDataError, match=r"needs 3 tasks x 3 samples = 9 rows.*found 6"):
        import_validation_dump(dump, tasks, match="position", samples_per_task=3)
    shuffled = write_dump(tmp_path / "s.jsonl", [rows[2], rows[3], rows[0], rows[1], *rows[4:]])
    with pytest.raises(TaskDataError, match=r"line 1 has ground truth.*not in task order"):
        import_validation_dump(shuffled, tasks, match="position", samples_per_task=2)


def test_no_importable_row_raises_one_line_with_the_fix(tmp_path: Path) -> None:
    output = response([("finish", "")])
    dump = write_dump(tmp_path / "d.jsonl", [row(None, output), row(None, output)])

    with pytest.raises(TaskDataError) as caught:
        import_validation_dump(dump, TASKS)

    message = str(caught.value)
    assert "\n" not in message
    assert str(dump) in message
    assert "first problem at line 1: no task id" in message
    assert "match='position'" in message


# ----------------------------------------------------------------- the dump as a file


def test_broken_json_line_names_file_and_line(tmp_path: Path) -> None:
    good = row(TASKS[0], response([("finish", "")]))
    dump = write_dump(tmp_path / "d.jsonl", [good, '{"input": "x", "output": '])

    with pytest.raises(TaskDataError, match=r"d\.jsonl: line 2 is not valid JSON"):
        import_validation_dump(dump, TASKS)


def test_a_line_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "d.jsonl", ["[1, 2, 3]"])

    with pytest.raises(TaskDataError, match=r"line 1 is not a JSON object"):
        import_validation_dump(dump, TASKS)


def test_several_steps_keep_the_last_or_the_chosen_one(tmp_path: Path) -> None:
    task = TASKS[0]
    solved = response([("answer", answer(task))])
    failed = response([("finish", "")])
    rows: list[dict[str, Any] | str] = [
        row(task, failed, step=5),
        row(task, failed, step=5),
        row(task, solved, step=20),
        row(task, failed, step=10),
    ]
    dump = write_dump(tmp_path / "d.jsonl", rows)

    last = import_validation_dump(dump, TASKS)
    chosen = import_validation_dump(dump, TASKS, step=5)

    assert (last.step, last.n_rows, last.metrics["score"]) == (20, 1, 1.0)
    assert (chosen.step, chosen.n_rows, chosen.metrics["score"]) == (5, 2, 0.0)
    with pytest.raises(TaskDataError, match=r"no rows of validation step 7.*\[5, 10, 20\]"):
        import_validation_dump(dump, TASKS, step=7)


def test_rows_without_a_step_beside_rows_with_one_are_reported(tmp_path: Path) -> None:
    task = TASKS[0]
    output = response([("finish", "")])
    unplaced = row(task, output)
    del unplaced["step"]
    dump = write_dump(tmp_path / "d.jsonl", [row(task, output), unplaced])

    imported = import_validation_dump(dump, TASKS)

    assert len(imported.trajectories) == 1
    assert imported.skipped == ["line 2: no 'step' (other rows have one)"]
    assert imported.n_rows == 2


def test_a_validation_data_dir_of_step_files(tmp_path: Path) -> None:
    task = TASKS[0]
    folder = tmp_path / "val"
    folder.mkdir()
    for step, script in ((5, [("finish", "")]), (15, [("answer", answer(task))])):
        plain = row(task, response(script))
        del plain["step"]  # the file name carries the step
        write_dump(folder / f"{step}.jsonl", [plain])

    imported = import_validation_dump(folder, TASKS)
    early = import_validation_dump(folder, TASKS, step=5)

    assert (imported.step, imported.metrics["score"]) == (15, 1.0)
    assert (early.step, early.metrics["score"]) == (5, 0.0)


def test_score_disagreements_are_reported_and_the_replay_is_kept(tmp_path: Path) -> None:
    task = TASKS[8]
    solved = response([("answer", answer(task))])
    failed = response([("answer", answer(task, 1.0))])
    rows: list[dict[str, Any] | str] = [
        row(task, solved, score=1.0),
        row(task, failed, score=1.0),  # the dump claims a success the replay does not see
        row(task, failed, score=0.0, reward=1.0),  # score is read before reward
        row(task, failed),  # no score to compare
    ]
    dump = write_dump(tmp_path / "d.jsonl", rows)

    imported = import_validation_dump(dump, TASKS)

    assert imported.score_mismatches == [
        f"line 2 (task {task.id}): dump score 1.0 but the replayed rewards sum to 0.0"
    ]
    assert [t.rewards for t in imported.trajectories] == [[1.0], [0.0], [0.0], [0.0]]
    assert imported.metrics["score"] == 0.25


def test_metrics_are_summarize_of_direct_runs(tmp_path: Path) -> None:
    scripts: list[Script] = []
    for index, task in enumerate(TASKS):
        variants: list[Script] = [
            [("search", "test"), ("action", query_for(task)), ("answer", answer(task))],
            [("answer", answer(task, 1.0)), ("answer", answer(task))],
            [("action", query_for(task)), ("finish", "")],
            [("search", "nothing"), ("answer", "twelve"), ("action", "1 2")],
        ]
        scripts.append(variants[index % len(variants)])
    dump = write_dump(
        tmp_path / "d.jsonl",
        [row(task, response(script)) for task, script in zip(TASKS, scripts, strict=True)],
    )

    imported = import_validation_dump(dump, TASKS, k_max=4)

    expected = [direct_run(t, s) for t, s in zip(TASKS, scripts, strict=True)]
    assert imported.trajectories == expected
    assert imported.metrics == summarize(expected, k_max=4)
    assert "pass_at_u_4" in imported.metrics
    assert "pass_at_u_5" not in imported.metrics


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_turns": 0}, ConfigError),
        ({"k_max": 0}, ConfigError),
        ({"step": -1}, ConfigError),
        ({"match": "order"}, ConfigError),
        ({"samples_per_task": 0}, ConfigError),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], error: type[Exception]) -> None:
    dump = write_dump(tmp_path / "d.jsonl", [row(TASKS[0], "")])

    with pytest.raises(error):
        import_validation_dump(dump, TASKS, **kwargs)


def test_missing_dump_empty_dump_and_no_tasks(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="does not exist"):
        import_validation_dump(tmp_path / "nope.jsonl", TASKS)
    empty = write_dump(tmp_path / "e.jsonl", [""])
    with pytest.raises(TaskDataError, match="holds no rows"):
        import_validation_dump(empty, TASKS)
    with pytest.raises(ConfigError, match="no tasks"):
        import_validation_dump(empty, [])


def test_real_userrl_rows(tmp_path: Path, userrl_parquet_path: Path) -> None:
    import pyarrow.parquet as pq

    tasks = load_function_tasks(userrl_parquet_path)
    prompt_row = pq.read_table(userrl_parquet_path).slice(0, 1).to_pylist()[0]
    task = tasks[0]
    assert prompt_row["reward_model"]["id"] == task.id
    prompt = "\n".join(f"{m['role']}\n{m['content']}" for m in prompt_row["prompt"])
    script = [("search", "test"), ("action", query_for(task)), ("answer", answer(task))]
    with_id = row(None, response(script), input=prompt, extra_info=prompt_row["extra_info"])
    # What stock UserRL/verl writes: the prompt, the response, scores, no task id.
    stock = {"input": prompt, "output": response(script), "score": 1.0, "step": 10}
    stock.update(reward=1.0, score_max=1.0)
    dump = write_dump(tmp_path / "d.jsonl", [with_id, stock])

    imported = import_validation_dump(dump, tasks)

    assert imported.trajectories == [direct_run(task, script)]
    assert imported.skipped[0].startswith("line 2: no task id")


# ------------------------------------------------------------------ reference table


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


HEADER = "model,group,gym,pass_at_u_1,pass_at_u_2,score,user_involvement_rate\n"


def test_the_papers_table_loads() -> None:
    if not REFERENCE_CSV.is_file():
        pytest.skip(f"reference table not found at {REFERENCE_CSV} (set BAO_REFERENCE_TABLE)")

    table = load_reference_table(REFERENCE_CSV)

    assert list(table.columns) == list(REFERENCE_COLUMNS)
    assert len(table) == 51
    assert set(table["gym"]) == {"function_gym", "telepathy_gym", "turtle_gym"}
    bao = table[(table["model"] == "BAO (ours)-4B") & (table["gym"] == "function_gym")]
    assert bao["pass_at_u_2"].tolist() == [0.5354]
    assert bao["group"].tolist() == ["fine_tuned"]
    rates = table[list(REFERENCE_COLUMNS[3:])].to_numpy()
    assert ((rates >= 0) & (rates <= 1)).all()

    points = reference_points(table)

    assert list(points.columns) == ["model", "group", "k", "pass_rate"]
    assert len(points) == 34
    assert set(points["k"]) == {1, 2}
    first = points.iloc[0]
    assert (first["model"], first["k"], first["pass_rate"]) == ("Gemini-3-flash", 1, 0.4103)
    assert len(reference_points(table, gym="turtle_gym", k_max=1)) == 17


def test_extra_pass_columns_are_ordered_and_may_be_empty(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        "model,notes,pass_at_u_3,group,gym,pass_at_u_2,pass_at_u_1,score,user_involvement_rate\n"
        'A,"x, y",0.5,g,function_gym,0.4,0.3,0.6,0.2\n'
        "\n"
        "B,,,g,function_gym,0.2,0.1,0.3,0.1\n"
        "B,,0.9,g,other_gym,0.2,0.1,0.3,0.1\n",
    )

    table = load_reference_table(path)

    assert list(table.columns) == [
        "model",
        "group",
        "gym",
        "pass_at_u_1",
        "pass_at_u_2",
        "pass_at_u_3",
        "score",
        "user_involvement_rate",
    ]
    assert math.isnan(table["pass_at_u_3"].iloc[1])
    points = reference_points(table)
    assert points[["model", "k", "pass_rate"]].values.tolist() == [
        ["A", 1, 0.3],
        ["A", 2, 0.4],
        ["A", 3, 0.5],
        ["B", 1, 0.1],
        ["B", 2, 0.2],
    ]
    assert len(reference_points(table, k_max=2)) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"the file is empty"),
        (HEADER, r"no rows under the header"),
        (
            "model,group,gym,pass_at_u_1,score,user_involvement_rate\nA,g,f,0.1,0.2,0.3\n",
            r"line 1 \(the header\) lacks column\(s\) pass_at_u_2",
        ),
        (
            HEADER + "A,g,f,0.1,0.2,0.3,0.1\nB,g,f,0.1,abc,0.3,0.1\n",
            r"row 2 \(line 3\), column 'pass_at_u_2' is not a number",
        ),
        (
            HEADER + "A,g,f,41.03,0.2,0.3,0.1\n",
            r"row 1 \(line 2\), column 'pass_at_u_1' is outside \[0, 1\].*fractions",
        ),
        (HEADER + "A,g,f,0.1,0.2,0.3,-0.1\n", r"column 'user_involvement_rate' is outside"),
        (HEADER + "A,g,f,0.1,0.2,,0.1\n", r"column 'score' is empty"),
        (HEADER + ",g,f,0.1,0.2,0.3,0.1\n", r"column 'model' is empty"),
        (HEADER + "A,g,f,0.1,0.2,0.3\n", r"row 1 \(line 2\) has 6 fields, the header 7"),
        (
            HEADER + "A,g,f,0.1,0.2,0.3,0.1\nA,h,f,0.1,0.2,0.3,0.1\n",
            r"row 2 \(line 3\) repeats model 'A' on gym 'f' \(first in row 1\)",
        ),
        (HEADER.strip() + ",pass_at_u_0\nA,g,f,0.1,0.2,0.3,0.1,0.1\n", r"column 'pass_at_u_0'"),
        (HEADER.strip() + ",score\nA,g,f,0.1,0.2,0.3,0.1,0.1\n", r"repeats column\(s\) score"),
    ],
)
def test_broken_reference_tables_name_row_and_column(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_csv(tmp_path / "broken.csv", text)

    with pytest.raises(TaskDataError, match=message) as caught:
        load_reference_table(path)

    assert str(path) in str(caught.value)


def test_missing_reference_table(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match=r"does not exist; pass the path"):
        load_reference_table(tmp_path / "table1.csv")


def test_reference_points_refuses_unknown_gym_and_bad_k(tmp_path: Path) -> None:
    table = load_reference_table(write_csv(tmp_path / "t.csv", HEADER + "A,g,f,0.1,0.2,0.3,0.1\n"))

    with pytest.raises(
        ConfigError, match=r"gym 'function_gym' is not in the reference table.*\['f'\]"
    ):
        reference_points(table)
    with pytest.raises(ConfigError, match="k_max"):
        reference_points(table, gym="f", k_max=0)
    with pytest.raises(ConfigError, match="lacks"):
        reference_points(table.drop(columns=["pass_at_u_1", "pass_at_u_2"]), gym="f")


# ------------------------------------------------------------------------------- the CLI


def test_import_command_logs_a_run_with_trajectories_and_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from bao.tasks import save_function_tasks
    from sweep.cli import main

    tasks_path = tmp_path / "tasks.jsonl"
    save_function_tasks(TASKS[:3], tasks_path)
    dump = write_dump(
        tmp_path / "10.jsonl",
        [
            row(TASKS[0], response([("answer", answer(TASKS[0]))])),
            row(TASKS[1], response([("answer", answer(TASKS[1], 1.0)), ("finish", "")])),
            row(None, response([("finish", "")])),  # no task: skipped, and reported
        ],
    )
    workspace = tmp_path / "ws"
    capsys.readouterr()
    argv = ["import", str(dump), "--tasks", str(tasks_path), "--workspace", str(workspace)]
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["imported"] == 2
    assert document["n_skipped"] == 1
    assert document["eval/pass_at_u_1"] == 0.5
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    run = client.get_run(document["run_id"])
    assert run.data.tags["bao.role"] == "import"
    assert run.data.metrics["eval/pass_at_u_1"] == 0.5
    artifacts = {a.path for a in client.list_artifacts(document["run_id"])}
    assert artifacts == {"trajectories.jsonl", "import_report.json"}
    # A dump with nothing importable is one line, exit 2, and no run.
    empty = write_dump(tmp_path / "11.jsonl", [row(None, response([("finish", "")]))])
    assert (
        main(["import", str(empty), "--tasks", str(tasks_path), "--workspace", str(workspace)]) == 2
    )
    assert capsys.readouterr().err.count("\n") == 1
    experiment = client.get_experiment_by_name("imported")
    assert experiment is not None
    assert len(client.search_runs([experiment.experiment_id])) == 1
