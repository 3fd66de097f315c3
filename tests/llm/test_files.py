"""fetch_model(): a model's small files fetched locally from HTTP and S3; its weights left where they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from servelab.errors import CheckpointNotFoundError
from servelab.loader import fetch_model
from servelab.loader.vllm_plugin import weights_uri
from servelab.testing import NginxServer, SeaweedS3Server


def test_fetches_config_and_tokenizer_over_http_but_no_weights(tiny_models: Path, nginx: NginxServer, tmp_path: Path) -> None:
    files = fetch_model(nginx.url("tiny") + "/", cache=tmp_path)

    fetched = {p.name for p in files.directory.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= fetched
    assert not [name for name in fetched if name.endswith(".safetensors")]
    assert (files.directory / "config.json").read_bytes() == (tiny_models / "tiny" / "config.json").read_bytes()
    assert files.weights == nginx.url("tiny") + "/model.safetensors"
    assert files.loader_config() == {"weights": files.weights}


def test_a_sharded_model_streams_from_its_index_on_s3(tiny_models: Path, s3: SeaweedS3Server, tmp_path: Path) -> None:
    files = fetch_model(f"s3://{s3.bucket}/tiny-sharded", s3.storage_options, cache=tmp_path)

    assert files.weights == f"s3://{s3.bucket}/tiny-sharded/model.safetensors.index.json"
    assert (files.directory / "model.safetensors.index.json").exists()
    assert files.loader_config()["storage_options"] == s3.storage_options


def test_a_directory_without_config_is_refused_with_what_to_give(tiny_models: Path, nginx: NginxServer, tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match=r"config\.json does not exist: give the directory of a Hugging Face model"):
        fetch_model(nginx.url("no-such-model") + "/", cache=tmp_path)


def test_the_loader_streams_what_the_extra_config_names_else_the_local_files(tmp_path: Path) -> None:
    assert weights_uri(str(tmp_path), {"weights": "s3://b/m/model.safetensors"}) == "s3://b/m/model.safetensors"
    assert weights_uri(str(tmp_path), None) == str(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    assert weights_uri(str(tmp_path), {}) == str(tmp_path / "model.safetensors.index.json")
