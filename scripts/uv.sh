# Sourced by the set-up scripts: $UV is a uv binary (the machine's, else one installed from the
# package registry into .cache/), and FIND_LINKS passes on pip's local wheel folder, which uv does not
# read from pip's configuration (torch's CPU build lies there).
set -euo pipefail
step() { printf 'servelab: %s\n' "$*" >&2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION=0.13.10
UV="$(command -v uv || true)"
if [ -z "$UV" ]; then
    UV="$ROOT/.cache/uv-$UV_VERSION/bin/uv"
    if [ ! -x "$UV" ]; then
        step "installing uv $UV_VERSION from the package registry ..."
        python3 -m pip install --quiet --disable-pip-version-check --target "$ROOT/.cache/uv-$UV_VERSION" "uv==$UV_VERSION"
    fi
fi
FIND_LINKS=()
for folder in ${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}; do
    [ -d "$folder" ] && FIND_LINKS+=(--find-links "$folder")
done
# uv with its progress bars on a terminal; elsewhere (CI, a log) its summary lines without the list
# of every package.
uv_run() {
    if [ -t 2 ]; then
        "$UV" "$@"
    else
        "$UV" "$@" 2>&1 | grep -v '^ [-+~] ' >&2
    fi
}
