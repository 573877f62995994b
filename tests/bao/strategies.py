"""Hypothesis strategies shared by the bao tests."""

from __future__ import annotations

from hypothesis import strategies as st

from bao.expressions import BinOp, Const, Node, Var

leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Var, st.integers(0, 3)), st.builds(Const, st.integers(0, 12))
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.builds(BinOp, st.sampled_from(["+", "-", "*", "/", "**"]), children, children)


rules: st.SearchStrategy[Node] = st.recursive(leaves, _extend, max_leaves=8)

# Coordinates that exercise every branch of the arithmetic: zeros, negatives, fractions,
# integers (for negative bases with integral exponents), huge values, infinities and nan.
coordinates = st.one_of(
    st.integers(-10, 10).map(float),
    st.floats(-20, 20, allow_nan=False),
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1e308, -1e308, 1e-300, float("inf"), float("-inf")]),
    st.just(float("nan")),
)
points = st.lists(coordinates, min_size=4, max_size=4)
