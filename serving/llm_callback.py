"""Ray Serve LLM hook: fetch the model's small files on the replica's own node before vLLM starts.

Serve LLM would otherwise copy the model to local disk and rewrite its path (ray#64996); here the
config and tokenizer are fetched beside the replica and the weights keep streaming from their URI.
"""

from __future__ import annotations

from ray.llm._internal.common.callbacks.base import CallbackBase  # no public path in Ray 2.60

from servelab.loader.model_files import fetch_model


class FetchModelFiles(CallbackBase):
    """Runs ``fetch_model(uri)`` in each LLM replica before its engine is built."""

    async def on_before_node_init(self) -> None:
        fetch_model(self.kwargs["uri"], self.kwargs.get("storage_options"))
