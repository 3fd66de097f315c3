"""Seeded safetensors checkpoints with the tensor shapes of a Llama-style LLM, written offline."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a checkpoint is written: every replica imports this package
    import torch

VOCAB = 32000
MAX_HIDDEN = 2048  # TinyLlama's width; a 1 GiB bf16 checkpoint is about 20 of its layers


def llm_tensor_shapes(total_bytes: int, itemsize: int = 2) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a Llama-style model (embeddings, decoder layers, head) of about ``total_bytes``.

    The width is the largest power of two up to 2048 that keeps embeddings and head within half the
    bytes, so small checkpoints keep the shape of a real model instead of being all vocabulary.
    """
    hidden = 64
    while hidden < MAX_HIDDEN and 2 * VOCAB * (2 * hidden) * itemsize <= total_bytes // 2:
        hidden *= 2
    intermediate, kv_hidden = hidden * 11 // 4, hidden // 8  # Llama's MLP ratio, grouped-query attention
    layer = [
        ("input_layernorm.weight", (hidden,)),
        ("self_attn.q_proj.weight", (hidden, hidden)),
        ("self_attn.k_proj.weight", (kv_hidden, hidden)),
        ("self_attn.v_proj.weight", (kv_hidden, hidden)),
        ("self_attn.o_proj.weight", (hidden, hidden)),
        ("post_attention_layernorm.weight", (hidden,)),
        ("mlp.gate_proj.weight", (intermediate, hidden)),
        ("mlp.up_proj.weight", (intermediate, hidden)),
        ("mlp.down_proj.weight", (hidden, intermediate)),
    ]
    layer_bytes = sum(math.prod(shape) for _, shape in layer) * itemsize
    ends = [("model.embed_tokens.weight", (VOCAB, hidden)), ("model.norm.weight", (hidden,)), ("lm_head.weight", (VOCAB, hidden))]
    fixed = sum(math.prod(shape) for _, shape in ends) * itemsize
    layers = max(1, round((total_bytes - fixed) / layer_bytes))
    shapes = [ends[0]]
    shapes += [(f"model.layers.{i}.{name}", shape) for i in range(layers) for name, shape in layer]
    return shapes + ends[1:]


def write_llm_checkpoint(
    directory: str | Path,
    total_bytes: int,
    shards: int = 1,
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Path:
    """Write a seeded checkpoint of about ``total_bytes``; return the file, or the index when sharded.

    Shards are named like ``save_pretrained``'s (``model-00001-of-00004.safetensors``) and listed
    in ``model.safetensors.index.json``. Tensors are generated one shard at a time to bound memory;
    ``dtype`` defaults to bfloat16.
    """
    import torch
    from safetensors.torch import save_file

    dtype = dtype or torch.bfloat16
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    itemsize = torch.empty((), dtype=dtype).element_size()
    shapes = llm_tensor_shapes(total_bytes, itemsize)
    generator = torch.Generator().manual_seed(seed)
    groups = _split(shapes, shards, itemsize)
    weight_map: dict[str, str] = {}
    for number, group in enumerate(groups, start=1):
        name = "model.safetensors" if shards == 1 else f"model-{number:05d}-of-{shards:05d}.safetensors"
        tensors = {tensor_name: _random(shape, dtype, generator) for tensor_name, shape in group}
        save_file(tensors, directory / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        del tensors
    if shards == 1:
        return directory / "model.safetensors"
    index = {"metadata": {"total_size": sum(math.prod(s) for _, s in shapes) * itemsize}, "weight_map": weight_map}
    path = directory / "model.safetensors.index.json"
    path.write_text(json.dumps(index, indent=2))
    return path


def _split(shapes: list[tuple[str, tuple[int, ...]]], shards: int, itemsize: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Consecutive groups of about equal bytes, as ``save_pretrained`` shards by a size limit."""
    total = sum(math.prod(shape) for _, shape in shapes) * itemsize
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[] for _ in range(shards)]
    done = 0
    for name, shape in shapes:
        groups[min(shards - 1, done * shards // total)].append((name, shape))
        done += math.prod(shape) * itemsize
    return groups


def _random(shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    import torch

    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).mul_(0.02).to(dtype)
    return torch.randint(0, 100, shape, generator=generator).to(dtype)
