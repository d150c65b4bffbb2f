"""Snapshots of objectives/: reproducible, content-addressed, checked on unpack."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.code import pack_folder, publish_objectives, unpack_objectives
from hpo.errors import ObjectiveError
from hpo.layout import StudyLayout
from hpo.volume import DirectoryVolume


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "objectives"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "mine.py").write_text("def objective(trial):\n    return 1.0\n")
    (folder / "__pycache__" / "mine.cpython-311.pyc").write_bytes(b"junk")
    return folder


def test_same_files_give_the_same_bytes_and_an_edit_a_new_sha(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert pack_folder(folder) == pack_folder(folder)
    volume = DirectoryVolume(tmp_path / "vol")
    first = publish_objectives(volume, "s", folder)
    assert publish_objectives(volume, "s", folder) == first
    (folder / "mine.py").write_text("def objective(trial):\n    return 2.0\n")
    second = publish_objectives(volume, "s", folder)
    assert second != first
    assert volume.exists(StudyLayout("s").code(first)) and volume.exists(StudyLayout("s").code(second))


def test_unpack_gives_a_regular_package_without_caches(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    sha = publish_objectives(volume, "s", _folder(tmp_path))
    root = unpack_objectives(volume, "s", sha, tmp_path / "cache")
    assert sorted(p.name for p in (root / "objectives").iterdir()) == ["__init__.py", "mine.py"]
    assert unpack_objectives(volume, "s", sha, tmp_path / "cache") == root  # unpacked once


def test_a_tampered_snapshot_is_refused(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    sha = publish_objectives(volume, "s", _folder(tmp_path))
    volume.write_bytes(StudyLayout("s").code(sha), pack_folder(tmp_path / "objectives") + b"x")
    with pytest.raises(ObjectiveError, match="checksum"):
        unpack_objectives(volume, "s", sha, tmp_path / "cache")


def test_a_missing_objectives_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ObjectiveError, match="does not exist"):
        publish_objectives(DirectoryVolume(tmp_path / "vol"), "s", tmp_path / "nope")
