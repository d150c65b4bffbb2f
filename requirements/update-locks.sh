#!/usr/bin/env bash
# Re-resolve the two lock files (pip-tools' format, `==` pins, no hashes):
#   requirements/dev.lock  the development environment: pyproject.toml with its `dev` extra, which
#                          takes in the `fake`, `examples` and `sdk` extras
#                          (.ci/run installs with `pip install -c requirements/dev.lock -e '.[dev]'`)
#   docker/image.lock      the trial image: the agent's dependencies (docker/agent.in, the pod's share
#                          of pyproject.toml's) and F5-TTS's (docker/image.in), resolved against the
#                          base image's torch (docker/base-torch.txt) under docker/constraints.txt (the
#                          releases of F5-TTS's open dependencies that work with that torch: x-transformers,
#                          transformers<5, torchcodec); docker/Dockerfile installs every package with it.
#                          No extra, and none of the controller's own libraries.
# Needs pip-tools (`pip install pip-tools`) on Python 3.11, Linux x86-64: the interpreter of CI and of the
# trial image, since markers are evaluated for the machine that resolves.
# Pins already in a lock are kept while they still fit; `requirements/update-locks.sh --upgrade` (or
# `--upgrade-package NAME`) moves them. The image's versions differ from the dev lock's where F5-TTS
# asks for it (pydantic<=2.10.6, gradio's bounds): the two are resolved separately.
# The image's torch is resolved from PyPI's torch 2.4.0 (its metadata names CUDA 12.1 nvidia-* wheels); those
# pins are dropped below, so the CPU or CUDA 12.4 index is never needed. With docker/constraints.txt the image
# lock resolves in about a minute; without it pip walked back through ~150 x-transformers releases for ~25.
# A constraint that moves packages pinned in the lock needs them named: e.g. transformers<5 needed
#   requirements/update-locks.sh --upgrade-package transformers --upgrade-package huggingface-hub \
#       --upgrade-package gradio --upgrade-package gradio-client --upgrade-package datasets --upgrade-package fsspec
# (pins that fit the old lock's neighbours are otherwise kept, and pip walks back whatever is left free).
set -euo pipefail
cd "$(dirname "$0")/.."

common=(--strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host --newline LF "$@")

# `dev` names the other extras as `runpod-hpo[fake,examples,sdk]`; pip-compile would pin that as
# `runpod-hpo @ file:///<this checkout>`. Listing it as "unsafe" (beside pip's defaults, which the option
# replaces) leaves the project itself a comment line, as pip and setuptools are.
pip-compile "${common[@]}" --unsafe-package distribute --unsafe-package pip --unsafe-package setuptools \
    --unsafe-package runpod-hpo --extra dev --output-file requirements/dev.lock pyproject.toml
# torch is pinned as the release, `torch==2.13.0`, never a build's local label such as `+cpu`:
# the same pin then matches a local CPU build and PyPI's wheel.
sed -i -E 's/^(torch==[0-9][0-9.]*)\+[A-Za-z0-9.]+/\1/' requirements/dev.lock

pip-compile "${common[@]}" --output-file docker/image.lock docker/agent.in docker/image.in
# The base image brings torch, torchaudio, torchvision and their CUDA stack (triton, nvidia-*) as one
# build; /opt/base-torch.txt pins those in the image. Pinning them here too would ask for PyPI's build.
awk '
    /^(torch|torchaudio|torchvision|triton|nvidia-[a-z0-9-]+)==/ { skip = 1; next }
    skip && /^[ \t]+#/ { next }
    { skip = 0; print }
' docker/image.lock > docker/image.lock.tmp
mv docker/image.lock.tmp docker/image.lock

# A lock made without docker/constraints.txt (a line lost from docker/image.in) must not pass unnoticed.
python3 - <<'PYTHON'
import re
from pathlib import Path

from packaging.requirements import Requirement

pins = {}
for line in Path("docker/image.lock").read_text().splitlines():
    if line and not line[0].isspace() and not line.startswith("#"):
        req = Requirement(line)
        pins[re.sub(r"[-_.]+", "-", req.name).lower()] = next(iter(req.specifier)).version
bad = []
for line in Path("docker/constraints.txt").read_text().splitlines():
    if line.strip() and not line.startswith("#"):
        req = Requirement(line)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in pins and not req.specifier.contains(pins[name], prereleases=True):
            bad.append(f"{name}=={pins[name]} (docker/constraints.txt: {line.strip()})")
if bad:
    raise SystemExit("docker/image.lock breaks docker/constraints.txt: " + ", ".join(bad))
PYTHON
