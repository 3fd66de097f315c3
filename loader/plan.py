"""Read planning: which ranged reads fetch which tensor bytes. Pure functions, no I/O.

Contiguous tensors are coalesced into reads of up to ``chunk_size`` bytes, large tensors are
split across several, and each read lands straight in the tensors' destinations. ``layout`` says
where: a file's bytes mirrored in one buffer (a read is one contiguous copy, and O_DIRECT can land
in it in place), or packed back to back when only a few of the file's tensors are wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from servelab.loader.format import TensorSpec

ALIGNMENT = 64  # destination offsets are aligned so every dtype can be viewed in place
PAGE = 4096  # a mirror's base is a page boundary, so a buffer page-aligned in memory is congruent to the file
MIRROR_MIN_FILL = 7 / 8  # mirror a file when the wanted tensors cover this much of their span


class Segment(NamedTuple):
    """``length`` bytes of one read that land at ``offset`` within tensor number ``tensor``.

    (Named tuples, not dataclasses: a checkpoint of 20,000 small tensors makes 20,000 of them.)
    """

    tensor: int
    offset: int
    length: int


class Chunk(NamedTuple):
    """One ranged read of ``length`` bytes at file ``offset`` from file number ``file``."""

    file: int
    offset: int
    length: int
    segments: tuple[Segment, ...]


def plan_chunks(tensors: Sequence[TensorSpec], chunk_size: int, file: int = 0) -> list[Chunk]:
    """Split the bytes of ``tensors`` into reads of at most ``chunk_size`` contiguous file bytes."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    chunks: list[Chunk] = []
    start = end = 0
    segments: list[Segment] = []

    def flush() -> None:
        if segments:
            chunks.append(Chunk(file, start, end - start, tuple(segments)))
            segments.clear()

    for index in sorted(range(len(tensors)), key=lambda i: tensors[i].start):
        spec = tensors[index]
        size = spec.end - spec.start
        done = 0
        while done < size:
            position = spec.start + done
            if not segments or position != end or end - start >= chunk_size:
                flush()
                start = end = position
            length = min(size - done, chunk_size - (end - start))
            segments.append(Segment(index, done, length))
            end += length
            done += length
    flush()
    return chunks


def pack_offsets(sizes: Sequence[int], alignment: int = ALIGNMENT) -> tuple[list[int], int]:
    """Offsets that place buffers of ``sizes`` back to back, each aligned; and the total size."""
    offsets = []
    total = 0
    for size in sizes:
        total = -(-total // alignment) * alignment
        offsets.append(total)
        total += size
    return offsets, total


@dataclass(frozen=True)
class Layout:
    """Where each of a file's wanted tensors lives in one destination buffer of ``size`` bytes.

    ``mirror``: the buffer holds the file's bytes [base, base + size) as they lie in the file, so the
    tensor starting at file offset ``x`` sits at ``x - base`` and one read fills one contiguous range.
    Otherwise tensors are packed (``pack_offsets``) and a read scatters into several ranges.
    """

    offsets: tuple[int, ...]
    size: int
    base: int | None  # the file offset of the buffer's first byte when mirrored; None when packed

    @property
    def mirror(self) -> bool:
        return self.base is not None

    def span(self, chunk: Chunk) -> tuple[int, int]:
        """The buffer range [start, end) a chunk of a mirrored file fills."""
        assert self.base is not None, "only a mirrored layout maps a read to one range"
        return chunk.offset - self.base, chunk.offset - self.base + chunk.length


def layout(tensors: Sequence[TensorSpec]) -> Layout:
    """Mirror the file when the wanted tensors fill most of their span (a whole checkpoint); pack otherwise.

    >>> layout(specs).mirror   # every tensor of a file wanted: one read per chunk, in place
    True
    """
    wanted = [spec for spec in tensors if spec.nbytes]
    if wanted:
        first = min(spec.start for spec in wanted)
        last = max(spec.end for spec in wanted)
        if sum(spec.nbytes for spec in wanted) >= MIRROR_MIN_FILL * (last - first):
            base = first - first % PAGE
            return Layout(tuple(spec.start - base if spec.nbytes else 0 for spec in tensors), last - base, base)
    packed, total = pack_offsets([spec.nbytes for spec in tensors])
    return Layout(tuple(packed), total, None)
