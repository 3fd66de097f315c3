"""ClusterView: the live picture of a cluster, node by node, refreshing itself in the background."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from servelab.serving.snapshot import Snapshot
from servelab.widgets.base import LiveView, read_snapshot
from servelab.widgets.figures import cluster_layout, cluster_traces, figure_widget
from servelab.widgets.model import Header
from servelab.widgets.summary import header_html, snapshot_html, snapshot_text


class ClusterView(LiveView[Snapshot]):
    """Every node as bars of GPU, CPU and memory, coloured by deployment; stranded capacity in red.

    The header says how many nodes are in use against the lower bound, the fragmentation score
    and the cost per hour. It refreshes every ``interval_s`` seconds in a background thread (the
    kernel stays free); the Pause toggle stops that, ``refresh()`` redraws now.

    >>> view = ClusterView()          # or: %servelab view
    >>> view.interval_s = 5
    """

    def __init__(self, read: Callable[[], Snapshot] | None = None, interval_s: float = 2.0, autostart: bool = True) -> None:

        self._seen: set[str] = set()
        self.figure = figure_widget()
        super().__init__(self.figure, read or read_snapshot, interval_s, autostart, "cluster-view")
        self.add_class("servelab-cluster-view")

    def draw(self, snapshot: Snapshot) -> None:
        alive = {n.id for n in snapshot.nodes}
        gone = len(self._seen - alive)
        self._seen |= alive
        header = Header.of(snapshot, gone=gone)
        self.header.value = f'<div style="font-size:13px;padding:4px 8px">{header_html(header)}</div>'
        with self.figure.batch_update():
            self.figure.data = ()
            self.figure.add_traces(cluster_traces(snapshot))
            self.figure.layout = cluster_layout(snapshot)

    def summary_text(self) -> str:
        return snapshot_text(self.snapshot) if self.snapshot else f"ClusterView: {self.error or 'no snapshot yet'}"

    def summary_html(self) -> str:
        return snapshot_html(self.snapshot) if self.snapshot else f"<i>ClusterView: {escape(self.error or 'no snapshot yet')}</i>"
