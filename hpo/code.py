"""Snapshots of ``objectives/`` on the volume, so trials run the code the controller saw.

The controller packs the objectives folder into a deterministic tarball named
by its sha256 (``hpo/<study>/code/<sha256>.tar.gz``) and names it in every
trial's spec; the agent unpacks it into a content-addressed local folder and
imports the objective from there. Changing an objective therefore needs no
image rebuild, and a trial resumed on a new pod runs the same code as before.

What is checked, and what it proves (the README's "Who can run code in a
study" says it for users):

* The archive's sha256 must equal its name, the ``code`` of ``spec.json``.
  Both live on the volume, so this catches a corrupted or half-written
  archive, not a hostile one: whoever can write the volume (every pod, every
  holder of its S3 key) can write a new archive and a spec naming it.
* Every member of an archive must be a plain file or folder under
  ``objectives/``, by a normalised relative path: no ``..``, no absolute
  path, no link, no device; an archive with any other member is refused whole.
* An unpacked snapshot in this machine's cache is checked against the file
  hashes recorded when it was unpacked (``.hpo-manifest.json``) every time it
  is reused; a changed, missing or extra file means it is unpacked again from
  the volume's archive (its sha256 checked again), so a modified file never
  runs. Bytecode caches (``__pycache__``) are removed, not trusted.
* Trials of the ``local`` backend on a volume reached over S3 run that code on
  this machine: :func:`check_volume_code_trusted` makes the study opt in
  (``compute.trust_volume_code: true``).

A define-by-run study's controller also imports one objective module, from
the folder it snapshots, for its ``search_space(trial)``
(:func:`load_search_space`, :func:`sample_search_space`); that runs the
module's top level on the controller's machine, never its objective.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import importlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING, Any

from hpo.errors import ConfigError, ObjectiveError
from hpo.events import one_line
from hpo.layout import StudyLayout
from hpo.volume import Volume

if TYPE_CHECKING:
    from hpo.config import StudyConfig

log = logging.getLogger(__name__)

#: The study key that lets local trials run code from a volume reached over S3.
TRUST_KEY = "compute.trust_volume_code"

#: The file hashes of an unpacked snapshot, written beside its ``objectives/`` when it is unpacked.
MANIFEST = ".hpo-manifest.json"

_ARCHIVE_ROOT = "objectives"
_SHA256 = re.compile(r"[0-9a-f]{64}")

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


def check_volume_code_trusted(config: StudyConfig) -> None:
    """Refuse local trials that would run code from a volume reached over S3, unless the study opts in.

    A ``local`` study on a RunPod volume without ``local_path`` runs, on this
    machine and with the user's rights, whatever objectives snapshot the
    volume's specs name, and anyone who can write the volume (every pod, every
    holder of its S3 key) can put one there. That must be the user's explicit
    choice: ``compute: {backend: local, trust_volume_code: true}``.

    Raises:
        ConfigError: One line naming the study and the key.
    """
    # Here: the agent imports this module, not the backends' configs.
    from hpo.backends.local import LocalCompute
    from hpo.backends.runpod import RunPodVolume

    compute, volume = config.compute, config.volume
    if not isinstance(compute, LocalCompute) or compute.trust_volume_code:
        return
    if not isinstance(volume, RunPodVolume) or volume.local_path is not None:
        return
    raise ConfigError(
        f"{config.source.name}: study {config.name!r}: local trials would run objectives code from RunPod volume "
        f"{volume.id} over S3, which every pod and every holder of its S3 key can replace; "
        f"set {TRUST_KEY}: true to run it on this machine"
    )


def unpack_objectives(volume: Volume, study: str, sha: str, cache_dir: Path) -> Path:
    """Return a local folder holding ``objectives/`` from snapshot ``sha``, unpacked and checked.

    A folder unpacked before is reused only while its files still match the
    manifest written when it was unpacked; otherwise it is unpacked again
    from the volume's archive, whose sha256 is checked again.

    Raises:
        ObjectiveError: ``sha`` is not a sha256, the archive does not match
            it, or the archive holds a member that is not a plain file or
            folder under ``objectives/`` (one line naming the volume's key).
    """
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise ObjectiveError(f"code snapshot name {sha!r} is not a sha256 (64 lowercase hex digits)")
    target = cache_dir / "code" / sha
    target.parent.mkdir(parents=True, exist_ok=True)
    # One process at a time per snapshot on this machine (local trials share the cache): a check
    # never sees a folder another process is replacing, and a good folder is never set aside.
    with open(target.parent / f".{sha}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _unpack_locked(volume, study, sha, target)


def _unpack_locked(volume: Volume, study: str, sha: str, target: Path) -> Path:
    """:func:`unpack_objectives` with the snapshot's lock held."""
    if target.exists() or target.is_symlink():
        problem = _verify_unpacked(target, sha)
        if problem is None:
            return target
        log.warning("unpacked code snapshot %s: %s; unpacking it again from the volume", target, problem)
        _set_aside(target, sha)  # gone before anything else happens: it never runs, even if the volume fails
    key = StudyLayout(study).code(sha)
    data = volume.read_bytes(key)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha:
        raise ObjectiveError(
            f"code snapshot {key} on {volume.url} does not match its checksum "
            f"(sha256 {actual[:12]}..., named {sha[:12]}...): refusing to run it"
        )
    files = _archive_files(data, f"{key} on {volume.url}")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{sha[:12]}."))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            # Members were checked above; 'data' also refuses links, devices and paths outside.
            tar.extractall(staging, filter="data")
        (staging / MANIFEST).write_text(json.dumps({"sha256": sha, "files": files}, indent=1, sort_keys=True))
        problem = _verify_unpacked(staging, sha)
        if problem is not None:
            raise ObjectiveError(f"code snapshot {key} on {volume.url}: unpacked, {problem}")
        _install(staging, target, sha)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _archive_files(data: bytes, where: str) -> dict[str, str]:
    """The sha256 of every file in the archive, by path; :class:`ObjectiveError` for any other member."""

    def refuse(name: str, why: str) -> ObjectiveError:
        return ObjectiveError(f"code snapshot {where}: member {name[:200]!r} {why}: refusing to unpack it")

    files: dict[str, str] = {}
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                name = member.name
                path = PurePosixPath(name)
                if name.startswith("/") or path.is_absolute():
                    raise refuse(name, "is an absolute path")
                if ".." in path.parts:
                    raise refuse(name, "climbs out of the folder ('..')")
                if "\\" in name or "\0" in name or path.as_posix() != name.rstrip("/") or not path.parts:
                    raise refuse(name, "is not a normalised relative path")
                if path.parts[0] != _ARCHIVE_ROOT:
                    raise refuse(name, f"is outside {_ARCHIVE_ROOT}/")
                if member.issym() or member.islnk():
                    raise refuse(name, f"is a link (to {member.linkname[:200]!r})")
                if not (member.isreg() or member.isdir()):
                    raise refuse(name, "is a device, pipe or other special file")
                if path.as_posix() in seen:
                    raise refuse(name, "appears twice")
                seen.add(path.as_posix())
                if member.isreg():
                    extracted = tar.extractfile(member)
                    assert extracted is not None  # a regular file always has content
                    files[path.as_posix()] = hashlib.sha256(extracted.read()).hexdigest()
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise ObjectiveError(f"code snapshot {where} is not a readable .tar.gz: {exc}") from exc
    if not files:
        raise ObjectiveError(f"code snapshot {where} holds no files under {_ARCHIVE_ROOT}/")
    return files


def _verify_unpacked(root: Path, sha: str) -> str | None:
    """What is wrong with an unpacked snapshot at ``root`` (None: every file matches its manifest).

    Bytecode caches (a ``__pycache__`` folder of ``.pyc`` files, which an
    interpreter writes next to the sources it imports) are deleted: a planted
    ``.pyc`` would run instead of its checked source, and they are rebuilt.
    """
    if root.is_symlink() or not root.is_dir():
        return "it is not a folder"
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        return f"it has no {MANIFEST}"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"its {MANIFEST} is unreadable ({exc})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("sha256") != sha
        or not isinstance(files, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        return f"its {MANIFEST} is not the manifest of snapshot {sha[:12]}..."
    seen: set[str] = set()
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        for name in list(dirnames):
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                return f"{rel} is a link"
            if name == "__pycache__":
                dirnames.remove(name)
                problem = _drop_bytecode(path, rel)
                if problem is not None:
                    return problem
        for name in filenames:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if rel == MANIFEST:
                continue
            try:
                mode = path.lstat().st_mode
            except OSError as exc:
                return f"{rel} cannot be read ({exc.strerror})"
            if not stat.S_ISREG(mode):
                return f"{rel} is not a plain file"
            if rel not in files:
                return f"{rel} is not in the snapshot"
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                return f"{rel} cannot be read ({exc.strerror})"
            if digest != files[rel]:
                return f"{rel} was changed"
            seen.add(rel)
    missing = sorted(set(files) - seen)
    if missing:
        return f"{missing[0]} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    return None


def _drop_bytecode(folder: Path, rel: str) -> str | None:
    """Delete a ``__pycache__`` folder of ``.pyc`` files; say what else it holds (then it is left)."""
    for entry in folder.iterdir():
        if entry.is_symlink() or not entry.is_file() or entry.suffix != ".pyc":
            return f"{rel}/{entry.name} is not in the snapshot"
    shutil.rmtree(folder, ignore_errors=True)  # another process importing meanwhile falls back to the source
    return None


def _install(staging: Path, target: Path, sha: str) -> None:
    """Move a checked unpacked snapshot into place, setting aside a stale folder found there.

    The snapshot's lock keeps other processes of this machine out; should one
    that ignores it unpack at the same time, whichever rename wins, the folder
    left in place is one that passes the check.
    """
    for _ in range(3):
        try:
            os.rename(staging, target)
            return
        except OSError:
            if _verify_unpacked(target, sha) is None:
                return  # a concurrent unpack of the same snapshot won the rename
        _set_aside(target, sha)
    raise ObjectiveError(f"cannot put the unpacked code snapshot in place at {target}")


def _set_aside(target: Path, sha: str) -> None:
    """Remove a stale unpacked snapshot: renamed away first (atomic), then deleted."""
    aside = target.with_name(f".{sha[:12]}.stale.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        return  # someone else set it aside first
    if aside.is_symlink() or not aside.is_dir():
        aside.unlink(missing_ok=True)
    else:
        shutil.rmtree(aside, ignore_errors=True)


# -- a define-by-run study's search_space(trial), on the controller ---------------------------------

#: The longest message about an objective module's failure (one line; the rest is the user's to rerun).
_MESSAGE_MAX = 1000


def load_search_space(folder: Path, objective: str) -> Callable[[Any], object]:
    """Import objective ``module`` (of ``module[:function]``) from ``folder`` and return its ``search_space``.

    ``folder`` is the project's ``objectives/``, the folder the controller
    snapshots for its trials. Importing runs the module's top level (its
    imports and constants), not its objective. The interpreter's
    ``sys.path`` and its ``objectives`` modules are put back afterwards, so
    this process imports nothing else from the project by accident.

    Raises:
        ObjectiveError: The module is missing, fails to import, or has no
            callable ``search_space``: one line naming the file (and line).
    """
    module_name = objective.partition(":")[0]
    shown = f"objectives/{module_name}.py"
    with _project_objectives(folder):
        module = _import(module_name, shown, folder)
    function = getattr(module, "search_space", None)
    if not callable(function):
        raise ObjectiveError(f"{shown}: search_space is not a function (got {type(function).__name__})")
    return function


def sample_search_space(function: Callable[[Any], object], trial: Any, objective: str, folder: Path) -> None:
    """Run ``search_space(trial)`` on the study's new trial: its ``suggest_*`` calls sample the trial's parameters.

    Raises:
        ObjectiveError: The function raised; one line naming the file, the line and the error.
    """
    shown = f"objectives/{objective.partition(':')[0]}.py"
    try:
        function(trial)
    except Exception as exc:  # the user's function: whatever it raises becomes one line
        where = _where(exc, folder)
        raise ObjectiveError(
            one_line(f"{shown}: search_space(trial) raised {type(exc).__name__}{where}: {exc}", _MESSAGE_MAX)
        ) from exc


@contextmanager
def _project_objectives(folder: Path) -> Iterator[None]:
    """Let ``objectives`` name ``folder`` while importing from it; put the interpreter back afterwards.

    :func:`_import_package` makes the package from ``folder`` itself: a folder
    without ``__init__.py`` (the snapshot always has one) would otherwise lose
    to any ``objectives`` package installed in the environment.
    """
    saved_path = list(sys.path)
    saved = {name: mod for name, mod in sys.modules.items() if name == "objectives" or name.startswith("objectives.")}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(folder.parent))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if n == "objectives" or n.startswith("objectives.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def _import(module_name: str, shown: str, folder: Path) -> ModuleType:
    dotted = f"objectives.{module_name}"
    try:
        _import_package(folder)
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == dotted or dotted.startswith(exc.name + ".")):
            raise ObjectiveError(f"objective module {shown} not found in {folder}") from exc
        raise ObjectiveError(one_line(f"{shown}: import failed: {exc}{_where(exc, folder)}", _MESSAGE_MAX)) from exc
    except SyntaxError as exc:
        raise ObjectiveError(
            one_line(f"{shown}: {type(exc).__name__}{_where(exc, folder)}: {exc.msg}", _MESSAGE_MAX)
        ) from exc
    except Exception as exc:  # the module's own code: whatever it raises becomes one line
        raise ObjectiveError(
            one_line(f"{shown}: importing it raised {type(exc).__name__}{_where(exc, folder)}: {exc}", _MESSAGE_MAX)
        ) from exc


def _import_package(folder: Path) -> None:
    """Import ``folder`` as the package ``objectives`` (running its ``__init__.py`` if it has one)."""
    init = folder / "__init__.py"
    spec = importlib.util.spec_from_file_location("objectives", init, submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None or not init.is_file():
        package = ModuleType("objectives")
        package.__path__ = [str(folder)]
        sys.modules["objectives"] = package
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules["objectives"] = package
    spec.loader.exec_module(package)


def error_place(exc: BaseException, folder: Path) -> tuple[str, int | None] | None:
    """Where inside the objectives ``folder`` an error came from: (``objectives/<file>``, line), or None.

    The innermost frame inside the folder (for a SyntaxError, the file and line
    it names), so an error raised in a helper module of an objective names the
    helper, not the line of the objective that imported it.
    """
    places: list[tuple[str, int | None]] = []
    if isinstance(exc, SyntaxError) and exc.filename:
        places.append((exc.filename, exc.lineno))
    else:
        places.extend((frame.filename, frame.lineno) for frame in traceback.extract_tb(exc.__traceback__))
    for filename, lineno in reversed(places):
        try:
            relative = Path(filename).resolve().relative_to(folder.resolve()).as_posix()
        except (ValueError, OSError):
            continue
        return f"objectives/{relative}", lineno
    return None


def _where(exc: BaseException, folder: Path) -> str:
    """`` at objectives/<file> line N``: the innermost place inside ``folder`` the error came from, or ""."""
    place = error_place(exc, folder)
    if place is None:
        return ""
    relative, lineno = place
    return f" at {relative} line {lineno}" if lineno else f" in {relative}"
