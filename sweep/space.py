"""The search space in the forms each driver needs.

Optuna gets its own distributions. pymoo works on a box of real numbers, so every parameter
is a coordinate in ``[0, 1]`` decoded here: linear or logarithmic for numbers (then rounded
to the step), an equal-width bin per choice for categoricals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.params import CategoricalParam, FloatParam, IntParam

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

Param = FloatParam | IntParam | CategoricalParam


def distributions(space: Mapping[str, Param]) -> dict[str, BaseDistribution]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    result: dict[str, BaseDistribution] = {}
    for path, spec in space.items():
        if isinstance(spec, FloatParam):
            result[path] = FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
        elif isinstance(spec, IntParam):
            result[path] = IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
        else:
            result[path] = CategoricalDistribution(spec.choices)
    return result


def corner_values(spec: Param) -> list[Any]:
    """The values a backend must accept: both ends of a range, every choice."""
    if isinstance(spec, CategoricalParam):
        return list(spec.choices)
    return [spec.low, _top(spec)]


def _top(spec: FloatParam | IntParam) -> float | int:
    """The largest value on the step grid (``high`` itself when no step is set)."""
    if spec.step is None or spec.log:
        return spec.high
    count = math.floor((spec.high - spec.low) / spec.step + 1e-9)
    top = spec.low + count * spec.step
    return int(top) if isinstance(spec, IntParam) else float(top)


def grid_values(spec: Param, points: int) -> list[Any]:
    """Grid-sampler values: every choice; evenly (or log-) spaced numbers otherwise."""
    if isinstance(spec, CategoricalParam):
        return list(spec.choices)
    if isinstance(spec, IntParam):
        every = list(range(spec.low, spec.high + 1, spec.step))
        if len(every) <= points:
            return every
    if spec.step is not None and not spec.log and isinstance(spec, FloatParam):
        steps = math.floor((spec.high - spec.low) / spec.step + 1e-9) + 1
        if steps <= points:
            return [spec.low + i * spec.step for i in range(steps)]
    if spec.log:
        raw = np.exp(np.linspace(math.log(spec.low), math.log(spec.high), points))
    else:
        raw = np.linspace(spec.low, spec.high, points)
    return sorted({_snap(spec, float(v)) for v in raw})


def grid_size(space: Mapping[str, Param], points: int) -> int:
    return math.prod(len(grid_values(spec, points)) for spec in space.values())


def decode(space: Mapping[str, Param], x: Sequence[float]) -> dict[str, Any]:
    """Parameters of a point of the unit box (pymoo's variables), clipped to ``[0, 1]``."""
    params: dict[str, Any] = {}
    for (path, spec), coordinate in zip(space.items(), x, strict=True):
        u = min(1.0, max(0.0, float(coordinate)))
        if isinstance(spec, CategoricalParam):
            params[path] = spec.choices[min(int(u * len(spec.choices)), len(spec.choices) - 1)]
            continue
        if spec.log:
            span = math.log(spec.high) - math.log(spec.low)
            value = (
                math.exp(math.log(spec.low) + u * span)
                if 0.0 < u < 1.0
                else (
                    spec.low if u == 0.0 else spec.high  # exp(log(x)) is not always x
                )
            )
        else:
            value = spec.low + u * (spec.high - spec.low)
        params[path] = _snap(spec, value)
    return params


def encode(space: Mapping[str, Param], params: Mapping[str, Any]) -> list[float]:
    """The point of the unit box that :func:`decode` turns back into ``params`` (a choice
    sits in the middle of its bin): how a model-based driver sees the trials it learns from."""
    point: list[float] = []
    for path, spec in space.items():
        value = params[path]
        if isinstance(spec, CategoricalParam):
            point.append((spec.choices.index(value) + 0.5) / len(spec.choices))
        elif spec.high == spec.low:
            point.append(0.0)
        elif spec.log:
            span = math.log(spec.high) - math.log(spec.low)
            point.append((math.log(value) - math.log(spec.low)) / span)
        else:
            point.append((value - spec.low) / (spec.high - spec.low))
    return point


def _snap(spec: FloatParam | IntParam, value: float) -> Any:
    if isinstance(spec, IntParam):
        whole = spec.low + round((value - spec.low) / spec.step) * spec.step
        return int(min(max(whole, spec.low), _top(spec)))
    if spec.step is not None:
        snapped = spec.low + round((value - spec.low) / spec.step) * spec.step
        return float(min(max(snapped, spec.low), _top(spec)))
    return float(min(max(value, spec.low), spec.high))
