"""The CPU simulator backend: a BAO GRPO run in miniature.

The same Function-Gym, tasks, shaping, turn-level advantages and metrics as a real run; the
agent is a small torch behaviour policy over a bounded-capacity hypothesis reasoner
(``reasoner.py``), trained by GRPO (``trainer.py``, readable top to bottom) from the settings in
``config.py``. Importing this package does not import torch; ``trainer`` and ``policy`` do.
"""
