"""vLLM's ``load_format="servelab"``: weights streamed by servelab.loader into the engine's parameters.

Registered by ``register()``, the ``vllm.general_plugins`` entry point: vLLM runs it in every engine
process (offline, ``vllm serve`` and under Ray Serve), sometimes more than once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servelab.errors import LoaderError
from servelab.loader.model_files import INDEX, LOAD_FORMAT, SINGLE

_registered = False


def register() -> None:
    """Register the ``servelab`` model loader with vLLM; safe to call any number of times."""
    global _registered
    if _registered:
        return
    from vllm.model_executor.model_loader import register_model_loader

    register_model_loader(LOAD_FORMAT)(_loader_class())
    _registered = True


def weights_uri(model_dir: str, extra: dict[str, Any] | None) -> str:
    """Where the weights stream from: ``model_loader_extra_config["weights"]``, else the files in ``model_dir``."""
    if extra and extra.get("weights"):
        return str(extra["weights"])
    index = Path(model_dir) / INDEX
    return str(index if index.exists() else Path(model_dir) / SINGLE)


def _loader_class() -> type:
    from vllm.logger import init_logger
    from vllm.model_executor.model_loader.base_loader import BaseModelLoader

    logger = init_logger("vllm.servelab")  # under vLLM's logger, so its handlers print it in every engine process

    class ServelabModelLoader(BaseModelLoader):
        """Streams safetensors from any fsspec URI, shard after shard, into ``model.load_weights``."""

        def download_model(self, model_config: Any) -> None:
            """Nothing to download: the weights stream while the model loads."""

        def load_weights(self, model: Any, model_config: Any) -> None:
            from servelab.loader import stream

            raw = self.load_config.model_loader_extra_config
            extra: dict[str, Any] = raw if isinstance(raw, dict) else {}
            unknown = set(extra) - {"weights", "storage_options"}
            if unknown:
                raise LoaderError(
                    f"model_loader_extra_config for load_format='{LOAD_FORMAT}' takes 'weights' and "
                    f"'storage_options', not {sorted(unknown)}."
                )
            uri = weights_uri(model_config.model, extra)
            device = next(model.parameters()).device
            streamed = [0]

            def tensors() -> Iterator[tuple[str, Any]]:
                for name, tensor in stream(
                    uri,
                    device=device if device.type == "cuda" else "cpu",
                    storage_options=extra.get("storage_options"),
                    progress=False,
                ):
                    streamed[0] += tensor.nbytes
                    yield name, tensor

            started = time.perf_counter()
            loaded = model.load_weights(tensors())
            seconds = time.perf_counter() - started
            # The default loader's wording, so that log readers (bench.llm_scaleup) time every loader alike.
            logger.info(
                "Loading weights took %.2f seconds (servelab streamed %.3f GB from %s at %.2f GB/s)",
                seconds, streamed[0] / 1e9, uri, streamed[0] / 1e9 / max(seconds, 1e-9),
            )  # fmt: skip
            if loaded is not None:
                missing = sorted({name for name, _ in model.named_parameters()} - set(loaded))
                if missing:
                    raise LoaderError(
                        f"{uri} lacks {len(missing)} of the model's weights ({', '.join(missing[:4])}...): "
                        "the checkpoint does not match config.json. Point the model at matching weights."
                    )

    return ServelabModelLoader
