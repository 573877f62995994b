"""Task loading (UserRL formats), malformed input, and the generator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bao.errors import TaskDataError
from bao.expressions import describe_rule, evaluate
from bao.tasks import (
    FunctionTask,
    generate_function_tasks,
    load_function_tasks,
    save_function_tasks,
    task_distribution,
    task_from_record,
)

GOOD = {"id": "t1", "rule": "(a - d) - b - c", "test_case": [5, 8, 7, 6], "expected_result": -16.0}


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------------ UserRL files


def test_loads_userrl_functions_json(userrl_functions_path: Path) -> None:
    tasks = load_function_tasks(userrl_functions_path)
    assert len(tasks) == 460
    assert len({task.id for task in tasks}) == 460
    first = tasks[0]
    assert first == FunctionTask("func-486", "(a - d) - b - c", (5, 8, 7, 6), -16.0)


def test_loads_userrl_parquet_joined_with_functions(
    userrl_parquet_path: Path, userrl_functions_path: Path
) -> None:
    by_id = {task.id: task for task in load_function_tasks(userrl_functions_path)}
    explicit = load_function_tasks(userrl_parquet_path, functions_path=userrl_functions_path)
    found_beside = load_function_tasks(userrl_parquet_path)
    assert explicit == found_beside
    assert len(explicit) == 460
    rows = pq.read_table(userrl_parquet_path).to_pylist()
    assert [task.id for task in explicit] == [row["reward_model"]["id"] for row in rows]
    assert all(task == by_id[task.id] for task in explicit)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    tasks = generate_function_tasks(25, seed=3)
    save_function_tasks(tasks, tmp_path / "tasks.jsonl")
    assert load_function_tasks(tmp_path / "tasks.jsonl") == tasks


def test_constructor_validates_the_test_case() -> None:
    with pytest.raises(TaskDataError, match="non-integer"):
        FunctionTask("x", "a", (3.7, 1, 1, 1), 1.0)  # type: ignore[arg-type]
    with pytest.raises(TaskDataError, match=r"outside 1\.\.10"):
        FunctionTask("x", "a", (0, 1, 1, 1), 1.0)


def test_parquet_row_with_odd_reward_model(tmp_path: Path) -> None:
    functions = write_json(tmp_path / "functions.json", [{**GOOD, "id": "0"}])
    row = {
        "reward_model": "not a mapping",
        "extra_info": {"tools_kwargs": {"interact_with_env": {"create_kwargs": {"id": "0"}}}},
    }
    tasks = load_function_tasks(_parquet(tmp_path / "r.parquet", [row]), functions_path=functions)
    assert [task.id for task in tasks] == ["0"]


def test_integral_floats_in_test_case_are_accepted() -> None:
    task = task_from_record({**GOOD, "test_case": [5.0, 8, 7, 6]})
    assert task.test_case == (5, 8, 7, 6)


# ---------------------------------------------------------------------------- bad input

BAD_RECORDS = [
    ({k: v for k, v in GOOD.items() if k != "rule"}, "missing field(s) rule"),
    ({**GOOD, "id": ""}, "field 'id' must be a non-empty string"),
    ({**GOOD, "id": True}, "field 'id' must be a non-empty string"),
    ({**GOOD, "rule": "a - d - b - c + e"}, "field 'rule'"),
    ({**GOOD, "rule": "__import__('os').system('true')"}, "unknown name '__import__'"),
    ({**GOOD, "rule": "a * 0.5"}, "decimal literal"),
    ({**GOOD, "rule": 42}, "rule must be a string"),
    ({**GOOD, "test_case": [5, 8, 7]}, "field 'test_case' must be a list of 4"),
    ({**GOOD, "test_case": [5, 8, 7, 11]}, "outside 1..10"),
    ({**GOOD, "test_case": [5, 8, 7, 6.5]}, "non-integer"),
    ({**GOOD, "test_case": "5 8 7 6"}, "must be a list of 4"),
    ({**GOOD, "expected_result": "-16"}, "field 'expected_result' must be a number"),
    ({**GOOD, "expected_result": math.inf}, "is not finite"),
    ({**GOOD, "expected_result": -15.0}, "but the rule gives -16.0"),
    ({**GOOD, "expected_result": -16.00001}, "but the rule gives -16.0"),  # env grades to 1e-6
    ({**GOOD, "expected_result": 10**400}, "is not finite"),
    ({**GOOD, "rule": "a / (b - b)"}, "no value at the test case"),
    ({**GOOD, "rule": "a ** 99999", "expected_result": 1.0}, "no value at the test case"),
    ("not an object", "expected an object"),
]


@pytest.mark.parametrize(("record", "message"), BAD_RECORDS)
def test_bad_records_name_file_record_and_field(
    tmp_path: Path, record: object, message: str
) -> None:
    path = write_json(tmp_path / "tasks.json", [GOOD | {"id": "ok"}, record])
    with pytest.raises(TaskDataError) as caught:
        load_function_tasks(path)
    text = str(caught.value)
    assert str(path) in text
    assert "record 1" in text
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("[{", ".json", "not valid JSON at line 1"),
        ('{"id": "x"}', ".json", "expected a JSON list"),
        ("[]", ".json", "contains no task records"),
        (json.dumps(GOOD) + "\n{oops\n", ".jsonl", "line 2 is not valid JSON"),
        ("a,b\n", ".csv", "unknown format"),
        ("not parquet", ".parquet", "cannot be read as parquet"),
    ],
)
def test_bad_files_give_one_clear_line(
    tmp_path: Path, content: str, suffix: str, message: str
) -> None:
    path = tmp_path / f"tasks{suffix}"
    path.write_text(content)
    write_json(tmp_path / "functions_train.json", [GOOD])
    with pytest.raises(TaskDataError, match=message):
        load_function_tasks(path)


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = write_json(tmp_path / "tasks.json", [GOOD, GOOD])
    with pytest.raises(TaskDataError, match="duplicate id 't1' \\(first at record 0\\)"):
        load_function_tasks(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="does not exist"):
        load_function_tasks(tmp_path / "nope.json")


def _parquet(path: Path, rows: list[dict[str, object]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_errors(tmp_path: Path) -> None:
    functions = write_json(tmp_path / "functions_a.json", [GOOD])
    unknown = _parquet(
        tmp_path / "u.parquet", [{"reward_model": {"id": "zz", "ground_truth": "1"}}]
    )
    with pytest.raises(TaskDataError, match="row 0: task id 'zz' is not in"):
        load_function_tasks(unknown, functions_path=functions)
    wrong = _parquet(tmp_path / "w.parquet", [{"reward_model": {"id": "t1", "ground_truth": "3"}}])
    with pytest.raises(TaskDataError, match="ground_truth '3' disagrees"):
        load_function_tasks(wrong, functions_path=functions)
    no_id = _parquet(tmp_path / "n.parquet", [{"data_source": "x"}])
    with pytest.raises(TaskDataError, match="row 0: no task id"):
        load_function_tasks(no_id, functions_path=functions)
    write_json(tmp_path / "functions_b.json", [GOOD])
    with pytest.raises(TaskDataError, match=r"found 2 functions\*\.json files"):
        load_function_tasks(wrong)


# ---------------------------------------------------------------------------- generator


def test_generator_is_reproducible_and_seeded() -> None:
    assert generate_function_tasks(50, seed=7) == generate_function_tasks(50, seed=7)
    assert generate_function_tasks(50, seed=7) != generate_function_tasks(50, seed=8)
    assert generate_function_tasks(0, seed=1) == []
    with pytest.raises(TaskDataError, match="n must be a non-negative integer"):
        generate_function_tasks(-1, seed=0)


def test_generated_tasks_follow_the_grammar() -> None:
    for task in generate_function_tasks(1000, seed=0):
        shape = describe_rule(task.expression)
        assert shape.uses_each_variable_once, task.rule
        assert 3 <= shape.n_binary_ops <= 5, task.rule
        assert set(shape.op_counts) <= {"+", "-", "*", "/", "**"}
        assert all(1 <= v <= 10 for v in task.test_case)
        value = evaluate(task.expression, task.test_case)
        assert value == task.expected_result
        assert task.expected_result.is_integer()
        assert abs(task.expected_result) <= 5000
        # The text is the tree: loading it back validates it like any user file.
        assert task_from_record(task.to_dict()) == task


def test_generated_distribution_tracks_userrl(userrl_functions_path: Path) -> None:
    """Guards the tuning documented in docs/tasks.md against silent drift."""
    ours = task_distribution(generate_function_tasks(3000, seed=0))
    reference = task_distribution(load_function_tasks(userrl_functions_path))
    tolerances = {
        "share_3_ops": 0.04,
        "share_4_ops": 0.04,
        "share_5_ops": 0.03,
        "share_depth_2": 0.04,
        "share_depth_3": 0.06,
        "share_depth_4": 0.06,
        "mean_depth": 0.1,
        "op_share_+": 0.03,
        "op_share_-": 0.03,
        "op_share_*": 0.03,
        "op_share_/": 0.03,
        "op_share_**": 0.03,
        "share_with_squaring": 0.04,
        "share_with_variable_exponent": 0.03,
        "share_each_variable_once": 0.0,
        "share_integer_result": 0.0,
    }
    for key, tolerance in tolerances.items():
        assert abs(ours[key] - reference[key]) <= tolerance, (key, ours[key], reference[key])
