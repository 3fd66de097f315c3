"""ModelsView: the models of multiplexed deployments, live: who asks for what, hits, loads, evictions."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

import ipywidgets as W

from servelab.serving.snapshot import Snapshot
from servelab.widgets.base import LiveView, read_snapshot
from servelab.widgets.model import model_rows
from servelab.widgets.summary import models_headline, models_html, models_table, models_text


class ModelsView(LiveView[Snapshot]):
    """One row per model of a multiplexed deployment (or of all): replicas holding it, requests, hit
    rate, loads, evictions, errors, mean load time and bytes loaded; refreshing like ClusterView.

    >>> ModelsView("adapters")
    """

    def __init__(
        self,
        deployment: str | None = None,
        read: Callable[[], Snapshot] | None = None,
        interval_s: float = 2.0,
        autostart: bool = True,
    ) -> None:
        self.deployment = deployment
        self.table = W.HTML()
        super().__init__(self.table, read or read_snapshot, interval_s, autostart, "models-view")
        self.add_class("servelab-models-view")

    @property
    def title(self) -> str:
        return self.deployment or "multiplexed deployments"

    def draw(self, snapshot: Snapshot) -> None:
        rows = model_rows(snapshot, self.deployment)
        self.header.value = f'<div style="font-size:13px;padding:4px 8px">{escape(models_headline(rows, self.title))}</div>'
        self.table.value = models_table(rows)

    def summary_text(self) -> str:
        return (
            models_text(model_rows(self.snapshot, self.deployment), self.title) if self.snapshot else f"ModelsView: {self.error}"
        )

    def summary_html(self) -> str:
        return (
            models_html(model_rows(self.snapshot, self.deployment), self.title)
            if self.snapshot
            else f"<i>ModelsView: {self.error}</i>"
        )
