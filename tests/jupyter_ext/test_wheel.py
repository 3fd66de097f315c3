"""``pip wheel .`` gives a wheel that, installed into a fresh virtual environment with no source tree
in reach, brings a working labextension and server extension (JupyterLab finds both, from the wheel's
files, and the server extension imports)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*command: str | Path, cwd: Path) -> str:
    # Outside the checkout, with no PYTHONPATH: only what is installed can be imported.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH")}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # without the colours


def source_copy(target: Path) -> Path:
    """The tracked files and the built sidebar, copied with their times (so the bundle counts as fresh):
    the build then writes its build/ folder there, not into the checkout."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    bundle = [str(p.relative_to(ROOT)) for p in (ROOT / "jupyter_ext" / "labextension").rglob("*") if p.is_file()]
    for name in [t for t in tracked if t and (ROOT / t).is_file()] + bundle:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name, follow_symlinks=False)
    return target


def test_the_wheel_installs_a_working_jupyter_extension(tmp_path: Path) -> None:
    source = source_copy(tmp_path / "source")
    wheel_options = ["--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist"]
    run(sys.executable, "-m", "pip", "wheel", source, *wheel_options, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("servelab-*.whl")
    fresh = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", fresh, cwd=tmp_path)
    python = fresh / "bin" / "python"
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path)
    # The dependencies (Jupyter, Ray, ...) come from the test environment, after the fresh one's own
    # site-packages: a plain path line, so the checkout's editable finder there is not loaded.
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = run(
        python,
        "-c",
        "import servelab.loader, servelab.serving, servelab.jupyter_ext; print(servelab.serving.__file__)",
        cwd=tmp_path,
    )
    assert where.strip().startswith(str(fresh)), where  # the wheel's copy, not the checkout
    labextensions = run(python, "-m", "jupyterlab.labextensions", "list", cwd=tmp_path)  # jupyter labextension list
    assert "servelab v0.1.0 enabled OK" in labextensions, labextensions
    assert str(fresh / "share" / "jupyter" / "labextensions") in labextensions  # installed by the wheel
    server = run(python, "-m", "jupyter_server.extension.serverextension", "list", cwd=tmp_path)
    assert re.search(r"servelab enabled.*\n.*Validating servelab.*\n(.*\n)*?\s+servelab \S+ OK", server), server
