"""The package build also builds the JupyterLab sidebar (node and npm are needed) and installs it.

setuptools reads everything else from pyproject.toml. The sidebar's bundle is built by a declared
build step (``build_labextension``, run first by ``build_py`` and by editable installs, only when it
is missing or older than its sources), and installed as data files: the bundle to
``share/jupyter/labextensions/servelab`` and the server extension's switch to
``etc/jupyter/jupyter_server_config.d/servelab.json``, so ``pip install`` alone, from a wheel or
editable, gives a working JupyterLab extension. Nothing runs when this file is merely imported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from setuptools import Command, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

ROOT = Path(__file__).resolve().parent
EXT = ROOT / "jupyter_ext"
BUNDLE = EXT / "labextension"
LABEXTENSIONS = Path("share/jupyter/labextensions/servelab")


SCHEMA = EXT / "schema.py"  # the REST API's types, from which src/schema.ts is generated


def sources() -> list[Path]:
    return [
        EXT / "package.json",
        EXT / "tsconfig.json",
        SCHEMA,
        *sorted((EXT / "src").glob("*")),
        *sorted((EXT / "style").glob("*")),
    ]


def generate_schema() -> None:
    """Write src/schema.ts from schema.py (only when it differs, so an unchanged schema rebuilds nothing)."""
    generated = subprocess.run([sys.executable, str(SCHEMA)], check=True, capture_output=True, text=True).stdout
    target = EXT / "src" / "schema.ts"
    if not target.exists() or target.read_text() != generated:
        target.write_text(generated)


def bundle_is_stale() -> bool:
    built = BUNDLE / "package.json"
    return not built.exists() or built.stat().st_mtime < max(p.stat().st_mtime for p in sources())


def data_files() -> list[tuple[str, list[str]]]:
    """The built bundle under share/jupyter/labextensions/servelab, and the server extension's config."""
    files: dict[str, list[str]] = {str(LABEXTENSIONS): [str((EXT / "install.json").relative_to(ROOT))]}
    for path in sorted(BUNDLE.rglob("*")):
        if path.is_file():
            files.setdefault(str(LABEXTENSIONS / path.parent.relative_to(BUNDLE)), []).append(str(path.relative_to(ROOT)))
    files["etc/jupyter/jupyter_server_config.d"] = [str((EXT / "jupyter-config" / "servelab.json").relative_to(ROOT))]
    return sorted(files.items())


class BuildLabextension(Command):
    """Build the sidebar's bundle with npm when it is missing or stale, and list it as data files."""

    description = "build the JupyterLab extension's bundle (jupyter_ext/labextension)"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        generate_schema()
        if bundle_is_stale():
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("building servelab's JupyterLab extension needs node and npm: apt-get install nodejs npm")
            if not (EXT / "node_modules" / "@jupyter" / "builder").exists():
                subprocess.check_call(
                    [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], cwd=EXT
                )
            shutil.rmtree(BUNDLE, ignore_errors=True)
            subprocess.check_call([npm, "run", "--silent", "build"], cwd=EXT)
        self.distribution.data_files = data_files()  # install_data reads them after the build


class BuildPy(build_py):
    """build_py, with the bundle built first (wheels and sdists)."""

    def run(self) -> None:
        self.run_command("build_labextension")
        super().run()


class EditableWheelWithData(editable_wheel):
    """Editable installs build the bundle and install the data files too.

    setuptools' editable_wheel (78.x) asks the distribution for ``has_data``, which does not exist
    (it is ``has_data_files``), so it silently skips ``install_data``; this runs it.
    """

    def run(self) -> None:
        self.run_command("build_labextension")
        super().run()

    def _run_install(self, category: str) -> None:
        if category == "data" and self.distribution.has_data_files():
            self.run_command("install_data")
        else:
            super()._run_install(category)


setup(cmdclass={"build_labextension": BuildLabextension, "build_py": BuildPy, "editable_wheel": EditableWheelWithData})
