#!/usr/bin/env bash
# The main job on a fresh machine: sets up .venv and runs the demo (stream a generated checkpoint).
source "$(dirname "$0")/env.sh" ""
cd "$ROOT"
exec "$PY" -m servelab demo "$@"
