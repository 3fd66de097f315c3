# Sourced by the set-up commands: create or reuse .venv and install what the given extras need.
# Usage: source scripts/env.sh [EXTRAS]   (EXTRAS e.g. "dev"; empty for the runtime only)
source "$(dirname "${BASH_SOURCE[0]}")/uv.sh"
VENV="$ROOT/.venv"
EXTRAS="${1:-}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1  # tests drive Debian's chromium; never download a browser
lock() { echo "$ROOT/requirements${1:+-$1}.lock"; }  # the exact versions, hashed (scripts/lock.sh writes them)
# Reinstall only when the lock or the sidebar's sources changed (the install builds the sidebar):
# the stamp hashes the lock, setup.py and the sidebar's sources.
stamp() {
    local sources
    sources="$(cd "$ROOT" && cat "$(lock "$1")" setup.py jupyter_ext/schema.py jupyter_ext/package.json jupyter_ext/tsconfig.json jupyter_ext/src/* jupyter_ext/style/* | sha256sum | cut -c1-16)"
    echo "$sources-$1"
}
STAMP="$VENV/.servelab-installed"
HAVE="$(cat "$STAMP" 2>/dev/null || true)"
WANT="$(stamp "$EXTRAS")"
# A dev install serves a request for the runtime alone (the dev lock pins the runtime's versions too).
if [ "$HAVE" != "$WANT" ] && ! { [ -z "$EXTRAS" ] && [ "$HAVE" = "$(stamp dev)" ]; }; then
    LOCK="$(lock "$EXTRAS")"
    [ -x "$VENV/bin/python" ] || { step "creating $VENV"; "$UV" venv --quiet --seed --python python3.11 "$VENV"; }
    step "installing the locked versions of Ray Serve, torch (CPU build) and JupyterLab${EXTRAS:+ with the $EXTRAS extras} ..."
    VIRTUAL_ENV="$VENV" uv_run pip sync "${FIND_LINKS[@]}" "$LOCK"
    step "installing servelab and building the sidebar ..."
    VIRTUAL_ENV="$VENV" uv_run pip install --no-deps "${FIND_LINKS[@]}" -e "$ROOT"
    "$VENV/bin/python" -c "import servelab.loader, servelab.kernel, servelab.widgets" # fail here, loudly, if the install did not work
    echo "$WANT" > "$STAMP"
    step "installed"
fi
bash "$ROOT/scripts/package_tree.sh"  # the package-dir mapping as links, for mypy and the docs' API pages (mkdocs serve)

# Debian packages the tests need: nginx serves HTTP checkpoints, chromium runs JupyterLab headless.
need_debian() {
    local missing=()
    for pair in "$@"; do
        local binary="${pair%%:*}" package="${pair##*:}"
        command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/sbin/$binary" ] || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ]; then
        step "installing Debian packages: ${missing[*]} ..."
        (apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null
    else
        echo "missing Debian packages: run 'sudo apt-get install -y ${missing[*]}'" >&2
        return 1
    fi
}
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
