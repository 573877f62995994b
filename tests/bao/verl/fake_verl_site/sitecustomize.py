"""Imported at start-up by every Python process with this folder on ``PYTHONPATH`` (the verl
pruning test, tests/bao/verl/test_verl_pruning.py): with ``BAO_TEST_FAKE_VERL`` set, verl's
entry point is fake_main_ppo.py and one GPU is 'present', as the ``fake_verl`` fixture of
test_launch.py sets them in-process, so that a sweep's ``train`` subprocesses run the fake."""

from __future__ import annotations

import os
import sys
from pathlib import Path

if os.environ.get("BAO_TEST_FAKE_VERL") and "fake_main_ppo" not in sys.argv[0]:
    from bao.verl import launch, run

    FAKE_MAIN = Path(__file__).resolve().parents[1] / "fake_main_ppo.py"
    run.command = lambda overrides: [sys.executable, str(FAKE_MAIN), *overrides]  # type: ignore[assignment]
    launch._local_gpus = lambda: 1  # type: ignore[assignment]
