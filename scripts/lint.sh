#!/usr/bin/env bash
# Lint, format check and types. Sourced by test.sh after the environment is set up; runs alone too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/.venv/bin/ruff" check .
"$ROOT/.venv/bin/ruff" format --check .
bash "$ROOT/scripts/package_tree.sh"  # mypy reads files: the package-dir mapping as links
TREE="$ROOT/.typecheck"
(cd "$TREE" && "$ROOT/.venv/bin/mypy" --config-file "$ROOT/pyproject.toml" -p servelab)
