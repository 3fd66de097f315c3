"""One timed load in a fresh process, for ``bench.loader``: prints a JSON line with its measurements.

Each method ends with every tensor resident in memory (one read per page) and kept, as in a state
dict, so lazy loaders (``load_file`` maps the file) are charged for the bytes they have not read yet.
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
    run = {"servelab": servelab, "load_file": load_file, "download_load": download_load, "runai": runai}[case["method"]]
    _import_for(case)  # library imports are start-up, not loading: keep them out of the timing
    _prime_memory(case["prime_bytes"])
    base_rss = _rss_mb("VmRSS")
    cpu0, start = _cpu(), time.perf_counter()
    first = None
    state = []  # every tensor stays alive, as in a state dict
    for tensor in run(case):
        _touch(tensor)
        first = first or time.perf_counter() - start
        state.append(tensor)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "first_tensor_s": first,
                "cpu_s": _cpu() - cpu0,
                "bytes": sum(tensor.nbytes for tensor in state),
                "peak_rss_mb": _rss_mb("VmHWM"),  # not ru_maxrss: exec keeps the parent's value
                "base_rss_mb": base_rss,
            }
        )
    )


def servelab(case: dict[str, Any]) -> Iterator[torch.Tensor]:
    from servelab.loader import stream

    options = case.get("options", {})
    for _name, tensor in stream(case["uri"], storage_options=case.get("storage_options"), progress=False, **options):
        yield tensor


def load_file(case: dict[str, Any]) -> Iterator[torch.Tensor]:
    from safetensors.torch import load_file as safetensors_load_file

    for path in case["files"]:
        yield from safetensors_load_file(path).values()


def download_load(case: dict[str, Any]) -> Iterator[torch.Tensor]:
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
            yield from safetensors_load_file(local).values()


def runai(case: dict[str, Any]) -> Iterator[torch.Tensor]:
    from runai_model_streamer import SafetensorsStreamer

    with SafetensorsStreamer() as streamer:
        streamer.stream_files(case["files"])
        for _name, tensor in streamer.get_tensors():
            yield tensor


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


def _import_for(case: dict[str, Any]) -> None:
    import safetensors.torch  # noqa: F401

    if case["method"] == "servelab":
        import servelab.loader  # noqa: F401
    elif case["method"] == "runai":
        import runai_model_streamer  # noqa: F401
    elif case["method"] == "download_load" and case["files"][0].startswith("s3://"):
        _s3_client(case["s3"])


if __name__ == "__main__":
    main()
