"""The documentation site builds with warnings as errors (a broken link, a page left out of the
navigation, a docstring reference that resolves nowhere fail it), and holds what a reader looks for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_strictly_with_tutorials_magics_and_api(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "package_tree.sh")], check=True)
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"},
    )
    assert built.returncode == 0, built.stderr[-3000:]
    site = tmp_path / "site"

    def page(path: str) -> str:
        return (site / path / "index.html").read_text()

    for notebook in sorted((ROOT / "examples").glob("*.ipynb")):
        assert "servelab" in page(f"tutorials/{notebook.stem}"), notebook.name  # each tutorial rendered
    assert "%compact --dry-run" in page("reference/magics")  # the magics' own help text
    serving = page("reference/serving")
    for name in ("compact", "deploy", "Budget", "Snapshot"):
        assert f'id="servelab.serving.{name}"' in serving, name  # the API from docstrings
    assert '<span class="gp">&gt;&gt;&gt; </span>' in serving and "<blockquote>" not in serving  # >>> lines as code
    for guide in ("attach", "compaction", "llms", "many-models", "security"):
        assert page(f"how-to/{guide}")
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 4000 and "docs/index.md" in readme  # the README points here instead of holding it
