#!/usr/bin/env bash
# The main job on a fresh machine: sets up .venv, copies the tutorials into a workspace outside the
# repository (the repository's notebooks stay as committed) and starts JupyterLab on 127.0.0.1 with
# the quickstart open. The URL with its token is printed last, once JupyterLab answers.
#   SERVELAB_WORKSPACE  where the tutorials are copied and JupyterLab runs (default ~/servelab-tutorials);
#                       a tutorial already there is kept as it is (your edits stay)
#   SERVELAB_LAB_PORT   JupyterLab's port (default 8888); SERVELAB_LAB_TOKEN its token (default: a random one)
source "$(dirname "$0")/env.sh" ""
WORKSPACE="${SERVELAB_WORKSPACE:-$HOME/servelab-tutorials}"
mkdir -p "$WORKSPACE"
for notebook in "$ROOT"/examples/*.ipynb; do
    [ -e "$WORKSPACE/$(basename "$notebook")" ] || cp "$notebook" "$WORKSPACE/"
done
step "tutorials in $WORKSPACE (copies: edit and run them freely)"
PORT="${SERVELAB_LAB_PORT:-8888}"
TOKEN="${SERVELAB_LAB_TOKEN:-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')}"
URL="http://127.0.0.1:$PORT/lab/tree/01_quickstart.ipynb?token=$TOKEN"
ARGS=(--no-browser --ip=127.0.0.1 "--port=$PORT" "--IdentityProvider.token=$TOKEN" --ServerApp.port_retries=0
      "--ServerApp.root_dir=$WORKSPACE")
[ "$(id -u)" = 0 ] && ARGS+=(--allow-root)
step "starting JupyterLab ..."
"$PY" -m jupyterlab "${ARGS[@]}" "$@" &
LAB=$!
trap 'kill -TERM $LAB 2>/dev/null; wait $LAB' INT TERM
if "$PY" - "$PORT" "$TOKEN" "$LAB" <<'WAIT'
import os, sys, time, urllib.request
port, token, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)  # JupyterLab exited: its own error is above
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(1)
WAIT
then
    sleep 0.5  # after JupyterLab's own banner
    printf '\n  servelab is ready. Open the quickstart:\n\n      %s\n\n  (Ctrl-C stops JupyterLab.)\n\n' "$URL"
fi
wait $LAB
