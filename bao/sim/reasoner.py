"""A bounded-capacity hypothesis reasoner over the Function-Gym rule grammar.

It stands in for an LLM's reasoning about the hidden rule. The :class:`HypothesisLibrary` is
what the reasoner can think of: rules drawn from the task grammar, merged into distinct
functions (two rules are the same hypothesis when they agree on every probe point), each with a
prior weight proportional to how often the grammar produces it. The true rule is never added:
a task is solvable only if the library holds an equivalent function *and* the reasoner finds it.

Per episode, a :class:`Reasoner`:

* each turn examines ``capacity`` fresh candidates (drawn by prior weight, without replacement)
  and keeps those consistent with every observation so far, holding at most ``capacity``;
* filters its pool by every query result (exact equality of Function-Gym's rounded values,
  errors included) and by every wrong answer;
* chooses the unused probe point that splits its pool the most;
* predicts the test value by majority over the pool, with the agreeing share as confidence.

Query results and predictions come from tables precomputed once per library (probe values) and
once per task (test-case values), so an episode costs a few small numpy operations per turn.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bao.expressions import Node, compile_rules, evaluate_many, format_rule, round4
from bao.tasks import ANSWER_TOLERANCE, TEST_CASE_RANGE, random_rule

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def _same_values(a: FloatArray, b: FloatArray | float) -> BoolArray:
    # Query results may be nan (e.g. inf - inf); a nan observation matches a nan prediction.
    same: BoolArray = (a == b) | (np.isnan(a) & np.isnan(b))
    return same


@dataclass(frozen=True)
class HypothesisLibrary:
    """Distinct functions the reasoner can think of, with their values at the probe points.

    Attributes:
        rules: one representative rule per distinct function.
        weights: prior probability of each function (how often the grammar yields it).
        probes: the query points, shape ``(n_probes, 4)``.
        probe_values: Function-Gym's reported values (rounded to 4 decimals), ``nan`` where
            the query errors; shape ``(n_functions, n_probes)``.
        probe_errors: where the query errors (``query_error``).
    """

    rules: list[Node]
    weights: FloatArray
    probes: FloatArray
    probe_values: FloatArray
    probe_errors: BoolArray

    @property
    def size(self) -> int:
        return len(self.rules)

    @classmethod
    def from_rules(cls, rules: Sequence[Node], probes: FloatArray) -> HypothesisLibrary:
        """Evaluates ``rules`` at ``probes`` and merges rules that agree on every probe."""
        values, errors = evaluate_many(compile_rules(rules), probes)
        rounded = round4(values)
        # Signature: the values (nan made comparable), which are nan results, which are errors.
        signature = np.concatenate(
            [
                np.nan_to_num(rounded, nan=0.0, posinf=np.inf, neginf=-np.inf),
                np.isnan(rounded) & ~errors,
                errors,
            ],
            axis=1,
        )
        _, first, counts = np.unique(signature, axis=0, return_index=True, return_counts=True)
        order = np.argsort(first)  # keep the library in draw order: reproducible and readable
        keep = first[order]
        weights = counts[order].astype(np.float64)
        return cls(
            rules=[rules[i] for i in keep],
            weights=weights / weights.sum(),
            probes=probes,
            probe_values=rounded[keep],
            probe_errors=errors[keep],
        )

    @classmethod
    def build(cls, size: int, seed: int, n_probes: int) -> HypothesisLibrary:
        """Draws ``size`` rules from the task grammar and ``n_probes`` distinct query points."""
        rng = random.Random(seed)
        rules = [random_rule(rng) for _ in range(size)]
        low, high = TEST_CASE_RANGE
        points: list[tuple[int, ...]] = []
        while len(points) < n_probes:
            point = tuple(rng.randint(low, high) for _ in range(4))
            if point not in points:
                points.append(point)
        return cls.from_rules(rules, np.array(points, dtype=np.float64))

    def test_values(self, test_cases: FloatArray) -> tuple[FloatArray, BoolArray]:
        """Every function's exact value at each test case: shapes ``(n_functions, n_cases)``."""
        return evaluate_many(self.rules, test_cases)

    def describe(self, index: int) -> str:
        return format_rule(self.rules[index])


