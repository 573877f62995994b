"""Coverage-guided fuzzing of the rule parser and both evaluators (atheris, i.e. libFuzzer).

    .venv/bin/python benchmarks/fuzz_expressions.py -atheris_runs=200000 -timeout=10 [CORPUS]

Each input becomes a rule text (raw Unicode, ASCII, or a sequence of hostile tokens) and two
points; the invariants are those of tests/bao/test_expressions_fuzz.py:

* ``parse_rule`` returns a tree or raises ``RuleSyntaxError`` with a one-line message;
* parsing and evaluating call no ``eval``/``exec``/``compile``/``__import__`` (builtins
  patched to raise, plus an audit hook for aliases bound elsewhere);
* an accepted rule is what Python's own parser reads from the text, and formats back to it;
* ``evaluate`` and ``evaluate_many`` agree bit for bit, errors included.

A broken invariant stops the run with a traceback and leaves the input as ``crash-<sha1>``
(in the current folder, or under ``-artifact_prefix=DIR/``); ``-timeout=S`` turns a hang
into a crash too. ``make``-free on purpose: tests/bao/test_fuzz_harness.py runs a bounded
number of iterations (marked slow), and skips where atheris is not installed.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import math
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Final

import numpy as np

HOSTILE_TOKENS: Final = (
    *("__import__", "os", "system", "open", "lambda", "for", "in", "if", ".", "(", ")", "[", "]"),
    *("{", "}", ":", ",", ";", "=", "'", '"', "`", "\\", "#", "$", "@", "!", "~", "^", "%"),
    *("+", "-", "*", "/", "**", "//", "a", "b", "c", "d", "e", "_", "0", "1", "7", "9", "007"),
    *("9" * 16, "9" * 17, "9007199254740992", "9" * 300, "1e5", "0x1f", "1_0", "0.5", "1j"),
    *("\u0663", "\uff11", "\U0001d7d9", "\u00b2", "\u00a0", "\u3000", " ", "\t", "\n", "\x00"),
)
EXTREMES: Final = (
    0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 9.0, 1e308, -1e308, sys.float_info.max,
    5e-324, math.inf, -math.inf, math.nan,
)  # fmt: skip
_OPERATORS: Final[dict[type[ast.operator], str]] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
}

expressions: ModuleType
errors: ModuleType


def load() -> None:
    """Imports the code under test and runs every path once, so that lazy imports inside
    numpy are done before the guards arm."""
    global expressions, errors  # noqa: PLW0603 (bound once, before the first input)
    errors = importlib.import_module("bao.errors")
    expressions = importlib.import_module("bao.expressions")
    trees = [expressions.parse_rule(r) for r in ("a + b - c * d / a", "(a - b) ** (c / d)")]
    for point in ([1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.0, 0.0], [-8.0, 0.5, 1e308, math.nan]):
        for tree in trees:
            _scalar(tree, point)
        expressions.evaluate_many(trees, [point, point])


# ------------------------------------------------------------------------------ guards


class CodeExecuted(BaseException):
    """A forbidden builtin was called (a BaseException: no ``except Exception`` hides it)."""


_armed: int | None = None
"""The thread being watched (others, e.g. a test runner's, go on as usual)."""
_events: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _armed == threading.get_ident() and event in ("exec", "compile", "import"):
        _events.append(f"{event}{args!r:.120}")


_hooked = False


@contextmanager
def no_code_execution() -> Iterator[None]:
    """The block may not call eval/exec/compile/__import__ nor raise their audit events."""
    global _armed, _hooked  # noqa: PLW0603 (audit hooks are process-wide and permanent)
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    calls: list[str] = []
    names = ("eval", "exec", "compile", "__import__")
    originals = {name: getattr(builtins, name) for name in names}
    watched = threading.get_ident()

    def forbidden(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != watched:
                return originals[name](*args, **kwargs)
            calls.append(f"{name}{args!r:.120}")
            raise CodeExecuted(name)

        return call

    for name in names:
        setattr(builtins, name, forbidden(name))
    _events.clear()
    _armed = watched
    try:
        yield
    finally:
        _armed = None
        for name, function in originals.items():
            setattr(builtins, name, function)
    if calls or _events:
        raise AssertionError(f"code was executed: {calls + _events}")


# -------------------------------------------------------------------------- invariants


def _scalar(tree: Any, point: list[float]) -> float | None:
    try:
        return float(expressions.evaluate(tree, point))
    except expressions.RuleEvaluationError:
        return None


def python_tree(text: str) -> Any:
    """What Python's parser reads from ``text`` (parsed only, never run), as a rule tree;
    ``None`` for leading-zero literals, which only the grammar accepts."""
    if re.search(r"(?<![0-9])0[0-9]", text):
        return None
    body = ast.parse(" ".join(text.split()), mode="eval").body

    def convert(node: ast.expr) -> Any:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            op = _OPERATORS[type(node.op)]
            return expressions.BinOp(op, convert(node.left), convert(node.right))
        if isinstance(node, ast.Name) and node.id in expressions.VARIABLES:
            return expressions.Var(expressions.VARIABLES.index(node.id))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return expressions.Const(node.value)
        raise AssertionError(f"accepted {text!r}, which Python reads as {ast.dump(node)}")

    return convert(body)


def _same(expected: float, actual: float) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == expected and math.copysign(1.0, actual) == math.copysign(1.0, expected)


def check_input(text: str, grid: list[list[float]]) -> None:
    """All invariants for one rule text at the points of ``grid`` (raises AssertionError)."""
    with no_code_execution():
        try:
            tree = expressions.parse_rule(text)
        except errors.RuleSyntaxError as error:
            message = str(error)
            tree = None
    if tree is None:
        assert "\n" not in message, message
        return
    formatted = expressions.format_rule(tree)
    if len(formatted) <= expressions.MAX_RULE_LENGTH:
        assert expressions.parse_rule(formatted) == tree, (text, formatted)
    expected = python_tree(text)
    assert expected is None or expected == tree, (text, expected, tree)
    with no_code_execution():
        scalar = [_scalar(tree, point) for point in grid]
        values, flagged = expressions.evaluate_many([tree], np.asarray(grid, dtype=np.float64))
    for j, value in enumerate(scalar):
        assert bool(flagged[0, j]) == (value is None), (text, grid[j])
        if value is not None:
            assert _same(value, float(values[0, j])), (text, grid[j], value, values[0, j])


# ------------------------------------------------------------------------------ atheris


def one_input(data: bytes) -> None:
    import atheris

    provider = atheris.FuzzedDataProvider(data)
    mode = provider.ConsumeIntInRange(0, 2)
    if mode == 0:
        text = provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 600))
    elif mode == 1:
        count = provider.ConsumeIntInRange(0, 60)
        text = "".join(provider.PickValueInList(list(HOSTILE_TOKENS)) for _ in range(count))
    else:
        text = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 600)).decode("ascii", "replace")

    def coordinate() -> float:
        if provider.ConsumeBool():
            return float(provider.PickValueInList(list(EXTREMES)))
        return float(provider.ConsumeFloat())

    grid = [[coordinate() for _ in range(4)] for _ in range(2)]
    check_input(text, grid)


UNINSTRUMENTED: Final = frozenset({"evaluate_many", "_apply_vector", "compile_rules", "round4"})
"""The numpy paths: atheris 3.0.0's comparison tracing leaks on numpy comparisons (RSS grows
by kilobytes per input until libFuzzer's 2 GB limit stops the run); they are branch-free
array code, where coverage feedback adds little anyway."""


def instrument(atheris: ModuleType) -> None:
    """Coverage feedback from the parser, the formatter and the scalar evaluator."""
    for name, value in vars(expressions).items():
        defined_here = inspect.isfunction(value) and value.__module__ == expressions.__name__
        if defined_here and name not in UNINSTRUMENTED:
            atheris.instrument_func(value)
    for value in vars(expressions._Parser).values():
        if inspect.isfunction(value):
            atheris.instrument_func(value)


def main(argv: list[str]) -> None:
    import atheris

    load()
    instrument(atheris)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
