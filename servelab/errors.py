"""The one exception hierarchy of servelab: every message says what went wrong and what to do."""

from __future__ import annotations


class ServelabError(Exception):
    """Base of every error servelab raises on purpose."""


class LoaderError(ServelabError):
    """Weights could not be streamed; nothing partial was returned."""


class CheckpointFormatError(LoaderError):
    """The bytes are not a valid safetensors checkpoint (corrupt header, bad offsets, unknown dtype...)."""


class CheckpointNotFoundError(LoaderError):
    """A checkpoint file or shard does not exist at the given URI."""


class SourceReadError(LoaderError):
    """Reading from storage failed, after the bounded retries for transient errors."""


class DeviceError(ServelabError):
    """The requested device cannot be used on this machine."""


class ClusterError(ServelabError):
    """The Ray cluster cannot be started, reached or changed as asked."""


class DeploymentError(ServelabError):
    """A deployment cannot be created, scaled or found as asked; nothing in the cluster changed."""


class DeploymentNotFoundError(DeploymentError):
    """No deployment by that name exists on the cluster."""


class ModelNotFoundError(DeploymentError):
    """A request to a multiplexed deployment named a model id that is malformed or cannot be loaded."""


class CompactionError(ServelabError):
    """A compaction cannot be planned or run as asked."""


class StalePlanError(CompactionError):
    """The cluster changed since the plan was made; plan again."""
