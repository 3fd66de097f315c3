#!/usr/bin/env bash
# The main job on a fresh machine: sets up .venv and starts JupyterLab on 127.0.0.1 with the quickstart open.
source "$(dirname "$0")/env.sh" ""
cd "$ROOT/examples"
PORT="${SERVELAB_LAB_PORT:-8888}"
TOKEN="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
echo "JupyterLab with servelab: http://127.0.0.1:$PORT/lab/tree/01_quickstart.ipynb?token=$TOKEN"
ARGS=(--no-browser --ip=127.0.0.1 "--port=$PORT" "--IdentityProvider.token=$TOKEN" --ServerApp.port_retries=0)
[ "$(id -u)" = 0 ] && ARGS+=(--allow-root)
exec "$PY" -m jupyterlab "${ARGS[@]}" "$@"
