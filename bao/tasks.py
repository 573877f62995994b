"""Function-Gym tasks: the record type, loaders for UserRL files, and a generator.

A task is a hidden rule over ``a, b, c, d``, a test case of four integers in 1..10 and the
rule's value there. Loaders accept UserRL's ``functions_*.json`` (a JSON list), JSON Lines with
the same records, and UserRL's verl parquet rows joined with a functions file by id. Every
record is checked: a rule outside the grammar is rejected by the parser, never executed, and an
``expected_result`` that disagrees with the rule is reported with the file and the record.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from bao.errors import RuleSyntaxError, TaskDataError
from bao.expressions import (
    VARIABLES,
    BinOp,
    Const,
    Node,
    RuleEvaluationError,
    Var,
    describe_rule,
    evaluate,
    format_rule,
    parse_rule,
)

TEST_CASE_RANGE: Final = (1, 10)
# Answers within this distance of the expected result count as correct (UserRL's tolerance).
ANSWER_TOLERANCE: Final = 1e-6


@dataclass(frozen=True)
class FunctionTask:
    """One Function-Gym task.

    Attributes:
        id: unique name, e.g. ``func-486``.
        rule: the hidden expression, e.g. ``(a - d) - b - c``.
        test_case: the values of ``a, b, c, d`` whose result the agent must answer.
        expected_result: the rule at the test case.
    """

    id: str
    rule: str
    test_case: tuple[int, int, int, int]
    expected_result: float
    # Parsed lazily and cached; not part of equality or the JSON form.
    _expression: Node | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Accept lists and integral floats from callers, reject anything else, and store the
        # canonical immutable form.
        test_case = _validate_test_case(self.test_case, f"task {self.id!r}")
        object.__setattr__(self, "test_case", test_case)
        object.__setattr__(self, "expected_result", float(self.expected_result))

    @cached_property
    def expression(self) -> Node:
        """The parsed rule."""
        return self._expression if self._expression is not None else parse_rule(self.rule)

    def to_dict(self) -> dict[str, Any]:
        """The UserRL record form (JSON-serialisable)."""
        return {
            "id": self.id,
            "rule": self.rule,
            "test_case": list(self.test_case),
            "expected_result": self.expected_result,
        }


def task_set_hash(tasks: Iterable[FunctionTask]) -> str:
    """A short hash of a task set, independent of its order: what an evaluation ran on.

    Deployment manifests carry it, so two variants are only compared on the same tasks.
    """
    import hashlib

    records = sorted(json.dumps(task.to_dict(), sort_keys=True) for task in tasks)
    return hashlib.sha256("\n".join(records).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- loading


def load_function_tasks(
    path: str | Path, functions_path: str | Path | None = None
) -> list[FunctionTask]:
    """Loads tasks from a UserRL functions JSON, a JSONL file, or a UserRL parquet file.

    Args:
        path: ``*.json`` (a list of ``{id, rule, test_case, expected_result}``), ``*.jsonl``
            (one such record per line) or ``*.parquet`` (UserRL/verl prompt rows).
        functions_path: for a parquet file, the functions JSON its rows refer to by id. When
            omitted, the single ``functions*.json`` beside the parquet file is used.

    Raises:
        TaskDataError: naming the file, the record and the field, for any malformed input.
    """
    source = Path(path)
    if not source.is_file():
        raise TaskDataError(
            f"task file {str(source)!r} does not exist", fix="check the path (relative to the cwd)"
        )
    suffix = source.suffix.lower()
    if suffix == ".json":
        return _validate_all(source, _read_json_records(source))
    if suffix == ".jsonl":
        return _validate_all(source, read_jsonl_records(source))
    if suffix == ".parquet":
        return _load_parquet(source, functions_path)
    raise TaskDataError(
        f"task file {str(source)!r} has an unknown format",
        value=source.suffix,
        fix="use a .json list, a .jsonl file or a UserRL .parquet file",
    )


def read_json(source: Path) -> Any:
    """A JSON file's content; bad syntax or encoding is a :class:`TaskDataError` with the
    line and column."""
    try:
        return json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TaskDataError(
            f"{source}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
            fix="fix the JSON syntax",
        ) from None
    except UnicodeDecodeError:
        raise TaskDataError(f"{source}: not UTF-8 text", fix="save the file as UTF-8") from None


def _read_json_records(source: Path) -> list[tuple[str, Any]]:
    data = read_json(source)
    if not isinstance(data, list):
        raise TaskDataError(
            f"{source}: expected a JSON list of task records, found {type(data).__name__}",
            fix="wrap the records in [ ... ] (UserRL's functions_*.json format)",
        )
    return [(f"record {index}", record) for index, record in enumerate(data)]


def read_jsonl_records(source: Path) -> list[tuple[str, Any]]:
    """``("line N", record)`` for every non-blank line of a JSON Lines file."""
    records: list[tuple[str, Any]] = []
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise TaskDataError(f"{source}: not UTF-8 text", fix="save the file as UTF-8") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise TaskDataError(
                f"{source}: line {number} is not valid JSON: {error.msg}",
                fix="write one JSON object per line",
            ) from None
    return records


def _validate_all(source: Path, records: Sequence[tuple[str, Any]]) -> list[FunctionTask]:
    if not records:
        raise TaskDataError(f"{source}: contains no task records", fix="add at least one task")
    tasks: list[FunctionTask] = []
    seen: dict[str, str] = {}
    for where, record in records:
        task = task_from_record(record, where=f"{source}: {where}")
        if task.id in seen:
            raise TaskDataError(
                f"{source}: {where}: duplicate id {task.id!r} (first at {seen[task.id]})",
                fix="give every task a unique id",
            )
        seen[task.id] = where
        tasks.append(task)
    return tasks


def task_from_record(record: object, *, where: str = "record") -> FunctionTask:
    """Validates one ``{id, rule, test_case, expected_result}`` mapping into a task.

    ``where`` prefixes every error message (e.g. ``"tasks.json: record 3"``).
    """
    if not isinstance(record, Mapping):
        raise TaskDataError(
            f"{where}: expected an object with id, rule, test_case, expected_result",
            value=record,
            fix="write each task as a JSON object",
        )
    missing = [key for key in ("id", "rule", "test_case", "expected_result") if key not in record]
    if missing:
        raise TaskDataError(
            f"{where}: missing field(s) {', '.join(missing)}",
            fix="every task needs id, rule, test_case and expected_result",
        )
    task_id = record["id"]
    if isinstance(task_id, bool) or not isinstance(task_id, str | int) or str(task_id) == "":
        raise TaskDataError(
            f"{where}: field 'id' must be a non-empty string", value=task_id, fix="e.g. 'func-1'"
        )
    label = f"{where} (id {str(task_id)!r})"
    rule = record["rule"]
    try:
        expression = parse_rule(rule)
    except RuleSyntaxError as error:
        raise TaskDataError(f"{label}: field 'rule': {error}") from None
    test_case = _validate_test_case(record["test_case"], label)
    expected = record["expected_result"]
    if isinstance(expected, bool) or not isinstance(expected, int | float):
        raise TaskDataError(
            f"{label}: field 'expected_result' must be a number", value=expected, fix="e.g. 12.0"
        )
    try:
        expected = float(expected)
    except OverflowError:  # a JSON integer beyond the float range
        expected = math.inf
    if not math.isfinite(expected):
        raise TaskDataError(
            f"{label}: field 'expected_result' is not finite",
            value=expected,
            fix="choose a test case where the rule has a finite value",
        )
    try:
        actual = evaluate(expression, test_case)
    except RuleEvaluationError as error:
        raise TaskDataError(
            f"{label}: the rule has no value at the test case {list(test_case)} ({error.kind})",
            fix="choose another test case",
        ) from None
    # The environment grades answers against expected_result with an absolute tolerance, so
    # the file's value must be that close to the rule's, or the exact answer would be "wrong".
    if not math.isfinite(actual) or abs(actual - expected) > ANSWER_TOLERANCE:
        raise TaskDataError(
            f"{label}: field 'expected_result' is {expected!r} but the rule gives {actual!r} "
            f"at {list(test_case)}",
            fix="recompute expected_result from the rule",
        )
    return FunctionTask(
        id=str(task_id),
        rule=rule,
        test_case=test_case,
        expected_result=expected,
        _expression=expression,
    )


def _validate_test_case(value: object, label: str) -> tuple[int, int, int, int]:
    low, high = TEST_CASE_RANGE
    fix = f"use four integers in {low}..{high}, e.g. [3, 1, 4, 1]"
    if not isinstance(value, list | tuple) or len(value) != len(VARIABLES):
        raise TaskDataError(f"{label}: field 'test_case' must be a list of 4", value=value, fix=fix)
    numbers: list[int] = []
    for item in value:
        is_integral_float = isinstance(item, float) and item.is_integer()
        if isinstance(item, bool) or not (isinstance(item, int) or is_integral_float):
            raise TaskDataError(
                f"{label}: field 'test_case' holds a non-integer", value=value, fix=fix
            )
        number = int(item)
        if not low <= number <= high:
            raise TaskDataError(
                f"{label}: field 'test_case' is outside {low}..{high}", value=value, fix=fix
            )
        numbers.append(number)
    return (numbers[0], numbers[1], numbers[2], numbers[3])


def _load_parquet(source: Path, functions_path: str | Path | None) -> list[FunctionTask]:
    if functions_path is None:
        candidates = sorted(source.parent.glob("functions*.json"))
        if len(candidates) != 1:
            raise TaskDataError(
                f"{source}: parquet rows name tasks by id; found {len(candidates)} "
                f"functions*.json files beside it",
                fix="pass the functions file explicitly (functions_path=...)",
            )
        functions_path = candidates[0]
    functions = {task.id: task for task in load_function_tasks(functions_path)}
    rows = read_parquet_rows(source)
    tasks: list[FunctionTask] = []
    for index, row in enumerate(rows):
        where = f"{source}: row {index}"
        task_id = parquet_task_id(row)
        if task_id is None:
            raise TaskDataError(
                f"{where}: no task id in reward_model.id or extra_info.tools_kwargs",
                fix="use UserRL's verl row format",
            )
        if task_id not in functions:
            raise TaskDataError(
                f"{where}: task id {task_id!r} is not in {functions_path}",
                fix="pass the functions file this parquet was made from",
            )
        task = functions[task_id]
        reward_model = row.get("reward_model")
        truth = reward_model.get("ground_truth") if isinstance(reward_model, Mapping) else None
        if truth is not None and not _same_number(truth, task.expected_result):
            raise TaskDataError(
                f"{where}: ground_truth {truth!r} disagrees with {task_id!r}'s expected_result "
                f"{task.expected_result!r} in {functions_path}",
                fix="pass the functions file this parquet was made from",
            )
        tasks.append(task)
    return tasks


def read_parquet_rows(source: Path) -> list[dict[str, Any]]:
    """The rows of a verl/UserRL parquet file; unreadable or empty is a :class:`TaskDataError`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows: list[dict[str, Any]] = pq.read_table(source).to_pylist()
    except (pa.ArrowException, OSError) as error:
        raise TaskDataError(
            f"{source}: cannot be read as parquet: {error}", fix="regenerate the file"
        ) from None
    if not rows:
        raise TaskDataError(f"{source}: contains no rows", fix="add at least one task row")
    return rows


