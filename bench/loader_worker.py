"""One timed load in a fresh process, for ``bench.loader`` and ``bench.gpu_loader``: prints a JSON line.

Each method ends with every tensor resident in its target memory and kept, as in a state dict, so
lazy loaders (``load_file`` maps the file) are charged for the bytes they have not read yet; on a
GPU the clock stops after a device synchronize. With ``fingerprint`` set, a position-weighted sum
of every tensor's bytes is computed after the clock stops, so the parent can check that every
loader produced identical tensors.
"""

from __future__ import annotations

import json
import mmap
import resource
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

PAGE = 4096


def main() -> None:
    case = json.loads(sys.argv[1])
    if case["method"] == "h2d":
        print(json.dumps(host_to_device(case)))
        return
    run = METHODS[case["method"]]
    device = torch.device(case.get("device", "cpu"))
    _import_for(case)  # library imports and CUDA's start are start-up, not loading: keep them out of the timing
    if device.type == "cuda":
        torch.empty(1, device=device)
    else:
        _prime_memory(case["prime_bytes"])
    base_rss = _rss_mb("VmRSS")
    cpu0, start = _cpu(), time.perf_counter()
    first = None
    state: dict[str, torch.Tensor] = {}  # every tensor stays alive, as in a state dict
    for name, tensor in run(case):
        if tensor.device.type == "cpu":
            _touch(tensor)
        first = first or time.perf_counter() - start
        state[name] = tensor
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "seconds": seconds,
        "first_tensor_s": first,
        "cpu_s": _cpu() - cpu0,
        "bytes": sum(tensor.nbytes for tensor in state.values()),
        "peak_rss_mb": _rss_mb("VmHWM"),  # not ru_maxrss: exec keeps the parent's value
        "base_rss_mb": base_rss,
        "devices": sorted({str(tensor.device) for tensor in state.values()}),
        "dtypes": sorted({str(tensor.dtype) for tensor in state.values()}),
    }
    if case.get("fingerprint"):
        result["fingerprint"] = {name: _fingerprint(tensor) for name, tensor in sorted(state.items())}
    print(json.dumps(result))


Named = Iterator[tuple[str, torch.Tensor]]


def servelab(case: dict[str, Any]) -> Named:
    from servelab.loader import stream

    options = dict(case.get("options", {}))
    if "dtype" in case:
        options["dtype"] = getattr(torch, case["dtype"])
    yield from stream(
        case["uri"], storage_options=case.get("storage_options"), progress=False, device=case.get("device", "cpu"), **options
    )


def load_file(case: dict[str, Any]) -> Named:
    """``safetensors.torch.load_file``, to ``device`` where given (then ``.to(dtype)`` there, where given)."""
    from safetensors.torch import load_file as safetensors_load_file

    dtype = getattr(torch, case["dtype"]) if "dtype" in case else None
    for path in case["files"]:
        for name, tensor in safetensors_load_file(path, device=case.get("device", "cpu")).items():
            yield name, tensor if dtype is None or not tensor.is_floating_point() else tensor.to(dtype)


