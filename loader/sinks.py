"""Where streamed bytes land: host memory read in place (or converted from staging buffers), or
pinned staging buffers copied to a GPU.

A sink allocates one destination slab per file for its selected tensors (``prepare``), fills it
from planned reads (``fill``, called from reader threads) and hands out finished tensors as views
of it (``tensor``). Reads are planned at most ``read_size`` bytes long.
"""

from __future__ import annotations

import contextlib
import functools
import math
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from servelab.errors import DeviceError
from servelab.loader.format import DTYPES, TensorSpec
from servelab.loader.pagecache import prefault
from servelab.loader.plan import PAGE, Chunk, Layout, Segment, layout, pack_offsets
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

    A file with tensors that ``dtype`` converts is read through reused staging buffers instead and
    converted chunk by chunk into its slab (``Conversion``): fresh memory is faulted in once, for the
    converted tensors, where reading then converting faulted it twice (bench.gpu_loader on the
    2-core VM, 1 GiB bf16 to fp16: 1.26 s that way against 0.71 s for ``load_file`` then ``.to()``).
    """

    def __init__(self, chunk_size: int, buffers: int, dtype: torch.dtype | None = None) -> None:
        self.read_size = chunk_size
        self._buffers = buffers
        self._dtype = dtype
        self._staging: StagingBuffers | None = None  # made for the first file that converts
        self._files: dict[int, Slab] = {}
        self._conversions: dict[int, Conversion] = {}

    def prepare(self, file: int, specs: Sequence[TensorSpec]) -> None:
        planned = conversion_layout(specs, self._dtype, keep_others=True)
        if planned is None:
            self._files[file] = _host_slab(layout(specs), specs)
            return
        plan, targets = planned
        if self._staging is None:
            self._staging = StagingBuffers(self._buffers, self.read_size + PAGE, pin=False)
        assert self._dtype is not None
        self._conversions[file] = Conversion(_host_slab(plan, targets), specs, self._dtype)

    def fill(self, chunk: Chunk, source: ByteSource) -> None:
        conversion = self._conversions.get(chunk.file)
        if conversion is not None:
            assert self._staging is not None
            with self._staging.read(chunk, source) as host:
                conversion.put(chunk, host)
            return
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
        conversion = self._conversions.get(file)
        return conversion.slab.view(index) if conversion is not None else self._files[file].view(index)

    def release(self, file: int) -> None:
        self._files.pop(file, None)
        self._conversions.pop(file, None)


class Conversion:
    """One file's tensors converted into ``slab`` as their chunks arrive, from any reader thread.

    ``slab`` holds every tensor as it is once converted (``conversion_layout(..., keep_others=True)``):
    converted elements for what ``dtype`` converts, the file's bytes for the rest. A chunk boundary
    may split an element (a tensor at an offset its width does not divide, or reads of a few bytes);
    its pieces wait under a lock until the element is whole.
    """

    def __init__(self, slab: Slab, specs: Sequence[TensorSpec], dtype: torch.dtype) -> None:
        self.slab = slab
        self._specs = specs
        self._dtype = dtype
        self._lock = threading.Lock()
        self._pieces: dict[tuple[int, int], tuple[bytearray, list[int]]] = {}

    def put(self, chunk: Chunk, data: torch.Tensor) -> None:
        """Land a chunk's bytes (``data``, as read, segment after segment) in the slab."""
        position = 0
        for segment in chunk.segments:
            self._put(segment, data[position : position + segment.length])
            position += segment.length

    def _put(self, segment: Segment, data: torch.Tensor) -> None:
        spec = self._specs[segment.tensor]
        if not converts(spec, self._dtype):
            start = self.slab.layout.offsets[segment.tensor] + segment.offset
            self.slab.buffer[start : start + segment.length].copy_(data)
            return
        source_dtype, width = _torch_dtype(spec.dtype)
        begin, end = segment.offset, segment.offset + segment.length
        first, last = -(-begin // width), end // width  # the elements [first, last) lie whole in this segment
        if first > last:  # inside one element
            self._piece(segment.tensor, begin // width, begin % width, data)
            return
        if begin % width:
            self._piece(segment.tensor, first - 1, begin % width, data[: first * width - begin])
        if last > first:
            whole = data[first * width - begin : last * width - begin]
            if whole.storage_offset() % width:  # the file stores this tensor at an offset its type cannot be viewed at
                whole = whole.clone()
            self._target(segment.tensor)[first:last].copy_(whole.view(source_dtype))
        if end % width:
            self._piece(segment.tensor, last, 0, data[last * width - begin :])

    def _piece(self, tensor: int, element: int, at: int, data: torch.Tensor) -> None:
        """Part of an element that straddles reads; the part that completes it converts it."""
        source_dtype, width = _torch_dtype(self._specs[tensor].dtype)
        with self._lock:
            buffer, filled = self._pieces.setdefault((tensor, element), (bytearray(width), [0]))
            buffer[at : at + len(data)] = data.numpy().tobytes()
            filled[0] += len(data)
            if filled[0] < width:
                return
            del self._pieces[(tensor, element)]
        import torch

        self._target(tensor)[element : element + 1].copy_(torch.frombuffer(buffer, dtype=source_dtype))

    def _target(self, tensor: int) -> torch.Tensor:
        return self.slab.view(tensor).view(-1)


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
        self._staging = StagingBuffers(buffers, slot, pin=True)
        self._files: dict[int, tuple[Slab, Slab | None]] = {}

    def prepare(self, file: int, specs: Sequence[TensorSpec]) -> None:
        import torch

        plan = layout(specs)
        raw = Slab(torch.empty(plan.size, dtype=torch.uint8, device=self._device), plan, specs)
        self._files[file] = (raw, self._converted_slab(specs))

    def fill(self, chunk: Chunk, source: ByteSource) -> None:
        import torch

        raw, _ = self._files[chunk.file]
        with self._staging.read(chunk, source) as host:
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

        planned = conversion_layout(specs, self._dtype, keep_others=False)
        if planned is None:
            return None
        plan, targets = planned
        return Slab(torch.empty(plan.size, dtype=torch.uint8, device=self._device), plan, targets)


def conversion_layout(
    specs: Sequence[TensorSpec], dtype: torch.dtype | None, *, keep_others: bool
) -> tuple[Layout, list[TensorSpec]] | None:
    """Where each tensor ``dtype`` converts goes in one packed buffer, and its converted spec; None
    when nothing converts. Tensors that keep their type keep their spec, and get room only with
    ``keep_others`` (the host's one slab a file; the GPU's raw slab holds them there)."""
    if dtype is None or not any(converts(spec, dtype) for spec in specs):
        return None
    code = _safetensors_code(dtype)
    width = _torch_dtype(code)[1]
    wanted = [converts(spec, dtype) for spec in specs]
    targets = [_retyped(spec, code, width) if convert else spec for spec, convert in zip(specs, wanted, strict=True)]
    sizes = [target.nbytes if convert or keep_others else 0 for target, convert in zip(targets, wanted, strict=True)]
    offsets, total = pack_offsets(sizes)
    return Layout(tuple(offsets), total, None), targets


class StagingBuffers:
    """``count`` page-aligned host buffers of ``slot`` bytes, carved from one block (pinned for a
    GPU's copies), each lent to one reader thread for one read at a time."""

    def __init__(self, count: int, slot: int, *, pin: bool) -> None:
        import torch

        block = torch.empty(count * slot, dtype=torch.uint8, pin_memory=pin)
        if block.data_ptr() % PAGE:  # CUDA's pinned allocations start on a page; the host's may not
            block = torch.empty(count * slot + PAGE, dtype=torch.uint8, pin_memory=pin)
        first = -block.data_ptr() % PAGE
        self._free: queue.SimpleQueue[torch.Tensor] = queue.SimpleQueue()
        for number in range(count):
            self._free.put(block[first + number * slot : first + (number + 1) * slot])

    @contextlib.contextmanager
    def read(self, chunk: Chunk, source: ByteSource) -> Iterator[torch.Tensor]:
        """A buffer holding ``chunk``'s bytes, placed congruent to their file offset (O_DIRECT in
        place), until the ``with`` block ends."""
        staging = self._free.get()
        try:
            host = staging[chunk.offset % PAGE :][: chunk.length]
            source.read_into(chunk.offset, [memoryview(host.numpy())])  # type: ignore[arg-type]
            yield host
        finally:
            self._free.put(staging)


def _host_slab(plan: Layout, specs: Sequence[TensorSpec]) -> Slab:
    """A page-aligned host buffer for ``plan`` (so a mirror is congruent to its file), faulted in
    on a side thread, on whatever core is waiting on I/O, ahead of the readers."""
    import torch

    padded = torch.empty(plan.size + PAGE, dtype=torch.uint8)
    skip = -padded.data_ptr() % PAGE
    if plan.size >= PREFAULT_MIN_BYTES:
        threading.Thread(
            target=prefault, args=(padded.data_ptr() + skip, plan.size), daemon=True, name="servelab-prefault"
        ).start()
    return Slab(padded[skip : skip + plan.size], plan, specs)


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
