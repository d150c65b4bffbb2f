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
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from hpo.errors import VolumeError, VolumeEscapeError, VolumeNotFoundError
from hpo.volume._base import ObjectInfo, Volume, check_key


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

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise VolumeNotFoundError(self.url, key) from None
        except OSError as exc:
            raise VolumeError(f"{self.url}: cannot read {key!r}: {exc.strerror}") from exc

    def read_from(self, key: str, offset: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            raise VolumeNotFoundError(self.url, key) from None
        except OSError as exc:
            raise VolumeError(f"{self.url}: cannot read {key!r}: {exc.strerror}") from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from ``offset``: one bounded read, whatever the file's size."""
        try:
            with open(self._path(key), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            raise VolumeNotFoundError(self.url, key) from None
        except OSError as exc:
            raise VolumeError(f"{self.url}: cannot read {key!r}: {exc.strerror}") from exc

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
