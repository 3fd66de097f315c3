#!/usr/bin/env bash
# Lint, format check and types. Sourced by test.sh after the environment is set up; runs alone too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/.venv/bin/ruff" check .
"$ROOT/.venv/bin/ruff" format --check .
# mypy cannot follow setuptools' editable finder for the package-dir mapping (servelab.serving ->
# serving/), so spell the mapping out as a tree of links, and check the package from there.
TREE="$ROOT/.typecheck"
rm -rf "$TREE" && mkdir -p "$TREE/servelab"
for entry in "$ROOT"/servelab/*; do ln -s "$entry" "$TREE/servelab/"; done
for sub in loader serving kernel widgets jupyter_ext; do ln -s "$ROOT/$sub" "$TREE/servelab/$sub"; done
(cd "$TREE" && "$ROOT/.venv/bin/mypy" --config-file "$ROOT/pyproject.toml" -p servelab)
