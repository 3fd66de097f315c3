"""IPython magics for servelab: ``%load_ext servelab`` registers them and the rich reprs of its results.

>>> %load_ext servelab
>>> %servelab up --nodes 3 --gpus-per-node 2
"""

from __future__ import annotations

from typing import Any

from servelab.kernel.magics import MagicError, ServelabMagics

__all__ = ["MagicError", "ServelabMagics", "load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and HTML/text reprs for Snapshot, Plan and CompactionReport."""
    from servelab.serving import CompactionReport, Plan, Snapshot
    from servelab.widgets import summary

    ipython.register_magics(ServelabMagics)
    formatters = ipython.display_formatter.formatters
    for kind, html, text in (
        (Snapshot, summary.snapshot_html, summary.snapshot_text),
        (Plan, summary.plan_html, summary.plan_text),
        (CompactionReport, summary.report_html, summary.report_text),
    ):
        formatters["text/html"].for_type(kind, html)
        formatters["text/plain"].for_type(kind, lambda value, printer, cycle, text=text: printer.text(text(value)))
