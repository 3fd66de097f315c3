"""Where streamed bytes land: host memory read in place, or pinned staging buffers copied to a GPU.

A sink allocates one destination slab per file for its selected tensors (``prepare``), fills it
from planned reads (``fill``, called from reader threads) and hands out finished tensors as views
of it (``tensor``). Reads are planned at most ``read_size`` bytes long.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from servelab.errors import DeviceError
from servelab.loader.format import DTYPES, TensorSpec
from servelab.loader.pagecache import prefault
from servelab.loader.plan import PAGE, Chunk, Layout, layout, pack_offsets
from servelab.loader.sources import ByteSource

if TYPE_CHECKING:
    import torch

PREFAULT_MIN_BYTES = 64 << 20
# What ``dtype=`` converts: the plain float types. Quantised float8 and float4 weights keep their
# type (converting them element by element, without their scales, would change the model), and so
# do integers and booleans.
CONVERTIBLE = frozenset({"F16", "BF16", "F32", "F64"})


class Sink(Protocol):
    read_size: int

    def prepare(self, file: int, specs: Sequence[TensorSpec]) -> None: ...
    def fill(self, chunk: Chunk, source: ByteSource) -> None: ...
    def tensor(self, file: int, index: int) -> torch.Tensor: ...
    def release(self, file: int) -> None: ...


class Slab:
    """One file's destination buffer, laid out by ``plan.layout``, handing out its tensors as views.

    A view is one ``as_strided`` of a typed alias of the buffer (about 1.5 us), so checkpoints of
    tens of thousands of small tensors pay little per tensor.
    """

    def __init__(self, buffer: torch.Tensor, plan: Layout, specs: Sequence[TensorSpec]) -> None:
        self.buffer = buffer
        self.layout = plan
        self.specs = specs
        self._typed: dict[torch.dtype, torch.Tensor] = {}

    def view(self, index: int) -> torch.Tensor:
        """Tensor ``index`` as its spec describes it, copied only where the file stores it at an
        offset its dtype cannot be viewed at."""
        import torch

        spec = self.specs[index]
        dtype, width = _torch_dtype(spec.dtype)
        if spec.nbytes == 0:
            return torch.empty(spec.torch_shape, dtype=dtype, device=self.buffer.device)
        at = self.buffer.storage_offset() + self.layout.offsets[index]
        if at % width:
            start = self.layout.offsets[index]
            return self.buffer[start : start + spec.nbytes].clone().view(dtype).view(spec.torch_shape)
        typed = self._typed.get(dtype)
        if typed is None:
            storage = self.buffer.untyped_storage()
            typed = torch.empty(0, dtype=dtype, device=self.buffer.device).set_(storage, 0, (storage.nbytes() // width,), (1,))
            self._typed[dtype] = typed
        shape = spec.torch_shape
        return typed.as_strided(shape, _contiguous_strides(shape), at // width)


class HostSink:
    """Reads each file's tensors straight into one host slab: no staging, no copies.

    The slab is page-aligned and, for a whole file, mirrors it (``plan.layout``), so an uncached
    chunk is read with O_DIRECT in place. Tensors are views into their file's slab, so the slab
    lives while any of them does.
    """

    def __init__(self, chunk_size: int, dtype: torch.dtype | None = None) -> None:
        self.read_size = chunk_size
        self._dtype = dtype
        self._files: dict[int, Slab] = {}

    def prepare(self, file: int, specs: Sequence[TensorSpec]) -> None:
        import torch

        plan = layout(specs)
        padded = torch.empty(plan.size + PAGE, dtype=torch.uint8)
        skip = -padded.data_ptr() % PAGE  # page-aligned, so a mirror is congruent to the file
        self._files[file] = Slab(padded[skip : skip + plan.size], plan, specs)
        if plan.size >= PREFAULT_MIN_BYTES:
            # Fault the slab in on a side thread, on whatever core is waiting on I/O, ahead of the readers.
            address = padded.data_ptr() + skip
            threading.Thread(target=prefault, args=(address, plan.size), daemon=True, name="servelab-prefault").start()

    def fill(self, chunk: Chunk, source: ByteSource) -> None:
        slab = self._files[chunk.file]
        memory = memoryview(slab.buffer.numpy())  # type: ignore[arg-type]  # numpy arrays are buffers; the stubs disagree
        if slab.layout.mirror:
            start, end = slab.layout.span(chunk)
            source.read_into(chunk.offset, [memory[start:end]])
            return
        offsets = slab.layout.offsets
        buffers = [memory[offsets[s.tensor] + s.offset : offsets[s.tensor] + s.offset + s.length] for s in chunk.segments]
        source.read_into(chunk.offset, buffers)

    def tensor(self, file: int, index: int) -> torch.Tensor:
        slab = self._files[file]
        tensor = slab.view(index)
        return tensor.to(self._dtype) if converts(slab.specs[index], self._dtype) else tensor

    def release(self, file: int) -> None:
        del self._files[file]


class CudaSink:
    """Reads into a bounded pool of pinned host buffers and copies each to the GPU on a side stream.

    A reader thread holds one staging buffer at a time: while its copy runs on the side stream,
    other threads read the next chunks, so transfer overlaps storage reads. Each file lands in one
    device slab laid out like the host's (one copy per read, one allocation per file: no
    per-tensor cost), and ``dtype`` conversion runs on the GPU into one more slab per file.

    The staging buffers are slices of one pinned block of ``buffers`` x ``chunk_size`` bytes: torch
    rounds pinned allocations up to a power of two and caches them, so a block of that size is
    reused by the next load in the process, where buffers a page over 32 MiB each took 64 MiB.
    Reads are a page shorter than a buffer, so each lands congruent to its file offset (O_DIRECT
    in place).
    """

    def __init__(self, device: torch.device, chunk_size: int, buffers: int, dtype: torch.dtype | None = None) -> None:
        import torch

        self._device = device
        self._dtype = dtype
        self._stream = torch.cuda.Stream(device=device)
        slot = max(chunk_size, 2 * PAGE)
        self.read_size = min(chunk_size, slot - PAGE)
        block = torch.empty(buffers * slot, dtype=torch.uint8, pin_memory=True)
        if block.data_ptr() % PAGE:  # not seen: CUDA's pinned allocations start on a page
            block = torch.empty(buffers * slot + PAGE, dtype=torch.uint8, pin_memory=True)
        first = -block.data_ptr() % PAGE
        self._staging: queue.SimpleQueue[torch.Tensor] = queue.SimpleQueue()
        for number in range(buffers):
            self._staging.put(block[first + number * slot : first + (number + 1) * slot])
        self._files: dict[int, tuple[Slab, Slab | None]] = {}

    def prepare(self, file: int, specs: Sequence[TensorSpec]) -> None:
        import torch

        plan = layout(specs)
        raw = Slab(torch.empty(plan.size, dtype=torch.uint8, device=self._device), plan, specs)
        self._files[file] = (raw, self._converted_slab(specs))

    def fill(self, chunk: Chunk, source: ByteSource) -> None:
        import torch

        raw, _ = self._files[chunk.file]
        staging = self._staging.get()
        try:
            host = staging[chunk.offset % PAGE :][: chunk.length]
            source.read_into(chunk.offset, [memoryview(host.numpy())])  # type: ignore[arg-type]
            with torch.cuda.stream(self._stream):
                if raw.layout.mirror:
                    start, end = raw.layout.span(chunk)
                    raw.buffer[start:end].copy_(host, non_blocking=True)
                else:
                    position = 0
                    for s in chunk.segments:
                        at = raw.layout.offsets[s.tensor] + s.offset
                        raw.buffer[at : at + s.length].copy_(host[position : position + s.length], non_blocking=True)
                        position += s.length
                copied = torch.cuda.Event()
                copied.record(self._stream)
            copied.synchronize()  # the staging buffer is reusable and the bytes are on the device
        finally:
            self._staging.put(staging)

    def tensor(self, file: int, index: int) -> torch.Tensor:
        raw, converted = self._files[file]
        tensor = raw.view(index)
        if converted is None or not converts(raw.specs[index], self._dtype):
            return tensor
        return converted.view(index).copy_(tensor)  # a conversion kernel on the GPU, into its place

    def release(self, file: int) -> None:
        del self._files[file]

    def _converted_slab(self, specs: Sequence[TensorSpec]) -> Slab | None:
        """One device buffer for every tensor ``dtype`` converts, so conversion allocates once per file."""
        import torch

        planned = conversion_layout(specs, self._dtype)
        if planned is None:
            return None
        plan, targets = planned
        return Slab(torch.empty(plan.size, dtype=torch.uint8, device=self._device), plan, targets)


def conversion_layout(specs: Sequence[TensorSpec], dtype: torch.dtype | None) -> tuple[Layout, list[TensorSpec]] | None:
    """Where each tensor ``dtype`` converts goes in one packed buffer, and its converted spec; None
    when nothing converts. Tensors that keep their type get no room (their spec is unchanged)."""
    if dtype is None or not any(converts(spec, dtype) for spec in specs):
        return None
    code = _safetensors_code(dtype)
    width = _torch_dtype(code)[1]
    wanted = [converts(spec, dtype) for spec in specs]
    targets = [_retyped(spec, code, width) if convert else spec for spec, convert in zip(specs, wanted, strict=True)]
    offsets, total = pack_offsets([target.nbytes if convert else 0 for target, convert in zip(targets, wanted, strict=True)])
    return Layout(tuple(offsets), total, None), targets


def converts(spec: TensorSpec, dtype: torch.dtype | None) -> bool:
    """Whether ``dtype=`` converts this tensor: a plain float type (CONVERTIBLE) other than ``dtype``."""
    return dtype is not None and spec.dtype in CONVERTIBLE and _torch_dtype(spec.dtype)[0] != dtype


@functools.cache
def _torch_dtype(code: str) -> tuple[torch.dtype, int]:
    """The torch dtype of a safetensors dtype code, and the byte alignment a view of it needs."""
    import torch

    return getattr(torch, DTYPES[code].torch_name), max(1, DTYPES[code].bits // 8)


def conversion_target(dtype: object) -> str | None:
    """The safetensors code of a ``dtype=`` that servelab converts to (a plain float type), else None."""
    return next((code for code in sorted(CONVERTIBLE) if _torch_dtype(code)[0] == dtype), None)


def _safetensors_code(dtype: torch.dtype) -> str:
    code = conversion_target(dtype)
    assert code is not None, "stream() accepts plain float dtypes only"
    return code


def _retyped(spec: TensorSpec, code: str, width: int) -> TensorSpec:
    """``spec`` as it is once converted to ``code``: same name and shape, ``width`` bytes an element."""
    return TensorSpec(spec.name, code, spec.shape, 0, math.prod(spec.shape) * width)


@functools.cache
def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


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
