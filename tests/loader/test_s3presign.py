"""The SigV4 presigner agrees with botocore's, byte for byte, at the same instant."""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.config import Config
from botocore.session import get_session

from servelab.loader.s3presign import S3Credentials, credentials_from, presign_get


@pytest.mark.parametrize(
    ("endpoint", "bucket", "key", "token"),
    [
        ("http://127.0.0.1:9000", "models", "llama/model-00001 of 2+x.safetensors", None),
        (None, "models", "a/b.safetensors", "session/token+=="),
        (None, "dotted.bucket", "x.safetensors", None),
    ],
)
def test_presigned_url_matches_botocore(endpoint: str | None, bucket: str, key: str, token: str | None) -> None:
    style = "path" if endpoint or "." in bucket else "virtual"
    client = get_session().create_client(
        "s3", region_name="eu-west-1", endpoint_url=endpoint, aws_access_key_id="AK", aws_secret_access_key="SK",
        aws_session_token=token, config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    )  # fmt: skip
    expected = urlsplit(client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600))
    query = parse_qs(expected.query)
    now = datetime.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    got = urlsplit(presign_get(bucket, key, S3Credentials("AK", "SK", token, "eu-west-1", endpoint), 600, now))
    assert (got.scheme, got.netloc, got.path) == (expected.scheme, expected.netloc, expected.path)
    assert parse_qs(got.query) == query


def test_credentials_from_options_then_environment() -> None:
    options = {"key": "K", "secret": "S", "client_kwargs": {"endpoint_url": "http://h:1", "region_name": "r"}}
    assert credentials_from(options, {}) == S3Credentials("K", "S", None, "r", "http://h:1")
    environ = {"AWS_ACCESS_KEY_ID": "EK", "AWS_SECRET_ACCESS_KEY": "ES", "AWS_SESSION_TOKEN": "T", "AWS_REGION": "x"}
    assert credentials_from({}, environ) == S3Credentials("EK", "ES", "T", "x", None)


def test_options_it_does_not_understand_are_left_to_s3fs() -> None:
    assert credentials_from({"key": "K", "secret": "S", "requester_pays": True}, {}) is None
    assert credentials_from({"anon": True}, {}) is None
    assert credentials_from({}, {}) is None
