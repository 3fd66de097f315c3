"""The seeded Llama-shaped checkpoints that benchmarks and the demo stream."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from servelab.loader import load
from servelab.testing.checkpoints import llm_tensor_shapes, write_llm_checkpoint


def test_shapes_scale_width_with_size_and_keep_llama_structure() -> None:
    small, large = dict(llm_tensor_shapes(8 << 20)), dict(llm_tensor_shapes(1 << 30))
    assert large["model.layers.0.self_attn.q_proj.weight"] == (2048, 2048)
    assert large["model.layers.0.mlp.gate_proj.weight"] == (5632, 2048)
    assert small["model.embed_tokens.weight"][1] < 2048
    total = sum(torch.Size(s).numel() * 2 for s in large.values())
    assert abs(total - (1 << 30)) < 0.1 * (1 << 30)


def test_sharded_checkpoint_has_a_consistent_index_and_is_seeded(tmp_path: Path) -> None:
    index = write_llm_checkpoint(tmp_path / "a", 12 << 20, shards=3, seed=1)
    content = json.loads(index.read_text())
    shards = sorted(p.name for p in index.parent.glob("*.safetensors"))
    assert shards == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    on_disk = {name: shard for shard in shards for name in load_file(index.parent / shard)}
    assert content["weight_map"] == on_disk
    state = load(str(index))
    assert content["metadata"]["total_size"] == sum(t.nbytes for t in state.values())
    again = load(str(write_llm_checkpoint(tmp_path / "b", 12 << 20, shards=3, seed=1)))
    assert all(torch.equal(state[n].view(torch.int16), again[n].view(torch.int16)) for n in state)