class Reasoner:
    """One episode's reasoning state (see the module docstring).

    Args:
        library: the shared hypothesis library.
        test_values: each function's exact value at this task's test case (``nan`` on error).
        capacity: candidates examined per turn, and the most kept in the pool.
        rng: draws the order in which candidates come to mind.
        max_turns: the episode's turn budget (bounds how many candidates are ever drawn).
        test_case: the task's test case, which may not be queried.
    """

    def __init__(
        self,
        library: HypothesisLibrary,
        test_values: FloatArray,
        *,
        capacity: int,
        rng: np.random.Generator,
        max_turns: int,
        test_case: Sequence[int],
    ) -> None:
        self.library = library
        self.capacity = capacity
        self.test_values = test_values
        self.test_rounded = round4(test_values)
        # Sampling without replacement by prior weight: the Gumbel-top-k trick, limited to the
        # candidates this episode can ever examine.
        budget = min(library.size, capacity * max_turns)
        keys = np.log(library.weights) + rng.gumbel(size=library.size)
        top = (
            np.argpartition(-keys, budget - 1)[:budget]
            if budget < library.size
            else np.arange(library.size)
        )
        self._queue: IntArray = top[np.argsort(-keys[top])]
        self._cursor = 0
        self.pool: IntArray = np.empty(0, dtype=np.int64)
        self.observed_probes: list[int] = []
        self._observed_values: list[float] = []  # nan for an error
        self._observed_errors: list[bool] = []
        self.wrong_answers: list[float] = []
        test_point = np.asarray(test_case, dtype=np.float64)
        self._forbidden = np.all(library.probes == test_point, axis=1)

    # ------------------------------------------------------------------ thinking

    def think(self) -> None:
        """Spends one turn's budget: examine up to ``capacity`` new candidates."""
        if self._cursor >= len(self._queue):
            return
        candidates = self._queue[self._cursor : self._cursor + self.capacity]
        self._cursor += len(candidates)
        consistent = candidates[self._consistent(candidates)]
        room = self.capacity - len(self.pool)
        if room > 0 and len(consistent):
            self.pool = np.concatenate([self.pool, consistent[:room]])

    def _consistent(self, candidates: IntArray) -> BoolArray:
        keep = self._agree(candidates, start=0)
        for wrong in self.wrong_answers:
            keep &= ~self._predicts(candidates, wrong)
        return keep

    def _agree(self, candidates: IntArray, start: int) -> BoolArray:
        """Which candidates reproduce the query observations from index ``start`` on.

        An error matches only an error; a value only the same value (nan included) without
        an error. New candidates are checked against all observations, the pool against each
        new one: one rule for both, so they cannot drift apart.
        """
        probes = np.asarray(self.observed_probes[start:], dtype=np.int64)
        grid = np.ix_(candidates, probes)
        errors = self.library.probe_errors[grid]
        observed_errors = np.array(self._observed_errors[start:], dtype=bool)[None, :]
        observed_values = np.array(self._observed_values[start:], dtype=np.float64)[None, :]
        same = _same_values(self.library.probe_values[grid], observed_values)
        agree: BoolArray = np.all(np.where(observed_errors, errors, ~errors & same), axis=1)
        return agree

    def _predicts(self, candidates: IntArray, value: float) -> BoolArray:
        predicted = self.test_values[candidates]
        return np.abs(predicted - value) <= ANSWER_TOLERANCE

    # -------------------------------------------------------------- observations

    def observe_query(self, probe: int, value: float | None) -> None:
        """Records a query result (``None`` for ``query_error``) and filters the pool."""
        self.observed_probes.append(probe)
        self._observed_values.append(np.nan if value is None else value)
        self._observed_errors.append(value is None)
        self.pool = self.pool[self._agree(self.pool, start=len(self.observed_probes) - 1)]

    def observe_wrong_answer(self, value: float) -> None:
        """Drops every hypothesis that predicted ``value`` at the test case."""
        self.wrong_answers.append(value)
        self.pool = self.pool[~self._predicts(self.pool, value)]

    # ---------------------------------------------------------------- decisions

    def choose_query(self) -> int | None:
        """The unused probe that splits the pool into the most distinct predicted values."""
        unused = np.ones(len(self.library.probes), dtype=bool)
        unused[self.observed_probes] = False
        unused &= ~self._forbidden
        options = np.nonzero(unused)[0]
        if not len(options):
            return None
        if len(self.pool) < 2:
            return int(options[0])
        values = self.library.probe_values[np.ix_(self.pool, options)]
        values = np.where(self.library.probe_errors[np.ix_(self.pool, options)], np.inf, values)
        distinct = [len(np.unique(values[:, j])) for j in range(len(options))]
        return int(options[int(np.argmax(distinct))])

    def prediction(self) -> tuple[float | None, float]:
        """``(value, agreement)``: the pool's majority value at the test case and its share."""
        if not len(self.pool):
            return None, 0.0
        rounded = self.test_rounded[self.pool]
        valid = ~np.isnan(rounded)
        if not valid.any():
            return None, 0.0
        values, counts = np.unique(rounded[valid], return_counts=True)
        best = int(np.argmax(counts))
        # Answer the exact value of a hypothesis in the majority, not its rounding.
        member = self.pool[valid][rounded[valid] == values[best]][0]
        return float(self.test_values[member]), float(counts[best] / len(self.pool))
