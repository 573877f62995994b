"""Environments: Function-Gym (rule-based), and Telepathy-Gym and Turtle-Gym, whose user is a
language model behind an OpenAI-compatible endpoint (``bao.envs.user_simulator``)."""

from bao.envs.function_gym import (
    CHOICES,
    EVENTS,
    USER_INVOLVED_CHOICES,
    FunctionGymEnv,
    format_action,
    parse_action,
)
from bao.envs.user_gyms import USER_GYM_EVENTS, TelepathyGymEnv, TurtleGymEnv

__all__ = [
    "CHOICES",
    "EVENTS",
    "USER_GYM_EVENTS",
    "USER_INVOLVED_CHOICES",
    "FunctionGymEnv",
    "TelepathyGymEnv",
    "TurtleGymEnv",
    "format_action",
    "parse_action",
]
