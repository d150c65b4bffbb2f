"""Snapshots of ``objectives/`` on the volume, so trials run the code the controller saw.

The controller packs the objectives folder into a deterministic tarball named
by its sha256 (``hpo/<study>/code/<sha256>.tar.gz``) and names it in every
trial's spec; the agent unpacks it into a content-addressed local folder and
imports the objective from there. Changing an objective therefore needs no
image rebuild, and a trial resumed on a new pod runs the same code as before.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from hpo.errors import ObjectiveError
from hpo.layout import StudyLayout
from hpo.volume import Volume

_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".git"}


def pack_folder(folder: Path, arcname: str = "objectives") -> bytes:
    """A byte-for-byte reproducible ``.tar.gz`` of ``folder`` (same files -> same bytes)."""
    files = {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and path.suffix != ".pyc"
        and not any(part in _SKIP_DIRS for part in path.relative_to(folder).parts)
    }
    # A regular package (with __init__.py) at the front of sys.path beats any other
    # `objectives` an interpreter can see; a namespace package would lose to one.
    files.setdefault("__init__.py", b"")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{arcname}/{name}")
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(raw.getvalue(), mtime=0)


def publish_objectives(volume: Volume, study: str, folder: Path) -> str:
    """Upload the snapshot of ``folder`` if the volume lacks it; return its sha256."""
    if not folder.is_dir():
        raise ObjectiveError(f"objectives folder {folder} does not exist")
    data = pack_folder(folder)
    sha = hashlib.sha256(data).hexdigest()
    key = StudyLayout(study).code(sha)
    if volume.size(key) != len(data):
        volume.write_bytes(key, data)
    return sha


def unpack_objectives(volume: Volume, study: str, sha: str, cache_dir: Path) -> Path:
    """Return a local folder holding ``objectives/`` from snapshot ``sha``, unpacking it once."""
    target = cache_dir / "code" / sha
    if target.is_dir():
        return target
    data = volume.read_bytes(StudyLayout(study).code(sha))
    if hashlib.sha256(data).hexdigest() != sha:
        raise ObjectiveError(f"code snapshot {sha} on {volume.url} does not match its checksum")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{sha[:12]}."))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")  # 'data' refuses links, devices and paths outside
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():  # not a concurrent unpack of the same snapshot that won the rename
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
