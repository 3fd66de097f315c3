"""vLLM with streamed weights: a ``load_format="servelab"`` model loader and the model files it needs.

Config, tokenizer and index files are fetched into a small local directory; the safetensors bytes
stream from their URI straight into the engine's parameters and never touch the disk.

>>> from servelab.llm import fetch_model
>>> model = fetch_model("s3://models/llama-3-8b/")
>>> LLM(model=model.directory, load_format="servelab", model_loader_extra_config=model.loader_config())
"""

from servelab.llm.files import LOAD_FORMAT, ModelFiles, fetch_model

__all__ = ["LOAD_FORMAT", "ModelFiles", "fetch_model"]
