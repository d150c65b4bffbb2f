#!/usr/bin/env bash
# Re-resolve the two lock files (pip-tools' format, `==` pins, no hashes):
#   requirements/dev.lock  the development environment: pyproject.toml with its `dev` extra
#                          (.ci/run installs with `pip install -c requirements/dev.lock -e '.[dev]'`)
#   docker/image.lock      the trial image: pyproject.toml's runtime dependencies and F5-TTS's
#                          (docker/image.in), resolved against the base image's torch
#                          (docker/base-torch.txt); docker/Dockerfile installs every package with it.
# Needs pip-tools (`pip install pip-tools`) on Python 3.11, Linux x86-64: the interpreter of CI and of the
# trial image, since markers are evaluated for the machine that resolves.
# Pins already in a lock are kept while they still fit; `requirements/update-locks.sh --upgrade` (or
# `--upgrade-package NAME`) moves them. The image's versions differ from the dev lock's where F5-TTS
# asks for it (pydantic<=2.10.6, gradio's bounds): the two are resolved separately.
set -euo pipefail
cd "$(dirname "$0")/.."

common=(--strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host --newline LF "$@")

pip-compile "${common[@]}" --extra dev --output-file requirements/dev.lock pyproject.toml
# torch is pinned as the release, `torch==2.13.0`, never a build's local label such as `+cpu`:
# the same pin then matches a local CPU build and PyPI's wheel.
sed -i -E 's/^(torch==[0-9][0-9.]*)\+[A-Za-z0-9.]+/\1/' requirements/dev.lock

pip-compile "${common[@]}" --output-file docker/image.lock pyproject.toml docker/image.in
# The base image brings torch, torchaudio, torchvision and their CUDA stack (triton, nvidia-*) as one
# build; /opt/base-torch.txt pins those in the image. Pinning them here too would ask for PyPI's build.
awk '
    /^(torch|torchaudio|torchvision|triton|nvidia-[a-z0-9-]+)==/ { skip = 1; next }
    skip && /^[ \t]+#/ { next }
    { skip = 0; print }
' docker/image.lock > docker/image.lock.tmp
mv docker/image.lock.tmp docker/image.lock
