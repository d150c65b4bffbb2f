"""Snapshots of objectives/: reproducible, content-addressed, checked on unpack and on every reuse.

Also: an archive's members are refused unless plain files under objectives/
(no traversal, links or devices), and local trials on an S3 volume, which
would run the volume's code on this machine, must be opted into.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hpo.cli import main
from hpo.code import MANIFEST, TRUST_KEY, check_volume_code_trusted, pack_folder, publish_objectives, unpack_objectives
from hpo.config import load_study
from hpo.controller import build_controller
from hpo.errors import ConfigError, ObjectiveError
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


# ---------------------------------------------------------------- an unpacked snapshot is checked on reuse


def _published(tmp_path: Path) -> tuple[DirectoryVolume, str, Path]:
    volume = DirectoryVolume(tmp_path / "vol")
    sha = publish_objectives(volume, "s", _folder(tmp_path))
    return volume, sha, unpack_objectives(volume, "s", sha, tmp_path / "cache")


_ORIGINAL = "def objective(trial):\n    return 1.0\n"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda root: (root / "objectives" / "mine.py").write_text("raise SystemExit('pwned')\n"), id="edited"),
        pytest.param(lambda root: (root / "objectives" / "evil.py").write_text("import os\n"), id="added"),
        pytest.param(lambda root: (root / "objectives" / "__init__.py").unlink(), id="removed"),
        pytest.param(lambda root: (root / MANIFEST).unlink(), id="no-manifest"),
        pytest.param(lambda root: (root / MANIFEST).write_text("[1]"), id="bad-manifest"),
        pytest.param(
            lambda root: ((root / "objectives" / "mine.py").unlink(), (root / "objectives" / "mine.py").symlink_to("/etc/hostname")),
            id="symlinked",
        ),
        pytest.param(
            lambda root: ((root / "objectives" / "__pycache__").mkdir(), (root / "objectives" / "__pycache__" / "x.txt").write_text("")),
            id="junk-in-pycache",
        ),
    ],
)
def test_a_changed_unpacked_snapshot_is_unpacked_again_and_never_reused(
    tmp_path: Path, tamper: Callable[[Path], object], caplog: pytest.LogCaptureFixture
) -> None:
    volume, sha, root = _published(tmp_path)
    tamper(root)
    with caplog.at_level(logging.WARNING, logger="hpo.code"):
        again = unpack_objectives(volume, "s", sha, tmp_path / "cache")
    assert again == root
    assert (root / "objectives" / "mine.py").read_text() == _ORIGINAL
    assert sorted(p.name for p in (root / "objectives").iterdir()) == ["__init__.py", "mine.py"]
    assert "unpacking it again" in caplog.text
    assert sorted(p.name for p in root.parent.iterdir()) == [f".{sha}.lock", sha]  # no stale or staging folder left behind


def test_bytecode_caches_are_removed_not_trusted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    volume, sha, root = _published(tmp_path)
    cache = root / "objectives" / "__pycache__"
    cache.mkdir()
    (cache / "mine.cpython-311.pyc").write_bytes(b"planted bytecode")
    volume.delete(StudyLayout("s").code(sha))  # reused without the volume: the sources still match
    with caplog.at_level(logging.WARNING, logger="hpo.code"):
        assert unpack_objectives(volume, "s", sha, tmp_path / "cache") == root
    assert not cache.exists() and not caplog.text


def test_a_changed_unpacked_snapshot_whose_archive_was_also_replaced_is_refused_naming_the_key(tmp_path: Path) -> None:
    volume, sha, root = _published(tmp_path)
    (root / "objectives" / "mine.py").write_text("raise SystemExit('pwned')\n")
    key = StudyLayout("s").code(sha)
    volume.write_bytes(key, _archive({"objectives/mine.py": b"raise SystemExit('pwned')\n"}))
    with pytest.raises(ObjectiveError, match="checksum") as caught:
        unpack_objectives(volume, "s", sha, tmp_path / "cache")
    assert key in str(caught.value) and "\n" not in str(caught.value)
    assert not root.exists()  # the modified copy is gone: nothing can run it later


# ---------------------------------------------------------------- archives are checked member by member


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    return info


def _archive(files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:  # type: ignore[assignment]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in extra:
            tar.addfile(info)
        for name, data in files.items():
            info = _member(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_member("../evil.py"), "climbs out"),
        (_member("objectives/../../evil.py"), "climbs out"),
        (_member("/tmp/evil.py"), "absolute path"),
        (_member("./objectives/evil.py"), "not a normalised"),
        (_member("objectives//evil.py"), "not a normalised"),
        (_member("elsewhere/evil.py"), "outside objectives/"),
        (_member("objectives/link.py", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (_member("objectives/rel.py", tarfile.SYMTYPE, "mine.py"), "is a link"),
        (_member("objectives/hard.py", tarfile.LNKTYPE, "objectives/mine.py"), "is a link"),
        (_member("objectives/dev", tarfile.CHRTYPE), "device"),
        (_member("objectives/blk", tarfile.BLKTYPE), "device"),
        (_member("objectives/fifo", tarfile.FIFOTYPE), "device"),
        (_member("objectives/mine.py"), "appears twice"),
        (_member(".hpo-manifest.json"), "outside objectives/"),
    ],
    ids=lambda value: value.name if isinstance(value, tarfile.TarInfo) else None,
)
def test_an_archive_with_a_member_that_is_not_a_plain_file_under_objectives_is_refused(
    tmp_path: Path, member: tarfile.TarInfo, why: str
) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    data = _archive({"objectives/__init__.py": b"", "objectives/mine.py": b"x = 1\n"}, [member])
    sha = hashlib.sha256(data).hexdigest()
    key = StudyLayout("s").code(sha)
    volume.write_bytes(key, data)
    with pytest.raises(ObjectiveError, match=why) as caught:
        unpack_objectives(volume, "s", sha, tmp_path / "cache" / "deep")
    assert key in str(caught.value) and "refusing" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "cache" / "evil.py").exists()
    assert not (tmp_path / "cache" / "deep" / "code" / sha).exists()


@pytest.mark.parametrize("data", [b"not a tarball", gzip.compress(b"not a tar either" * 40)], ids=["junk", "gzip-junk"])
def test_an_archive_that_is_not_a_tarball_is_one_line(tmp_path: Path, data: bytes) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    sha = hashlib.sha256(data).hexdigest()
    volume.write_bytes(StudyLayout("s").code(sha), data)
    with pytest.raises(ObjectiveError, match=r"not a readable \.tar\.gz|holds no files") as caught:
        unpack_objectives(volume, "s", sha, tmp_path / "cache")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["../../../etc", "ABC", "", "0" * 63, "g" * 64, "0" * 64 + "/.."])
def test_a_snapshot_name_that_is_not_a_sha256_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ObjectiveError, match="not a sha256"):
        unpack_objectives(DirectoryVolume(tmp_path / "vol"), "s", name, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- local trials on an S3 volume must opt in

_STUDY = """
studies:
  remote-code:
    objective: mine
    search_space:
      x: {type: float, low: 0.0, high: 1.0}
    fidelity: {max_step: 3}
    budget: {trials: 2}
    volume: VOLUME
    COMPUTE
