"""Environments: Function-Gym (rule-based) here; the LLM-user gyms come as adapters."""

from bao.envs.function_gym import (
    CHOICES,
    EVENTS,
    USER_INVOLVED_CHOICES,
    FunctionGymEnv,
    format_action,
    parse_action,
)

__all__ = [
    "CHOICES",
    "EVENTS",
    "USER_INVOLVED_CHOICES",
    "FunctionGymEnv",
    "format_action",
    "parse_action",
]
