"""IPython magics for servelab: ``%load_ext servelab`` registers them and the rich reprs of its results.

>>> %load_ext servelab
>>> %servelab up --nodes 3 --gpus-per-node 2
"""

from __future__ import annotations

from typing import Any

from servelab.kernel.magics import MagicError, ServelabMagics

__all__ = ["MagicError", "ServelabMagics", "load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics, and how Snapshot, Plan and CompactionReport display."""
    from servelab.kernel.display import register_reprs

    ipython.register_magics(ServelabMagics)
    register_reprs(ipython)
