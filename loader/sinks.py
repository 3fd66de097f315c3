"""Where streamed bytes land: host memory read in place, or pinned staging buffers copied to a GPU.

A sink allocates destinations for a file's selected tensors (``prepare``), fills them from one
planned read (``fill``, called from reader threads) and hands out finished tensors (``tensor``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from servelab.errors import DeviceError
from servelab.loader.format import DTYPES, TensorSpec
from servelab.loader.pagecache import prefault
from servelab.loader.plan import Chunk, pack_offsets
from servelab.loader.sources import ByteSource

if TYPE_CHECKING:
    import torch


class Sink(Protocol):
    def prepare(self, file: int, specs: Sequence[TensorSpec]) -> None: ...
    def fill(self, chunk: Chunk, source: ByteSource) -> None: ...
    def tensor(self, file: int, index: int) -> torch.Tensor: ...
    def release(self, file: int) -> None: ...


class HostSink:
    """Reads each file's tensors straight into one aligned host slab: no staging, no copies.

    Tensors are views into their file's slab, so the slab lives while any of them does.
    """

    def __init__(self) -> None:
        self._files: dict[int, tuple[torch.Tensor, list[int], Sequence[TensorSpec]]] = {}

    def prepare(self, file: int, specs: Sequence[TensorSpec]) -> None:
        import torch

        offsets, total = pack_offsets([spec.nbytes for spec in specs])
        slab = torch.empty(total, dtype=torch.uint8)
        self._files[file] = (slab, offsets, specs)
        if total >= PREFAULT_MIN_BYTES:
            # Fault the slab in on a side thread, on whatever core is waiting on I/O, ahead of the readers.
            threading.Thread(target=prefault, args=(slab.data_ptr(), total), daemon=True, name="servelab-prefault").start()

    def fill(self, chunk: Chunk, source: ByteSource) -> None:
        slab, offsets, _ = self._files[chunk.file]
        memory = memoryview(slab.numpy())  # type: ignore[arg-type]  # numpy arrays are buffers; the stubs disagree
        buffers = [memory[offsets[s.tensor] + s.offset : offsets[s.tensor] + s.offset + s.length] for s in chunk.segments]
        source.read_into(chunk.offset, buffers)

    def tensor(self, file: int, index: int) -> torch.Tensor:
        slab, offsets, specs = self._files[file]
        return as_typed(slab[offsets[index] : offsets[index] + specs[index].nbytes], specs[index])

    def release(self, file: int) -> None:
        del self._files[file]


class CudaSink:
    """Reads into a bounded pool of pinned host buffers and copies each to the GPU on a side stream.

    A reader thread holds one staging buffer at a time: while its copy runs on the side stream,
    other threads read the next chunks, so transfer overlaps storage reads.
    """

    def __init__(self, device: torch.device, chunk_size: int, buffers: int) -> None:
        import torch

        self._device = device
        self._stream = torch.cuda.Stream(device=device)
        self._staging: queue.SimpleQueue[torch.Tensor] = queue.SimpleQueue()
        for _ in range(buffers):
            self._staging.put(torch.empty(chunk_size, dtype=torch.uint8, pin_memory=True))
        self._files: dict[int, tuple[list[torch.Tensor], Sequence[TensorSpec]]] = {}

    def prepare(self, file: int, specs: Sequence[TensorSpec]) -> None:
        import torch

        destinations = [torch.empty(spec.nbytes, dtype=torch.uint8, device=self._device) for spec in specs]
        self._files[file] = (destinations, specs)

    def fill(self, chunk: Chunk, source: ByteSource) -> None:
        import torch

        destinations, _ = self._files[chunk.file]
        staging = self._staging.get()
        try:
            host = staging[: chunk.length]
            source.read_into(chunk.offset, [memoryview(host.numpy())])  # type: ignore[arg-type]
            with torch.cuda.stream(self._stream):
                position = 0
                for s in chunk.segments:
                    target = destinations[s.tensor][s.offset : s.offset + s.length]
                    target.copy_(host[position : position + s.length], non_blocking=True)
                    position += s.length
                copied = torch.cuda.Event()
                copied.record(self._stream)
            copied.synchronize()  # the staging buffer is reusable and the bytes are on the device
        finally:
            self._staging.put(staging)

    def tensor(self, file: int, index: int) -> torch.Tensor:
        destinations, specs = self._files[file]
        return as_typed(destinations[index], specs[index])

    def release(self, file: int) -> None:
        del self._files[file]


PREFAULT_MIN_BYTES = 64 << 20


def as_typed(raw: torch.Tensor, spec: TensorSpec) -> torch.Tensor:
    """View raw bytes as the tensor ``spec`` describes (dtype and shape), without copying."""
    import torch

    dtype = getattr(torch, DTYPES[spec.dtype].torch_name)
    if spec.nbytes == 0:
        return torch.empty(spec.torch_shape, dtype=dtype, device=raw.device)
    return raw.view(dtype).reshape(spec.torch_shape)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA where present; asking for CUDA where there is none is an error."""
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"device={device!r} is not a device ({exc}); use 'cpu', 'cuda', 'cuda:N' or 'auto'.") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device={device!r} but CUDA is not available on this machine; use device='cpu' or device='auto'.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s).")
    elif resolved.type != "cpu":
        raise DeviceError(f"device={device!r}: servelab streams to 'cpu' or 'cuda' devices.")
    return resolved
