"""Slabs and conversion layouts, on host memory: the same code lays out the CUDA sink's device slabs."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from servelab.loader.checkpoint import HEAD_BYTES
from servelab.loader.format import header_size, parse_header
from servelab.loader.plan import layout
from servelab.loader.sinks import CONVERTIBLE, Slab, conversion_layout, converts

from .conftest import every_dtype_tensors
from .test_load import assert_identical


def specs_of(path: Path) -> tuple:
    head = path.read_bytes()[:HEAD_BYTES]
    size = path.stat().st_size
    return parse_header(head[: header_size(head, str(path), size)], str(path), size).tensors


def test_a_mirrored_slab_views_every_dtype_in_place(tmp_path: Path) -> None:
    path = tmp_path / "dtypes.safetensors"
    save_file(every_dtype_tensors(), path)  # save_file stores each tensor aligned to its type
    specs = specs_of(path)
    plan = layout(specs)
    data = path.read_bytes()
    buffer = torch.frombuffer(bytearray(data[plan.base : plan.base + plan.size]), dtype=torch.uint8)
    slab = Slab(buffer, plan, specs)
    got = {spec.name: slab.view(index) for index, spec in enumerate(specs)}
    assert_identical(got, load_file(path))
    views = [t for t in got.values() if t.numel() and t.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()]
    assert len(views) > len(specs) // 2  # most are views of the slab, not copies


def test_conversion_layout_gives_room_to_what_converts_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "dtypes.safetensors"
    save_file(every_dtype_tensors(), path)
    specs = specs_of(path)
    assert conversion_layout(specs, None, keep_others=False) is None
    plan, targets = conversion_layout(specs, torch.float16, keep_others=False) or (None, [])
    assert plan is not None and not plan.mirror
    for spec, target in zip(specs, targets, strict=True):
        if spec.dtype in CONVERTIBLE and spec.dtype != "F16":
            assert converts(spec, torch.float16) and target.dtype == "F16" and target.shape == spec.shape
            assert target.nbytes == 2 * math.prod(spec.shape)  # two bytes an element in float16
        else:
            assert target == spec and not converts(spec, torch.float16)
    # What the CUDA sink does on the GPU, done on the host: convert each tensor into its place.
    plain = layout(specs)
    raw = Slab(
        torch.frombuffer(bytearray(path.read_bytes()[plain.base : plain.base + plain.size]), dtype=torch.uint8), plain, specs
    )
    converted = Slab(torch.empty(plan.size, dtype=torch.uint8), plan, targets)
    got = {
        spec.name: converted.view(i).copy_(raw.view(i)) if converts(spec, torch.float16) else raw.view(i)
        for i, spec in enumerate(specs)
    }
    expected = {
        n: t.to(torch.float16) if t.dtype in (torch.bfloat16, torch.float32, torch.float64) else t
        for n, t in load_file(path).items()
    }
    assert_identical(got, expected)
    assert conversion_layout([s for s in specs if s.dtype == "I32"], torch.float16, keep_others=False) is None


def test_the_hosts_conversion_layout_also_keeps_room_for_what_keeps_its_type(tmp_path: Path) -> None:
    path = tmp_path / "dtypes.safetensors"
    save_file(every_dtype_tensors(), path)
    specs = specs_of(path)
    only, _ = conversion_layout(specs, torch.float16, keep_others=False) or (None, [])
    every, targets = conversion_layout(specs, torch.float16, keep_others=True) or (None, [])
    assert only is not None and every is not None
    ends = sorted(
        (offset, offset + target.nbytes) for offset, target in zip(every.offsets, targets, strict=True) if target.nbytes
    )
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(ends))  # no two tensors overlap
    assert every.size == max(end for _, end in ends) > only.size
