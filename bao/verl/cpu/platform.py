"""A CPU platform for verl 0.9.1's platform registry (``VERL_PLATFORM=cpu``).

verl resolves its device through :mod:`verl.plugin.platform`: without an accelerator it falls
back to NVIDIA (device ``cuda``, backend ``nccl``), which fails on the first tensor moved. This
platform says ``cpu`` and ``gloo``, and answers the memory and stream calls verl makes around
training and weight syncs with what a CPU has (nothing to empty, no streams to wait on).
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Iterator
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

PLATFORM_NAME = "cpu"


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


class _CpuDeviceModule(types.ModuleType):
    """What verl calls through ``get_torch_device()`` (a ``torch.cuda``-like namespace).

    ``torch.cpu`` has ``synchronize``, ``Stream``, ``current_stream`` and ``is_available``;
    the memory functions verl logs or frees around a weight sync are answered here: a CPU has
    no cache to empty and no device memory to report apart from the process's.
    """

    def __init__(self) -> None:
        super().__init__("bao_verl_cpu_device")

    def __getattr__(self, name: str) -> Any:
        if name in ("empty_cache", "ipc_collect", "reset_peak_memory_stats", "set_device"):
            return _nothing
        if name in (
            "memory_allocated",
            "memory_reserved",
            "max_memory_allocated",
            "max_memory_reserved",
        ):
            return _zero
        if name == "mem_get_info":
            return _mem_get_info
        if name == "set_per_process_memory_fraction":
            return _nothing
        if name == "device_count":
            return lambda: 1
        if name == "get_device_name":
            return lambda *args: "cpu"
        if name in ("get_rng_state", "set_rng_state", "manual_seed", "manual_seed_all"):
            return getattr(torch, name)
        return getattr(torch.cpu, name)


def _mem_get_info(*args: Any) -> tuple[int, int]:
    """(free, total) bytes of this machine's memory: what verl's memory logs print."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        free = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not every system names these
        return 0, 0
    return free * size, pages * size


_DEVICE_MODULE = _CpuDeviceModule()


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """Device ``cpu``, collectives over ``gloo``, no profiler, no IPC."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return _DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never picked by auto-detection: only VERL_PLATFORM=cpu selects it, so a GPU node
        # that happens to load this module keeps its accelerator.
        return False

    def current_device(self) -> Any:
        # verl moves tensors with .to(get_device_id()); "cpu" is what that must receive here.
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets it for the fake GPU the resource pool asks for; torch on CPU ignores it.
        return "CUDA_VISIBLE_DEVICES"

    def ray_resource_name(self) -> str:
        # verl's ResourcePoolManager always asks Ray for GPUs; CPU mode starts Ray with
        # logical GPUs (ray_init.num_gpus) so its placement groups can be scheduled.
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    @contextlib.contextmanager
    def nvtx_range(self, msg: str) -> Iterator[None]:
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def cudart(self) -> Any:
        return None
