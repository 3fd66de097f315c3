"""Stream safetensors weights from any fsspec URI, in concurrent ranged chunks, to host or GPU memory.

>>> from servelab.loader import stream, load
>>> inspect("s3://models/llama/model.safetensors.index.json").nbytes
>>> state = load("s3://models/llama/model.safetensors.index.json", device="cuda", dtype=torch.bfloat16)
"""

from servelab.loader.inspect import CheckpointInfo, TensorInfo, inspect
from servelab.loader.progress import LoadProgress
from servelab.loader.stream import DEFAULT_CHUNK_SIZE, DEFAULT_CONCURRENCY, load, stream

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONCURRENCY",
    "CheckpointInfo",
    "LoadProgress",
    "TensorInfo",
    "inspect",
    "load",
    "stream",
]
