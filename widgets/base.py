"""What every servelab widget shares: a static summary beside the live view, for frontends without widgets."""

from __future__ import annotations

from typing import Any

import ipywidgets as W


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
