"""The embedded cluster on a machine with real GPUs: each raylet owns its GPUs, replicas stream their
weights into them and answer, and the snapshot's NVML figures agree with nvidia-smi.

Runs only where CUDA is present (the CPU machine's logical mode is covered in tests/serving).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from servelab import serving
from servelab.errors import DeploymentError
from servelab.serving import context
from servelab.serving.gpus import PHYSICAL
from servelab.testing import free_port
from servelab.testing.apps import WeightsSummary

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[str]:
    """One raylet per physical GPU (the default on a GPU machine), 2 CPUs each."""
    address = serving.up(nodes=torch.cuda.device_count(), cpus_per_node=2, http_port=free_port())
    try:
        yield address
    finally:
        serving.down()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpu") / "model.safetensors"
    generator = torch.Generator().manual_seed(0)
    save_file({f"layer{i}": torch.randn(4096, 4096, generator=generator).bfloat16() for i in range(16)}, path)  # 512 MiB
    return path


def nvidia_smi() -> list[dict[str, str]]:
    fields = "index,name,memory.used,memory.total"
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"], capture_output=True, text=True, check=True
    )
    return [dict(zip(fields.split(","), (v.strip() for v in line.split(",")), strict=True)) for line in out.stdout.splitlines()]


def test_each_raylet_owns_its_gpus(gpu_cluster: str) -> None:
    session = context.current()
    assert session.gpu_plan is not None and session.gpu_plan.mode == PHYSICAL
    owned = [index for devices in session.gpu_devices.values() for index in devices]
    assert sorted(owned) == list(range(torch.cuda.device_count()))  # every GPU used, none twice
    assert serving.gpu_mode().startswith("physical GPUs:")
    print(serving.gpu_mode())


def test_replicas_stream_into_their_gpu_and_answer(gpu_cluster: str, checkpoint: Path) -> None:
    serving.deploy("summary", WeightsSummary, replicas=2, gpus=0.5, weights=f"file://{checkpoint}", peer_cache=False)
    try:
        with urllib.request.urlopen(serving.url("summary"), timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["devices"] == ["cuda:0"] and answer["tensors"] == 16
        loads = serving.weight_loads("summary")
        for load in loads:
            print(f"replica weights: {load}")
        snapshot = serving.snapshot()
        smi = {int(row["index"]): row for row in nvidia_smi()}
        assert {g.index for g in snapshot.gpus} == set(smi)
        for gpu in snapshot.gpus:
            row = smi[gpu.index]
            assert gpu.name == row["name"]
            assert abs(gpu.memory_total / 2**20 - float(row["memory.total"])) <= 1
            # Read a moment apart, so allow what a replica may allocate in between.
            assert abs(gpu.memory_used / 2**20 - float(row["memory.used"])) <= 128
            assert gpu.node_id in session_nodes()
            print(f"NVML: GPU {gpu.index} {gpu.name} {gpu.memory_used >> 20} MiB of {gpu.memory_total >> 20} MiB, "
                  f"{gpu.utilization}% busy; nvidia-smi: {row['memory.used']} MiB of {row['memory.total']} MiB")  # fmt: skip
        held = [snapshot.gpu_memory_of(r) for r in snapshot.replicas if r.deployment == "summary"]
        print(f"per-replica GPU memory (NVML, None where the container hides processes): {held}")
        if all(h is not None for h in held):
            assert all(h >= 256 << 20 for h in held if h is not None)  # each holds its 512 MiB of bf16 weights
    finally:
        serving.delete("summary")


def session_nodes() -> set[str]:
    return set(context.current().gpu_devices)


def test_a_replica_asking_for_a_gpu_that_is_not_there_fails_clearly(gpu_cluster: str, checkpoint: Path) -> None:
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(DeploymentError, match=rf"device='{missing}' but this machine has"):
        serving.deploy("ghost", WeightsSummary, gpus=0.5, weights=f"file://{checkpoint}", weights_options={"device": missing})
    assert "ghost" not in {d.name for d in serving.deployments()}


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs nvidia-smi")
def test_nvidia_smi_is_there() -> None:
    assert nvidia_smi()
