"""A bounded-capacity, fallible hypothesis reasoner over the Function-Gym rule grammar.

It stands in for an LLM's reasoning about the hidden rule (docs/sim.md explains the design).
The :class:`HypothesisLibrary` is what the reasoner can think of: rules drawn from the task
grammar, merged into distinct functions (two rules are the same hypothesis when they agree on
every probe point), each with a prior weight proportional to how often the grammar produces it.
The true rule is never added: a task is solvable only if the library holds an equivalent
function *and* the reasoner finds it.

Per episode, a :class:`Reasoner`:

* each turn examines ``capacity`` fresh candidates (drawn by prior weight, without replacement)
  and keeps the ``capacity`` most plausible hypotheses it has examined;
* weighs its hypotheses by the evidence, softly: a query result that contradicts a hypothesis
  multiplies its weight by ``mismatch_likelihood`` instead of ruling it out (an LLM that checks
  a hypothesis against a data point can misjudge the check), so belief sharpens with every
  query rather than jumping to certainty;
* keeps room for the rule it has not thought of yet: the prior mass of the hypotheses it has
  not examined, discounted by the evidence, competes with the ones it holds; its confidence
  is the share of the whole belief that backs its best value;
* rules out every hypothesis that predicted a value the user said was wrong;
* chooses the unused probe point that splits its hypotheses the most;
* slips when it computes its answer at the test case, with a chance that falls with capacity
  and with the query results it has seen of the function; a retry recomputes, so it can catch
  a slip.

Query results and predictions come from tables precomputed once per library (probe values) and
once per task (test-case values), so an episode costs a few small numpy operations per turn.
"""

from __future__ import annotations

import math
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
    def probe_texts(self) -> list[str]:
        """Each probe as a query's content (``"a b c d"``)."""
        return [" ".join(str(int(v)) for v in point) for point in self.probes]

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


@dataclass(frozen=True)
class Fallibility:
    """How far the reasoner's reading and computing can be trusted (the defaults and their
    reasons are ``bao.sim.config.ReasonerSettings``'s).

    Attributes:
        mismatch_likelihood: the weight factor of a hypothesis for each query result that
            contradicts it (0 rules it out, as an infallible reader does).
        answer_slip: the chance of a slip when computing the answer, before any query result
            has been seen, at :data:`REFERENCE_CAPACITY`.
        slip_halving_queries: query results seen that halve the slip chance.
    """

    mismatch_likelihood: float
    answer_slip: float
    slip_halving_queries: float


INFALLIBLE = Fallibility(mismatch_likelihood=0.0, answer_slip=0.0, slip_halving_queries=1.0)
"""A reasoner that rules out every contradicted hypothesis and never slips."""


REFERENCE_CAPACITY = 48
"""The capacity at which :class:`Fallibility`'s rates hold; they scale with
``sqrt(REFERENCE_CAPACITY / capacity)``: a larger reasoner slips less and reads more sharply."""
MAX_RATE = 0.9
"""Cap of a scaled rate: even the smallest reasoner learns something from a query."""
PLAUSIBLE_LOG_RATIO = math.log(20.0)
"""Hypotheses within this factor (as a log ratio) of the best one's weight are the ones a
query is chosen to tell apart from it."""
SLIP_OFFSETS = (-2.0, -1.0, 1.0, 2.0)
"""What a slip does to a computed value: an arithmetic error by a small integer."""


@dataclass(frozen=True)
class Belief:
    """What the reasoner believes about the test value, as the policy sees it.

    Attributes:
        value: the value it would answer (``None`` when no hypothesis predicts a number).
        confidence: the share of its belief (held hypotheses and the unexamined rest) that
            backs ``value``.
        runner_up: the share that backs the second most believed value.
        unexplored: the share of the belief still on hypotheses it has not examined.
    """

    value: float | None
    confidence: float
    runner_up: float
    unexplored: float


