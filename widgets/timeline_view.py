"""TimelineView: how each replica of a deployment started, as a Gantt chart (which source its weights came from)."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from servelab.serving.replica_weights import ReplicaTimeline
from servelab.widgets.base import LiveView
from servelab.widgets.figures import figure_widget, timeline_figure
from servelab.widgets.model import timeline_phases
from servelab.widgets.summary import timeline_html, timeline_text


class TimelineView(LiveView[list[ReplicaTimeline]]):
    """One row per replica: process start, weights (remote storage or the peer cache, with GB/s),
    constructor, and the wait for its first request; refreshing like ClusterView.

    >>> TimelineView("classifier")
    """

    def __init__(
        self,
        deployment: str | None = None,
        read: Callable[[], list[ReplicaTimeline]] | None = None,
        interval_s: float = 2.0,
        autostart: bool = True,
    ) -> None:

        self.deployment = deployment
        self.figure = figure_widget()
        super().__init__(self.figure, read or self._timelines, interval_s, autostart, "timeline-view")
        self.add_class("servelab-timeline-view")

    @property
    def title(self) -> str:
        return self.deployment or "every deployment"

    def _timelines(self) -> list[ReplicaTimeline]:
        from servelab.serving import replica_timelines

        return replica_timelines(self.deployment)

    def draw(self, snapshot: list[ReplicaTimeline]) -> None:
        phases = timeline_phases(snapshot)
        peer = sum(1 for t in snapshot if t.source == "peer")
        self.header.value = (
            f'<div style="font-size:13px;padding:4px 8px">{escape(self.title)}: {len(snapshot)} replica start(s), '
            f"{peer} from the peer cache, {len(snapshot) - peer} from remote storage</div>"
        )
        drawn = timeline_figure(phases)
        with self.figure.batch_update():
            self.figure.data = ()
            self.figure.add_traces(drawn.data)
            self.figure.layout = drawn.layout

    def summary_text(self) -> str:
        return timeline_text(timeline_phases(self.snapshot or []), self.title)

    def summary_html(self) -> str:
        return timeline_html(timeline_phases(self.snapshot or []), self.title)
