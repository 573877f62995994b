"""Malformed configs and data files, each through the real ``bao-pareto`` entry point.

Whatever the package that owns the input (sweep configs, training configs, task files,
validation dumps, reference tables), a bad input must end the same way: exit status 2, one
line on stderr that names the key, record or file and says how to fix it, and nothing
written (not even the workspace folder). The table covers every command that reads a file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bao.configuration import merge
from sweep.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent
SIM_YAML = REPO_ROOT / "configs" / "sim.yaml"
VERL_YAML = REPO_ROOT / "configs" / "verl" / "function_gym.yaml"

# Commands that take --workspace; baselines writes nothing and has no workspace.
WORKSPACE_COMMANDS = {"sweep", "worker", "status", "front", "select", "import", "train"}

Build = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Case:
    """One malformed input: ``build`` writes its files into a folder and returns the argv;
    the error line must contain every fragment of ``names`` (the key, record or file) and its
    fix (the text after the last ``"; "``) must contain ``fix``."""

    id: str
    build: Build
    names: tuple[str, ...]
    fix: str
    known_gap: str = ""
    """Why the product still fails this case (a fix outside this table's reach): the case
    is a strict xfail, so it turns red once the gap is closed and the mark must go."""


# --------------------------------------------------------------------------------- builders


def _write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def sweep_config(folder: Path, **changes: Any) -> Path:
    """A small simulator sweep (valid unless ``changes`` break it); ``changes`` replace its
    top-level keys."""
    config: dict[str, Any] = {
        "name": "bad",
        "backend": {"kind": "sim", "train_config": str(SIM_YAML)},
        "train": {
            "trainer": {"iterations": 1, "tasks_per_iteration": 4},
            "tasks": {"n_train": 10, "n_eval": 10},
        },
        "search_space": {"shaping.user_lambda": {"type": "float", "low": 0.0, "high": 0.5}},
        "objectives": [
            {"metric": "eval/score", "direction": "maximize"},
            {"metric": "eval/user_involvement_rate", "direction": "minimize"},
        ],
        "driver": {"algorithm": "random", "n_trials": 2},
    }
    return _write_yaml(folder / "sweep.yaml", config | changes)


def sim_config(folder: Path, **changes: Any) -> Path:
    """configs/sim.yaml with ``changes`` merged in."""
    base = yaml.safe_load(SIM_YAML.read_text(encoding="utf-8"))
    return _write_yaml(folder / "sim.yaml", merge(base, changes))


def verl_config(folder: Path, **changes: Any) -> Path:
    """configs/verl/function_gym.yaml with ``changes`` merged in."""
    base = yaml.safe_load(VERL_YAML.read_text(encoding="utf-8"))
    return _write_yaml(folder / "verl.yaml", merge(base, changes))


def record(task_id: str = "t-1", rule: str = "a + b * c", **changes: Any) -> dict[str, Any]:
    """A valid Function-Gym task record at test case [1, 2, 3, 4] (``changes`` override)."""
    valid = {"id": task_id, "rule": rule, "test_case": [1, 2, 3, 4], "expected_result": 7.0}
    return valid | changes


def tasks_json(folder: Path, *records: object, name: str = "tasks.json") -> Path:
    path = folder / name
    # allow_nan: Python's json reads and writes NaN and Infinity, as some exporters do.
    path.write_text(json.dumps(list(records), allow_nan=True), encoding="utf-8")
    return path


def tasks_jsonl(folder: Path, *lines: str) -> Path:
    path = folder / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def userrl_rows(folder: Path, rows: list[dict[str, Any]], name: str = "train.parquet") -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / name
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def userrl_row(task_id: str = "t-1", truth: str = "7.0") -> dict[str, Any]:
    """A UserRL/verl prompt row naming ``task_id`` (the columns UserRL's parquet has)."""
    return {
        "data_source": "interact_function",
        "prompt": [{"content": "Find the function.", "role": "user"}],
        "ability": "interaction",
        "reward_model": {"env_name": "FunctionGym", "ground_truth": truth, "id": task_id},
        "extra_info": {"index": 0, "split": "train"},
    }


def userrl_parquet(folder: Path) -> Path:
    """A valid parquet with its functions file beside it."""
    tasks_json(folder, record(), name="functions_train.json")
    return userrl_rows(folder, [userrl_row()])


def dump_file(folder: Path, *lines: str, name: str = "3.jsonl") -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def reference_csv(folder: Path, text: str) -> Path:
    path = folder / "table1.csv"
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ cases


def _sweep(**changes: Any) -> Build:
    return lambda folder: ["sweep", str(sweep_config(folder, **changes))]


def _train_sim(**changes: Any) -> Build:
    return lambda folder: ["train", str(sim_config(folder, **changes))]


def _train_verl(**changes: Any) -> Build:
    return lambda folder: ["train", str(verl_config(folder, **changes)), "--dry-run"]


def _baselines(write: Callable[[Path], Path]) -> Build:
    return lambda folder: ["baselines", "--tasks", str(write(folder))]


def _import(write_dump: Callable[[Path], Path], *extra: str) -> Build:
    def build(folder: Path) -> list[str]:
        tasks = tasks_json(folder, record())
        return ["import", str(write_dump(folder)), "--tasks", str(tasks), *extra]

    return build


def _broken_yaml(folder: Path) -> list[str]:
    path = folder / "sweep.yaml"
    path.write_text("name: bad\nobjectives:\n  - {metric: eval/score, direction: maximize\n")
    return ["sweep", str(path)]


def _tab_indented_train_yaml(folder: Path) -> list[str]:
    path = folder / "sim.yaml"
    path.write_text("name: sim\nshaping:\n\tuser_lambda: 0.1\n")
    return ["train", str(path)]


def _truncated_parquet(folder: Path) -> Path:
    path = userrl_parquet(folder)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage_parquet(folder: Path) -> Path:
    tasks_json(folder, record(), name="functions_train.json")
    path = folder / "train.parquet"
    path.write_bytes(b"PAR1" + bytes(range(256)) * 4)
    return path


def _parquet_without_ids(folder: Path) -> Path:
    tasks_json(folder, record(), name="functions_train.json")
    return userrl_rows(folder, [{"data_source": "interact_function", "ability": "interaction"}])


def _parquet_with_broken_functions(folder: Path) -> Path:
    (folder / "functions_train.json").write_text('[{"id": "t-1", "rule": "a + b"', "utf-8")
    return userrl_rows(folder, [userrl_row()])


def _sweep_with_missing_train_config(folder: Path) -> list[str]:
    config = sweep_config(folder, backend={"kind": "sim", "train_config": "nowhere/sim.yaml"})
    return ["sweep", str(config)]


def _verl_sweep_with_bad_train_config(folder: Path) -> list[str]:
    train = verl_config(folder, rollout={"temprature": 0.7})
    sweep = sweep_config(
        folder,
        backend={"kind": "verl", "train_config": train.name},
        objectives=[
            {"metric": "eval/pass_at_u_1", "direction": "maximize"},
            {"metric": "eval/user_involvement_rate", "direction": "minimize"},
        ],
    )
    return ["sweep", str(sweep), "--dry-run"]


def _sweep_on_bad_task_file(folder: Path) -> list[str]:
    tasks = tasks_json(folder, record(rule="__import__('os').system('true')"))
    return ["sweep", str(sweep_config(folder, train={"tasks": {"train_path": str(tasks)}}))]


def _front_with_missing_table(folder: Path) -> list[str]:
    return ["front", "bad", "--reference-table", str(folder / "table1.csv")]


def _front_with_table_lacking_columns(folder: Path) -> list[str]:
    table = reference_csv(folder, "model,group,gym,pass_at_u_1\nBAO-4B,BAO,function_gym,0.41\n")
    return ["front", "bad", "--reference-table", str(table)]


def _front_with_rate_out_of_range(folder: Path) -> list[str]:
    table = reference_csv(
        folder,
        "model,group,gym,pass_at_u_1,pass_at_u_2,score,user_involvement_rate\n"
        "BAO-4B,BAO,function_gym,41.03,0.5,0.6,0.2\n",
    )
    return ["front", "bad", "--reference-table", str(table)]


def _select_on_broken_config(folder: Path) -> list[str]:
    path = folder / "sweep.yaml"
    path.write_text("name: bad\nsearch_space: {shaping.user_lambda: {type: float, low: 1\n")
    return ["select", str(path), "--budget", "1"]


def _status_on_bad_config(folder: Path) -> list[str]:
    # status reads only the config's name: the sweep it names was never run here.
    return ["status", str(sweep_config(folder, objectivs=[]))]


def _status_on_nameless_config(folder: Path) -> list[str]:
    return ["status", str(sweep_config(folder, name="../../etc"))]


def _worker_with_inverted_int_range(folder: Path) -> list[str]:
    space = {"shaping.min_turns": {"type": "int", "low": 16, "high": 2}}
    return ["worker", str(sweep_config(folder, search_space=space))]


def _missing_config(command: str) -> Build:
    return lambda folder: [command, str(folder / "nope.yaml")]


CASES = [
    # ---- sweep configs: keys, types, ranges, objectives, syntax, overrides
    Case(
        "sweep-unknown-top-level-key",
        _sweep(objectivs=[]),
        ("sweep.yaml", "'objectivs'"),
        "allowed keys here",
    ),
    Case(
        "sweep-unknown-nested-key",
        _sweep(driver={"algoritm": "tpe"}),
        ("'driver.algoritm'",),
        "allowed keys here: algorithm",
    ),
    Case(
        "sweep-unknown-key-in-a-parameter",
        _sweep(
            search_space={"shaping.user_lambda": {"type": "float", "low": 0, "high": 1, "lgo": 1}}
        ),
        ("'search_space.shaping.user_lambda.lgo'",),
        "allowed keys here: high, log, low, step, type",
    ),
    Case(
        "sweep-wrong-type",
        _sweep(driver={"n_trials": "many"}),
        ("'driver.n_trials'", "'many'"),
        "fix the value",
    ),
    Case(
        "sweep-wrong-type-of-section",
        _sweep(objectives={"metric": "eval/score"}),
        ("'objectives'",),
        "fix the value",
    ),
    Case(
        "sweep-empty-search-space",
        _sweep(search_space={}),
        ("'search_space'", "empty"),
        "fix the value",
    ),
    Case(
        "sweep-inverted-range",
        _sweep(search_space={"shaping.user_lambda": {"type": "float", "low": 0.5, "high": 0.1}}),
        ("search_space.shaping.user_lambda", "0.5", "0.1"),
        "fix the value",
    ),
    Case(
        "sweep-log-range-from-zero",
        _sweep(
            search_space={
                "trainer.learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}
            }
        ),
        ("search_space.trainer.learning_rate", "log"),
        "fix the value",
    ),
    Case(
        "worker-inverted-int-range",
        _worker_with_inverted_int_range,
        ("search_space.shaping.min_turns", "16"),
        "fix the value",
    ),
    Case(
        "sweep-unknown-metric-objective",
        _sweep(
            objectives=[
                {"metric": "eval/scroe", "direction": "maximize"},
                {"metric": "eval/user_involvement_rate", "direction": "minimize"},
            ]
        ),
        ("objectives[0].metric", "'eval/scroe'"),
        "eval/score",
    ),
    Case(
        "sweep-duplicate-objective",
        _sweep(
            objectives=[
                {"metric": "eval/score", "direction": "maximize"},
                {"metric": "eval/score", "direction": "minimize"},
            ]
        ),
        ("'eval/score'", "twice"),
        "fix the values",
    ),
    Case("sweep-broken-yaml", _broken_yaml, ("sweep.yaml", "line 4"), "fix the YAML syntax"),
    Case("sweep-missing-config", _missing_config("sweep"), ("nope.yaml",), "check the path"),
    Case(
        "sweep-missing-train-config",
        _sweep_with_missing_train_config,
        ("backend.train_config", "nowhere/sim.yaml"),
        "relative to the sweep config",
    ),
    Case(
        "sweep-unknown-key-in-train-section",
        _sweep(train={"trainer": {"iteratons": 5}}),
        ("train", "'trainer.iteratons'"),
        "allowed keys here",
    ),
    Case(
        "sweep-searched-path-not-in-train-config",
        _sweep(search_space={"shaping.lambda": {"type": "float", "low": 0.0, "high": 0.5}}),
        ("search_space.shaping.lambda",),
        "check the path and range",
    ),
    Case(
        "sweep-set-without-value",
        lambda folder: ["sweep", str(sweep_config(folder)), "--set", "driver.algorithm"],
        ("'driver.algorithm'",),
        "e.g. --set",
    ),
    Case(
        "sweep-set-list-index-out-of-range",
        lambda folder: ["sweep", str(sweep_config(folder)), "--set", "objectives.5.metric=x"],
        ("objectives.5.metric", "'5'"),
        "use an index from 0 to 1",
    ),
    Case(
        "sweep-set-unknown-key",
        lambda folder: ["sweep", str(sweep_config(folder)), "--set", "drivr.algorithm=tpe"],
        ("'drivr'",),
        "allowed keys here",
    ),
    Case(
        "sweep-dry-run-verl-train-config-unknown-key",
        _verl_sweep_with_bad_train_config,
        ("train", "'rollout.temprature'"),
        "allowed keys here",
    ),
    Case(
        "sweep-train-tasks-outside-grammar",
        _sweep_on_bad_task_file,
        ("tasks.json", "record 0", "'rule'", "__import__"),
        "functions are not allowed",
    ),
    Case(
        "sweep-fewer-generated-tasks-than-an-iteration-samples",
        _sweep(train={"tasks": {"n_train": 4}}),
        ("train", "trainer.tasks_per_iteration (16)", "tasks.n_train"),
        "fix the values it names",
    ),
    Case("status-unknown-sweep", _status_on_bad_config, ("no sweep named 'bad'",), "sweep"),
    Case(
        "status-config-with-a-path-for-name",
        _status_on_nameless_config,
        ("sweep.yaml", "key 'name'", "../../etc"),
        "give the sweep's name",
    ),
    Case("select-broken-yaml", _select_on_broken_config, ("sweep.yaml", "line"), "fix the YAML"),
    # ---- training configs (simulator, and verl through --dry-run)
    Case(
        "train-sim-unknown-nested-key",
        _train_sim(shaping={"user_lamda": 0.1}),
        ("sim.yaml", "'shaping.user_lamda'"),
        "allowed keys here",
    ),
    Case(
        "train-sim-wrong-type",
        _train_sim(trainer={"iterations": "ten"}),
        ("'trainer.iterations'", "'ten'"),
        "fix the value",
    ),
    Case(
        "train-sim-wrong-tuple-length",
        _train_sim(policy={"initial_action_probs": [0.5, 0.5]}),
        ("'policy.initial_action_probs'", "too few items", "[0.5, 0.5]"),
        "one value per item",
    ),
    Case(
        "train-sim-tab-indented-yaml",
        _tab_indented_train_yaml,
        ("sim.yaml", "line 3"),
        "fix the YAML syntax",
    ),
    Case(
        "train-sim-top-level-list",
        lambda folder: ["train", str(_write_yaml(folder / "sim.yaml", [1, 2]))],
        ("sim.yaml", "list"),
        "write 'key: value' lines",
    ),
    Case("train-missing-config", _missing_config("train"), ("nope.yaml",), "check the path"),
    Case(
        "train-sim-missing-task-file",
        _train_sim(tasks={"train_path": "/nonexistent/functions.json"}),
        ("sim.yaml", "tasks.train_path", "/nonexistent/functions.json"),
        "check the path",
    ),
    Case(
        "train-sim-fewer-loaded-tasks-than-an-iteration-samples",
        lambda folder: [
            "train",
            str(sim_config(folder, tasks={"train_path": str(tasks_json(folder, record()))})),
        ],
        ("sim.yaml", "tasks.json", "trainer.tasks_per_iteration (16)"),
        "lower trainer.tasks_per_iteration",
    ),
    Case(
        "train-sim-set-into-a-number",
        lambda folder: ["train", str(sim_config(folder)), "--set", "shaping.user_lambda.x=1"],
        ("shaping.user_lambda", "not a section"),
        "override the value itself",
    ),
    Case(
        "train-sim-set-wrong-type",
        lambda folder: ["train", str(sim_config(folder)), "--set", "env.max_turns=[1, 2]"],
        ("'env.max_turns'", "[1, 2]"),
        "fix the value",
    ),
    Case(
        "train-sim-set-out-of-range-names-the-option",
        lambda folder: ["train", str(sim_config(folder)), "--set", "shaping.user_lambda=-0.3"],
        ("--set shaping.user_lambda=-0.3 (on ", "sim.yaml)", "'shaping.user_lambda'", "-0.3"),
        "fix the value",
    ),
    Case(
        "sweep-set-inverted-range-names-the-option",
        lambda folder: [
            "sweep",
            str(sweep_config(folder)),
            *("--set", "search_space.shaping.user_lambda.low=0.9"),
        ],
        ("--set search_space.shaping.user_lambda.low=0.9 (on ", "sweep.yaml)", "swap them"),
        "fix the value",
    ),
    Case(
        "train-verl-unknown-key",
        _train_verl(rollout={"temprature": 0.7}),
        ("verl.yaml", "'rollout.temprature'"),
        "allowed keys here",
    ),
    Case(
        "train-verl-null-model-path",
        _train_verl(model={"path": None}),
        ("'model.path'",),
        "fix the value",
    ),
    Case(
        "train-verl-missing-eval-task-file",
        _train_verl(tasks={"eval_path": "/nonexistent/eval.jsonl"}),
        ("verl.yaml", "tasks.eval_path", "/nonexistent/eval.jsonl"),
        "check the path",
    ),
    Case(
        "train-verl-missing-functions-file",
        lambda folder: [
            "train",
            str(
                verl_config(
                    folder,
                    tasks={
                        "train_path": str(userrl_parquet(folder)),
                        "functions_path": str(folder / "functions_test.json"),
                    },
                )
            ),
            "--dry-run",
        ],
        ("verl.yaml", "tasks.functions_path", "functions_test.json"),
        "check the path",
    ),
    Case(
        "train-verl-truncated-parquet",
        lambda folder: [
            "train",
            str(verl_config(folder, tasks={"train_path": str(_truncated_parquet(folder))})),
            "--dry-run",
        ],
        ("train.parquet",),
        "regenerate the file",
    ),
    # ---- task files: JSON, JSONL, grammar, exponents, non-finite results, parquet
    Case(
        "tasks-json-truncated",
        _baselines(lambda folder: _text(folder / "tasks.json", '[{"id": "t-1", "rule": ')),
        ("tasks.json", "line 1"),
        "fix the JSON syntax",
    ),
    Case(
        "tasks-json-not-a-list",
        _baselines(lambda folder: _text(folder / "tasks.json", '{"id": "t-1"}')),
        ("tasks.json", "dict"),
        "wrap the records in [ ... ]",
    ),
    Case(
        "tasks-jsonl-broken-line",
        _baselines(lambda folder: tasks_jsonl(folder, json.dumps(record()), '{"id": "t-2",')),
        ("tasks.jsonl", "line 2"),
        "one JSON object per line",
    ),
    Case(
        "rule-import-call",
        _baselines(lambda folder: tasks_json(folder, record(rule="__import__('os').getcwd()"))),
        ("tasks.json", "record 0", "'rule'", "__import__"),
        "functions are not allowed",
    ),
    Case(
        "rule-attribute-access",
        _baselines(lambda folder: tasks_json(folder, record(), record("t-2", rule="a.real + b"))),
        ("tasks.json", "record 1", "'t-2'", "'rule'", "a.real", "attribute access"),
        "rules have no attributes or methods",
    ),
    Case(
        "rule-function-call",
        _baselines(lambda folder: tasks_jsonl(folder, json.dumps(record(rule="abs(a) + b")))),
        ("tasks.jsonl", "line 1", "'rule'", "abs"),
        "functions are not allowed",
    ),
    Case(
        "rule-comprehension",
        _baselines(lambda folder: tasks_json(folder, record(rule="[a for a in (b, c)]"))),
        ("record 0", "'rule'"),
        "use only a, b, c, d",
    ),
    Case(
        "rule-lambda",
        _baselines(lambda folder: tasks_json(folder, record(rule="(lambda: a)()"))),
        ("record 0", "'rule'", "lambda"),
        "functions are not allowed",
    ),
    Case(
        "rule-huge-exponent-literal",
        _baselines(lambda folder: tasks_json(folder, record(rule="a ** 99999999999999999999"))),
        ("record 0", "'rule'", "too large"),
        "literals must be at most",
    ),
    Case(
        "rule-exponent-tower",
        _baselines(lambda folder: tasks_json(folder, record(rule="9 ** 9 ** 9 ** 9 ** a"))),
        ("record 0", "'t-1'", "overflow"),
        "choose another test case",
    ),
    Case(
        "rule-exponent-tower-of-100",
        _baselines(lambda folder: tasks_json(folder, record(rule="2 ** " * 100 + "a"))),
        ("record 0", "'t-1'", "overflow"),
        "choose another test case",
    ),
    Case(
        "rule-parentheses-nested-too-deeply",
        _baselines(lambda folder: tasks_json(folder, record(rule="(" * 50 + "a" + ")" * 50))),
        ("record 0", "'rule'", "nested too deeply"),
        "nest at most",
    ),
    Case(
        "rule-too-long",
        _baselines(lambda folder: tasks_json(folder, record(rule="a ** " * 200 + "a"))),
        ("record 0", "'rule'", "too long"),
        "at most 512 characters",
    ),
    Case(
        "test-case-out-of-range",
        _baselines(lambda folder: tasks_jsonl(folder, json.dumps(record(test_case=[0, 2, 3, 11])))),
        ("tasks.jsonl", "line 1", "'test_case'", "[0, 2, 3, 11]"),
        "four integers in 1..10",
    ),
    Case(
        "expected-result-nan",
        _baselines(lambda folder: tasks_json(folder, record(expected_result=math.nan))),
        ("record 0", "'expected_result'", "nan"),
        "finite value",
    ),
    Case(
        "expected-result-infinity-in-jsonl",
        _baselines(
            lambda folder: tasks_jsonl(
                folder,
                '{"id": "t-1", "rule": "a / b", '
                '"test_case": [1, 2, 3, 4], "expected_result": -Infinity}',
            )
        ),
        ("tasks.jsonl", "line 1", "'expected_result'", "inf"),
        "finite value",
    ),
    Case(
        "expected-result-beyond-float-range",
        _baselines(
            lambda folder: _text(
                folder / "tasks.json",
                '[{"id": "t-1", "rule": "a * b", '
                '"test_case": [1, 2, 3, 4], "expected_result": 1e999}]',
            )
        ),
        ("record 0", "'expected_result'"),
        "finite value",
    ),
    Case(
        "parquet-truncated",
        _baselines(_truncated_parquet),
        ("train.parquet", "parquet"),
        "regenerate the file",
    ),
    Case(
        "parquet-garbage-bytes",
        _baselines(_garbage_parquet),
        ("train.parquet", "parquet"),
        "regenerate the file",
    ),
    Case(
        "parquet-missing-id-columns",
        _baselines(_parquet_without_ids),
        ("train.parquet", "row 0", "reward_model.id"),
        "UserRL's verl row format",
    ),
    Case(
        "parquet-functions-file-broken",
        _baselines(_parquet_with_broken_functions),
        ("functions_train.json",),
        "fix the JSON syntax",
    ),
    Case(
        "parquet-without-functions-file",
        _baselines(lambda folder: userrl_rows(folder, [userrl_row()])),
        ("train.parquet", "functions*.json"),
        "pass the functions file",
    ),
    # ---- validation dumps for `import`
    Case(
        "import-missing-dump",
        _import(lambda folder: folder / "dumps" / "3.jsonl"),
        ("3.jsonl",),
        "check the path",
    ),
    Case(
        "import-dump-broken-line",
        _import(lambda folder: dump_file(folder, '{"step": 3, "output": "x"}', '{"step": 3,')),
        ("3.jsonl", "line 2"),
        "repair or delete that line",
    ),
    Case(
        "import-dump-line-not-an-object",
        _import(lambda folder: dump_file(folder, "[1, 2, 3]")),
        ("3.jsonl", "line 1"),
        "one JSON object per line",
    ),
    Case(
        "import-dump-folder-without-files",
        _import(lambda folder: _folder(folder / "dumps")),
        ("dumps", "*.jsonl"),
        "validation_data_dir",
    ),
    Case(
        "import-dump-absent-step",
        _import(lambda folder: dump_file(folder, '{"step": 3, "output": "x"}'), "--step", "7"),
        ("3.jsonl", "step 7"),
        "choose one of the steps present: [3]",
    ),
    Case(
        "import-dump-no-importable-row",
        _import(lambda folder: dump_file(folder, '{"step": 3, "input": "no id here"}')),
        ("3.jsonl", "line 1"),
        "",
    ),
    Case(
        "import-missing-tasks",
        lambda folder: [
            "import",
            str(dump_file(folder, '{"step": 3}')),
            "--tasks",
            str(folder / "tasks.jsonl"),
        ],
        ("tasks.jsonl",),
        "check the path",
    ),
    Case(
        "import-missing-functions-file",
        lambda folder: [
            "import",
            str(dump_file(folder, '{"step": 3}')),
            "--tasks",
            str(userrl_rows(folder, [userrl_row()])),
            "--functions",
            str(folder / "functions_test.json"),
        ],
        ("functions_test.json",),
        "check the path",
    ),
    # ---- reference tables for `front`
    Case(
        "front-missing-reference-table",
        _front_with_missing_table,
        ("table1.csv",),
        "pass the path of the CSV",
    ),
    Case(
        "front-reference-table-lacks-columns",
        _front_with_table_lacking_columns,
        ("table1.csv", "pass_at_u_2"),
        "the header needs",
    ),
    Case(
        "front-reference-rate-in-percent",
        _front_with_rate_out_of_range,
        ("table1.csv", "row 1", "'pass_at_u_1'", "41.03"),
        "0.4103",
    ),
]


# ------------------------------------------------------------------------------------ tests


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``: (size, mtime) by relative path."""
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when written to (capsys swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture
def stderr_logging() -> Iterator[None]:
    """Library log records reach stderr as they do in a console run.

    ``main`` calls ``logging.basicConfig``, which adds nothing where pytest has already put
    its own handlers on the root logger; this handler stands in for the console one, so a
    library warning would show up as a second line here too.
    """
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    yield
    logging.getLogger().removeHandler(handler)


def _check_line(case: Case, command: str, stderr: str) -> None:
    """One line that names what ``case`` names and ends with a fix containing its fix."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.strip(), stderr
    assert line.startswith(f"bao-pareto {command}: error: "), line
    for fragment in case.names:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    what, separator, fix = line.rpartition("; ")
    assert separator, f"no fix in {line!r}"
    assert what.strip(), line
    assert fix.strip(), line
    assert case.fix in fix, f"fix {case.fix!r} not in {fix!r}"


PARAMS = [
    pytest.param(
        case,
        id=case.id,
        marks=[pytest.mark.xfail(reason=case.known_gap, strict=True)] if case.known_gap else [],
    )
    for case in CASES
]


@pytest.mark.parametrize("case", PARAMS)
def test_bad_input_is_one_line_with_the_fix_and_writes_nothing(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stderr_logging: None,
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    workspace = tmp_path / "ws"
    monkeypatch.chdir(tmp_path)  # a default ./bao-runs would show up in the snapshot
    monkeypatch.setenv("BAO_PARETO_HOME", str(workspace))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = case.build(inputs)
    if argv[0] in WORKSPACE_COMMANDS:
        argv += ["--workspace", str(workspace)]
    before = _snapshot(tmp_path)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(argv)
    captured = capsys.readouterr()

    assert status == 2, captured.err
    assert captured.out == ""
    _check_line(case, argv[0], captured.err)
    # Python shows these on stderr in a console run (deprecations only in __main__).
    shown = [
        w
        for w in caught
        if not issubclass(
            w.category,
            DeprecationWarning | PendingDeprecationWarning | ImportWarning | ResourceWarning,
        )
    ]
    assert not shown, [str(w.message) for w in shown]
    assert _snapshot(tmp_path) == before
    assert not workspace.exists()


# ------------------------------------------------------------------ damaged local stores


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A workspace with a finished two-trial simulator sweep ``bad``, and its config."""
    folder = tmp_path_factory.mktemp("swept")
    config = sweep_config(folder)
    assert main(["sweep", str(config), "--workspace", str(folder / "ws"), "--json"]) == 0
    return config, folder / "ws"


STORES = {"mlflow.db": Path("mlflow.db"), "optuna.db": Path("sweeps/bad/optuna.db")}
DAMAGED = [
    ("front", "mlflow.db"),
    ("sweep", "mlflow.db"),
    ("train", "mlflow.db"),
    ("status", "optuna.db"),
    ("front", "optuna.db"),
    ("sweep", "optuna.db"),
]


def _file_contents(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but lock files, with its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith(".lock")
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", DAMAGED, ids=[f"{c}-{s}" for c, s in DAMAGED])
def test_a_damaged_store_is_one_line_naming_the_file_and_nothing_is_rewritten(
    case: tuple[str, str],
    swept: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    stderr_logging: None,
) -> None:
    """A torn or foreign ``mlflow.db`` / ``optuna.db`` (issue: new-user fixes, item 5): one
    line naming the file, no word of a database server, and the manifest, the training
    config and every other file as they were."""
    command, store = case
    config, built = swept
    workspace = tmp_path / "ws"
    shutil.copytree(built, workspace)
    damaged = workspace / STORES[store]
    damaged.write_bytes(b"not a database, a torn copy\n" * 200)
    argv = {
        "front": ["front", "bad"],
        "status": ["status", "bad"],
        "sweep": ["sweep", str(config), "--n-trials", "3"],
        "train": ["train", str(sim_config(tmp_path))],
    }[command]
    before = _file_contents(workspace)
    capsys.readouterr()

    status = main([*argv, "--workspace", str(workspace)])
    captured = capsys.readouterr()

    assert status == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"bao-pareto {command}: error: "), lines[0]
    assert str(damaged) in lines[0]
    assert "not a readable SQLite file" in lines[0]
    assert "server" not in lines[0]
    assert _file_contents(workspace) == before


def test_a_local_storage_that_cannot_be_opened_is_not_blamed_on_a_server(tmp_path: Path) -> None:
    from bao.configuration import ConfigError
    from sweep.storage import open_storage

    folder = tmp_path / "optuna.db"
    folder.mkdir()  # a folder where the SQLite file should be
    with pytest.raises(ConfigError) as raised:
        open_storage(f"sqlite:///{folder}")
    assert str(folder) in str(raised.value)
    assert "server" not in str(raised.value)
    assert "readable and writable" in str(raised.value)


def test_the_table_is_large_and_its_ids_unique() -> None:
    assert len(CASES) >= 24
    assert len({case.id for case in CASES}) == len(CASES)


# One case per package, through a fresh console process: there the root logger has the CLI's
# own handler and Python's default warning filters, so a library that logs or warns on
# stderr (at import or on the bad input) would add a line, which the in-process table can
# only approximate.
CONSOLE_CASES = [
    "sweep-train-tasks-outside-grammar",
    "train-verl-unknown-key",
    "parquet-truncated",
    "front-reference-rate-in-percent",
]


@pytest.mark.parametrize("case_id", CONSOLE_CASES)
def test_the_console_script_prints_the_same_one_line(case_id: str, tmp_path: Path) -> None:
    case = next(case for case in CASES if case.id == case_id)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    workspace = tmp_path / "ws"
    argv = case.build(inputs)
    if argv[0] in WORKSPACE_COMMANDS:
        argv += ["--workspace", str(workspace)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["BAO_PARETO_HOME"] = str(workspace)
    before = _snapshot(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "sweep.cli", *argv],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    _check_line(case, argv[0], done.stderr)
    assert _snapshot(tmp_path) == before
    assert not workspace.exists()
