"""The CUDA path on local files: every layout, cold and warm, conversion on the GPU, many small tensors.

Only local files, so these run on a GPU machine with nothing but torch and safetensors installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from servelab.loader import load

from .conftest import every_dtype_tensors
from .test_load import assert_identical
from .test_local_reads import evict, write_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def on_host(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.cpu() for name, tensor in state.items()}


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.parametrize("cold", [False, True])
@pytest.mark.parametrize("chunk_size", [4999, 1 << 20])
def test_every_dtype_lands_on_the_gpu_bit_identical(tmp_path: Path, device: str, cold: bool, chunk_size: int) -> None:
    path = write_checkpoint(tmp_path / "model.safetensors")  # every dtype, and a tensor past the head read
    expected = load_file(path)
    if cold:
        evict(path)
    got = load(str(path), device=device, chunk_size=chunk_size, concurrency=3)
    assert {t.device for t in got.values()} == {torch.device("cuda", 0)}
    assert_identical(on_host(got), expected)


def test_a_few_tensors_of_a_file(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "model.safetensors")
    wanted = ["F32.matrix", "BF16.odd", "big"]
    evict(path)
    got = load(str(path), device="cuda", include=wanted, chunk_size=1 << 20)
    expected = load_file(path)
    assert_identical(on_host(got), {name: expected[name] for name in wanted})


def test_dtype_conversion_runs_on_the_gpu_and_matches_to(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "model.safetensors")
    plain = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # float8/float4 and integers keep their type
    expected = {name: t.to(torch.float16) if t.dtype in plain else t for name, t in load_file(path).items()}
    got = load(str(path), device="cuda", dtype=torch.float16)
    assert {t.device.type for t in got.values()} == {"cuda"}
    assert_identical(on_host(got), expected)


def test_many_small_tensors(tmp_path: Path) -> None:
    path = tmp_path / "experts.safetensors"
    generator = torch.Generator().manual_seed(5)
    save_file({f"e{i}": torch.randn(1024, generator=generator) for i in range(3000)}, path)
    assert_identical(on_host(load(str(path), device="cuda")), load_file(path))


def test_dict_of_every_dtype_matches_after_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "dtypes.safetensors"
    save_file(every_dtype_tensors(), path)
    got = load(str(path), device="cuda")
    save_file(on_host(got), tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_in_one_process(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "model.safetensors")
    expected = load_file(path)
    for index in (1, 0):
        got = load(str(path), device=f"cuda:{index}")
        assert {t.device for t in got.values()} == {torch.device("cuda", index)}
        assert_identical(on_host(got), expected)
