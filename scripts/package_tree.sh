#!/usr/bin/env bash
# Build .typecheck/servelab: the package as a tree of links. setuptools' editable finder maps
# servelab.serving -> serving/ (and so on) at import time only; mypy and griffe (the docs' API pages)
# read files, so they get the mapping spelled out. Usage: bash scripts/package_tree.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TREE="$ROOT/.typecheck"
rm -rf "$TREE" && mkdir -p "$TREE/servelab"
for entry in "$ROOT"/servelab/*; do ln -s "$entry" "$TREE/servelab/"; done
for sub in loader serving kernel widgets jupyter_ext; do ln -s "$ROOT/$sub" "$TREE/servelab/$sub"; done
