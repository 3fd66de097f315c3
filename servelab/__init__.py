"""servelab: Ray Serve from JupyterLab, with fast weight streaming and zero-downtime replica compaction.

The front door: the error hierarchy and the version. The capabilities live in subpackages:
``servelab.loader`` streams safetensors weights from any fsspec URI; ``servelab.serving`` runs
clusters and deployments and plans and executes compaction.
"""

from servelab.errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    ClusterError,
    CompactionError,
    DeploymentError,
    DeviceError,
    LoaderError,
    ServelabError,
    SourceReadError,
    StalePlanError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointFormatError",
    "CheckpointNotFoundError",
    "ClusterError",
    "CompactionError",
    "DeploymentError",
    "DeviceError",
    "LoaderError",
    "ServelabError",
    "SourceReadError",
    "StalePlanError",
    "__version__",
]
