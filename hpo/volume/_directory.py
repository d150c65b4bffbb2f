"""The volume as a local directory: ``storage/`` on a laptop, ``/workspace`` on a pod."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hpo.errors import VolumeError, VolumeNotFoundError
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
        return self.root / check_key(key)

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

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
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
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self._path(prefix.rstrip("/"))
        found: list[ObjectInfo] = []
        for dirpath, _dirnames, filenames in os.walk(base):
            for name in filenames:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an atomic write in flight, not an object yet
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue  # removed while we walked
                found.append(ObjectInfo(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime))
        found.sort(key=lambda info: info.key)
        return found

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise VolumeError(f"{self.url}: cannot delete {key!r}: {exc.strerror}") from exc
