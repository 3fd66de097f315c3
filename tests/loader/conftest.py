"""Checkpoints for the loader tests, served from every kind of source: file, HTTP, S3 and memory."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import pytest
import torch
from safetensors.torch import save_file

from servelab.loader.format import DTYPES
from servelab.testing import NginxServer, SeaweedS3Server
from servelab.testing.llm import write_tiny_llama

SOURCES = ["file", "http", "s3", "memory"]


def every_dtype_tensors() -> dict[str, torch.Tensor]:
    """A tensor of random bits for every safetensors dtype, plus empty tensors and scalars."""
    generator = torch.Generator().manual_seed(7)
    tensors: dict[str, torch.Tensor] = {}
    for code, dtype in DTYPES.items():
        torch_dtype = getattr(torch, dtype.torch_name)
        itemsize = torch.empty((), dtype=torch_dtype).element_size()
        bits = torch.randint(0, 256, (3 * 5 * itemsize,), dtype=torch.uint8, generator=generator)
        if torch_dtype is torch.bool:
            bits = bits % 2
        tensors[f"{code}.matrix"] = bits.view(torch_dtype).reshape(3, 5)
        tensors[f"{code}.empty"] = torch.empty(0, 4, dtype=torch_dtype)
    tensors["F32.scalar"] = torch.tensor(1.5)
    tensors["I64.scalar"] = torch.tensor(-3)
    tensors["BF16.odd"] = torch.randn(7, generator=generator).to(torch.bfloat16)  # 14 bytes: a size no 4- or 8-byte type divides
    return tensors


def write_raw(path: Path, entries: dict, data: bytes, align: int = 1) -> Path:
    """A safetensors file built by hand: ``entries`` as its header, padded with spaces so that the
    data starts at a multiple of ``align``, then ``data``."""
    body = json.dumps(entries).encode()
    body += b" " * (-(8 + len(body)) % align)
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


def write_misaligned_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint written by hand with float tensors at odd file offsets (``save_file`` orders
    tensors so that each is aligned; other writers need not), and the tensors it holds."""
    generator = torch.Generator().manual_seed(5)
    tensors = {
        "pad": torch.arange(3, dtype=torch.uint8),
        "w": torch.randn(5, generator=generator).to(torch.bfloat16),
        "x": torch.randn(2, 3, generator=generator),
        "y": torch.randn(3, generator=generator).to(torch.float64),
    }
    codes = {getattr(torch, dtype.torch_name): code for code, dtype in DTYPES.items()}
    header: dict[str, dict] = {}
    data = bytearray()
    for name, tensor in tensors.items():
        raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": codes[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    write_raw(path, header, bytes(data), align=8)  # the data starts 8-aligned, so "w" starts at an odd offset
    return tensors


@pytest.fixture(scope="session")
def checkpoints(served_dir: Path) -> Path:
    """``dtypes/model.safetensors`` and the sharded ``llama/`` checkpoint (``save_pretrained``'s), inside the served directory."""
    (served_dir / "dtypes").mkdir()
    save_file(every_dtype_tensors(), served_dir / "dtypes" / "model.safetensors")
    write_tiny_llama(served_dir / "llama", max_shard_size="100KB")
    return served_dir


@pytest.fixture(scope="session")
def uploaded(checkpoints: Path, s3: SeaweedS3Server) -> Path:
    """The checkpoints, also in S3 and in fsspec's memory filesystem under the same paths."""
    memory = fsspec.filesystem("memory")
    for path in checkpoints.rglob("*"):
        if path.is_file():
            key = path.relative_to(checkpoints).as_posix()
            s3.upload(path, key)
            memory.pipe(f"/servelab-tests/{key}", path.read_bytes())
    return checkpoints


UriFor = Callable[[str, str], tuple[str, dict]]


@pytest.fixture(scope="session")
def uri_for(uploaded: Path, nginx: NginxServer, s3: SeaweedS3Server) -> UriFor:
    """``uri_for(source, relative_path)`` -> (uri, storage_options) for that checkpoint file."""

    def uri(source: str, relative: str) -> tuple[str, dict]:
        return {
            "file": (f"file://{uploaded / relative}", {}),
            "http": (nginx.url(relative), {}),
            "s3": (f"s3://{s3.bucket}/{relative}", s3.storage_options),
            "memory": (f"memory://servelab-tests/{relative}", {}),
        }[source]

    return uri


@pytest.fixture
def scratch(served_dir: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh folder inside the served directory, for checkpoints a test breaks on purpose."""
    folder = served_dir / "scratch" / request.node.name.replace("[", "_").replace("]", "")
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
