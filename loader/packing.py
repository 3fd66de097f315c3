"""A state dict as plain bytes and back: how the peer weight cache keeps a checkpoint in Ray's
object store (numpy buffers, which Ray stores out of band and readers map without a copy).

>>> packed = pack({"w": torch.ones(2, 3, dtype=torch.bfloat16)})
>>> unpack(packed, torch.device("cpu"))["w"].shape
torch.Size([2, 3])
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from servelab.loader.pagecache import prefault
from servelab.loader.plan import pack_offsets

if TYPE_CHECKING:
    import torch

Packed = list[tuple[str, str, tuple[int, ...], Any]]  # (name, dtype, shape, uint8 numpy array) per tensor


def pack(state: dict[str, torch.Tensor]) -> Packed:
    """Each tensor's raw bytes (a numpy uint8 view, on the CPU) with its dtype and shape."""
    import torch

    out = []
    for name, tensor in state.items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        out.append((name, str(flat.dtype).removeprefix("torch."), tuple(tensor.shape), flat.view(torch.uint8).numpy()))
    return out


def unpack(tensors: Packed, device: torch.device) -> dict[str, torch.Tensor]:
    """The state dict again, copied out of the (read-only, shared) buffers onto ``device``; on the CPU
    into one slab whose pages are faulted in ahead (page faults cost more than the copy)."""
    import torch

    state = {}
    sizes = [int(raw.nbytes) for _, _, _, raw in tensors]
    offsets, total = pack_offsets(sizes)  # aligned, so every dtype can view its slice
    slab = torch.empty(total, dtype=torch.uint8) if device.type == "cpu" else None
    if slab is not None:
        prefault(slab.data_ptr(), total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns about wrapping a read-only buffer: it is copied at once
        for (name, dtype, shape, raw), size, offset in zip(tensors, sizes, offsets, strict=True):
            source = torch.frombuffer(raw, dtype=torch.uint8) if size else torch.empty(0, dtype=torch.uint8)
            if slab is None:
                target = source.to(device)
            else:
                target = slab[offset : offset + size]
                target.copy_(source)
            state[name] = target.view(getattr(torch, dtype)).reshape(shape)
    return state
