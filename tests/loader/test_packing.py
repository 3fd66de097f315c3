"""The peer cache's form of a state dict: every dtype, shape and empty tensor comes back bit for bit."""

from __future__ import annotations

import itertools

import torch

from servelab.loader.packing import pack, unpack
from servelab.loader.plan import ALIGNMENT


def test_a_state_dict_survives_packing() -> None:
    state = {
        "embed": torch.randn(7, 5, dtype=torch.bfloat16),
        "norm": torch.rand(3, dtype=torch.float32),
        "index": torch.arange(11, dtype=torch.int64).reshape(1, 11),
        "flag": torch.tensor([True, False, True]),
        "empty": torch.empty(0, 4, dtype=torch.float16),
        "strided": torch.arange(12, dtype=torch.int32).reshape(3, 4).t(),  # not contiguous
    }
    packed = pack(state)
    assert [name for name, *_ in packed] == list(state)
    assert all(raw.dtype.name == "uint8" for *_, raw in packed)
    back = unpack(packed, torch.device("cpu"))
    for name, tensor in state.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape, name
        assert torch.equal(back[name], tensor), name
    # Unpacked tensors share one aligned slab (as the cache hands them to a replica), yet none overlaps another.
    spans = sorted((t.data_ptr(), t.data_ptr() + t.nbytes) for t in back.values() if t.nbytes)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert all(t.data_ptr() % ALIGNMENT == 0 for t in back.values() if t.nbytes)
