"""CPU execution mode of the verl backend (pinned to verl 0.9.1): the smoke run.

``bao-pareto train CONFIG --smoke`` (or ``smoke.enabled: true`` in a verl config) runs the real
``verl.trainer.main_ppo`` for a step or two on this machine's CPU, with a tiny randomly
initialised model: verl's v1 trainer, Ray, the ``bao_agent`` loop, the ``bao_turn`` estimator,
an FSDP2 update, the weight push to the rollout server, validation and MLflow tracking. What it
needs from verl, through verl's extension points where it has one:

- a CPU platform (:mod:`bao.verl.cpu.platform`, ``VERL_PLATFORM=cpu``);
- a transformers rollout server (:mod:`bao.verl.cpu.rollout`, ``rollout.name=hf``);
- the FSDP engine, which verl registers for cuda and npu only, chosen with
  ``VERL_ENGINE_DEVICE=cuda`` (the engine itself places tensors with the platform's device);
- the process group: verl builds ``"cpu:gloo,<device>:<backend>"``, which torch rejects when
  both halves name the CPU (:func:`_patch_process_group`, the one monkeypatch).

:func:`register` runs in every verl process (``bao.verl.register``, through
``VERL_USE_EXTERNAL_MODULES``); it only adds names to verl's registries, so a GPU run is unchanged.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Final

log = logging.getLogger(__name__)

VERL_VERSION: Final = "0.9.1"
ENVIRONMENT: Final = {
    "VERL_PLATFORM": "cpu",
    # verl registers its FSDP engine for cuda and npu; on CPU the same engine is the one wanted.
    "VERL_ENGINE_DEVICE": "cuda",
    # Two cores, several processes: one thread each keeps them from thrashing.
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
}
"""Variables every process of a CPU run needs (the launcher passes them to Ray's workers)."""


def verl_matches() -> bool:
    """Whether the installed verl is the one this mode was written against."""
    try:
        import verl
    except ImportError:
        return False
    return getattr(verl, "__version__", None) == VERL_VERSION


def register() -> None:
    """Registers the CPU platform and the ``hf`` rollout backend with verl (idempotent).

    On another verl version nothing is registered (the launcher refuses CPU runs there with
    one line; a GPU run must not fail on this module)."""
    if not verl_matches():
        log.warning("bao.verl.cpu: verl is not %s; the CPU mode is not registered", VERL_VERSION)
        return
    # Each module registers itself when imported. Not by a call from here: a Ray process that
    # unpickles the rollout server imports bao.verl.cpu.rollout first, which imports verl,
    # which imports this package (VERL_USE_EXTERNAL_MODULES) while that module is half done.
    from bao.verl.cpu import platform, rollout  # noqa: F401

    _patch_process_group()


def _patch_process_group() -> None:
    """verl 0.9.1 starts its process group with ``backend="cpu:gloo,<device>:<backend>"``
    (``verl.utils.distributed.initialize_global_process_group_ray``); on CPU that is
    ``"cpu:gloo,cpu:gloo"``, which torch refuses (a device named twice). verl has no setting
    for it, so the function is wrapped: on the CPU platform, with no backend given, it asks
    for plain ``gloo``; anything else goes to verl's function unchanged."""
    from verl.utils import distributed

    original: Any = getattr(distributed, "initialize_global_process_group_ray")  # noqa: B009
    if getattr(original, "_bao_cpu", False):
        return

    @functools.wraps(original)
    def initialize(timeout_second: Any = None, backend: Any = None) -> Any:
        from verl.utils.device import get_device_name

        if backend is None and get_device_name() == "cpu":
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    initialize._bao_cpu = True  # type: ignore[attr-defined]
    setattr(distributed, "initialize_global_process_group_ray", initialize)  # noqa: B010
    # Modules that imported the function by name before this ran keep the old reference.
    for name in ("verl.workers.engine_workers", "verl.checkpoint_engine.base"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "initialize_global_process_group_ray"):
            setattr(module, "initialize_global_process_group_ray", initialize)  # noqa: B010
