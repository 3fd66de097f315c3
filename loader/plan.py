"""Read planning: which ranged reads fetch which tensor bytes. Pure functions, no I/O.

Contiguous tensors are coalesced into reads of up to ``chunk_size`` bytes, large tensors are
split across several, and each read scatters straight into the tensors' destinations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from servelab.loader.format import TensorSpec

ALIGNMENT = 64  # destination offsets are aligned so every dtype can be viewed in place


@dataclass(frozen=True)
class Segment:
    """``length`` bytes of one read that land at ``offset`` within tensor number ``tensor``."""

    tensor: int
    offset: int
    length: int


@dataclass(frozen=True)
class Chunk:
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
        done = 0
        while done < spec.nbytes:
            position = spec.start + done
            if not segments or position != end or end - start >= chunk_size:
                flush()
                start = end = position
            length = min(spec.nbytes - done, chunk_size - (end - start))
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
