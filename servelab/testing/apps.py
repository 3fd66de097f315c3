"""Small Serve replica classes for tests, demos and tutorials (importable by every Ray worker)."""

from __future__ import annotations

from typing import Any


class Echo:
    """Answers every request with its tag."""

    def __init__(self, tag: str = "echo") -> None:
        self.tag = tag

    async def __call__(self, request: Any = None) -> str:
        return self.tag


class WeightsSummary:
    """Holds the streamed state dict; answers with what it received and how long streaming took."""

    def __init__(self, weights: dict[str, Any]) -> None:
        import os

        self.names = sorted(weights)
        self.checksum = float(sum(float(t.double().sum()) for t in weights.values()))
        self.devices = sorted({str(t.device) for t in weights.values()})
        self.cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.weights = weights  # held, as a model would: its GPU memory shows in NVML's per-process figures

    async def __call__(self, request: Any = None) -> dict[str, Any]:
        return {
            "tensors": len(self.names),
            "checksum": self.checksum,
            "load_s": getattr(self, "servelab_weights_load_s", None),
            "devices": self.devices,
            "cuda_visible_devices": self.cuda_visible_devices,
        }


class Pipeline:
    """Composition: calls another deployment through its handle and wraps the answer."""

    def __init__(self, downstream: Any) -> None:
        self.downstream = downstream

    async def __call__(self, request: Any = None) -> str:
        return "pipeline(" + await self.downstream.remote() + ")"


def state_digest(state: dict[str, Any]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes: equal digests, identical state dicts."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class WeightsDigest:
    """Answers with a digest of the state dict it was given and the replica that answers."""

    def __init__(self, weights: dict[str, Any]) -> None:
        self.digest = state_digest(weights)

    async def __call__(self, request: Any = None) -> dict[str, str]:
        from ray import serve

        return {"digest": self.digest, "replica": serve.get_replica_context().replica_id.unique_id}
