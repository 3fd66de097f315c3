"""This machine's physical GPUs, and how the embedded cluster's raylets share them.

Ray numbers each raylet's GPUs 0..n-1 and hands a worker its slot numbers as ``CUDA_VISIBLE_DEVICES``,
mapped through the raylet's own ``CUDA_VISIBLE_DEVICES`` when it has one. Raylets started without
one therefore all use physical GPUs 0..n-1 (measured on an H200 machine: two 2-GPU raylets put
slot 0 of each on GPU 0, and slot 1 saw no CUDA device at all). ``plan_gpus`` gives each raylet a
disjoint slice of the machine's GPUs instead, or, where the slices do not fit (or the machine has
none), an explicit logical mode in which no worker sees a CUDA device, and every view says so.

The planning is pure; ``visible_gpus`` asks NVML (``nvidia-ml-py``) which GPUs this process may use.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from servelab.errors import ClusterError, DeviceError
from servelab.serving import gpu_metrics

log = logging.getLogger("servelab.serving")

PHYSICAL, LOGICAL = "physical", "logical"
LOGICAL_NOTE = "logical GPUs: replicas get no CUDA device"
# Set in every raylet's environment, and so in every worker's: replicas read their mode from it.
MODE_VARIABLE = "SERVELAB_GPU_MODE"
# Ray then leaves CUDA_VISIBLE_DEVICES alone in workers, which inherit the raylet's empty one.
RAY_NOSET_VARIABLE = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"
NO_GPU_DEFAULT = 2  # logical GPUs per node on a machine without GPUs: enough to show fractional packing


@dataclass(frozen=True)
class GpuPlan:
    """Which physical GPUs each worker raylet gets (in start order), or logical GPUs for all.

    >>> plan_gpus([2, 2], physical=[0, 1, 2, 3]).devices
    ((0, 1), (2, 3))
    """

    mode: str  # PHYSICAL or LOGICAL
    devices: tuple[tuple[int, ...], ...]  # per worker: the physical GPU indices its CUDA_VISIBLE_DEVICES names
    machine_gpus: int  # how many GPUs this process could use
    reason: str = ""  # why the GPUs are logical

    @property
    def logical(self) -> bool:
        return self.mode == LOGICAL

    def environment_for(self, devices: tuple[int, ...]) -> dict[str, str]:
        """What a worker raylet holding ``devices`` is started with: its slice of GPUs, or none at all."""
        if self.logical:
            return {"CUDA_VISIBLE_DEVICES": "", RAY_NOSET_VARIABLE: "1", MODE_VARIABLE: LOGICAL}
        return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, devices)), MODE_VARIABLE: PHYSICAL}

    def describe(self) -> str:
        """One line for people: ``"physical GPUs: 2 of 2 given to 2 raylet(s)"``, or the logical note and why."""
        if self.logical:
            return f"{LOGICAL_NOTE} ({self.reason})" if self.reason else LOGICAL_NOTE
        used = sum(len(d) for d in self.devices)
        if not used:
            return "no GPUs asked for"
        return f"physical GPUs: {used} of {self.machine_gpus} given to {sum(1 for d in self.devices if d)} raylet(s)"


def default_gpus_per_node(nodes: int, machine_gpus: int) -> int:
    """GPUs per node when none are asked for: the machine's GPUs split evenly, or logical ones where it has none.

    >>> default_gpus_per_node(nodes=2, machine_gpus=8)
    4
    """
    if machine_gpus == 0:
        return NO_GPU_DEFAULT
    return max(1, machine_gpus // max(1, nodes))


def plan_gpus(requests: Sequence[float], physical: Sequence[int]) -> GpuPlan:
    """Give each worker (its GPU count in ``requests``) whole physical GPUs of its own, in order.

    A worker asking for a fraction gets one GPU (its replicas share it). When the machine has no
    GPU, or fewer than the workers need together, every GPU is logical: no worker sees a CUDA device.

    >>> plan_gpus([1, 1, 1], physical=[0]).mode
    'logical'
    """
    for gpus in requests:
        if isinstance(gpus, bool) or not isinstance(gpus, int | float) or gpus < 0 or math.isnan(gpus):
            raise ClusterError(f"gpus={gpus!r}: a node's GPUs must be a non-negative number.")
    needed = [math.ceil(gpus) for gpus in requests]
    if not any(needed):
        return GpuPlan(PHYSICAL, tuple(() for _ in requests), len(physical))
    if not physical:
        return GpuPlan(LOGICAL, tuple(() for _ in requests), 0, "this machine has no GPU")
    if sum(needed) > len(physical):
        return GpuPlan(
            LOGICAL,
            tuple(() for _ in requests),
            len(physical),
            f"{sum(needed)} GPUs asked for, {len(physical)} on this machine; for real ones ask for at most "
            f"{len(physical)} in all (e.g. nodes={min(len(physical), len(requests))}, "
            f"gpus_per_node={max(1, len(physical) // max(1, len(requests)))})",
        )
    devices, at = [], 0
    for count in needed:
        devices.append(tuple(physical[at : at + count]))
        at += count
    return GpuPlan(PHYSICAL, tuple(devices), len(physical))


def visible_gpus() -> list[int]:
    """The physical GPU indices this process may hand out: NVML's devices, narrowed by its own
    ``CUDA_VISIBLE_DEVICES`` (integers only; UUIDs are matched by NVML order). Empty without NVML."""
    count = gpu_metrics.device_count()
    own = os.environ.get("CUDA_VISIBLE_DEVICES")
    if own is None:
        return list(range(count))
    chosen = []
    for item in own.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) >= count:
            break  # CUDA stops at the first entry it cannot use
        chosen.append(int(item))
    return chosen


def replica_device(requested: str, reserved: float) -> str:
    """Where a replica's weights go: as asked, or for ``"auto"`` its CUDA device when it reserved GPUs.

    A replica that reserved GPUs but sees no CUDA device fails with a clear error, except on an
    embedded cluster whose GPUs are logical, where it runs on the CPU and says so in its log.
    """
    if str(requested) != "auto" or not reserved:
        return str(requested)
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get(MODE_VARIABLE) == LOGICAL:
        log.warning("%s: this replica reserved %g GPU(s) and runs on the CPU", LOGICAL_NOTE, reserved)
        return "cpu"
    raise DeviceError(
        f"this replica reserved {reserved:g} GPU(s) but sees no CUDA device (CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}): its node's GPUs are not real or not usable. Deploy with gpus=0, "
        "or on a cluster whose raylets own real GPUs (up() on a machine with GPUs gives each raylet its own)."
    )
