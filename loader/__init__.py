"""Stream safetensors weights from any fsspec URI, in concurrent ranged chunks, to host or GPU memory.

>>> from servelab.loader import stream, load
>>> inspect("s3://models/llama/model.safetensors.index.json").nbytes
>>> state = load("s3://models/llama/model.safetensors.index.json", device="cuda", dtype=torch.bfloat16)

vLLM streams through it with ``load_format="servelab"`` (``vllm_plugin``, a vLLM general plugin):
>>> model = fetch_model("s3://models/llama-3-8b/")   # config and tokenizer here; weights stay remote
>>> LLM(model=str(model.directory), load_format="servelab", model_loader_extra_config=model.loader_config())
"""

from servelab.loader.inspect import CheckpointInfo, TensorInfo, inspect
from servelab.loader.model_files import ModelFiles, fetch_model
from servelab.loader.progress import LoadProgress
from servelab.loader.stream import DEFAULT_CHUNK_SIZE, DEFAULT_CONCURRENCY, load, stream

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONCURRENCY",
    "CheckpointInfo",
    "LoadProgress",
    "ModelFiles",
    "TensorInfo",
    "fetch_model",
    "inspect",
    "load",
    "stream",
]