def download_load(case: dict[str, Any]) -> Named:
    """What users do today: download each file to local disk, then ``safetensors.torch.load_file``."""
    from safetensors.torch import load_file as safetensors_load_file

    with tempfile.TemporaryDirectory(dir=case["scratch"]) as scratch:
        for number, url in enumerate(case["files"]):
            local = Path(scratch) / f"{number}.safetensors"
            if url.startswith("s3://"):
                _s3_client(case["s3"]).download_file(*url[5:].split("/", 1), str(local))
            else:
                with urllib.request.urlopen(url) as response, open(local, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
            yield from safetensors_load_file(local).items()


def runai(case: dict[str, Any]) -> Named:
    """runai-model-streamer into host memory, then ``.to(device)`` (its tensors share a reused buffer)."""
    from runai_model_streamer import SafetensorsStreamer

    device = torch.device(case.get("device", "cpu"))
    with SafetensorsStreamer() as streamer:
        streamer.stream_files(case["files"])
        for name, tensor in streamer.get_tensors():
            yield name, tensor.to(device) if device.type == "cuda" else tensor


def instanttensor(case: dict[str, Any]) -> Named:
    """InstantTensor to the GPU; its tensors live in a reused buffer, so each is cloned (as its docs say)."""
    from instanttensor import safe_open

    index = torch.device(case["device"]).index or 0
    with safe_open(case["files"], framework="pt", device=index) as opened:
        for name, tensor in opened.tensors():
            yield name, tensor.clone()


def fastsafetensors(case: dict[str, Any]) -> Named:
    """fastsafetensors without GPUDirect Storage (``nogds=True``); its tensors keep their buffer alive."""
    from fastsafetensors import fastsafe_open

    with fastsafe_open(filenames=case["files"], framework="pt", device=case["device"], nogds=True) as opened:
        for name in opened.keys():  # noqa: SIM118 - fastsafe_open is no mapping: keys() is its API
            yield name, opened.get_tensor(name)


METHODS = {
    "servelab": servelab,
    "load_file": load_file,
    "download_load": download_load,
    "runai": runai,
    "instanttensor": instanttensor,
    "fastsafetensors": fastsafetensors,
}


def host_to_device(case: dict[str, Any]) -> dict[str, Any]:
    """The machine's copy limits: GB/s of pinned and pageable host memory to the GPU (best of 5)."""
    device = torch.device(case["device"])
    nbytes = case.get("bytes", 1 << 30)
    target = torch.empty(nbytes, dtype=torch.uint8, device=device)
    figures = {}
    for label, pinned in (("pinned", True), ("pageable", False)):
        host = torch.ones(nbytes, dtype=torch.uint8, pin_memory=pinned)
        best = float("inf")
        for _ in range(5):
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            target.copy_(host, non_blocking=pinned)
            torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        figures[label] = nbytes / best / 1e9
    return figures


def _s3_client(s3: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=s3["key"],
        aws_secret_access_key=s3["secret"],
        region_name="us-east-1",
    )


def _touch(tensor: torch.Tensor) -> None:
    if tensor.numel():
        tensor.reshape(-1).view(torch.uint8)[::PAGE].sum()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _prime_memory(nbytes: int) -> None:
    """Touch, then free, as much memory as the load will need, and reset the peak-RSS mark.

    On these VMs memory left idle goes back to the host within seconds, and the next first touch
    costs about 2.5 CPU-s/GB in host faults, for any loader. Priming gives every method the same
    recently-used memory, so the loaders are compared rather than the order they ran in.
    """
    import numpy as np

    region = mmap.mmap(-1, nbytes)
    np.frombuffer(region, dtype=np.uint8)[::PAGE] = 1
    region.close()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS


_WEIGHTS: dict[str, torch.Tensor] = {}


def _fingerprint(tensor: torch.Tensor, step: int = 1 << 24) -> int:
    """A position-weighted sum of the tensor's bytes, on its own device (equal bytes, equal sums)."""
    raw = tensor.detach().reshape(-1).view(torch.uint8) if tensor.numel() else torch.empty(0, dtype=torch.uint8)
    key = str(raw.device)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = torch.arange(step, device=raw.device, dtype=torch.int64) % 251 + 1
    weights = _WEIGHTS[key]
    total = 0
    for at in range(0, raw.numel(), step):
        part = raw[at : at + step].to(torch.int64)
        total += int((part * weights[: part.numel()]).sum()) * (at // step + 1)
    return total + raw.numel()


def _import_for(case: dict[str, Any]) -> None:
    import safetensors.torch  # noqa: F401

    method = case["method"]
    if method == "servelab":
        import servelab.loader  # noqa: F401
    elif method in ("runai", "instanttensor", "fastsafetensors"):
        __import__({"runai": "runai_model_streamer"}.get(method, method))
    elif method == "download_load" and case["files"][0].startswith("s3://"):
        _s3_client(case["s3"])


if __name__ == "__main__":
    main()