"""
_S3_VOLUME = '{id: vol4d2x9q, data_center: EU-RO-1, endpoint: "http://127.0.0.1:9/"}'


def _study(tmp_path: Path, compute: str, volume: str = _S3_VOLUME) -> Path:
    _folder(tmp_path)
    studies = tmp_path / "studies.yaml"
    studies.write_text(_STUDY.replace("VOLUME", volume).replace("COMPUTE", compute))
    return studies


@pytest.mark.parametrize("compute", ["", "compute: local", "compute: {backend: local}", "compute: {backend: local, trust_volume_code: false}"])
def test_local_trials_on_an_s3_volume_need_the_opt_in(tmp_path: Path, compute: str) -> None:
    config = load_study(_study(tmp_path, compute), "remote-code")
    with pytest.raises(ConfigError) as caught:
        check_volume_code_trusted(config)
    message = str(caught.value)
    assert "'remote-code'" in message and f"{TRUST_KEY}: true" in message and "\n" not in message
    # ... before the volume is opened or anything launched (the endpoint above answers nothing).
    with pytest.raises(ConfigError, match=TRUST_KEY):
        build_controller(config, cache_dir=tmp_path / "machine")


def test_the_cli_answers_a_missing_opt_in_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    studies = _study(tmp_path, "compute: {backend: local}")
    assert main(["run", "--study", "remote-code", "--studies", str(studies)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "remote-code" in err and TRUST_KEY in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("compute", "volume"),
    [
        ("compute: {backend: local, trust_volume_code: true}", _S3_VOLUME),  # opted in
        ("compute: local", "{path: storage}"),  # a local folder
        ("compute: local", "{id: vol4d2x9q, data_center: EU-RO-1, local_path: storage}"),  # the volume as a folder here
    ],
    ids=["opted-in", "folder", "local-path"],
)
def test_local_trials_run_without_question_where_the_code_is_not_fetched_over_s3(
    tmp_path: Path, compute: str, volume: str
) -> None:
    check_volume_code_trusted(load_study(_study(tmp_path, compute, volume), "remote-code"))


def test_the_opt_in_is_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trust_volume_code.*true or false"):
        load_study(_study(tmp_path, "compute: {backend: local, trust_volume_code: 'yes'}"), "remote-code")


def test_concurrent_unpacks_of_one_snapshot_all_get_a_checked_folder(tmp_path: Path) -> None:
    volume, sha, root = _published(tmp_path)
    (root / "objectives" / "mine.py").write_text("raise SystemExit('pwned')\n")  # every thread finds it changed
    with ThreadPoolExecutor(max_workers=8) as pool:
        roots = list(pool.map(lambda _: unpack_objectives(volume, "s", sha, tmp_path / "cache"), range(16)))
    assert set(roots) == {root}
    assert (root / "objectives" / "mine.py").read_text() == _ORIGINAL
    assert sorted(p.name for p in root.parent.iterdir()) == [f".{sha}.lock", sha]
