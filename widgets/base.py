"""What every servelab widget shares: a static summary beside the live view, for frontends without
widgets, and a view that reads the cluster and redraws itself in a background thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from html import escape
from typing import Any, Generic, TypeVar

import ipywidgets as W

log = logging.getLogger("servelab.widgets")
T = TypeVar("T")


class SummarisedBox(W.VBox):
    """A VBox that also offers HTML and text summaries in its mimebundle.

    JupyterLab renders the live widget; plain IPython, nbval and static renderers show the summary.
    """

    def summary_html(self) -> str:
        raise NotImplementedError

    def summary_text(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = self.summary_text()
        bundle["text/html"] = self.summary_html()
        return bundle


def read_snapshot() -> Any:
    """The attached cluster's snapshot (imported late: widgets load without a cluster)."""
    from servelab.serving import snapshot

    return snapshot()


class LiveView(SummarisedBox, Generic[T]):
    """A view of what ``read`` returns (a snapshot, say): a header line with Pause and Refresh and a
    body, redrawn every ``interval_s`` seconds in a background thread (the kernel stays free).
    Subclasses draw one reading in ``draw``."""

    def __init__(self, body: W.Widget, read: Callable[[], T], interval_s: float, autostart: bool, name: str) -> None:
        self._read = read
        self.interval_s = interval_s
        self.snapshot: T | None = None
        self.error = ""
        self._thread_name = name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.header = W.HTML()
        self.pause = W.ToggleButton(description="Pause", icon="pause", tooltip="Stop refreshing", layout=W.Layout(width="90px"))
        self.refresh_button = W.Button(description="Refresh", icon="refresh", layout=W.Layout(width="100px"))
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__([W.HBox([self.header, self.pause, self.refresh_button]), body])
        self.refresh()
        self._thread: threading.Thread | None = None
        if autostart:
            self._thread = threading.Thread(target=self._loop, name=f"servelab-{name}", daemon=True)
            self._thread.start()

    @property
    def paused(self) -> bool:
        return bool(self.pause.value)

    def draw(self, snapshot: T) -> None:
        raise NotImplementedError

    def refresh(self) -> T | None:
        """Read the cluster once and redraw; returns the snapshot drawn (None when it could not be read)."""
        with self._lock:
            try:
                snap = self._read()
            except Exception as exc:  # a widget must survive a cluster that went away
                self.error = str(exc)
                gone = self._cluster_gone()
                if gone:
                    self._stop.set()  # nothing will answer again: stop refreshing
                self.header.value = self._unread_html(gone)
                return None
            self.error = ""
            self.snapshot = snap
            self.draw(snap)
            return snap

    @staticmethod
    def _cluster_gone() -> bool:
        """This kernel has no cluster any more (stopped or detached), as opposed to one not answering."""
        from servelab.serving import context

        return context.get() is None

    def _unread_html(self, gone: bool) -> str:
        """Why nothing was read: no cluster in this kernel any more, or one that does not answer (the
        view keeps trying)."""
        if gone:
            shown = "this view shows the cluster as it last was; " if self.snapshot is not None else ""
            return (
                '<span style="color:var(--jp-ui-font-color2, #666)">No cluster in this kernel (stopped or detached): '
                f"{shown}%servelab up or %servelab connect, then %servelab view for a live one.</span>"
            )
        return f'<span style="color:#B00">cluster not answering, trying again: {escape(self.error)}</span>'

    def close(self) -> None:
        """Stop refreshing and close the widget."""
        self._stop.set()
        super().close()

    def _loop(self) -> None:
        while not self._stop.wait(max(0.2, self.interval_s)):
            if not self.paused:
                try:
                    self.refresh()
                except Exception:  # never let the refresher die on a drawing error
                    log.exception("%s refresh failed", self._thread_name)
