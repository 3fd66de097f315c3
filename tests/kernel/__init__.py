"""What the magics' tests share: running a cell that must fail the way a notebook shows it."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from servelab.kernel import MagicError


def failure(shell: InteractiveShell, source: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``source`` as a cell that must end in a MagicError; the one line it showed instead of a traceback."""
    capsys.readouterr()
    result = shell.run_cell(source)
    assert isinstance(result.error_in_exec, MagicError), result.error_in_exec
    printed = capsys.readouterr()
    shown = (printed.out + printed.err).strip()
    lines = [text for text in shown.splitlines() if text.startswith("servelab: ")]
    assert len(lines) == 1 and shown.endswith(lines[0]) and "Traceback" not in shown, shown
    return lines[0]
