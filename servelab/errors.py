"""The one exception hierarchy of servelab: every message says what went wrong and what to do."""

from __future__ import annotations

from collections.abc import Mapping

MAGIC, SIDEBAR = "magic", "sidebar"  # the faces a user types in, besides Python


class ServelabError(Exception):
    """Base of every error servelab raises on purpose.

    The message names the fix in Python's words; ``said_in`` gives it in the words of the face the user
    typed in, where they differ (a magic, the sidebar's buttons):

    >>> StalePlanError("... plan(snapshot()) ...", said_in={MAGIC: "... %compact --dry-run ..."}).in_words_of(MAGIC)
    '... %compact --dry-run ...'
    """

    def __init__(self, message: str, *, said_in: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.said_in = dict(said_in or {})

    def in_words_of(self, face: str) -> str:
        """The message as ``face`` (MAGIC or SIDEBAR) says it; Python's where the face has no words of its own."""
        return self.said_in.get(face, str(self))


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
