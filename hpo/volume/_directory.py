"""The volume as a local directory: ``storage/`` on a laptop, ``/workspace`` on a pod.

Every pod can write the volume, so it may hold symlinks planted to make us
read a system file as an event file or write a spec outside the volume. A key
is therefore resolved (symlinks followed) and refused with
:class:`~hpo.errors.VolumeEscapeError` when it lands outside the root:

* reads, appends, sizes and :meth:`DirectoryVolume.local_path` check the whole
  resolved path (they follow a symlink at the key itself);
* whole-object writes and deletes check the key's folder only: they replace or
  remove the directory entry itself and never follow a symlink there, so the
  controller overwriting a planted ``control.json`` symlink heals it.

:meth:`DirectoryVolume.size` answers None for an escaping key (it names no
object of this volume), so one planted symlink cannot stop a poll of every
trial's event files. A symlink that stays inside the root is followed.
The check narrows, but cannot close, the race of a symlink planted between the
check and the open (no ``openat`` walk); operations use the resolved path.

Resolving costs a ``lstat`` per component of the absolute path, and a poll
reads the size and the tail of every live event file. Where the kernel names
an open file (``/proc/self/fd`` on Linux), reads and sizes take a fast path
that checks the file actually opened instead: the key is opened as
``<root>/<key>`` and used only if the kernel's name for the open file is that
very path, so no symlink was followed on the way and the file is inside the
root (and no race remains: what is read is what was checked). Anything else
(a symlink on the way, a missing key for a read, an error, no ``/proc``)
takes the resolving path above, which decides as it always did. Sizes open
with ``O_PATH``, which opens nothing (no FIFO or device is touched).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from hpo.errors import VolumeError, VolumeEscapeError, VolumeNotFoundError
from hpo.volume._base import ObjectInfo, Volume, check_key

#: Where the kernel names each open file descriptor (Linux); without it every key is resolved.
_FD_NAMES = "/proc/self/fd/"
_HAS_FD_NAMES = os.path.isdir(_FD_NAMES)
#: An fd for ``fstat`` and naming only: no read permission needed, no side effect on a FIFO or a device.
_O_PATH = getattr(os, "O_PATH", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _pread(fd: int, length: int, offset: int) -> bytes:
    """``length`` bytes from ``offset`` (fewer at the end of the file), without moving the file's offset."""
    chunks: list[bytes] = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class DirectoryVolume(Volume):
    """A volume rooted at a directory.

    Writes go to a temporary file beside the target, are fsynced and renamed
    over it, so a reader (or a process killed mid-write) never sees half a
    file. Appends are ``O_APPEND`` writes of whole buffers, fsynced, so a line
    is torn only by a kill in the middle of one write call.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()
        root_name = str(self.root)
        self._prefix = root_name if root_name.endswith("/") else root_name + "/"
        self._fast = _HAS_FD_NAMES and _O_PATH != 0

    @property
    def address(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        """The resolved path of ``key``; :class:`VolumeEscapeError` if it lands outside the root."""
        return self._inside(self.root / check_key(key), key)

    def _entry(self, key: str) -> Path:
        """The path of ``key`` with its folder resolved but not the key's own entry (for replace and unlink)."""
        path = self.root / check_key(key)
        return self._inside(path.parent, key) / path.name

    def _inside(self, path: Path, key: str) -> Path:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            raise VolumeEscapeError(self.url, key) from None
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise VolumeEscapeError(self.url, key)
        return resolved

    def _open_exact(self, key: str, flags: int) -> int | None:
        """``key`` opened with ``flags`` if it is the file at ``<root>/<key>`` itself, no symlink followed; else None.

        The kernel's name for the open file (``/proc/self/fd``) must be exactly
        ``<root>/<key>``: a symlink anywhere on the way (in the volume or out of
        it) makes it another name. None sends the caller to the resolving path,
        which decides as without this one; ``OSError`` from the open is raised.
        """
        name = self._prefix + check_key(key)
        fd = os.open(name, flags | _O_CLOEXEC)
        try:
            if os.readlink(f"{_FD_NAMES}{fd}") == name:
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def _open_read(self, key: str) -> int:
        """A descriptor of ``key`` open for reading; raises as ``open(self._path(key))`` would."""
        if self._fast:
            try:
                fd = self._open_exact(key, os.O_RDONLY)
            except OSError:
                fd = None  # missing, a symlink loop, ...: the resolving path says which (an escape or not)
            if fd is not None:
                return fd
        return os.open(self._path(key), os.O_RDONLY | _O_CLOEXEC)

    def _read_fd(self, key: str, offset: int, length: int | None) -> bytes:
        """At most ``length`` bytes (all, for None) of ``key`` from ``offset``, mapping errors as every read does."""
        try:
            fd = self._open_read(key)
            try:
                if offset == 0 and length is None:
                    with os.fdopen(fd, "rb", closefd=False) as f:
                        return f.read()
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode):
                    # What the file holds now, not a buffer of ``length`` bytes (a 4 MiB chunk per poll of every file).
                    want = max(0, st.st_size - offset)
                    return _pread(fd, want if length is None else min(length, want), offset)
                with os.fdopen(fd, "rb", closefd=False) as f:
                    f.seek(offset)
                    return f.read() if length is None else f.read(length)
            finally:
                os.close(fd)
        except FileNotFoundError:
            raise VolumeNotFoundError(self.url, key) from None
        except OSError as exc:
            raise VolumeError(f"{self.url}: cannot read {key!r}: {exc.strerror}") from exc

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def read_bytes(self, key: str) -> bytes:
        return self._read_fd(key, 0, None)

    def read_from(self, key: str, offset: int) -> bytes:
        return self._read_fd(key, offset, None)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from ``offset``: one bounded read, whatever the file's size."""
        return self._read_fd(key, offset, length)

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._entry(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._inside(path.parent, key)  # a folder created meanwhile by someone else may be a link
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise VolumeError(f"{self.url}: cannot write {key!r}: {exc.strerror}") from exc

    def append_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The path is resolved: a symlink planted at the key since then is not followed.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise VolumeError(f"{self.url}: cannot append to {key!r}: {exc.strerror}") from exc

    def size(self, key: str) -> int | None:
        if self._fast:
            try:
                fd = self._open_exact(key, _O_PATH)
            except (FileNotFoundError, NotADirectoryError):
                return None  # as below: no such object (an escaping key is None too)
            except OSError:
                fd = None  # a symlink loop, ...: the resolving path decides
            if fd is not None:
                try:
                    return os.fstat(fd).st_size
                finally:
                    os.close(fd)
        try:
            return self._path(key).stat().st_size
        except VolumeEscapeError:
            return None  # not an object of this volume; reading it is refused by name
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None

    def list(self, prefix: str) -> list[ObjectInfo]:
        key = prefix.rstrip("/")
        self._path(key)  # refuse a prefix that leaves the volume ...
        base = self.root / key  # ... but list it under its own name (a link inside the volume stays one)
        found: list[ObjectInfo] = []
        for dirpath, _dirnames, filenames in os.walk(base):
            for name in filenames:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an atomic write in flight, not an object yet
                path = Path(dirpath) / name
                try:
                    if stat.S_ISLNK(path.lstat().st_mode):
                        self._inside(path, name)  # a link that leaves the volume lists nothing
                    st = path.stat()
                except VolumeEscapeError:
                    continue
                except (FileNotFoundError, NotADirectoryError):
                    continue  # removed while we walked (or a dangling link)
                found.append(ObjectInfo(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime))
        found.sort(key=lambda info: info.key)
        return found

    def delete(self, key: str) -> None:
        path = self._entry(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise VolumeError(f"{self.url}: cannot delete {key!r}: {exc.strerror}") from exc
