"""A griffe extension for the API pages: docstrings are written for ``help()`` and ``%magic?``, so
their ``>>>`` lines become Python code blocks and a magic's usage text stays preformatted."""

from __future__ import annotations

from typing import Any

import griffe

MAGICS = "servelab.kernel.magics.ServelabMagics."


def fenced(text: str) -> str:
    """``text`` with each run of ``>>>`` lines (and their ``...`` continuations) in a pycon block."""
    out: list[str] = []
    run: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith((">>>", "...")) and (run or line.lstrip().startswith(">>>")):
            run.append(line)
            continue
        if run:
            out += ["```pycon", *run, "```"]
            run = []
        out.append(line)
    return "\n".join(out[:-1])


def preformatted(text: str) -> str:
    """The summary line as prose, the usage after it as one text block."""
    summary, _, usage = text.partition("\n\n")
    return f"{summary}\n\n```text\n{usage.strip()}\n```" if usage.strip() else summary


class DocstringBlocks(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        value = obj.docstring.value
        obj.docstring.value = preformatted(value) if obj.path.startswith(MAGICS) else fenced(value)
