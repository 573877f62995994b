"""The trainable side of bao-pareto: Function-Gym, tasks, shaping, advantages and metrics.

Importing ``bao`` is cheap: torch, verl and the simulator load only when their modules do.
"""

__version__ = "0.1.0"
