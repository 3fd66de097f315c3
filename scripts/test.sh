#!/usr/bin/env bash
# The whole suite on a fresh machine: .venv with the dev extras, nginx and chromium; then lint and
# types, pytest, the tutorials under nbval and the browser test, in one pytest run.
source "$(dirname "$0")/env.sh" dev
need_debian nginx:nginx-light chromium:chromium
cd "$ROOT"
bash scripts/lint.sh
# The quickstart runs once, in JupyterLab (tests/jupyter checks its cells as nbval would).
exec "$PY" -m pytest tests examples --ignore=examples/01_quickstart.ipynb --nbval-lax --nbval-current-env --nbval-cell-timeout=600 "$@"
