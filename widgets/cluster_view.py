"""ClusterView: the live picture of a cluster, node by node, refreshing itself in the background."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from html import escape

import ipywidgets as W

from servelab.serving.snapshot import Snapshot
from servelab.widgets.base import SummarisedBox
from servelab.widgets.figures import cluster_layout, cluster_traces
from servelab.widgets.model import Header
from servelab.widgets.summary import header_html, snapshot_html, snapshot_text

log = logging.getLogger("servelab.widgets")


class ClusterView(SummarisedBox):
    """Every node as bars of GPU, CPU and memory, coloured by deployment; stranded capacity in red.

    The header says how many nodes are in use against the lower bound, the fragmentation score
    and the cost per hour. It refreshes every ``interval_s`` seconds in a background thread (the
    kernel stays free); the Pause toggle stops that, ``refresh()`` redraws now.

    >>> view = ClusterView()          # or: %servelab view
    >>> view.interval_s = 5
    """

    def __init__(self, read: Callable[[], Snapshot] | None = None, interval_s: float = 2.0, autostart: bool = True) -> None:
        import plotly.graph_objects as go

        from servelab.serving import snapshot

        self._read = read or snapshot
        self.interval_s = interval_s
        self.snapshot: Snapshot | None = None
        self.error = ""
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.header = W.HTML()
        self.pause = W.ToggleButton(description="Pause", icon="pause", tooltip="Stop refreshing", layout=W.Layout(width="90px"))
        self.refresh_button = W.Button(description="Refresh", icon="refresh", layout=W.Layout(width="100px"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.figure = go.FigureWidget()
        super().__init__([W.HBox([self.header, self.pause, self.refresh_button]), self.figure])
        self.add_class("servelab-cluster-view")
        self.refresh()
        self._thread: threading.Thread | None = None
        if autostart:
            self._thread = threading.Thread(target=self._loop, name="servelab-cluster-view", daemon=True)
            self._thread.start()

    @property
    def paused(self) -> bool:
        return bool(self.pause.value)

    def refresh(self) -> Snapshot | None:
        """Read the cluster once and redraw; returns the snapshot drawn (None when it could not be read)."""
        with self._lock:
            try:
                snap = self._read()
            except Exception as exc:  # a widget must survive a cluster that went away
                self.error = str(exc)
                self.header.value = f'<span style="color:#B00">cluster unreachable: {escape(self.error)}</span>'
                return None
            self.error = ""
            self.snapshot = snap
            alive = {n.id for n in snap.nodes}
            gone = len(self._seen - alive)
            self._seen |= alive
            header = Header.of(snap, gone=gone)
            self.header.value = f'<div style="font-size:13px;padding:4px 8px">{header_html(header)}</div>'
            traces = cluster_traces(snap)
            layout = cluster_layout(snap)
            with self.figure.batch_update():
                self.figure.data = ()
                self.figure.add_traces(traces)
                self.figure.layout = layout
            return snap

    def close(self) -> None:
        """Stop refreshing and close the widget."""
        self._stop.set()
        super().close()

    def summary_text(self) -> str:
        return snapshot_text(self.snapshot) if self.snapshot else f"ClusterView: {self.error or 'no snapshot yet'}"

    def summary_html(self) -> str:
        return snapshot_html(self.snapshot) if self.snapshot else f"<i>ClusterView: {escape(self.error or 'no snapshot yet')}</i>"

    def _loop(self) -> None:
        while not self._stop.wait(max(0.2, self.interval_s)):
            if not self.paused:
                try:
                    self.refresh()
                except Exception:  # never let the refresher die on a drawing error
                    log.exception("ClusterView refresh failed")
