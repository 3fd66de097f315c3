"""Read planning: coverage, chunk bounds and coalescing, on synthetic tensor layouts."""

from __future__ import annotations

import random

import pytest

from servelab.loader.format import TensorSpec
from servelab.loader.plan import ALIGNMENT, pack_offsets, plan_chunks


def layout(sizes: list[int], gaps: list[int] | None = None) -> list[TensorSpec]:
    specs, position = [], 100
    for i, size in enumerate(sizes):
        position += (gaps or [0] * len(sizes))[i]
        specs.append(TensorSpec(f"t{i}", "U8", (size,), position, position + size))
        position += size
    return specs


@pytest.mark.parametrize("seed", range(20))
def test_chunks_cover_every_selected_byte_once_within_bounds(seed: int) -> None:
    rng = random.Random(seed)
    sizes = [rng.choice([0, 1, 7, 100, 4096, 50_000]) for _ in range(rng.randint(1, 40))]
    gaps = [rng.choice([0, 0, 0, 13]) for _ in sizes]
    specs = layout(sizes, gaps)
    rng.shuffle(specs)
    chunk_size = rng.choice([1, 64, 1000, 1 << 20])
    chunks = plan_chunks(specs, chunk_size, file=3)

    covered = dict.fromkeys(range(len(specs)), 0)
    for chunk in chunks:
        assert chunk.file == 3
        assert 0 < chunk.length <= chunk_size
        position = chunk.offset
        for segment in chunk.segments:  # segments are consecutive file bytes
            spec = specs[segment.tensor]
            assert spec.start + segment.offset == position
            assert segment.offset == covered[segment.tensor]
            covered[segment.tensor] += segment.length
            position += segment.length
        assert position == chunk.offset + chunk.length
    assert covered == {i: spec.nbytes for i, spec in enumerate(specs)}


def test_small_contiguous_tensors_share_one_read_and_gaps_split_reads() -> None:
    chunks = plan_chunks(layout([10, 10, 10]), 1 << 20)
    assert [(c.offset, c.length, len(c.segments)) for c in chunks] == [(100, 30, 3)]
    chunks = plan_chunks(layout([10, 10], gaps=[0, 5]), 1 << 20)
    assert [(c.offset, c.length) for c in chunks] == [(100, 10), (115, 10)]


def test_large_tensor_splits_into_chunk_sized_reads() -> None:
    chunks = plan_chunks(layout([2500]), 1000)
    assert [(c.offset, c.length) for c in chunks] == [(100, 1000), (1100, 1000), (2100, 500)]
    assert [c.segments[0].offset for c in chunks] == [0, 1000, 2000]


def test_pack_offsets_aligns_every_buffer() -> None:
    offsets, total = pack_offsets([3, 0, 65, 1])
    assert offsets == [0, 64, 64, 192]
    assert all(o % ALIGNMENT == 0 for o in offsets)
    assert total == 193


def test_rejects_non_positive_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        plan_chunks(layout([1]), 0)