def parquet_task_id(row: Mapping[str, Any]) -> str | None:
    """The task id a UserRL/verl row names: ``reward_model.id``, else the tool's
    ``extra_info.tools_kwargs.interact_with_env.create_kwargs.id``; None when it names none."""
    reward_model = row.get("reward_model")
    if isinstance(reward_model, Mapping) and reward_model.get("id") not in (None, ""):
        return str(reward_model["id"])
    try:
        return str(row["extra_info"]["tools_kwargs"]["interact_with_env"]["create_kwargs"]["id"])
    except (KeyError, TypeError):
        return None


def _same_number(text: object, number: float) -> bool:
    try:
        return abs(float(str(text)) - number) <= ANSWER_TOLERANCE
    except ValueError:
        return False


def load_task_splits(
    *,
    train_path: str | Path | None,
    eval_path: str | Path | None,
    n_train: int,
    n_eval: int,
    generator_seed: int,
    functions_path: str | Path | None = None,
) -> tuple[list[FunctionTask], list[FunctionTask]]:
    """Training and held-out tasks, loaded from files or generated.

    Generated held-out tasks come from ``generator_seed + 1`` and never repeat a training
    rule, so a policy cannot pass evaluation by remembering training rules. ``functions_path``
    is what parquet files name their tasks in (see :func:`load_function_tasks`).
    """
    if train_path is not None:
        train_tasks = load_function_tasks(train_path, functions_path)
    else:
        train_tasks = generate_function_tasks(n_train, generator_seed)
    if eval_path is not None:
        return train_tasks, load_function_tasks(eval_path, functions_path)
    seen = {task.rule for task in train_tasks}
    candidates = generate_function_tasks(2 * n_eval + 50, generator_seed + 1)
    return train_tasks, [task for task in candidates if task.rule not in seen][:n_eval]


