"""The rule grammar: parsing, formatting, and the two evaluators agreeing bit for bit."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bao.errors import RuleSyntaxError
from bao.expressions import (
    BinOp,
    Const,
    Node,
    RuleEvaluationError,
    Var,
    compile_rules,
    describe_rule,
    evaluate,
    evaluate_many,
    format_rule,
    parse_rule,
    round4,
)
from tests.bao.strategies import points, rules


def scalar_or_error(node: Node, point: list[float]) -> float | None:
    try:
        return evaluate(node, point)
    except RuleEvaluationError:
        return None


def assert_same_float(expected: float, actual: float) -> None:
    if math.isnan(expected):
        assert math.isnan(actual)
    else:
        # Bit-for-bit, including the sign of zero.
        assert actual == expected
        assert math.copysign(1.0, actual) == math.copysign(1.0, expected)


# ------------------------------------------------------------------------------ parse


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a", Var(0)),
        ("a + b * c", BinOp("+", Var(0), BinOp("*", Var(1), Var(2)))),
        ("a - b - c", BinOp("-", BinOp("-", Var(0), Var(1)), Var(2))),
        ("a ** b ** c", BinOp("**", Var(0), BinOp("**", Var(1), Var(2)))),
        ("(d + a) ** 2 * b", BinOp("*", BinOp("**", BinOp("+", Var(3), Var(0)), Const(2)), Var(1))),
        ("  c/(b/d)  ", BinOp("/", Var(2), BinOp("/", Var(1), Var(3)))),
    ],
)
def test_parse_builds_the_python_tree(text: str, tree: Node) -> None:
    assert parse_rule(text) == tree


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty rule"),
        ("a +", "ends after an operator"),
        ("(a + b", "never closed"),
        ("a + b)", "unexpected ')'"),
        ("-a + b", "unary minus"),
        ("a * 0.5", "decimal literal"),
        ("a + e", "unknown name 'e'"),
        ("__import__('os').system('touch /tmp/pwned')", "unknown name '__import__'"),
        ("abs(a)", "unknown name 'abs'"),
        ("a ^ b", "unexpected character '^'"),
        ("a b", "unexpected 'b'"),
        ("a ** 99999999999999999999", "too large"),
        ("(" * 50 + "a" + ")" * 50, "nested too deeply"),
        ("a + " * 200 + "a", "too long"),
    ],
)
def test_parse_rejects_text_outside_the_grammar(text: str, message: str) -> None:
    with pytest.raises(RuleSyntaxError, match=re.escape(message)):
        parse_rule(text)


def test_parse_never_executes_the_text(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    with pytest.raises(RuleSyntaxError):
        parse_rule(f"open({str(marker)!r}, 'w')")
    assert not marker.exists()


@given(rules)
def test_format_parses_back_to_the_same_tree(tree: Node) -> None:
    assert parse_rule(format_rule(tree)) == tree


def test_format_keeps_needed_parentheses_only() -> None:
    assert format_rule(parse_rule("((a - d)) - b - c")) == "a - d - b - c"
    assert format_rule(parse_rule("a - (b - c)")) == "a - (b - c)"
    assert format_rule(parse_rule("(a ** b) ** c")) == "(a ** b) ** c"
    assert format_rule(parse_rule("a ** (b ** c)")) == "a ** b ** c"


# --------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize(
    ("rule", "point", "expected"),
    [
        ("a ** b ** c", [2, 3, 2, 0], 512.0),  # right-associative
        ("a - b - c", [10, 3, 2, 0], 5.0),
        ("(d + a) ** 2 * b + c", [2, 10, 2, 9], 1212.0),
        ("a / b", [1, 3, 0, 0], 1 / 3),
        ("a * b", [1e308, 10, 0, 0], math.inf),  # products overflow to inf silently
        ("a * b - c * d", [1e308, 10, 1e308, 10], math.nan),  # inf - inf
        ("a ** b", [math.inf, 0.5, 0, 0], math.inf),
        ("a ** b", [0.0, -math.inf, 0, 0], math.inf),
        ("a ** b", [-8, 3, 0, 0], -512.0),
        ("a ** b", [math.nan, 0, 0, 0], 1.0),
        ("a ** b", [10, -400, 0, 0], 0.0),  # underflow is not an error
    ],
)
def test_evaluate_follows_python_float_arithmetic(
    rule: str, point: list[float], expected: float
) -> None:
    assert_same_float(expected, evaluate(parse_rule(rule), point))


@pytest.mark.parametrize(
    ("rule", "point", "kind"),
    [
        ("a / b", [1, 0, 0, 0], "zero_division"),
        ("a / b", [math.nan, 0, 0, 0], "zero_division"),
        ("a / (b - c)", [1, 2, 2, 0], "zero_division"),
        ("a ** b", [0, -1, 0, 0], "zero_division"),
        ("a ** (b / c)", [-8, 1, 3, 0], "complex"),
        ("a ** b", [10, 400, 0, 0], "overflow"),
        ("(a ** b) * 0", [10, 400, 0, 0], "overflow"),  # errors anywhere poison the result
    ],
)
def test_evaluate_flags_errors(rule: str, point: list[float], kind: str) -> None:
    with pytest.raises(RuleEvaluationError) as caught:
        evaluate(parse_rule(rule), point)
    assert caught.value.kind == kind


@given(st.lists(rules, min_size=1, max_size=6), st.lists(points, min_size=1, max_size=5))
def test_vectorised_evaluator_equals_scalar_evaluator(
    trees: list[Node], grid: list[list[float]]
) -> None:
    values, errors = evaluate_many(trees, grid)
    assert values.shape == errors.shape == (len(trees), len(grid))
    for i, tree in enumerate(trees):
        for j, point in enumerate(grid):
            expected = scalar_or_error(tree, point)
            assert errors[i, j] == (expected is None), (format_rule(tree), point)
            if expected is None:
                assert math.isnan(values[i, j])
            else:
                assert_same_float(expected, float(values[i, j]))


def test_vectorised_evaluator_accepts_per_rule_points() -> None:
    trees = [parse_rule("a + b"), parse_rule("c * d")]
    grid = np.array([[[1, 2, 3, 4], [5, 6, 7, 8]], [[1, 2, 3, 4], [0, 0, 9, 9]]], dtype=float)
    values, errors = evaluate_many(compile_rules(trees), grid)
    assert values.tolist() == [[3.0, 11.0], [12.0, 81.0]]
    assert not errors.any()
    with pytest.raises(ValueError, match="points must have shape"):
        evaluate_many(trees, np.zeros((3, 2, 4)))


def test_vectorised_evaluator_on_all_userrl_rules(userrl_functions_path: Path) -> None:
    records = json.loads(userrl_functions_path.read_text())
    trees = [parse_rule(r["rule"]) for r in records]
    rng = np.random.default_rng(0)
    grid = np.vstack(
        [
            rng.integers(-10, 11, size=(40, 4)),
            rng.uniform(-10, 10, size=(20, 4)),
            [[0, 0, 0, 0], [1, 1, 1, 1], [-1, 2, -3, 4]],
        ]
    ).astype(float)
    values, errors = evaluate_many(trees, grid)
    for i, tree in enumerate(trees):
        assert evaluate(tree, records[i]["test_case"]) == records[i]["expected_result"]
        for j, point in enumerate(grid.tolist()):
            expected = scalar_or_error(tree, point)
            assert errors[i, j] == (expected is None)
            if expected is not None:
                assert_same_float(expected, float(values[i, j]))


def test_power_equals_python_power_on_integer_operands() -> None:
    # The vectorised power computes integral bases and exponents in integer arithmetic and
    # everything else through Python: both must give Python's ``**`` bit for bit, across the
    # boundary between the two (results near 2**50, exponents near 64, zero and signed bases).
    bases = [*range(-40, 41), 2**25 - 1, 2**25, -(2**25), 10**7, -(10**7), 2**49, 2**50, 1e16]
    exponents = [*range(0, 70), 100, 1e6]
    grid = np.array([(b, e) for b in bases for e in exponents], dtype=float)
    grid = np.vstack([grid, [(-0.0, 3.0), (0.0, 0.0), (-0.0, 0.0), (3.0, 0.5), (-2.0, -2.0)]])
    values, errors = evaluate_many([parse_rule("a ** b")], np.pad(grid, ((0, 0), (0, 2))))
    for (base, exponent), value, error in zip(grid.tolist(), values[0], errors[0], strict=True):
        expected = scalar_or_error(parse_rule("a ** b"), [base, exponent, 0.0, 0.0])
        assert error == (expected is None), (base, exponent)
        if expected is not None:
            assert_same_float(expected, float(value))


# ------------------------------------------------------------------------------ round4

_ties = st.builds(
    lambda k, sign, offset: sign * (k + 0.5) / 1e4 + offset,
    st.integers(0, 10**9),
    st.sampled_from([1.0, -1.0]),
    st.sampled_from([0.0, 1e-17, -1e-17, 5e-13, -5e-13]),
)


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), _ties), max_size=50))
def test_round4_equals_python_round(values: list[float]) -> None:
    rounded = round4(np.array(values, dtype=float))
    for value, result in zip(values, rounded.tolist(), strict=True):
        assert_same_float(round(value, 4), result)


def test_round4_exact_binary_ties_round_half_even() -> None:
    # 1.03125 and 1.03135 * ... : exact binary ties at the 4th decimal.
    values = [1.03125, -1.03125, 2.00005, 0.00015]
    assert round4(np.array(values)).tolist() == [round(v, 4) for v in values]


# ---------------------------------------------------------------------------- describe


def test_describe_rule_counts_operators_depth_and_exponents() -> None:
    shape = describe_rule(parse_rule("(d + a) ** 2 * b + c ** a"))
    assert shape.n_binary_ops == 5
    assert shape.op_counts == {"+": 2, "**": 2, "*": 1}
    assert shape.depth == 4
    assert shape.n_squarings == 1
    assert shape.n_variable_exponents == 1
    assert shape.variables == ("d", "a", "b", "c", "a")
    assert not shape.uses_each_variable_once