class Reasoner:
    """One episode's reasoning state (see the module docstring).

    Args:
        library: the shared hypothesis library.
        test_values: each function's exact value at this task's test case (``nan`` on error).
        capacity: candidates examined per turn, and the most hypotheses held at once.
        rng: draws the order in which candidates come to mind, and the slips.
        max_turns: the episode's turn budget (bounds how many candidates are ever drawn).
        test_case: the task's test case, which may not be queried.
        test_codes: :func:`test_value_codes` of ``test_values``, when the caller keeps them
            per task (they are the same for every episode of the task).
        fallibility: the reading and computing error rates at the reference capacity.
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
        test_codes: IntArray | None = None,
        fallibility: Fallibility,
    ) -> None:
        self.library = library
        self.capacity = capacity
        self.rng = rng
        self.test_values = test_values
        self.test_codes = test_value_codes(test_values) if test_codes is None else test_codes
        scale = math.sqrt(REFERENCE_CAPACITY / capacity)
        mismatch = min(MAX_RATE, fallibility.mismatch_likelihood * scale)
        self.log_mismatch = math.log(mismatch) if mismatch > 0 else -math.inf
        self.base_slip = min(MAX_RATE, fallibility.answer_slip * scale)
        self.slip_halving_queries = fallibility.slip_halving_queries
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
        # Evidence against each queued candidate (contradicting query results) and whether a
        # wrong answer ruled it out, kept up to date as observations arrive: examining a
        # candidate is then a lookup.
        self._queue_mismatches: IntArray = np.zeros(len(self._queue), dtype=np.int64)
        self._queue_alive: BoolArray = np.ones(len(self._queue), dtype=bool)
        self._cursor = 0
        self._examined_mass = 0.0
        self.pool: IntArray = np.empty(0, dtype=np.int64)
        self._pool_mismatches: IntArray = np.empty(0, dtype=np.int64)
        self._pool_log_weights: FloatArray = np.empty(0, dtype=np.float64)
        self.observed_probes: list[int] = []
        self.wrong_answers: list[float] = []
        self._belief: Belief | None = None  # until the evidence or the pool changes
        test_point = np.asarray(test_case, dtype=np.float64)
        # The probes it may still query: unused, and not the test case.
        self._options: IntArray = np.nonzero(np.any(library.probes != test_point, axis=1))[0]

    # ------------------------------------------------------------------ thinking

    def think(self) -> None:
        """Spends one turn's thought: examine up to ``capacity`` new candidates and keep the
        ``capacity`` most plausible hypotheses."""
        if self._cursor >= len(self._queue):
            return
        window = slice(self._cursor, self._cursor + self.capacity)
        candidates = self._queue[window]
        self._cursor += len(candidates)
        self._examined_mass += float(self.library.weights[candidates].sum())
        alive = self._queue_alive[window]
        pool = np.concatenate([self.pool, candidates[alive]])
        mismatches = np.concatenate([self._pool_mismatches, self._queue_mismatches[window][alive]])
        log_weights = self._log_weights(pool, mismatches)
        if len(pool) > self.capacity:
            # The most plausible first; ties keep the earlier thought (stable sort).
            keep = (-log_weights).argsort(kind="stable")[: self.capacity]
            keep.sort()
            pool, mismatches, log_weights = pool[keep], mismatches[keep], log_weights[keep]
        self._set_pool(pool, mismatches, log_weights)

    def _log_weights(self, hypotheses: IntArray, mismatches: IntArray) -> FloatArray:
        if self.log_mismatch == -math.inf:  # 0 * -inf would be nan
            penalty = np.where(mismatches > 0, -math.inf, 0.0)
        else:
            penalty = mismatches * self.log_mismatch
        weights: FloatArray = self.library.log_weights[hypotheses] + penalty
        return weights

    def _set_pool(
        self, pool: IntArray, mismatches: IntArray, log_weights: FloatArray | None = None
    ) -> None:
        if log_weights is None:
            log_weights = self._log_weights(pool, mismatches)
        if self.log_mismatch == -math.inf:
            # An infallible reader holds no hypothesis that an observation contradicts.
            keep = mismatches == 0
            pool, mismatches, log_weights = pool[keep], mismatches[keep], log_weights[keep]
        self.pool = pool
        self._pool_mismatches = mismatches
        self._pool_log_weights = log_weights
        self._belief = None

    def _agree(self, candidates: IntArray, probe: int, code: int) -> BoolArray:
        """Which candidates show the observation ``code`` at ``probe``.

        An error matches only an error; a value only the same value (nan included) without
        an error (:attr:`HypothesisLibrary.probe_codes`). The pool and the queued candidates
        are both judged by this one rule, so they cannot drift apart.
        """
        agree: BoolArray = self.library.probe_codes[candidates, probe] == code
        return agree

    def _predicts(self, candidates: IntArray, value: float) -> BoolArray:
        predicted = self.test_values[candidates]
        return np.abs(predicted - value) <= ANSWER_TOLERANCE

    # -------------------------------------------------------------- observations

    def observe_query(self, probe: int, value: float | None) -> None:
        """Records a query result (``None`` for ``query_error``): every hypothesis it
        contradicts, held or still to come, loses weight."""
        code = self.library.observation_code(probe, value)
        self.observed_probes.append(probe)
        self._options = self._options[self._options != probe]
        self._set_pool(self.pool, self._pool_mismatches + ~self._agree(self.pool, probe, code))
        unseen = slice(self._cursor, None)
        self._queue_mismatches[unseen] += ~self._agree(self._queue[unseen], probe, code)

    def observe_wrong_answer(self, value: float) -> None:
        """Rules out every hypothesis that predicted ``value`` at the test case."""
        self.wrong_answers.append(value)
        keep = ~self._predicts(self.pool, value)
        self._set_pool(self.pool[keep], self._pool_mismatches[keep])
        unseen = slice(self._cursor, None)
        self._queue_alive[unseen] &= ~self._predicts(self._queue[unseen], value)

    # ---------------------------------------------------------------- decisions

    def choose_query(self) -> int | None:
        """The unused probe where the most of its plausible hypotheses (within
        :data:`PLAUSIBLE_LOG_RATIO` of the best) disagree with its leading one: it tests its
        favourite where the alternatives it takes seriously would show."""
        options = self._options
        if not len(options):
            return None
        if len(self.pool) < 2:
            return int(options[0])
        log_weights = self._pool_log_weights
        leader = int(log_weights.argmax())
        plausible = self.pool[log_weights >= log_weights[leader] - PLAUSIBLE_LOG_RATIO]
        if len(plausible) < 2:
            return int(options[0])
        split_codes = self.library.split_codes
        shown = split_codes[plausible[:, None], options]
        disagree = (shown != split_codes[self.pool[leader], options]).sum(axis=0)
        return int(options[int(disagree.argmax())])

    def belief(self) -> Belief:
        """The value it would answer, and how strongly it believes it (see :class:`Belief`)."""
        if self._belief is None:
            self._belief = self._weigh()
        return self._belief

    def prediction(self) -> tuple[float | None, float]:
        """``(value, confidence)`` of :meth:`belief`."""
        belief = self.belief()
        return belief.value, belief.confidence

    def slip_chance(self) -> float:
        """The chance that computing the answer now goes wrong: halved by every
        ``slip_halving_queries`` query results seen of the function."""
        halvings = len(self.observed_probes) / self.slip_halving_queries
        return float(self.base_slip * 0.5**halvings)

    def answer(self) -> float | None:
        """The value to answer: the believed value, unless the computation slips."""
        value = self.belief().value
        if value is None or not math.isfinite(value):
            return value
        if self.rng.random() < self.slip_chance():
            return value + float(self.rng.choice(SLIP_OFFSETS))
        return value

    def _weigh(self) -> Belief:
        # The unexamined hypotheses' prior mass, discounted as a typical wrong hypothesis is
        # by every query result (most contradict each one), stands for "a rule I have not
        # thought of yet".
        n_observed = len(self.observed_probes)
        unexplored = max(0.0, 1.0 - self._examined_mass) * (
            math.exp(self.log_mismatch * n_observed) if n_observed else 1.0
        )
        if not len(self.pool):
            return Belief(None, 0.0, 0.0, 1.0 if unexplored > 0 else 0.0)
        weights = np.exp(self._pool_log_weights)
        total = float(weights.sum()) + unexplored
        # The belief in each value (equal when Function-Gym would round them to the same
        # number): one weighted count over the value codes; no hypothesis answers a nan.
        codes = self.test_codes[self.pool]
        mass = np.bincount(codes, weights=weights)
        mass[NAN_CODE] = 0.0  # no finite value: it cannot be the expected result
        best = int(mass.argmax())
        if mass[best] <= 0.0:
            return Belief(None, 0.0, 0.0, unexplored / total)
        confidence = float(mass[best]) / total
        mass[best] = 0.0
        runner_up = float(mass.max()) / total
        # Answer the exact value of the most believed hypothesis with that rounding.
        member = self.pool[int(np.where(codes == best, weights, -1.0).argmax())]
        return Belief(float(self.test_values[member]), confidence, runner_up, unexplored / total)


def test_value_codes(test_values: FloatArray) -> IntArray:
    """Integer codes of the hypotheses' values at a test case, equal exactly where
    Function-Gym's rounding to 4 decimals makes them equal; :data:`NAN_CODE` where the value
    is not finite (an error, a nan or an infinite result: none can be the expected result,
    which is always finite). Codes are small (``2 + rank``), so counting is cheap."""
    rounded = round4(test_values)
    codes = _column_codes(rounded)[0]
    codes[np.isinf(rounded)] = NAN_CODE
    return codes
