"""ClusterView: the live picture of a cluster, node by node, refreshing itself in the background."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as W

from servelab.serving.snapshot import Snapshot
from servelab.widgets.base import LiveView, read_snapshot
from servelab.widgets.figures import cell_map, cluster_figure, detail_figure, figure_widget, overview_figure
from servelab.widgets.model import Header, resources_of
from servelab.widgets.overview import DETAIL_NODES, Overview, group_detail, is_large, overview
from servelab.widgets.summary import header_html, snapshot_html, snapshot_text


class ClusterView(LiveView[Snapshot]):
    """Every node as bars of GPU, CPU and memory, coloured by deployment; stranded capacity in red.

    The header says how many nodes are in use against the lower bound, the fragmentation score
    and the cost per hour. It refreshes every ``interval_s`` seconds in a background thread (the
    kernel stays free); the Pause toggle stops that, ``refresh()`` redraws now. Above 40 nodes it
    shows node types as rows and every node as a cell (``servelab.widgets.overview``); "Nodes of"
    picks a type whose most stranded nodes get their own bars.

    >>> view = ClusterView()          # or: %servelab view
    >>> view.interval_s = 5
    """

    def __init__(self, read: Callable[[], Snapshot] | None = None, interval_s: float = 2.0, autostart: bool = True) -> None:

        self._seen: set[str] = set()
        self.figure = figure_widget()
        # A large cluster's cell map, type picker and picked nodes: made the first time the cluster is
        # large, so a small one's page holds no empty figure.
        self.large = W.VBox()
        self.cells: Any = None
        self.detail: Any = None
        self.picker = W.Dropdown(description="Nodes of", options=[("pick a node type", "")], layout=W.Layout(width="360px"))
        self._quiet = False  # True while draw() replaces the picker's options
        self.picker.observe(self._on_pick, names="value")
        self._view: Overview | None = None
        super().__init__(W.VBox([self.figure, self.large]), read or read_snapshot, interval_s, autostart, "cluster-view")
        self.add_class("servelab-cluster-view")

    def draw(self, snapshot: Snapshot) -> None:
        alive = {n.id for n in snapshot.nodes}
        gone = len(self._seen - alive)
        self._seen |= alive
        header = Header.of(snapshot, gone=gone)
        self.header.value = f'<div style="font-size:13px;padding:4px 8px">{header_html(header)}</div>'
        if not is_large(snapshot):
            self._view = None
            self.large.children = ()
            show(self.figure, cluster_figure(snapshot))
            return
        self._view = view = overview(snapshot)
        show(self.figure, overview_figure(view, resources_of(snapshot), "Node types: what each deployment holds"))
        cells = cell_map(view, "Every node: darker is fuller")
        if self.cells is None:
            self.cells = figure_widget(cells)
        else:
            show(self.cells, cells)
        types = [(f"{g.label}: the {min(g.nodes, DETAIL_NODES)} most stranded", g.type) for g in view.groups if g.type != "head"]
        options = (("pick a node type", ""), *types)
        if tuple(self.picker.options) != options:  # new options reset the pick: keep it where the type remains
            picked = self.picker.value
            self._quiet = True
            self.picker.options = options
            self.picker.value = picked if picked in dict(types).values() else ""
            self._quiet = False
        self._draw_detail()

    def _on_pick(self, _: object) -> None:
        """A person picked a type (the kernel's thread): drawn under the refresher's lock."""
        if not self._quiet:
            with self._lock:
                self._draw_detail()

    def _draw_detail(self) -> None:
        """The picked type's most stranded nodes as bars, under the cell map (nothing while none is picked)."""
        snapshot, view, picked = self.snapshot, self._view, self.picker.value
        if snapshot is None or view is None:
            return
        if not picked:
            self.large.children = (self.cells, self.picker)
            return
        figure = detail_figure(snapshot, group_detail(snapshot, picked), view, f"Nodes of type {picked}, most stranded first")
        if self.detail is None:
            self.detail = figure_widget(figure)
        else:
            show(self.detail, figure)
        self.large.children = (self.cells, self.picker, self.detail)

    def summary_text(self) -> str:
        return snapshot_text(self.snapshot) if self.snapshot else f"ClusterView: {self.error or 'no snapshot yet'}"

    def summary_html(self) -> str:
        return snapshot_html(self.snapshot) if self.snapshot else f"<i>ClusterView: {escape(self.error or 'no snapshot yet')}</i>"


def show(widget: Any, figure: Any) -> None:
    """Replace what a FigureWidget draws with ``figure``, in one message to the frontend."""
    with widget.batch_update():
        widget.data = ()
        widget.add_traces(figure.data)
        widget.layout = figure.layout