def save_function_tasks(tasks: Iterable[FunctionTask], path: str | Path) -> None:
    """Writes tasks as JSON Lines (readable by :func:`load_function_tasks`)."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for task in tasks:
            handle.write(json.dumps(task.to_dict()) + "\n")


# ------------------------------------------------------------------------- generation

# Drawn to match the 460 UserRL training rules (docs/tasks.md has the comparison):
# how many squarings ("** 2") a rule has, which in turn sets its operator count (3 + squarings),
OPERATOR_WEIGHTS: Final = {"*": 0.30, "+": 0.275, "-": 0.245, "/": 0.10, "**": 0.08}
SQUARING_COUNT_WEIGHTS: Final = {0: 0.66, 1: 0.276, 2: 0.064}
# the share of squarings applied to a parenthesised sub-expression instead of a variable,
SUBEXPRESSION_SQUARING_SHARE: Final = 0.16
# and the share of balanced ((x . x) . (x . x)) trees among the five tree shapes.
BALANCED_TREE_SHARE: Final = 0.27
# UserRL's expected results are whole numbers of moderate size; the generator keeps that.
MAX_ABS_RESULT: Final = 5000.0
_MAX_TEST_CASE_DRAWS: Final = 60


def generate_function_tasks(
    n: int, seed: int, *, require_integer_result: bool = True
) -> list[FunctionTask]:
    """Draws ``n`` tasks from the UserRL rule grammar, reproducibly from ``seed``.

    Each rule uses a, b, c, d exactly once, joined by 3 binary operators from + - * / ** (a
    ``**`` between variables is a variable exponent, chains are right-associative), plus 0-2
    squarings ``(...) ** 2`` of a variable or a sub-expression, hence 3 to 5 operators. The
    test case is four integers in 1..10, redrawn until the result is finite and, as in
    UserRL's data, a whole number of magnitude at most 5000 (``require_integer_result=False``
    drops the whole-number condition).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TaskDataError("n must be a non-negative integer", value=n, fix="e.g. n=100")
    rng = random.Random(seed)
    tasks: list[FunctionTask] = []
    while len(tasks) < n:
        expression = random_rule(rng)
        found = _random_test_case(expression, rng, require_integer_result)
        if found is None:
            continue  # this rule rarely has an acceptable value; draw another
        test_case, value = found
        tasks.append(
            FunctionTask(
                id=f"gen-{seed}-{len(tasks)}",
                rule=format_rule(expression),
                test_case=test_case,
                expected_result=value,
                _expression=expression,
            )
        )
    return tasks


