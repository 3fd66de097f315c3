"""Resolve a URI into the files of a checkpoint: a single file or the shards of an index, validated."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from servelab.errors import CheckpointFormatError, CheckpointNotFoundError, LoaderError
from servelab.loader.format import Header, TensorSpec, header_size, parse_header
from servelab.loader.retry import RetryPolicy
from servelab.loader.sources import ByteSource, open_source

Include = Iterable[str] | Callable[[str], bool] | None
HEAD_BYTES = 1 << 20  # one ranged request covers the header of nearly every checkpoint


@dataclass
class CheckpointFile:
    """One safetensors file: its open source, validated header and the tensors to read from it."""

    source: ByteSource
    header: Header
    selected: tuple[TensorSpec, ...]


def open_checkpoint(
    uri: str,
    storage_options: dict[str, Any] | None,
    include: Include,
    policy: RetryPolicy,
    executor: Executor,
) -> list[CheckpointFile]:
    """Open every file of the checkpoint at ``uri`` that holds a selected tensor, headers validated.

    Nothing but headers (and the index) is read here, so every format error surfaces before data flows.
    """
    wanted = _selector(include)
    if uri.endswith(".json"):
        shard_names = _read_index(uri, storage_options, policy)
        by_shard: dict[str, list[str]] = {}
        for name, shard in shard_names.items():
            if wanted(name):
                by_shard.setdefault(shard, []).append(name)
        _check_requested(include, {n for names in by_shard.values() for n in names}, uri)
        shards = list(by_shard.items())
        futures = [
            executor.submit(_open_file, _join(uri, shard), storage_options, policy, frozenset(names), uri)
            for shard, names in shards
        ]
    else:
        futures = [executor.submit(_open_file, uri, storage_options, policy, wanted)]
    files, errors = [], []
    for future in futures:
        try:
            files.append(future.result())
        except BaseException as exc:  # keep waiting so every opened source gets closed
            errors.append(exc)
    if errors:
        for file in files:
            file.source.close()
        raise errors[0]
    if not uri.endswith(".json"):
        _check_requested(include, {spec.name for spec in files[0].selected}, uri)
    return files


def _open_file(
    uri: str,
    storage_options: dict[str, Any] | None,
    policy: RetryPolicy,
    wanted: Callable[[str], bool] | frozenset[str],
    index_uri: str | None = None,
) -> CheckpointFile:
    """Open one file; for a shard, ``wanted`` is the set of names the index puts in it."""
    try:
        source, head = open_source(uri, storage_options, policy, HEAD_BYTES)
    except CheckpointNotFoundError as exc:
        if index_uri is None:
            raise
        raise CheckpointNotFoundError(f"{uri}: shard named by {index_uri} is missing ({exc}).") from None
    try:
        size = header_size(head, uri, source.size)
        header = parse_header(head if size <= len(head) else source.read(0, size), uri, source.size)
        if isinstance(wanted, frozenset):
            selected = tuple(spec for spec in header.tensors if spec.name in wanted)
            _check_shard_has(selected, wanted, uri, index_uri)
        else:
            selected = tuple(spec for spec in header.tensors if wanted(spec.name))
        return CheckpointFile(source, header, selected)
    except BaseException:
        source.close()
        raise


def _read_index(uri: str, storage_options: dict[str, Any] | None, policy: RetryPolicy) -> dict[str, str]:
    source, head = open_source(uri, storage_options, policy, HEAD_BYTES)
    try:
        raw = head if source.size <= len(head) else source.read(0, source.size)
    finally:
        source.close()
    return parse_index(raw, uri)


def parse_index(raw: bytes, uri: str) -> dict[str, str]:
    """The tensor-to-shard map of a ``model.safetensors.index.json``, validated."""
    try:
        index = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"{uri}: index is not valid JSON ({exc}).") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointFormatError(
            f"{uri}: not a safetensors index (no 'weight_map' of tensor names to shard files). "
            "Give a .safetensors file or a model.safetensors.index.json."
        )
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or shard.startswith("/") or ".." in shard.split("/") or "://" in shard:
            raise CheckpointFormatError(
                f"{uri}: tensor {name!r} maps to {shard!r}; shards must be file names relative to the index."
            )
    return weight_map


def _join(index_uri: str, shard: str) -> str:
    """The URI of ``shard`` beside ``index_uri``, keeping any query string of the index URI."""
    base, sep, query = index_uri.partition("?")
    return posixpath.join(base.rsplit("/", 1)[0], shard) + sep + query if "/" in base else shard


def _selector(include: Include) -> Callable[[str], bool]:
    if include is None:
        return lambda name: True
    if callable(include):
        return include
    if isinstance(include, str):
        raise LoaderError(f"include={include!r} is a string; pass a list of tensor names or a predicate.")
    names = set(include)
    return names.__contains__


def _check_requested(include: Include, found: set[str], uri: str) -> None:
    if include is None or callable(include):
        return
    missing = sorted(set(include) - found)
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise LoaderError(f"{uri}: include names {len(missing)} tensor(s) not in the checkpoint: {shown}.")


def _check_shard_has(selected: tuple[TensorSpec, ...], expected: frozenset[str], uri: str, index_uri: str | None) -> None:
    missing = sorted(expected - {spec.name for spec in selected})
    if missing:
        raise CheckpointFormatError(
            f"{uri}: {index_uri} says this shard holds {missing[:5]} but its header does not; "
            "the index and shards do not match. Re-download the checkpoint."
        )
