"""Hostile rule text: the parser answers with a tree or a RuleSyntaxError and nothing else,
runs no code (no eval/exec/compile/import), reads only what Python reads, and every rule it
accepts evaluates in bounded time with both evaluators agreeing.

tests/bao/test_expressions.py covers the grammar on well-formed rules and the evaluators on
small trees; these tests cover what an attacker or a corrupted task file could send.
"""

from __future__ import annotations

import builtins
import math
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bao.errors import RuleSyntaxError
from bao.expressions import (
    MAX_LITERAL,
    MAX_NESTING,
    MAX_RULE_LENGTH,
    BinOp,
    Const,
    Node,
    Var,
    compile_rules,
    describe_rule,
    evaluate,
    evaluate_many,
    format_rule,
    parse_rule,
)
from benchmarks import fuzz_expressions as harness
from benchmarks.fuzz_expressions import CodeExecuted, no_code_execution, python_tree
from tests.bao.strategies import coordinates, points
from tests.bao.test_expressions import assert_same_float, scalar_or_error

HANG_GUARD_S: Final = 10.0
"""A hang guard, not a performance target: the slowest maximal rule takes milliseconds."""

# ------------------------------------------------------------------------- the guards


class Hang(BaseException):
    """Raised into a block that ran past the guard. A BaseException, so that an
    ``except Exception`` in the code under test cannot swallow it."""


@contextmanager
def hang_guard(seconds: float = HANG_GUARD_S) -> Iterator[None]:
    """Fails the block that runs longer than ``seconds`` instead of hanging the suite.

    SIGALRM interrupts pure-Python loops and numpy between calls; it exists only in the
    main thread (where pytest and its xdist workers run tests), elsewhere this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _warm_up() -> None:
    """Runs every path once, so lazy imports inside numpy happen before the guards arm."""
    trees = [parse_rule(r) for r in ("a + b - c * d / a", "a ** b", "(a - b) ** (c / d)")]
    for point in ([1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.0, 0.0], [-8.0, 0.5, 1e308, math.nan]):
        for tree in trees:
            scalar_or_error(tree, point)
        evaluate_many(trees, [point, point])
    for bad in ("", "a +", "(a", "a)", "-a", "0.5", "e", "$", "9" * 30, "(" * 50):
        with pytest.raises(RuleSyntaxError):
            parse_rule(bad)


_warm_up()
harness.load()  # the harness's python_tree builds trees of the module it loads


def spin_forever() -> None:
    while True:
        pass


def test_the_guards_catch_what_they_are_for() -> None:
    """The guards themselves can fail: a call of each builtin and a slow loop are caught."""
    for name in ("eval", "exec", "compile"):
        with (
            pytest.raises(AssertionError, match=name),
            no_code_execution(),
            pytest.raises(CodeExecuted),
        ):
            getattr(builtins, name)("1")
    bound_early = eval  # an alias taken before the patch: only the audit hook sees it
    with pytest.raises(AssertionError, match="compile"), no_code_execution():
        bound_early("1 + 1")
    with (
        pytest.raises(AssertionError, match="__import__"),
        no_code_execution(),
        pytest.raises(CodeExecuted),
    ):
        import json  # noqa: F401
    with pytest.raises(Hang), hang_guard(0.05):
        spin_forever()


# ------------------------------------------------------------------------ the inputs

HOSTILE_TOKENS: Final = (
    *("__import__", "os", "system", "open", "eval", "lambda", "for", "in", "if", "not"),
    *(".", "(", ")", "[", "]", "{", "}", ":", ",", ";", "=", "@", "!", "~", "^", "%", "&", "|"),
    *("'", '"', "`", "\\", "#", "$", "<", ">", "?"),
    *("+", "-", "*", "/", "**", "//", "***", "a", "b", "c", "d", "e", "A", "_", "__"),
    *("0", "1", "7", "00", "007", "9" * 16, "9" * 17, str(MAX_LITERAL), str(MAX_LITERAL + 1)),
    *("9" * 300, "1e5", "1_000", "0x1f", "0b1", "1j", "0.5", ".5", "5.", "inf", "nan", "True"),
    # Digits and spaces that are not ASCII: Python's tokenizer rejects them all.
    *("\u0663", "\uff11", "\U0001d7d9", "\u00b2", "\u2167", "\u00a0", "\u2003", "\u3000"),
    *(" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x00", "\x1c", "\ud800", "\u202e", "\ufeff"),
)

hostile_texts = st.one_of(
    st.text(max_size=MAX_RULE_LENGTH + 20),
    st.text(alphabet=st.characters(codec="ascii"), max_size=80),
    st.lists(st.sampled_from(HOSTILE_TOKENS), max_size=40).map("".join),
    st.lists(st.sampled_from(HOSTILE_TOKENS), max_size=40).map(" ".join),
    st.integers(1, MAX_RULE_LENGTH + 200).map(lambda n: "9" * n),
    st.integers(1, 30).map(lambda n: "9" * n + " ** " + "9" * n),
    st.sampled_from(
        [
            "__import__('os').system('touch PWNED')",
            "(lambda: 1)()",
            "[x for x in ().__class__.__base__.__subclasses__()]",
            "a.__class__",
            "a[0]",
            "a if b else c",
            "a, b",
            "f'{a}'",
            "a**-b",
            "a // b",
            "not a",
            "a == b",
        ]
    ),
)


@st.composite
def mutated_rules(draw: st.DrawFn) -> str:
    """A well-formed rule with one character inserted, deleted or replaced: the texts
    closest to the grammar's edges."""
    text = format_rule(draw(_big_trees))
    position = draw(st.integers(0, len(text)))
    character: str = draw(st.sampled_from([*"()+-*/ abcd0123456789.,e_", *HOSTILE_TOKENS[:8]]))
    action = draw(st.sampled_from(["insert", "delete", "replace"]))
    if action == "insert":
        return text[:position] + character + text[position:]
    if action == "delete":
        return text[:position] + text[position + 1 :]
    return text[:position] + character + text[position + 1 :]


