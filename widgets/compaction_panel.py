"""CompactionPanel: a plan as before/after layouts, its moves and savings, and a button that runs it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as W

from servelab.serving.executor import CompactionEvent, CompactionReport
from servelab.serving.planner import Plan, projected
from servelab.serving.probe import LoadProbe
from servelab.serving.snapshot import Snapshot
from servelab.widgets.base import SummarisedBox
from servelab.widgets.figures import cell_map, cluster_layout, cluster_traces, figure_widget, planned_overview
from servelab.widgets.model import deployment_colours, node_label, ordered_nodes, resources_of
from servelab.widgets.overview import is_large, overview, top_deployments
from servelab.widgets.summary import plan_html, plan_text, report_html, report_text

HALF_WIDTH_PX = 520  # two side by side in a notebook of usual width; they wrap below each other when narrower
EVENT_ICONS = {
    "planned": "&#128221;",
    "draining": "&#9203;",
    "migrated": "&#10132;",
    "released": "&#9989;",
    "terminated": "&#128268;",
    "stopped": "&#9940;",
    "done": "&#127881;",
}


class CompactionPanel(SummarisedBox):
    """Before and after, side by side; the moves, what is freed and why other nodes stay; a Compact button.

    Compact runs the plan in a background thread (the kernel stays free), shows each event as it
    happens, then the report: nodes freed, replicas moved, failed requests, p50/p99 before and during.

    >>> panel = CompactionPanel(snapshot(), plan(snapshot(), budget=Budget(max_draining=2)))   # or: %compact --dry-run --max-draining 2
    >>> panel.run(); panel.wait().nodes_freed
    """

    def __init__(
        self,
        snapshot: Snapshot,
        plan: Plan,
        compact: Callable[..., CompactionReport] | None = None,
        probe: Callable[[], LoadProbe | None] | None = None,
    ) -> None:

        from servelab.serving import compact as run_compaction

        self.snapshot = snapshot
        self.plan = plan
        self.events: list[CompactionEvent] = []
        self.report: CompactionReport | None = None
        self.error = ""
        self._compact = compact or run_compaction
        self._probe = probe
        self._thread: threading.Thread | None = None
        self.cells: Any = None  # a large cluster's cell map
        figures = self._large_figures() if is_large(snapshot) else self._side_by_side()
        self.details = W.HTML(plan_html(plan))
        self.button = W.Button(
            description=f"Compact: free {len(plan.nodes_to_free)} node(s)",
            button_style="primary",
            icon="compress",
            disabled=not plan.nodes_to_free,
            layout=W.Layout(width="260px"),
        )
        self.button.on_click(lambda _: self.run())
        self.event_log = W.HTML()
        self.outcome = W.HTML()
        super().__init__([figures, self.details, self.button, self.event_log, self.outcome])
        self.add_class("servelab-compaction-panel")

    def _side_by_side(self) -> W.Widget:
        """Before and after, a bar row per node, side by side (rows line up: freed nodes stay as empty rows)."""
        import plotly.graph_objects as go

        snapshot, after = self.snapshot, projected(self.snapshot, self.plan)
        rows = [node_label(n) for n in ordered_nodes(snapshot)]
        palette = deployment_colours(snapshot)  # the same colours in both
        # Both figures are complete before their widgets exist: an edit sent to a plotly widget before
        # JupyterLab draws it can leave it drawn empty (seen: "After the plan" as bare axes).
        now = go.Figure(cluster_traces(snapshot, nodes=rows, palette=palette), cluster_layout(snapshot, "Now"))
        planned = go.Figure(
            cluster_traces(after, legend=False, nodes=rows, palette=palette),
            cluster_layout(after, "After the plan", height=now.layout.height),
        )
        planned.update_yaxes(categoryarray=list(reversed(rows)))
        for figure in (now, planned):
            figure.update_layout(width=HALF_WIDTH_PX)
        self.before, self.after = figure_widget(now), figure_widget(planned)
        return W.HBox([self.before, self.after], layout=W.Layout(flex_flow="row wrap"))

    def _large_figures(self) -> W.Widget:
        """A large cluster: each node type now and after, one figure (``before`` and ``after`` are
        the same widget), and every node as a cell with those the plan frees crossed."""
        snapshot, plan = self.snapshot, self.plan
        shown = top_deployments(snapshot)  # the same colours now and after
        now = overview(snapshot, plan, shown)
        after = overview(projected(snapshot, plan), shown=shown)
        title = "Each node type now and after the plan"
        self.before = self.after = figure_widget(planned_overview(now, after, resources_of(snapshot), title))
        freed = f"The {len(plan.nodes_to_free)} node(s) the plan frees, crossed" if plan.nodes_to_free else "Every node"
        self.cells = figure_widget(cell_map(now, freed))
        return W.VBox([self.before, self.cells])

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """Start the compaction in the background (what the button does); a second call while it runs is ignored."""
        if self.running or self.report is not None:
            return
        self.button.disabled = True
        self.button.description = "Compacting..."
        self._thread = threading.Thread(target=self._work, name="servelab-compaction", daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float | None = None) -> CompactionReport | None:
        """Wait for a running compaction; returns its report (None if it failed: see ``error``)."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.report

    def _work(self) -> None:
        try:
            probe = self._probe() if self._probe is not None else None
            self.report = self._compact(self.plan, probe=probe, on_event=self._on_event)
            self.outcome.value = report_html(self.report)
            self.button.description = "Done" if not self.report.stopped else "Stopped"
        except Exception as exc:  # shown in the panel: the kernel thread must not see it
            self.error = str(exc)
            self.outcome.value = f'<b style="color:#B00">Compaction not run: {escape(self.error)}</b>'
            self.button.description = "Not run"

    def _on_event(self, event: CompactionEvent) -> None:
        self.events.append(event)
        self.event_log.value = (
            "<div style='font-size:12px'>"
            + "<br>".join(f"{EVENT_ICONS.get(e.kind, '')} <b>{e.elapsed_s:5.1f} s</b> {escape(e.message)}" for e in self.events)
            + "</div>"
        )

    def summary_text(self) -> str:
        return report_text(self.report) if self.report else plan_text(self.plan)

    def summary_html(self) -> str:
        return report_html(self.report) if self.report else plan_html(self.plan)


def compaction_probe(urls: list[str]) -> Callable[[], LoadProbe | None]:
    """A factory of request loops over ``urls`` (None when there is nothing to call)."""
    return lambda: LoadProbe(urls) if urls else None