def _weighted(rng: random.Random, weights: Mapping[Any, float]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _random_tree(leaves: list[Node], rng: random.Random, balanced: bool) -> Node:
    if len(leaves) == 1:
        return leaves[0]
    if len(leaves) == 4:
        split = 2 if balanced else rng.choice((1, 3))
    else:
        split = rng.randint(1, len(leaves) - 1)
    left = _random_tree(leaves[:split], rng, balanced)
    right = _random_tree(leaves[split:], rng, balanced)
    op = _weighted(rng, OPERATOR_WEIGHTS)
    # A variable exponent is a power of a lone variable by a variable (or by such a chain),
    # as in UserRL's "b ** a" and "c ** d ** a"; elsewhere ** is redrawn among the others.
    while op == "**" and not (isinstance(left, Var) and _is_power_chain(right)):
        op = _weighted(rng, OPERATOR_WEIGHTS)
    return BinOp(op, left, right)


def _is_power_chain(node: Node) -> bool:
    if isinstance(node, Var):
        return True
    return isinstance(node, BinOp) and node.op == "**" and _is_power_chain(node.right)


def random_rule(rng: random.Random) -> Node:
    """One rule from the generator's grammar (see :func:`generate_function_tasks`)."""
    leaves: list[Node] = [Var(index) for index in rng.sample(range(len(VARIABLES)), 4)]
    tree = _random_tree(leaves, rng, rng.random() < BALANCED_TREE_SHARE)
    for _ in range(_weighted(rng, SQUARING_COUNT_WEIGHTS)):
        tree = _square_somewhere(tree, rng)
    return tree


def _square_somewhere(tree: Node, rng: random.Random) -> Node:
    """Wraps one variable or non-root sub-expression of ``tree`` in ``(...) ** 2``."""
    targets = _squarable(tree, is_root=True, in_power=False)
    subexpressions = [path for path, node in targets if isinstance(node, BinOp)]
    variables = [path for path, node in targets if isinstance(node, Var)]
    pool = (
        subexpressions
        if subexpressions and rng.random() < SUBEXPRESSION_SQUARING_SHARE
        else variables or subexpressions
    )
    if not pool:
        return tree
    # UserRL squares deep operands more often than shallow ones (a deepest leaf in 65% of
    # one-squaring rules), so targets are weighted by 2 ** depth.
    target = rng.choices(pool, weights=[2.0 ** len(path) for path in pool])[0]
    return _replace(tree, target, lambda node: BinOp("**", node, Const(2)))


def _squarable(
    node: Node, *, is_root: bool, in_power: bool, path: tuple[int, ...] = ()
) -> list[tuple[tuple[int, ...], Node]]:
    # Squaring inside a power (base or exponent) or squaring a square would leave the shapes
    # UserRL's rules have; the root is never squared as a whole either.
    if isinstance(node, Const):
        return []
    if isinstance(node, Var):
        return [] if in_power else [(path, node)]
    inside = in_power or node.op == "**"
    found: list[tuple[tuple[int, ...], Node]] = []
    if not (is_root or in_power or node.op == "**"):
        found.append((path, node))
    found += _squarable(node.left, is_root=False, in_power=inside, path=(*path, 0))
    found += _squarable(node.right, is_root=False, in_power=inside, path=(*path, 1))
    return found


def _replace(node: Node, path: tuple[int, ...], change: Any) -> Node:
    if not path:
        return change(node)  # type: ignore[no-any-return]
    assert isinstance(node, BinOp)  # paths come from _squarable, which only descends BinOps
    if path[0] == 0:
        return BinOp(node.op, _replace(node.left, path[1:], change), node.right)
    return BinOp(node.op, node.left, _replace(node.right, path[1:], change))


def _random_test_case(
    expression: Node, rng: random.Random, require_integer_result: bool
) -> tuple[tuple[int, int, int, int], float] | None:
    low, high = TEST_CASE_RANGE
    for _ in range(_MAX_TEST_CASE_DRAWS):
        point = (
            rng.randint(low, high),
            rng.randint(low, high),
            rng.randint(low, high),
            rng.randint(low, high),
        )
        try:
            value = evaluate(expression, point)
        except RuleEvaluationError:
            continue
        if not math.isfinite(value) or abs(value) > MAX_ABS_RESULT:
            continue
        if require_integer_result and not value.is_integer():
            continue
        return point, value
    return None


# ----------------------------------------------------------------------- description


def task_distribution(tasks: Sequence[FunctionTask]) -> dict[str, float]:
    """Summary statistics of a task set's rules, to compare generated and UserRL tasks.

    Shares are over rules unless named ``op_share_*`` (over all binary operators).
    """
    if not tasks:
        raise TaskDataError("no tasks to describe", fix="pass at least one task")
    shapes = [describe_rule(task.expression) for task in tasks]
    n = len(shapes)
    ops: Counter[str] = Counter()
    for shape in shapes:
        ops.update(shape.op_counts)
    total_ops = sum(ops.values())
    summary: dict[str, float] = {"n_rules": float(n)}
    for count in (3, 4, 5):
        summary[f"share_{count}_ops"] = sum(s.n_binary_ops == count for s in shapes) / n
    summary["share_other_op_counts"] = sum(s.n_binary_ops not in (3, 4, 5) for s in shapes) / n
    for depth in (2, 3, 4):
        summary[f"share_depth_{depth}"] = sum(s.depth == depth for s in shapes) / n
    summary["share_depth_5_plus"] = sum(s.depth >= 5 for s in shapes) / n
    summary["mean_depth"] = sum(s.depth for s in shapes) / n
    for op in ("+", "-", "*", "/", "**"):
        summary[f"op_share_{op}"] = ops[op] / total_ops
    summary["share_with_squaring"] = sum(s.n_squarings > 0 for s in shapes) / n
    summary["share_with_variable_exponent"] = sum(s.n_variable_exponents > 0 for s in shapes) / n
    summary["share_each_variable_once"] = sum(s.uses_each_variable_once for s in shapes) / n
    summary["share_integer_result"] = sum(t.expected_result.is_integer() for t in tasks) / n
    summary["median_abs_result"] = sorted(abs(t.expected_result) for t in tasks)[n // 2]
    return summary
