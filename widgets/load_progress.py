"""LoadProgressView: a weight stream's progress, per file, with throughput."""

from __future__ import annotations

import threading
from html import escape

import ipywidgets as W

from servelab.loader import LoadProgress
from servelab.loader.progress import format_bytes, format_rate
from servelab.widgets.base import SummarisedBox

MIN_UPDATE_S = 0.1  # redraw at most ten times a second: a 32 MiB chunk can arrive every few ms


class LoadProgressView(SummarisedBox):
    """A bar per checkpoint file and a line with bytes, tensors and GB/s; pass it as ``progress=``.

    >>> view = LoadProgressView(); display(view)
    >>> state = load("s3://models/llama/model.safetensors.index.json", progress=view)
    """

    def __init__(self) -> None:
        self.last: LoadProgress | None = None
        self._bars: dict[str, W.FloatProgress] = {}
        self._drawn_at = -1.0
        self._lock = threading.Lock()
        self.line = W.HTML("<i>waiting for the first bytes...</i>")
        self.files = W.VBox()
        super().__init__([self.line, self.files])
        self.add_class("servelab-load-progress")

    def __call__(self, event: LoadProgress) -> None:
        with self._lock:
            self.last = event
            finished = event.bytes_done >= event.bytes_total and event.tensors_done >= event.tensors_total
            if finished or event.elapsed_s - self._drawn_at >= MIN_UPDATE_S:
                self._drawn_at = event.elapsed_s
                self._draw(event)

    def _draw(self, event: LoadProgress) -> None:
        for uri, done, total in event.files:
            bar = self._bars.get(uri)
            if bar is None:
                bar = self._bars[uri] = W.FloatProgress(
                    min=0.0,
                    max=1.0,
                    description=uri.rsplit("/", 1)[-1],
                    layout=W.Layout(width="640px"),
                    style={"description_width": "initial"},  # the whole file name: shards differ at its end
                )
                self.files.children = (*self.files.children, bar)
            bar.value = done / total if total else 1.0
            bar.bar_style = "success" if done >= total else ""
        self.line.value = f"<span style='font-size:12px'>{escape(self.summary_text())}</span>"

    def summary_text(self) -> str:
        event = self.last
        if event is None:
            return "waiting for the first bytes"
        return (
            f"{format_bytes(event.bytes_done)} of {format_bytes(event.bytes_total)}, {event.tensors_done}/{event.tensors_total} tensors, "
            f"{len(event.files)} file(s), {event.elapsed_s:.2f} s, {format_rate(event.bytes_done, event.elapsed_s)}"
        )

    def summary_html(self) -> str:
        return f"<div>{escape(self.summary_text())}</div>"
