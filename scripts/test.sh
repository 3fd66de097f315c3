#!/usr/bin/env bash
# The whole test suite on a fresh machine: sets up .venv with the dev extras and nginx, then runs pytest.
source "$(dirname "$0")/env.sh" dev
need_nginx
cd "$ROOT"
exec "$PY" -m pytest "$@"