_big_leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Var, st.integers(0, 3)),
    st.builds(Const, st.one_of(st.integers(0, 12), st.integers(0, MAX_LITERAL))),
)
_big_trees: st.SearchStrategy[Node] = st.recursive(
    _big_leaves,
    lambda children: st.builds(
        BinOp, st.sampled_from(["+", "-", "*", "/", "**", "**", "**"]), children, children
    ),
    max_leaves=60,
)

# Every coordinate of tests/bao/strategies.py plus the largest and smallest doubles.
extreme_points = st.lists(
    st.one_of(coordinates, st.sampled_from([sys.float_info.max, -sys.float_info.max, 5e-324])),
    min_size=4,
    max_size=4,
)

# -------------------------------------------------------------- what Python reads


def check_rule_text(text: str) -> Node | None:
    """The invariants for any text: parsed with no code run and within the hang guard,
    the result is a tree or a one-line RuleSyntaxError; a tree is what Python reads too,
    and formats back to itself."""
    with hang_guard(), no_code_execution():
        try:
            tree = parse_rule(text)
        except RuleSyntaxError as error:
            message = str(error)
            tree = None
    if tree is None:
        assert "\n" not in message, message
        assert message.startswith("rule"), message
        return None
    assert isinstance(tree, Var | Const | BinOp)
    formatted = format_rule(tree)
    # format_rule spaces its operators, so a compact rule near the length limit formats to
    # more than MAX_RULE_LENGTH characters ("a**" * 170 + "a": 511 -> 851); those only
    # round-trip below the limit.
    if len(formatted) <= MAX_RULE_LENGTH:
        assert parse_rule(formatted) == tree
    # Python must read the same text (ASCII digits and spaces only, the same precedence and
    # associativity): otherwise a task file means one thing to UserRL and another here.
    expected = python_tree(text)
    assert expected is None or expected == tree, (text, expected, tree)
    return tree


def check_evaluators_agree(tree: Node, grid: list[list[float]]) -> None:
    """Both evaluators run with no code executed and within the hang guard, and agree bit for
    bit (errors included) at every point."""
    with hang_guard(), no_code_execution():
        expected = [scalar_or_error(tree, point) for point in grid]
        values, errors = evaluate_many(compile_rules([tree]), grid)
        describe_rule(tree)
    for j, value in enumerate(expected):
        assert bool(errors[0, j]) == (value is None), (format_rule(tree), grid[j])
        if value is None:
            assert math.isnan(values[0, j])
        else:
            assert_same_float(value, float(values[0, j]))


# ----------------------------------------------------------------------------- tests


@given(hostile_texts)
def test_hostile_text_yields_a_tree_or_a_rule_syntax_error(text: str) -> None:
    check_rule_text(text)


@given(mutated_rules(), st.lists(extreme_points, min_size=1, max_size=3))
def test_rules_at_the_edge_of_the_grammar(text: str, grid: list[list[float]]) -> None:
    tree = check_rule_text(text)
    if tree is not None:
        check_evaluators_agree(tree, grid)


@pytest.mark.parametrize(
    "text",
    [
        "\u0663 + 1",  # ARABIC-INDIC DIGIT THREE: a digit to Unicode, not to Python
        "\uff11",  # FULLWIDTH DIGIT ONE
        "\U0001d7d9 * a",  # MATHEMATICAL DOUBLE-STRUCK DIGIT ONE
        "a +\u00a0b",  # NO-BREAK SPACE
        "a\u2003*\u3000b",
        "a\x1c+ b",  # a "white space" to str.split, not to Python
    ],
)
def test_only_ascii_digits_and_spaces_are_read(text: str) -> None:
    with pytest.raises(RuleSyntaxError, match="unexpected character"):
        parse_rule(text)


