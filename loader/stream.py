"""``stream()`` and ``load()``: the loader's public calls, and the pipeline that drives them."""

from __future__ import annotations

import os
import queue
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from servelab.errors import LoaderError
from servelab.loader.checkpoint import CheckpointFile, Include, open_checkpoint
from servelab.loader.plan import Chunk, plan_chunks
from servelab.loader.progress import Progress, ProgressReporter
from servelab.loader.retry import RetryPolicy
from servelab.loader.sinks import CudaSink, HostSink, Sink, conversion_target, resolve_device

if TYPE_CHECKING:
    import torch

# Measured by bench.loader on 2 cores: 32 MiB reads, one per core, were best or tied for local,
# HTTP and S3 sources; more threads only added contention with the storage server for the cores.
DEFAULT_CHUNK_SIZE = 32 << 20
DEFAULT_CONCURRENCY = max(2, min(8, os.cpu_count() or 2))
DEFAULT_RETRIES = 3


def stream(
    uri: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    include: Include = None,
    storage_options: dict[str, Any] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    retries: int = DEFAULT_RETRIES,
    progress: Progress = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` from a safetensors checkpoint as soon as each tensor's bytes arrive.

    ``uri`` is any fsspec URI of a ``.safetensors`` file or a ``model.safetensors.index.json``.
    Reads are ranged, ``concurrency`` at a time, up to ``chunk_size`` bytes each. ``include`` (names
    or a predicate) selects tensors; ``dtype`` (a float type) converts the plain float tensors
    (F16, BF16, F32, F64) on arrival, on the GPU when streaming to one, while quantised float8 and
    float4 tensors and integers keep their types; ``progress``
    is a callback taking a LoadProgress, True for a bar, or None for a bar only in notebooks.
    Every header is validated before any tensor byte is read.

    >>> for name, tensor in stream("s3://models/llama/model.safetensors.index.json", device="cuda"):
    ...     model.load_weight(name, tensor)
    """
    _check_arguments(uri, dtype, chunk_size, concurrency, retries)
    target = resolve_device(device)
    return _Pipeline(uri, target, dtype, include, storage_options, chunk_size, concurrency, retries, progress).run()


class StreamOptions(TypedDict, total=False):
    """The keyword options of :func:`stream`, which :func:`load` takes too (defaults there)."""

    device: str | torch.device
    dtype: torch.dtype | None
    include: Include
    storage_options: dict[str, Any] | None
    chunk_size: int
    concurrency: int
    retries: int
    progress: Progress


def load(uri: str, **options: Unpack[StreamOptions]) -> dict[str, torch.Tensor]:
    """Load a whole checkpoint into a state dict; the options are :func:`stream`'s.

    Either every selected tensor is returned or an error is raised: never a partial state dict.

    >>> state = load("http://10.0.0.5:9000/model.safetensors", device="cpu", dtype=torch.bfloat16)
    """
    return dict(stream(uri, **options))


class _Pipeline:
    """Drives reads through a thread pool, a bounded window of chunks ahead of the consumer."""

    def __init__(
        self,
        uri: str,
        device: torch.device,
        dtype: torch.dtype | None,
        include: Include,
        storage_options: dict[str, Any] | None,
        chunk_size: int,
        concurrency: int,
        retries: int,
        progress: Progress,
    ) -> None:
        self._uri = uri
        self._device = device
        self._dtype = dtype
        self._include = include
        self._storage_options = storage_options
        self._chunk_size = chunk_size
        self._concurrency = concurrency
        self._policy = RetryPolicy(attempts=retries + 1)
        self._progress = progress

    def run(self) -> Iterator[tuple[str, torch.Tensor]]:
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="servelab-loader") as pool:
            files = open_checkpoint(self._uri, self._storage_options, self._include, self._policy, pool)
            try:
                yield from self._transfer(files, pool)
            finally:
                for file in files:
                    file.source.close()

    def _transfer(self, files: list[CheckpointFile], pool: ThreadPoolExecutor) -> Iterator[tuple[str, torch.Tensor]]:
        sink = self._sink()
        reporter = ProgressReporter(
            self._uri,
            [(file.header.uri, sum(spec.nbytes for spec in file.selected)) for file in files],
            sum(len(file.selected) for file in files),
            self._progress,
        )
        bytes_left = [[spec.nbytes for spec in file.selected] for file in files]
        tensors_left = [len(file.selected) for file in files]
        pending: deque[Chunk] = deque()
        in_flight: dict[Future[None], Chunk] = {}
        finished: queue.SimpleQueue[Future[None]] = queue.SimpleQueue()
        window = 2 * self._concurrency
        next_file = 0
        try:
            while True:
                while len(in_flight) < window and (pending or next_file < len(files)):
                    if not pending:  # start the next file: allocate, plan, hand out its empty tensors
                        file = files[next_file]
                        sink.prepare(next_file, file.selected)
                        pending.extend(plan_chunks(file.selected, sink.read_size, next_file))
                        for index, spec in enumerate(file.selected):
                            if spec.nbytes == 0:
                                yield self._finish(sink, files, next_file, index, tensors_left, reporter)
                        next_file += 1
                        continue
                    chunk = pending.popleft()
                    future = pool.submit(sink.fill, chunk, files[chunk.file].source)
                    in_flight[future] = chunk
                    future.add_done_callback(finished.put)
                if not in_flight:
                    return
                future = finished.get()
                chunk = in_flight.pop(future)
                future.result()  # re-raises a read error here, in the consumer's thread
                reporter.advance(nbytes=chunk.length, file=chunk.file)
                for segment in chunk.segments:
                    left = bytes_left[chunk.file]
                    left[segment.tensor] -= segment.length
                    if left[segment.tensor] == 0:
                        yield self._finish(sink, files, chunk.file, segment.tensor, tensors_left, reporter)
        finally:
            for future in in_flight:
                future.cancel()
            reporter.close()

    def _finish(
        self,
        sink: Sink,
        files: list[CheckpointFile],
        file: int,
        index: int,
        tensors_left: list[int],
        reporter: ProgressReporter,
    ) -> tuple[str, torch.Tensor]:
        tensor = sink.tensor(file, index)
        tensors_left[file] -= 1
        if tensors_left[file] == 0:
            sink.release(file)
        reporter.advance(tensors=1)
        return files[file].selected[index].name, tensor

    def _sink(self) -> Sink:
        if self._device.type == "cuda":
            return CudaSink(self._device, self._chunk_size, self._concurrency, self._dtype)
        return HostSink(self._chunk_size, self._concurrency, self._dtype)


def _check_arguments(uri: Any, dtype: Any, chunk_size: Any, concurrency: Any, retries: Any) -> None:
    import torch

    if not isinstance(uri, str) or not uri:
        raise LoaderError(f"uri={uri!r}: give the checkpoint's URI as a string, e.g. 's3://bucket/model.safetensors'.")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or conversion_target(dtype) is None):
        raise LoaderError(
            f"dtype={dtype!r}: servelab converts float tensors to torch.float16, bfloat16, float32 or float64; "
            "pass one of these, or None to keep the file's types."
        )
    for name, value, least in (("chunk_size", chunk_size, 1), ("concurrency", concurrency, 1), ("retries", retries, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise LoaderError(f"{name}={value!r} must be an integer >= {least}.")
