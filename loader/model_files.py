"""Fetch a model's small files (config, tokenizer, index) from any fsspec URI into a local directory."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servelab.errors import CheckpointNotFoundError, SourceReadError
from servelab.loader.checkpoint import parse_index

LOAD_FORMAT = "servelab"  # vLLM lowercases load_format values: the name must be lowercase
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
REQUIRED = ("config.json",)
OPTIONAL = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "preprocessor_config.json",
)
CACHE = Path(os.environ.get("SERVELAB_MODEL_CACHE", Path.home() / ".cache" / "servelab" / "models"))


@dataclass(frozen=True)
class ModelFiles:
    """A model's local directory of small files and the URI its weights stream from."""

    source: str  # the model's directory URI, as the user gave it
    directory: Path  # config, tokenizer and index, fetched
    weights: str  # the index or the single safetensors file, remote
    storage_options: dict[str, Any] = field(default_factory=dict)

    def loader_config(self) -> dict[str, Any]:
        """``model_loader_extra_config`` for vLLM's ``load_format="servelab"``."""
        config: dict[str, Any] = {"weights": self.weights}
        if self.storage_options:
            config["storage_options"] = self.storage_options
        return config


def fetch_model(uri: str, storage_options: dict[str, Any] | None = None, cache: Path | None = None) -> ModelFiles:
    """Fetch the config, tokenizer and index of the model at directory ``uri`` (any fsspec URI).

    Safetensors files are not fetched: vLLM's ``servelab`` loader streams them. Each call re-fetches,
    so a model updated at its source is seen by the next replica.

    >>> fetch_model("http://10.0.0.5:8000/tiny-llama/").weights
    'http://10.0.0.5:8000/tiny-llama/model.safetensors'
    """
    import fsspec

    base = uri.rstrip("/")
    options = dict(storage_options or {})
    try:
        fs, root = fsspec.core.url_to_fs(base, **options)
    except (ImportError, ValueError) as exc:
        raise SourceReadError(f"{uri}: cannot open this URI ({exc}).") from None
    directory = (cache or CACHE) / hashlib.sha256(base.encode()).hexdigest()[:16]
    directory.mkdir(parents=True, exist_ok=True)
    found = {name: _read(fs, f"{root}/{name}") for name in (*REQUIRED, *OPTIONAL, INDEX)}
    for name in REQUIRED:
        if found[name] is None:
            raise CheckpointNotFoundError(
                f"{base}/{name} does not exist: give the directory of a Hugging Face model "
                "(config.json, tokenizer files and model.safetensors or its index)."
            )
    for name, data in found.items():
        if data is not None:
            _write(directory / name, data)
        else:
            (directory / name).unlink(missing_ok=True)
    index = found[INDEX]
    if index is not None:
        parse_index(index, f"{base}/{INDEX}")  # fail here, not in every engine, on a broken index
        weights = f"{base}/{INDEX}"
    else:
        weights = f"{base}/{SINGLE}"
    return ModelFiles(uri, directory, weights, options)


def _read(fs: Any, path: str) -> bytes | None:
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceReadError(f"{path}: cannot read ({exc}).") from None


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically: replicas on one machine fetch into the same directory at once."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(path)
