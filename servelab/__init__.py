"""servelab: Ray Serve from JupyterLab, with fast weight streaming and zero-downtime replica compaction.

The front door: the error hierarchy, the version and ``%load_ext servelab``. The capabilities live
in subpackages: ``servelab.loader`` streams safetensors weights from any fsspec URI;
``servelab.serving`` runs clusters and deployments and plans and executes compaction;
``servelab.kernel`` holds the magics and ``servelab.widgets`` the live views.

>>> %load_ext servelab
"""

from typing import Any

from servelab.errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    ClusterError,
    CompactionError,
    DeploymentError,
    DeploymentNotFoundError,
    DeviceError,
    LoaderError,
    ServelabError,
    SourceReadError,
    StalePlanError,
)

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension: ``servelab.jupyter_ext`` (enabled by the package's jupyter-config)."""
    return [{"module": "servelab.jupyter_ext"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext servelab``: the magics and rich reprs (IPython is imported only here)."""
    from servelab.kernel import load_ipython_extension as load

    load(ipython)


__all__ = [
    "CheckpointFormatError",
    "CheckpointNotFoundError",
    "ClusterError",
    "CompactionError",
    "DeploymentError",
    "DeploymentNotFoundError",
    "DeviceError",
    "LoaderError",
    "ServelabError",
    "SourceReadError",
    "StalePlanError",
    "__version__",
    "load_ipython_extension",
]
