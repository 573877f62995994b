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
from functools import cached_property

import numpy as np
import numpy.typing as npt

from bao.expressions import Node, compile_rules, evaluate_many, format_rule, round4
from bao.tasks import ANSWER_TOLERANCE, TEST_CASE_RANGE, random_rule

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


ERROR_CODE = 0
"""Observation code of a query error (``query_error``)."""
NAN_CODE = 1
"""Observation code of a ``nan`` result (e.g. ``inf - inf``): matches only ``nan``."""
NO_MATCH_CODE = -1
"""Code of an observed value that no function of the library produces."""


def _column_codes(values: FloatArray) -> tuple[IntArray, FloatArray]:
    """Integer codes of one column, equal exactly where the values are (``==``, so ``-0.0``
    is ``0.0``; every ``nan`` the same): ``2 + rank`` among the distinct non-nan values,
    :data:`NAN_CODE` for ``nan``. Returns the codes and the distinct values, sorted."""
    finite = ~np.isnan(values)
    distinct = np.unique(values[finite])
    codes = np.full(values.shape, NAN_CODE, dtype=np.int64)
    codes[finite] = 2 + np.searchsorted(distinct, values[finite])
    return codes, distinct


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

    # Comparing observations as small integers instead of floats with nan and error masks
    # makes the reasoner's filters one fancy index and one comparison each turn (they were
    # the simulator's top hotspot; docs/benchmarks.md). Derived once per library.

    @cached_property
    def log_weights(self) -> FloatArray:
        return np.log(self.weights)

    @cached_property
    def _probe_coding(self) -> tuple[IntArray, list[FloatArray]]:
        codes = np.empty(self.probe_values.shape, dtype=np.int64)
        distinct = []
        for probe in range(self.probe_values.shape[1]):
            codes[:, probe], values = _column_codes(self.probe_values[:, probe])
            distinct.append(values)
        codes[self.probe_errors] = ERROR_CODE
        return codes, distinct

    @property
    def probe_codes(self) -> IntArray:
        """What each function shows at each probe, as codes that are equal exactly where an
        observation matches: an error only an error, a value only the same value (``nan``
        included) without an error. Shape ``(n_functions, n_probes)``."""
        return self._probe_coding[0]

    def observation_code(self, probe: int, value: float | None) -> int:
        """The code of a query result at ``probe`` (``None``: a query error)."""
        if value is None:
            return ERROR_CODE
        if np.isnan(value):
            return NAN_CODE
        distinct = self._probe_coding[1][probe]
        index = int(np.searchsorted(distinct, value))
        if index < len(distinct) and distinct[index] == value:
            return 2 + index
        return NO_MATCH_CODE

    @cached_property
    def split_codes(self) -> IntArray:
        """Codes of the values a query would tell apart (an error counts as ``inf``, every
        ``nan`` as one value), for choosing the most informative probe."""
        values = np.where(self.probe_errors, np.inf, self.probe_values)
        codes = np.empty(values.shape, dtype=np.int64)
        for probe in range(values.shape[1]):
            codes[:, probe] = _column_codes(values[:, probe])[0]
        return codes

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
        test_rounded: ``round4(test_values)``, when the caller keeps it per task (it is the
            same for every episode of the task).
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
        test_rounded: FloatArray | None = None,
    ) -> None:
        self.library = library
        self.capacity = capacity
        self.test_values = test_values
        self.test_rounded = round4(test_values) if test_rounded is None else test_rounded
        # Sampling without replacement by prior weight: the Gumbel-top-k trick, limited to the
        # candidates this episode can ever examine.
        budget = min(library.size, capacity * max_turns)
        keys = library.log_weights + rng.gumbel(size=library.size)
        top = (
            np.argpartition(-keys, budget - 1)[:budget]
            if budget < library.size
            else np.arange(library.size)
        )
        self._queue: IntArray = top[np.argsort(-keys[top])]
        # Which queued candidates are still consistent with every observation, kept up to
        # date as observations arrive: examining a candidate is then a lookup.
        self._queue_consistent: BoolArray = np.ones(len(self._queue), dtype=bool)
        self._cursor = 0
        self.pool: IntArray = np.empty(0, dtype=np.int64)
        self.observed_probes: list[int] = []
        self.wrong_answers: list[float] = []
        self._prediction: tuple[float | None, float] | None = None  # until the pool changes
        test_point = np.asarray(test_case, dtype=np.float64)
        self._forbidden = np.all(library.probes == test_point, axis=1)

    # ------------------------------------------------------------------ thinking

    def think(self) -> None:
        """Spends one turn's budget: examine up to ``capacity`` new candidates."""
        if self._cursor >= len(self._queue):
            return
        window = slice(self._cursor, self._cursor + self.capacity)
        candidates = self._queue[window]
        self._cursor += len(candidates)
        consistent = candidates[self._queue_consistent[window]]
        room = self.capacity - len(self.pool)
        if room > 0 and len(consistent):
            self._set_pool(np.concatenate([self.pool, consistent[:room]]))

    def _set_pool(self, pool: IntArray) -> None:
        self.pool = pool
        self._prediction = None

    def _agree(self, candidates: IntArray, probe: int, code: int) -> BoolArray:
        """Which candidates show the observation ``code`` at ``probe``.

        An error matches only an error; a value only the same value (nan included) without
        an error (:attr:`HypothesisLibrary.probe_codes`). The pool and the queued candidates
        are both filtered by this one rule, so they cannot drift apart.
        """
        agree: BoolArray = self.library.probe_codes[candidates, probe] == code
        return agree

    def _predicts(self, candidates: IntArray, value: float) -> BoolArray:
        predicted = self.test_values[candidates]
        return np.abs(predicted - value) <= ANSWER_TOLERANCE

    # -------------------------------------------------------------- observations

    def observe_query(self, probe: int, value: float | None) -> None:
        """Records a query result (``None`` for ``query_error``) and filters the pool."""
        code = self.library.observation_code(probe, value)
        self.observed_probes.append(probe)
        self._set_pool(self.pool[self._agree(self.pool, probe, code)])
        unseen = slice(self._cursor, None)
        self._queue_consistent[unseen] &= self._agree(self._queue[unseen], probe, code)

    def observe_wrong_answer(self, value: float) -> None:
        """Drops every hypothesis that predicted ``value`` at the test case."""
        self.wrong_answers.append(value)
        self._set_pool(self.pool[~self._predicts(self.pool, value)])
        unseen = slice(self._cursor, None)
        self._queue_consistent[unseen] &= ~self._predicts(self._queue[unseen], value)

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
        shown = np.sort(self.library.split_codes[self.pool[:, None], options], axis=0)
        distinct = 1 + np.count_nonzero(shown[1:] != shown[:-1], axis=0)
        return int(options[int(np.argmax(distinct))])

    def prediction(self) -> tuple[float | None, float]:
        """``(value, agreement)``: the pool's majority value at the test case and its share."""
        if self._prediction is None:
            self._prediction = self._majority()
        return self._prediction

    def _majority(self) -> tuple[float | None, float]:
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
