"""Read planning: coverage, chunk bounds and coalescing, on synthetic tensor layouts."""

from __future__ import annotations

import random

import pytest

from servelab.loader.format import TensorSpec
from servelab.loader.plan import ALIGNMENT, PAGE, pack_offsets, plan_chunks
from servelab.loader.plan import layout as destination_layout


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


def test_a_whole_file_is_mirrored_from_a_page_boundary() -> None:
    specs = layout([10, 0, 5000, 7], gaps=[0, 0, 3, 0])  # starts at file offset 100, a small gap inside
    plan = destination_layout(specs)
    assert plan.mirror and plan.base == 0  # the page holding offset 100
    assert plan.offsets == (100, 0, 113, 5113) and plan.size == 5120
    for chunk in plan_chunks(specs, 1000):
        start, end = plan.span(chunk)
        assert (start, end) == (chunk.offset - plan.base, chunk.offset - plan.base + chunk.length)
        assert (start - chunk.offset) % PAGE == 0  # congruent to the file: O_DIRECT can land in place


def test_a_sparse_selection_is_packed() -> None:
    specs = layout([100, 100_000, 100])
    plan = destination_layout([specs[0], specs[2]])  # the large tensor in between is not wanted
    assert not plan.mirror and plan.base is None
    assert plan.offsets == (0, 128) and plan.size == 228
    with pytest.raises(AssertionError):
        plan.span(plan_chunks([specs[0]], 1000)[0])
