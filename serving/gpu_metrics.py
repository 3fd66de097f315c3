"""What the physical GPUs are really doing, from NVML: model, memory used and total, utilisation, and
the memory each process holds. Ray counts reservations; this is the truth beside them.

NVML comes from ``nvidia-ml-py`` (``pynvml``) and the driver; where either is missing there are no
readings (an empty tuple), never an error. The embedded cluster's raylets all run on this machine,
so the process that reads a snapshot reads NVML for them; for a remote cluster no readings are made.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuProcess:
    """One process holding memory on a GPU."""

    pid: int
    memory: int  # bytes


@dataclass(frozen=True)
class GpuReading:
    """One physical GPU as NVML reports it; ``node_id`` is the raylet it was given to ("" for none)."""

    index: int
    name: str
    memory_used: int
    memory_total: int
    utilization: float | None  # percent of time a kernel ran over NVML's last sample period
    node_id: str = ""
    processes: tuple[GpuProcess, ...] = ()

    @property
    def memory_fraction(self) -> float:
        return self.memory_used / self.memory_total if self.memory_total else 0.0


_lock = threading.Lock()
_nvml: Any = None  # the pynvml module once nvmlInit succeeded; False once it failed


def _library() -> Any:
    """pynvml, initialised once per process; None where NVML or the driver is missing."""
    global _nvml
    with _lock:
        if _nvml is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml = pynvml
            except Exception:  # no package, no driver, no device: no readings
                _nvml = False
        return _nvml or None


def device_count() -> int:
    """How many GPUs NVML sees on this machine (0 without NVML)."""
    nvml = _library()
    if nvml is None:
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:
        return 0


def read(indices: list[int] | None = None, nodes: dict[int, str] | None = None) -> tuple[GpuReading, ...]:
    """NVML's readings of ``indices`` (default: every GPU), each labelled with its raylet from ``nodes``.

    >>> [(g.name, g.memory_used >> 20) for g in read()]
    [('NVIDIA H200', 1204)]
    """
    nvml = _library()
    if nvml is None:
        return ()
    nodes = nodes or {}
    readings = []
    for index in range(device_count()) if indices is None else indices:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = _memory(nvml, handle)
            name = nvml.nvmlDeviceGetName(handle)
        except Exception:
            continue
        readings.append(
            GpuReading(
                index=index,
                name=name.decode() if isinstance(name, bytes) else str(name),
                memory_used=int(memory.used),
                memory_total=int(memory.total),
                utilization=_utilization(nvml, handle),
                node_id=nodes.get(index, ""),
                processes=_processes(nvml, handle),
            )
        )
    return tuple(readings)


def _memory(nvml: Any, handle: Any) -> Any:
    """Memory as nvidia-smi counts it: version 2 leaves out what the driver reserves (about 600 MiB on
    an H200, which version 1 counts as used: measured 3439 MB against nvidia-smi's 2665)."""
    try:
        return nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
    except Exception:  # older drivers and bindings: version 1
        return nvml.nvmlDeviceGetMemoryInfo(handle)


def _utilization(nvml: Any, handle: Any) -> float | None:
    try:
        return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:
        return None


def _processes(nvml: Any, handle: Any) -> tuple[GpuProcess, ...]:
    """Compute processes and their memory; none where the container hides other processes from NVML."""
    try:
        running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:
        return ()
    return tuple(GpuProcess(int(p.pid), int(p.usedGpuMemory or 0)) for p in running)
