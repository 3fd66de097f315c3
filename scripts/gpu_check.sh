#!/usr/bin/env bash
# The GPU checks (the CUDA loader tests, the embedded cluster on real GPUs, bench.gpu_loader) on a GPU
# machine that has Python 3.12 with CUDA torch, safetensors and fsspec but no network (the lab's device
# machine): what it lacks travels in .gpu/ (ignored), made here beforehand.
#   bash scripts/gpu_check.sh bundle          # online: Ray 2.60 (trimmed) and the wheels that machine lacks
#   bash scripts/gpu_check.sh run [GIB]       # there, from the checkout's root, as root; logs under $OUT
# A dry run on a CPU machine: PYVER=3.11 bash scripts/gpu_check.sh bundle && PY=.venv/bin/python bash
# scripts/gpu_check.sh run 0.25 (the CUDA tests skip; the benchmark targets host memory).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GPU="$ROOT/.gpu"
REQUIREMENTS=("ray[serve]==2.60.0" "runai-model-streamer==0.17.1" "instanttensor==0.2.2" "fastsafetensors==0.5.0"
  "grpcio-reflection==1.84.0"  # the reflection that matches that machine's grpcio
  "jupyter_core>=5.7")  # up() writes its discovery record in Jupyter's runtime directory
# Distributions that machine's image already holds (a CUDA PyTorch image; its package list, 2026-11-17).
THERE="torch triton nvidia-.* cuda-.* numpy scipy sympy mpmath networkx fsspec safetensors grpcio protobuf aiohttp
  aiohappyeyeballs aiosignal anyio attrs certifi charset-normalizer click filelock frozenlist h11 idna jinja2 markupsafe
  msgpack multidict packaging prometheus-client propcache psutil pygments pyyaml requests rich six typer
  typing-extensions urllib3 uvloop wrapt yarl humanize markdown-it-py mdurl shellingham nvidia-ml-py setuptools"
UNUSED="virtualenv distlib python-discovery py-spy"  # Ray's pip runtime environments and profiler: never imported here
PLATFORMS=(--python-version "${PYVER:-3.12}" --implementation cp --only-binary=:all:)
for n in 1 5 12 17 24 27 28 31 34 35; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)

bundle() {
  # Resolve for Python 3.12 from metadata alone, download what that machine lacks, and pack Ray without
  # what Serve never imports (its wheel is 76 MB; the call carries 64 MiB in all).
  local py="${PY:-$ROOT/.venv/bin/python}" work
  work="$(mktemp -d)"
  rm -rf "$GPU" && mkdir -p "$GPU/whl"
  "$py" -m pip install -q --dry-run --ignore-installed --report "$work/report.json" --target "$work/t" \
    "${PLATFORMS[@]}" "${REQUIREMENTS[@]}"
  "$py" - "$work/report.json" "$THERE $UNUSED" "$GPU/whl" "$work" <<'EOF'
import json, re, sys, urllib.request
from pathlib import Path
report, there, whl, work = sys.argv[1], sys.argv[2].split(), Path(sys.argv[3]), Path(sys.argv[4])
skip = re.compile("^(" + "|".join(there) + ")$")
for item in json.load(open(report))["install"]:
    name = re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower()
    url = item["download_info"]["url"]
    if not skip.match(name):
        urllib.request.urlretrieve(url, (work if name == "ray" else whl) / url.rsplit("/", 1)[-1])
EOF
  mkdir -p "$work/ray" && unzip -q "$work"/ray-*.whl -d "$work/ray"
  rm -rf "$work"/ray/ray/{jars,rllib,data,train,tune,llm,dashboard/client}
  tar cf - -C "$work/ray" . | xz -T2 -6 > "$GPU/ray.tar.xz"
  rm -rf "$work"
  du -sh "$GPU"/ray.tar.xz "$GPU"/whl
}

run() {
  # Install into /tmp/site, stage the package as it installs (the checkout's own servelab/ would shadow
  # it: `python -m` and the bench's workers run from the root), then the tests and the benchmark.
  local gib="${1:-8}" py="${PY:-python3}" site=/tmp/site stage=/tmp/stage out="${OUT:-/tmp/gpu_out}"
  rm -rf "$site" "$stage" && mkdir -p "$site" "$stage" "$out"
  tar xJf "$GPU/ray.tar.xz" -C "$site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$GPU"/whl/*.whl
  bash "$ROOT/scripts/package_tree.sh"  # the package as it installs, as links; copied with what they point to
  cp -rL "$ROOT/.typecheck/servelab" "$ROOT/tests" "$ROOT/bench" "$ROOT/pyproject.toml" "$stage/"
  export PYTHONPATH="$stage:$site" PYTHONUNBUFFERED=1 SERVELAB_BENCH_DATA=/tmp/bench_data
  cd "$stage"
  nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
  timeout 180 "$py" -m pytest -v -p no:cacheprovider tests/loader/test_cuda.py tests/gpu 2>&1 | tee "$out/pytest.txt" || true
  timeout 330 "$py" -m bench.gpu_loader --gib "$gib" --rounds 2 2>&1 | tee "$out/bench.txt" || true
}

"$@"
