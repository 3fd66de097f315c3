"""A real JupyterLab server on 127.0.0.1 for browser tests and the README's main job."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servelab.ports import free_port
from servelab.testing.servers import _Process

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """Debian's chromium (never a browser a tool downloads by itself)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout_s`` (a browser test's wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen within {timeout_s:.0f} s")


def prompts(page: Any) -> list[str]:
    """The execution prompts of a notebook's code cells as JupyterLab shows them ("[3]:", "[*]:")."""
    return [t.strip() for t in page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()]


def wait_until_idle(page: Any, cells: int, timeout_s: float) -> None:
    """Until the first ``cells`` code cells show an execution count (they start with none) and none runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = prompts(page)
        if all(p[1:-2].strip().isdigit() for p in shown[:cells]) and not any("*" in p for p in shown):
            return
        time.sleep(1)
    raise AssertionError(f"cells still running after {timeout_s:.0f} s: {prompts(page)}")


class LabServer(_Process):
    """``jupyter lab`` serving ``root`` with a random token under ``base_url``: ``url("lab/tree/x.ipynb")``.

    With ``main_script`` (the checkout's ``scripts/main.sh``) it starts JupyterLab the way the main
    job does: the tutorials copied into ``root`` as the workspace, JupyterLab serving it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        base_url: str = "/",
        args: tuple[str, ...] = (),
        main_script: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
        quiet = ["--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        env = {
            "JUPYTERLAB_SETTINGS_DIR": str(self._state / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(self._state / "workspaces"),
        }
        if main_script is not None:
            argv = ["bash", str(main_script), f"--ServerApp.base_url={self.base_url}", *quiet, *args]
            env.update(
                SERVELAB_WORKSPACE=str(Path(root).resolve()), SERVELAB_LAB_PORT=str(self.port), SERVELAB_LAB_TOKEN=self.token
            )
        else:
            argv = [
                sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={Path(root).resolve()}",
                f"--ServerApp.base_url={self.base_url}", "--ServerApp.open_browser=False", *quiet, *args,
            ]  # fmt: skip
            if os.geteuid() == 0:
                argv.append("--allow-root")
        # Its own settings: every cell stays rendered (no windowing), so widgets can be looked at.
        settings = self._state / "settings"
        tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True)
        tracker.write_text(json.dumps({"windowingMode": "none"}))
        notifications = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notifications.parent.mkdir(parents=True)
        notifications.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no pop-ups over widgets
        self._spawn(argv, env)
        self._wait_until(self._ready, 120, "JupyterLab")

    @property
    def pid(self) -> int:
        """The process started: JupyterLab, or the main script that runs it."""
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def url(self, path: str = "lab") -> str:
        separator = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{self.base_url}{path.lstrip('/')}{separator}token={self.token}"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("api/status"), timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False
