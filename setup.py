"""The package build also builds the JupyterLab sidebar (node and npm are needed) and installs it.

setuptools reads everything else from pyproject.toml. Running this file builds the bundle with
``npm install`` and the build in ``jupyter_ext/`` when it is missing or older than its sources (the
first step of every pip build, so later steps find it), and the package installs it to ``share/jupyter/labextensions/servelab`` and enables the server extension through
``etc/jupyter/jupyter_server_config.d/servelab.json``, so ``pip install`` alone gives a working
JupyterLab extension (editable installs too).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.editable_wheel import editable_wheel

ROOT = Path(__file__).resolve().parent
EXT = ROOT / "jupyter_ext"
BUNDLE = EXT / "labextension"
SOURCES = [EXT / "package.json", EXT / "tsconfig.json", *sorted((EXT / "src").glob("*")), *sorted((EXT / "style").glob("*"))]


def bundle_is_stale() -> bool:
    built = BUNDLE / "package.json"
    return not built.exists() or built.stat().st_mtime < max(p.stat().st_mtime for p in SOURCES)


def build_labextension() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("building servelab's JupyterLab extension needs node and npm: apt-get install nodejs npm")
    if not (EXT / "node_modules" / "@jupyter" / "builder").exists():
        subprocess.check_call([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], cwd=EXT)
    shutil.rmtree(BUNDLE, ignore_errors=True)
    subprocess.check_call([npm, "run", "--silent", "build"], cwd=EXT)


def data_files() -> list[tuple[str, list[str]]]:
    """The built bundle under share/jupyter/labextensions/servelab, and the server extension's config."""
    target = Path("share/jupyter/labextensions/servelab")
    files: dict[str, list[str]] = {str(target): [str((EXT / "install.json").relative_to(ROOT))]}
    for path in sorted(BUNDLE.rglob("*")):
        if path.is_file():
            files.setdefault(str(target / path.parent.relative_to(BUNDLE)), []).append(str(path.relative_to(ROOT)))
    files["etc/jupyter/jupyter_server_config.d"] = [str((EXT / "jupyter-config" / "servelab.json").relative_to(ROOT))]
    return sorted(files.items())


class EditableWheelWithData(editable_wheel):
    """Editable installs get the data files too.

    setuptools' editable_wheel (84.x) asks the distribution for ``has_data``, which does not exist
    (it is ``has_data_files``), so it silently skips ``install_data``; this runs it.
    """

    def _run_install(self, category: str) -> None:
        if category == "data" and self.distribution.has_data_files():
            self.run_command("install_data")
        else:
            super()._run_install(category)


if bundle_is_stale():
    build_labextension()
setup(data_files=data_files(), cmdclass={"editable_wheel": EditableWheelWithData})
