"""The search space's parameters: a float range, an int range, a list of choices.

Their own module because the config (which holds them) and the space (which turns them into
Optuna distributions, pymoo coordinates and grids) both need them, and the config's checks
need the space.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """Unknown keys forbidden, instances frozen: every model of a sweep config."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(StrictModel):
    """A real-valued parameter in ``[low, high]``."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    """Sample ``log(value)`` uniformly: for rates and weights spanning decades."""
    step: float | None = Field(None, gt=0)
    """Discretise to ``low + i * step`` (not with ``log``)."""

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined; drop one of them")
        return self


class IntParam(StrictModel):
    """An integer parameter in ``[low, high]`` (both included)."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be combined; drop one of them")
        return self


class CategoricalParam(StrictModel):
    """One of a list of values (numbers, strings or booleans)."""

    type: Literal["categorical"]
    choices: list[str | bool | int | float] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: list[Any]) -> list[Any]:
        seen = [json.dumps(choice) for choice in choices]
        if len(set(seen)) != len(seen):
            raise ValueError("choices must be distinct")
        return choices


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def _check_range(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("low and high must be finite numbers")
    if low >= high:
        raise ValueError(f"low ({low}) must be below high ({high}); swap them")
    if log and low <= 0:
        raise ValueError(f"a log-scale range needs low > 0 (got {low}); raise low or drop log")
