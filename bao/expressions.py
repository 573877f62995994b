"""The Function-Gym rule grammar: parsing, formatting, scalar and vectorised evaluation.

A rule is an arithmetic expression over the variables ``a, b, c, d`` with ``+ - * /``, ``**``
(right-associative) and parentheses; literals are non-negative integers. There is no unary
minus and no function call: anything else is rejected by the parser. Task text is never given
to ``eval`` or ``exec``; it is parsed into the small tree defined here.

Evaluation follows Python's IEEE double arithmetic exactly, because that is what UserRL's
Function-Gym reports: ``x / 0`` (also ``nan / 0``), ``0 ** negative``, a negative base with a
fractional exponent (a complex result in Python) and an overflowing power are errors, while an
overflowing sum or product silently gives ``inf`` and may turn into ``nan`` later.

Two evaluators share these semantics:

* :func:`evaluate` walks the tree for one point; it is the reference.
* :func:`evaluate_many` runs many rules on many points at once as a vectorised stack machine
  (numpy). It agrees bit for bit with :func:`evaluate` on every finite result and flags the
  same errors. ``**`` is computed through Python's own float power, because numpy's SIMD
  ``power`` differs from libm by one ulp on a few percent of inputs.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from bao.errors import RuleSyntaxError

VARIABLES: Final = ("a", "b", "c", "d")
OPERATORS: Final = ("+", "-", "*", "/", "**")

Operator = Literal["+", "-", "*", "/", "**"]
ErrorKind = Literal["zero_division", "complex", "overflow"]

# Bounds that keep hostile input cheap to reject; real rules are under 50 characters.
MAX_RULE_LENGTH: Final = 512
MAX_NESTING: Final = 40
# Literals must be exactly representable as doubles.
MAX_LITERAL: Final = 2**53

_PRECEDENCE: Final[dict[str, int]] = {"+": 1, "-": 1, "*": 2, "/": 2, "**": 3}
_ATOM_PRECEDENCE: Final = 4


@dataclass(frozen=True, slots=True)
class Var:
    """A variable, by its index in ``VARIABLES`` (a=0, b=1, c=2, d=3)."""

    index: int

    @property
    def name(self) -> str:
        return VARIABLES[self.index]


@dataclass(frozen=True, slots=True)
class Const:
    """A non-negative integer literal."""

    value: int


@dataclass(frozen=True, slots=True)
class BinOp:
    """A binary operation; ``**`` is right-associative, the others left-associative."""

    op: Operator
    left: Node
    right: Node


Node = Var | Const | BinOp


class RuleEvaluationError(ArithmeticError):
    """A rule that has no real value at a point (Function-Gym's ``query_error``)."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


# --------------------------------------------------------------------------- parsing

# ASCII only: Unicode digits (U+0663, U+FF11) and spaces (U+00A0) are not Python's literals or
# white space, and a rule must read the same here as in UserRL's Python (tests/bao/
# test_expressions_fuzz.py checks accepted rules against Python's own parser).
_TOKEN = re.compile(
    r"\s*(?:(?P<int>\d+)|(?P<name>[A-Za-z_]\w*)|(?P<op>\*\*|[-+*/()])|(?P<bad>\S))", re.ASCII
)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind is None:  # trailing white space
            continue
        # Bad characters become tokens too, so that errors are reported in reading order.
        tokens.append((kind, match.group(kind), match.start(kind)))
    return tokens


class _Parser:
    """Recursive descent over the token list: expr > term > power > atom."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.nesting = 0

    def _peek(self) -> tuple[str, str, int] | None:
        if self.pos >= len(self.tokens):
            return None
        token = self.tokens[self.pos]
        if token[0] == "bad":
            before = self.tokens[self.pos - 1] if self.pos else None
            after_operand = before is not None and (before[0] == "name" or before[1] == ")")
            if token[1] == "." and after_operand:
                raise self._fail(
                    f"attribute access at character {token[2]}",
                    "rules have no attributes or methods, only a, b, c, d, integers, "
                    "+ - * / ** and parentheses",
                )
            if token[1] == ".":
                raise self._fail(
                    f"decimal literal at character {token[2]}",
                    "literals must be integers (write 1/2 instead of 0.5)",
                )
            raise self._fail(
                f"unexpected character {token[1]!r} at {token[2]}",
                "use only a, b, c, d, integers, + - * / ** and parentheses",
            )
        return token

    def _fail(self, message: str, fix: str) -> RuleSyntaxError:
        return RuleSyntaxError(f"rule {self.text!r}: {message}", fix=fix)

    def parse(self) -> Node:
        if not self.tokens:
            raise self._fail("empty rule", "write an expression such as 'a * b + c - d'")
        node = self._expr()
        token = self._peek()
        if token is not None:
            raise self._fail(
                f"unexpected {token[1]!r} at character {token[2]}",
                "check for a missing operator or an unbalanced ')'",
            )
        return node

    def _expr(self) -> Node:
        node = self._term()
        while (token := self._peek()) is not None and token[1] in ("+", "-"):
            self.pos += 1
            node = BinOp(token[1], node, self._term())  # type: ignore[arg-type]
        return node

    def _term(self) -> Node:
        node = self._power()
        while (token := self._peek()) is not None and token[1] in ("*", "/"):
            self.pos += 1
            node = BinOp(token[1], node, self._power())  # type: ignore[arg-type]
        return node

    def _power(self) -> Node:
        base = self._atom()
        token = self._peek()
        if token is not None and token[1] == "**":
            self.pos += 1
            return BinOp("**", base, self._power())
        return base

    def _atom(self) -> Node:
        token = self._peek()
        if token is None:
            raise self._fail("ends after an operator", "complete the expression")
        kind, value, position = token
        self.pos += 1
        if kind == "int":
            literal = int(value)
            if literal > MAX_LITERAL:
                raise self._fail(
                    f"literal {value} at character {position} is too large",
                    fix=f"literals must be at most {MAX_LITERAL}",
                )
            return Const(literal)
        if kind == "name":
            if value not in VARIABLES:
                raise self._fail(
                    f"unknown name {value!r} at character {position}",
                    "the only variables are a, b, c and d; functions are not allowed",
                )
            return Var(VARIABLES.index(value))
        if value == "(":
            self.nesting += 1
            if self.nesting > MAX_NESTING:
                raise self._fail("parentheses nested too deeply", f"nest at most {MAX_NESTING}")
            node = self._expr()
            closing = self._peek()
            if closing is None or closing[1] != ")":
                raise self._fail(f"'(' at character {position} is never closed", "add a ')'")
            self.pos += 1
            self.nesting -= 1
            return node
        if value == "-":
            raise self._fail(
                f"unary minus at character {position}",
                "the grammar has no unary minus; write (0 - x) or reorder the terms",
            )
        raise self._fail(f"unexpected {value!r} at character {position}", "check the syntax")


def parse_rule(text: str) -> Node:
    """Parses ``text`` into a tree, or raises :class:`RuleSyntaxError` naming the problem."""
    if not isinstance(text, str):
        raise RuleSyntaxError("rule must be a string", value=text, fix="quote the expression")
    if len(text) > MAX_RULE_LENGTH:
        raise RuleSyntaxError(
            f"rule of {len(text)} characters is too long",
            fix=f"rules are at most {MAX_RULE_LENGTH} characters",
        )
    return _Parser(text).parse()


def _precedence(node: Node) -> int:
    return _PRECEDENCE[node.op] if isinstance(node, BinOp) else _ATOM_PRECEDENCE


def format_rule(node: Node) -> str:
    """Writes ``node`` with the fewest parentheses that parse back to the same tree."""
    if isinstance(node, Var):
        return node.name
    if isinstance(node, Const):
        return str(node.value)
    own = _PRECEDENCE[node.op]
    left, right = format_rule(node.left), format_rule(node.right)
    if node.op == "**":
        # Right-associative: the base needs parentheses around anything but an atom.
        left_needs = _precedence(node.left) <= own
        right_needs = _precedence(node.right) < own
    else:
        # Left-associative; a same-level right operand keeps its parentheses because
        # float + and * are not associative either.
        left_needs = _precedence(node.left) < own
        right_needs = _precedence(node.right) <= own
    if left_needs:
        left = f"({left})"
    if right_needs:
        right = f"({right})"
    return f"{left} {node.op} {right}"


# ------------------------------------------------------------------------- evaluation


def _apply_scalar(op: str, x: float, y: float) -> float:
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "/":
        if y == 0.0:
            raise RuleEvaluationError("zero_division", f"{x!r} / {y!r}")
        return x / y
    try:
        result: float | complex = x**y
    except ZeroDivisionError:
        raise RuleEvaluationError("zero_division", f"{x!r} ** {y!r}") from None
    except OverflowError:
        raise RuleEvaluationError("overflow", f"{x!r} ** {y!r}") from None
    if isinstance(result, complex):
        raise RuleEvaluationError("complex", f"{x!r} ** {y!r}")
    return result


def evaluate(node: Node, point: Sequence[float]) -> float:
    """Evaluates ``node`` at ``point`` (values of a, b, c, d) in IEEE double arithmetic.

    Raises :class:`RuleEvaluationError` where Python's float arithmetic raises or would
    produce a complex number. The result may be ``inf`` or ``nan`` (e.g. ``1e308 * 10``).
    """
    if isinstance(node, Var):
        return float(point[node.index])
    if isinstance(node, Const):
        return float(node.value)
    # Both operands are evaluated before the operator, as Python does.
    x = evaluate(node.left, point)
    y = evaluate(node.right, point)
    return _apply_scalar(node.op, x, y)


_NOP, _VAR, _CONST = 0, 1, 2
_OPCODES: Final[dict[str, int]] = {"+": 3, "-": 4, "*": 5, "/": 6, "**": 7}


def _postfix(node: Node) -> Iterator[tuple[int, float]]:
    if isinstance(node, Var):
        yield _VAR, float(node.index)
    elif isinstance(node, Const):
        yield _CONST, float(node.value)
    else:
        yield from _postfix(node.left)
        yield from _postfix(node.right)
        yield _OPCODES[node.op], 0.0


def _python_pow(x: float, y: float) -> float:
    # Only called where neither a zero division nor a complex result can occur.
    try:
        return float(x**y)
    except OverflowError:
        return math.inf


_python_pow_ufunc = np.frompyfunc(_python_pow, 2, 1)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _exact_integer_power(x: FloatArray, y: FloatArray, both_finite: BoolArray) -> BoolArray:
    """Where ``x ** y`` is an integer below 2**50 that integer arithmetic gets exactly.

    A power whose true value is a float is returned exactly by Python's ``**`` too (libm's
    pow errs by well under one ulp), so these elements need no Python call: with the
    simulator's integer test cases they are ~97% of all powers (docs/benchmarks.md). Zero
    bases stay on Python's path, which keeps the sign of ``(-0.0) ** 3``.
    """
    with np.errstate(all="ignore"):
        integral = both_finite & (x != 0.0) & (x == np.floor(x)) & (y == np.floor(y))
        small = (y >= 0.0) & (y <= 64.0) & (y * np.log2(np.maximum(np.abs(x), 1.0)) < 50.0)
    exact: BoolArray = integral & small
    return exact


def _apply_vector(op: int, x: FloatArray, y: FloatArray) -> tuple[FloatArray, BoolArray]:
    """One operator on matching arrays; returns the values and an error mask."""
    if op == _OPCODES["+"]:
        return x + y, np.zeros(x.shape, dtype=bool)
    if op == _OPCODES["-"]:
        return x - y, np.zeros(x.shape, dtype=bool)
    if op == _OPCODES["*"]:
        return x * y, np.zeros(x.shape, dtype=bool)
    if op == _OPCODES["/"]:
        bad = y == 0.0
        return x / np.where(bad, 1.0, y), bad
    # Python's float power checks, in order: nan and infinite operands have defined results;
    # then 0 ** negative divides by zero; then a negative base needs an integral exponent.
    both_finite = np.isfinite(x) & np.isfinite(y)
    zero_division = both_finite & (x == 0.0) & (y < 0.0)
    complex_result = both_finite & (x < 0.0) & (y != np.floor(y))
    ok = ~(zero_division | complex_result)
    result = np.full(x.shape, np.nan)
    exact = _exact_integer_power(x, y, both_finite)
    if exact.any():
        result[exact] = np.power(x[exact].astype(np.int64), y[exact].astype(np.int64))
    # Even x ** 2 goes through Python: libm's pow(x, 2) differs from x * x on ~0.1% of inputs.
    slow = ok & ~exact
    if slow.any():
        result[slow] = _python_pow_ufunc(x[slow], y[slow]).astype(np.float64)
    overflow = both_finite & ok & np.isinf(result)
    return result, zero_division | complex_result | overflow


@dataclass(frozen=True)
class CompiledRules:
    """Rules compiled to padded postfix programs for :func:`evaluate_many`."""

    codes: npt.NDArray[np.int8]
    args: FloatArray
    stack_depth: int

    @property
    def n_rules(self) -> int:
        return int(self.codes.shape[0])


def compile_rules(nodes: Sequence[Node]) -> CompiledRules:
    """Compiles rules once so that :func:`evaluate_many` can run them on many point sets."""
    programs = [list(_postfix(node)) for node in nodes]
    length = max((len(p) for p in programs), default=0)
    codes = np.zeros((len(programs), length), dtype=np.int8)
    args = np.zeros((len(programs), length), dtype=np.float64)
    depth = 0
    for row, program in enumerate(programs):
        level = 0
        for column, (code, arg) in enumerate(program):
            codes[row, column] = code
            args[row, column] = arg
            level += 1 if code in (_VAR, _CONST) else -1
            depth = max(depth, level)
    return CompiledRules(codes=codes, args=args, stack_depth=depth)


def evaluate_many(
    rules: CompiledRules | Sequence[Node], points: npt.ArrayLike
) -> tuple[FloatArray, BoolArray]:
    """Evaluates every rule at every point.

    Args:
        rules: compiled rules, or trees to compile.
        points: shape ``(n_points, 4)``, the values of a, b, c, d; or ``(n_rules, n_points, 4)``
            to give each rule its own points.

    Returns:
        ``(values, errors)`` of shape ``(n_rules, n_points)``. Where ``errors`` is set the
        rule has no value there (:func:`evaluate` raises) and ``values`` holds ``nan``.
    """
    compiled = rules if isinstance(rules, CompiledRules) else compile_rules(rules)
    grid = np.asarray(points, dtype=np.float64)
    n_rules = compiled.n_rules
    if grid.ndim == 2:
        grid = np.broadcast_to(grid, (n_rules, *grid.shape))
    if grid.ndim != 3 or grid.shape[0] != n_rules or grid.shape[2] != len(VARIABLES):
        raise ValueError(
            f"points must have shape (n_points, 4) or ({n_rules}, n_points, 4), got {grid.shape}"
        )
    n_points = grid.shape[1]
    stack = np.empty((n_rules, max(compiled.stack_depth, 1), n_points), dtype=np.float64)
    errors = np.zeros((n_rules, n_points), dtype=bool)
    top = np.zeros(n_rules, dtype=np.int64)  # number of values on each rule's stack
    with np.errstate(all="ignore"):
        for column in range(compiled.codes.shape[1]):
            codes = compiled.codes[:, column]
            for code in np.unique(codes):
                if code == _NOP:
                    continue
                rows = np.nonzero(codes == code)[0]
                if code == _VAR:
                    variable = compiled.args[rows, column].astype(np.int64)
                    stack[rows, top[rows]] = grid[rows, :, variable]
                elif code == _CONST:
                    stack[rows, top[rows]] = compiled.args[rows, column][:, None]
                else:
                    x = stack[rows, top[rows] - 2]
                    y = stack[rows, top[rows] - 1]
                    result, bad = _apply_vector(int(code), x, y)
                    stack[rows, top[rows] - 2] = result
                    errors[rows] |= bad
            top += np.where(codes == _NOP, 0, np.where(codes <= _CONST, 1, -1))
    values = stack[:, 0, :].copy()
    values[errors] = np.nan
    return values, errors


def round4(values: npt.ArrayLike) -> FloatArray:
    """Python's ``round(x, 4)`` applied elementwise, bit for bit.

    ``numpy.round`` scales by 1e4 before rounding; that product is inexact, so a value whose
    exact decimal expansion lies next to a rounding tie can go the other way. Those few values
    (and very large ones) are rounded by Python itself.
    """
    array = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):
        scaled = array * 1e4
        result = np.round(scaled) / 1e4
        distance_to_tie = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5)
    near_tie = distance_to_tie <= np.maximum(np.abs(scaled), 1.0) * 1e-15
    slow = np.isfinite(array) & (near_tie | (np.abs(array) >= 1e11))
    result = np.where(np.isfinite(array), result, array)
    if slow.any():
        result[slow] = [round(float(value), 4) for value in array[slow]]
    return result


# ---------------------------------------------------------------------- description


@dataclass(frozen=True)
class RuleShape:
    """Structural facts about one rule, used to compare task distributions."""

    n_binary_ops: int
    op_counts: dict[str, int]
    depth: int
    n_squarings: int
    n_variable_exponents: int
    variables: tuple[str, ...]

    @property
    def uses_each_variable_once(self) -> bool:
        return sorted(self.variables) == list(VARIABLES)


def describe_rule(node: Node) -> RuleShape:
    """Counts operators, depth (operators on the longest root-leaf path) and exponent kinds."""
    ops: Counter[str] = Counter()
    variables: list[str] = []
    squarings = variable_exponents = 0

    def walk(current: Node) -> int:
        nonlocal squarings, variable_exponents
        if isinstance(current, Var):
            variables.append(current.name)
            return 0
        if isinstance(current, Const):
            return 0
        ops[current.op] += 1
        if current.op == "**":
            if current.right == Const(2):
                squarings += 1
            elif _contains_variable(current.right):
                variable_exponents += 1
        return 1 + max(walk(current.left), walk(current.right))

    depth = walk(node)
    return RuleShape(
        n_binary_ops=sum(ops.values()),
        op_counts=dict(ops),
        depth=depth,
        n_squarings=squarings,
        n_variable_exponents=variable_exponents,
        variables=tuple(variables),
    )


def _contains_variable(node: Node) -> bool:
    if isinstance(node, Var):
        return True
    if isinstance(node, Const):
        return False
    return _contains_variable(node.left) or _contains_variable(node.right)
