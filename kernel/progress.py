"""One line of progress that a magic rewrites in place while it works (a display handle)."""

from __future__ import annotations

import time
from typing import Any

from IPython.display import display

MIN_UPDATE_S = 0.5  # terminals print every update anew: keep them few


class Line:
    """``with Line() as line: line.show("2/3 replicas running")``; the last text stays when done."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._text = ""
        self._shown = ""
        self._shown_at = 0.0

    def show(self, text: str) -> None:
        if text == self._text:
            return
        self._text = text
        now = time.monotonic()
        if self._handle is None:
            self._handle = display({"text/plain": text}, raw=True, display_id=True)
        elif now - self._shown_at >= MIN_UPDATE_S:
            self._handle.update({"text/plain": text}, raw=True)
        else:
            return
        self._shown, self._shown_at = text, now

    def __enter__(self) -> Line:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None and self._text != self._shown:
            self._handle.update({"text/plain": self._text}, raw=True)
