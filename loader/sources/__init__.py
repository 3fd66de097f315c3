"""Byte sources: ranged reads straight into caller-owned buffers, one module per transport.

Local files (``local``) use ``preadv`` from the page cache and O_DIRECT past it; HTTP(S) (``http``) a
keep-alive connection per thread that ``readinto``s the response body; S3 becomes HTTP through a
presigned URL. All keep Python out of the per-byte path (no intermediate bytes objects). Any other
fsspec filesystem (``generic``) is read with ``cat_file`` and one copy. ``open_source`` picks one.
"""

from __future__ import annotations

from typing import Any

from servelab.errors import SourceReadError
from servelab.loader.retry import RetryPolicy
from servelab.loader.s3presign import credentials_from, presign_get
from servelab.loader.sources.base import Buffers, ByteSource
from servelab.loader.sources.generic import FsspecSource
from servelab.loader.sources.http import HTTPSource
from servelab.loader.sources.local import LocalFileSource

__all__ = ["Buffers", "ByteSource", "FsspecSource", "HTTPSource", "LocalFileSource", "open_source"]
PRESIGN_EXPIRY_S = 6 * 3600


def open_source(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    policy: RetryPolicy | None = None,
    head_bytes: int = 1 << 20,
) -> tuple[ByteSource, bytes]:
    """Open ``uri`` with the fastest source its filesystem allows; return it and its first bytes."""
    source = _make_source(uri, dict(storage_options or {}), policy or RetryPolicy())
    try:
        head = source.open(head_bytes)
    except BaseException:
        source.close()
        raise
    return source, head


def _make_source(uri: str, options: dict[str, Any], policy: RetryPolicy) -> ByteSource:
    scheme, _, rest = uri.partition("://")
    if not rest and "::" not in uri:  # a plain path: no need to import fsspec
        return LocalFileSource(uri, uri, policy)
    if scheme in ("s3", "s3a") and "/" in rest:
        credentials = credentials_from(options)
        if credentials is not None:  # plain key and secret: sign here, skip s3fs's start-up cost
            bucket, key = rest.split("/", 1)
            return HTTPSource(presign_get(bucket, key, credentials, PRESIGN_EXPIRY_S), uri, policy)

    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
    except (ImportError, ValueError) as exc:
        raise SourceReadError(f"{uri}: cannot open this URI ({exc}).") from None
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if "file" in protocols:
        return LocalFileSource(path, uri, policy)
    if protocols & {"http", "https"}:
        return HTTPSource(path, uri, policy, headers=options.get("headers"))
    if protocols & {"s3", "s3a"}:
        url = _presigned_url(fs, path)
        if url is not None:
            return HTTPSource(url, uri, policy)
    return FsspecSource(fs, path, uri, policy)


def _presigned_url(fs: Any, path: str) -> str | None:
    """A presigned GET URL from s3fs (any credential chain it knows); None when unsignable."""
    try:
        return fs.sign(path, expiration=PRESIGN_EXPIRY_S)
    except Exception:  # anonymous access, exotic auth: fall back to fsspec reads
        return None
