"""Registers the ``bao_turn`` advantage estimator and the ``bao_agent`` agent loop with verl.

verl imports this module in every process it starts when ``VERL_USE_EXTERNAL_MODULES`` names it
(the launcher sets that variable, and passes it to Ray workers on other nodes too), so the
trainer finds the estimator and the agent-loop workers find the loop by name. It also adds the
CPU platform and the ``hf`` rollout backend of the smoke run (:mod:`bao.verl.cpu`), which verl
uses only when a run selects them (``VERL_PLATFORM=cpu``, ``rollout.name=hf``).
"""

from __future__ import annotations

from bao.verl import advantage, agent_loop, cpu

cpu.register()

__all__ = ["advantage", "agent_loop"]