TOWER = " ** ".join(["9"] * ((MAX_RULE_LENGTH + 4) // 5))
LONGEST_TOWER = "**".join(["9"] * ((MAX_RULE_LENGTH + 2) // 3))
LITERAL_TOWER = "**".join([str(MAX_LITERAL)] * ((MAX_RULE_LENGTH + 2) // 19))
NESTED = "(" * MAX_NESTING + "a ** b ** c ** d" + ")" * MAX_NESTING
NESTED_MIXED = "".join(f"(a{op}" for op in "+-*/" * (MAX_NESTING // 4)) + "b" + ")" * MAX_NESTING
LONGEST_SUM = "-".join(["a"] * ((MAX_RULE_LENGTH + 1) // 2))
HUGE_POINTS = [
    [9.0, 9.0, 9.0, 9.0],
    [1e308, 1e308, 1e308, 1e308],
    [sys.float_info.max, 2.0, 0.5, -3.0],
    [-1e308, 0.5, 3.0, 7.0],
    [1.0000001, 1e300, 1e300, 1e300],
    [0.0, -1e300, 2.0, 0.5],
    [-0.0, -1.0, math.inf, -math.inf],
    [math.nan, math.nan, 0.0, 0.0],
    [5e-324, -5e-324, 1e-300, -1e-300],
]


@pytest.mark.parametrize(
    "text",
    [
        "9**9**9**9",
        "9**9**9**9**9**9**9**9**9**9",
        "a**b**c**d",
        "(a**b)**(c**d)**(a**b)",
        f"{MAX_LITERAL} ** {MAX_LITERAL} ** {MAX_LITERAL}",
        f"a ** {MAX_LITERAL} * b ** {MAX_LITERAL} / c ** {MAX_LITERAL}",
        TOWER[:MAX_RULE_LENGTH].rstrip(" *"),
        LONGEST_TOWER[:MAX_RULE_LENGTH].rstrip("*"),
        LITERAL_TOWER[:MAX_RULE_LENGTH].rstrip("*"),
        "a**" * ((MAX_RULE_LENGTH - 1) // 3) + "a",
        LONGEST_SUM[:MAX_RULE_LENGTH].rstrip("-"),
        NESTED,
        NESTED_MIXED,
    ],
    ids=lambda text: f"{text[:24]}...({len(text)})",
)
def test_towers_huge_literals_and_deep_rules_evaluate_in_bounded_time(text: str) -> None:
    assert len(text) <= MAX_RULE_LENGTH
    tree = check_rule_text(text)
    assert tree is not None
    check_evaluators_agree(tree, HUGE_POINTS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9" * MAX_RULE_LENGTH, "too large"),
        (str(MAX_LITERAL + 1), "too large"),
        ("9" * 5000, "too long"),  # past int()'s 4300-digit limit: refused before int() runs
        ("a**" * (MAX_RULE_LENGTH // 3 + 1) + "a", "too long"),
        ("(" * (MAX_NESTING + 1) + "a" + ")" * (MAX_NESTING + 1), "nested too deeply"),
        ("(" * 200, "nested too deeply"),
        ("9 ** " * (MAX_RULE_LENGTH // 5 + 1) + "9", "too long"),
    ],
)
def test_oversized_rules_are_refused_quickly(text: str, message: str) -> None:
    with hang_guard(), no_code_execution(), pytest.raises(RuleSyntaxError, match=message):
        parse_rule(text)


@given(_big_trees, st.lists(extreme_points, min_size=1, max_size=4))
def test_large_rules_are_refused_or_agree_between_evaluators(
    tree: Node, grid: list[list[float]]
) -> None:
    text = format_rule(tree)
    if len(text) > MAX_RULE_LENGTH:
        assert check_rule_text(text) is None
        with pytest.raises(RuleSyntaxError, match="too long"):
            parse_rule(text)
        return
    assert check_rule_text(text) == tree
    check_evaluators_agree(tree, grid)


@given(st.lists(_big_trees, min_size=1, max_size=5), st.lists(points, min_size=1, max_size=4))
def test_many_large_rules_at_once_match_one_at_a_time(
    trees: list[Node], grid: list[list[float]]
) -> None:
    # Rules of different lengths share one padded program; the padding must not leak.
    with hang_guard(), no_code_execution():
        together, errors = evaluate_many(trees, grid)
    for i, tree in enumerate(trees):
        alone, alone_errors = evaluate_many([tree], np.asarray(grid))
        assert (errors[i] == alone_errors[0]).all()
        np.testing.assert_array_equal(together[i], alone[0])


def test_evaluate_on_a_maximal_rule_does_not_exhaust_the_stack() -> None:
    # The deepest tree the length limit allows, evaluated with little stack to spare:
    # recursion depth is bounded by the rule length, far below Python's limit.
    tree = parse_rule("a**" * ((MAX_RULE_LENGTH - 1) // 3) + "a")
    depth = describe_rule(tree).depth
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(len(_stack()) + 3 * depth + 50)
        with hang_guard():
            assert scalar_or_error(tree, [1.0, 1.0, 1.0, 1.0]) == 1.0
            format_rule(tree)
    finally:
        sys.setrecursionlimit(limit)
    assert evaluate(tree, [1.0, 2.0, 3.0, 4.0]) == 1.0


def _stack() -> list[FrameType]:
    frames = []
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames
