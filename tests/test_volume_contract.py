"""The volume contract: every Volume implementation must pass these tests.

The ``volume`` fixture (tests/conftest.py) is parametrized over the
implementations; a new one (S3) joins by adding a parameter there. The
in-memory volume the controller tests run on (tests/memory_volume.py) joins
here, by the module's own ``volume`` fixture below.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from memory_volume import MemoryVolume

from hpo.errors import VolumeError, VolumeEscapeError, VolumeNotFoundError
from hpo.volume import DirectoryVolume, Volume, _directory


@pytest.fixture(params=["directory", "s3", "memory"])
def volume(request: pytest.FixtureRequest) -> Volume:
    """The shared fixture's volumes (tests/conftest.py), and the in-memory one of the controller tests."""
    if request.param == "memory":
        return MemoryVolume()
    return request.getfixturevalue("volume")  # the conftest fixture, for the same parameter


def test_missing_key_reads_raise_not_found(volume: Volume) -> None:
    with pytest.raises(VolumeNotFoundError) as info:
        volume.read_bytes("nope/missing.json")
    assert "nope/missing.json" in str(info.value)
    with pytest.raises(VolumeNotFoundError):
        volume.read_from("nope/missing.json", 0)
    assert volume.size("nope/missing.json") is None
    assert not volume.exists("nope/missing.json")


def test_write_then_read_round_trips_bytes(volume: Volume) -> None:
    payload = bytes(range(256)) * 10
    volume.write_bytes("a/b/c.bin", payload)
    assert volume.read_bytes("a/b/c.bin") == payload
    assert volume.size("a/b/c.bin") == len(payload)
    assert volume.exists("a/b/c.bin")


def test_write_replaces_whole_object(volume: Volume) -> None:
    volume.write_bytes("x.txt", b"a long first version")
    volume.write_bytes("x.txt", b"short")
    assert volume.read_bytes("x.txt") == b"short"


def test_empty_object(volume: Volume) -> None:
    volume.write_bytes("empty", b"")
    assert volume.read_bytes("empty") == b""
    assert volume.size("empty") == 0


def test_append_creates_and_grows(volume: Volume) -> None:
    volume.append_bytes("log/events.jsonl", b"one\n")
    volume.append_bytes("log/events.jsonl", b"two\n")
    assert volume.read_bytes("log/events.jsonl") == b"one\ntwo\n"


def test_read_from_offset_returns_only_new_bytes(volume: Volume) -> None:
    volume.append_bytes("f", b"hello ")
    seen = volume.read_from("f", 0)
    volume.append_bytes("f", b"world")
    assert volume.read_from("f", len(seen)) == b"world"
    assert volume.read_from("f", 11) == b""
    assert volume.read_from("f", 100) == b""


def test_list_is_recursive_sorted_and_scoped_to_prefix(volume: Volume) -> None:
    for key in ("s/b/2", "s/a", "s/b/1", "other/x", "sibling"):
        volume.write_bytes(key, key.encode())
    listed = volume.list("s/")
    assert [info.key for info in listed] == ["s/a", "s/b/1", "s/b/2"]
    assert [info.size for info in listed] == [3, 5, 5]
    assert [info.key for info in volume.list("s")] == ["s/a", "s/b/1", "s/b/2"]
    assert volume.list("nothing/here/") == []


def test_sizes_answers_many_keys_at_once(volume: Volume) -> None:
    volume.write_bytes("t/1", b"1")
    volume.write_bytes("t/2", b"22")
    assert volume.sizes(["t/1", "t/2", "t/3"]) == {"t/1": 1, "t/2": 2, "t/3": None}


def test_delete_is_idempotent(volume: Volume) -> None:
    volume.write_bytes("d", b"x")
    volume.delete("d")
    volume.delete("d")
    assert not volume.exists("d")


def test_json_round_trip_and_bad_json_names_key(volume: Volume) -> None:
    volume.write_json("j/spec.json", {"b": [1, 2], "a": "x"})
    assert volume.read_json("j/spec.json") == {"a": "x", "b": [1, 2]}
    volume.write_bytes("j/bad.json", b"{not json")
    with pytest.raises(VolumeError, match="j/bad.json"):
        volume.read_json("j/bad.json")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a/"])
def test_unsafe_keys_are_refused(volume: Volume, key: str) -> None:
    with pytest.raises(VolumeError, match="invalid volume key"):
        volume.write_bytes(key, b"x")


def test_readers_never_see_a_partial_write(volume: Volume) -> None:
    big_a, big_b = b"a" * 200_000, b"b" * 300_000
    volume.write_bytes("atomic", big_a)
    stop = threading.Event()
    seen: set[bytes] = set()

    def reader() -> None:
        while not stop.is_set():
            data = volume.read_bytes("atomic")
            seen.add(data[:1] + bytes([len(data) > 250_000]))

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(20):
        volume.write_bytes("atomic", big_b)
        volume.write_bytes("atomic", big_a)
    stop.set()
    thread.join()
    data = volume.read_bytes("atomic")
    assert data == big_a
    # Every read was one whole version: all 'a' objects are short and all 'b' ones long.
    assert seen <= {b"a\x00", b"b\x01"}


def test_read_range_returns_at_most_length_bytes(volume: Volume) -> None:
    volume.append_bytes("r/events.jsonl", b"hello world")
    assert volume.read_range("r/events.jsonl", 0, 5) == b"hello"
    assert volume.read_range("r/events.jsonl", 6, 100) == b"world"
    assert volume.read_range("r/events.jsonl", 11, 5) == b""
    assert volume.read_range("r/events.jsonl", 100, 5) == b""
    with pytest.raises(VolumeNotFoundError):
        volume.read_range("r/missing.jsonl", 0, 5)


@pytest.mark.parametrize("op", ["read_bytes", "read_from", "read_range", "append_bytes", "write_into_folder", "list"])
def test_a_folder_volume_refuses_keys_that_resolve_outside_it(tmp_path: Path, op: str) -> None:
    volume = DirectoryVolume(tmp_path / "volume")  # only a folder has symlinks; an object store has none
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"system file\n")
    root = Path(volume.address)
    (root / "t").mkdir(parents=True)
    (root / "t" / "file").symlink_to(outside / "secret")
    (root / "t" / "folder").symlink_to(outside, target_is_directory=True)
    calls = {
        "read_bytes": lambda: volume.read_bytes("t/file"),
        "read_from": lambda: volume.read_from("t/file", 0),
        "read_range": lambda: volume.read_range("t/file", 0, 10),
        "append_bytes": lambda: volume.append_bytes("t/file", b"x"),
        "write_into_folder": lambda: volume.write_bytes("t/folder/spec.json", b"{}"),
        "list": lambda: volume.list("t/folder/"),
    }
    with pytest.raises(VolumeEscapeError, match="t/f"):
        calls[op]()
    assert (outside / "secret").read_bytes() == b"system file\n" and sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert volume.size("t/file") is None  # no object of this volume: a poll of sizes goes on
    assert [info.key for info in volume.list("t/")] == []  # a link out of the volume lists nothing


def test_a_folder_volume_replaces_a_planted_symlink_instead_of_following_it(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "volume")  # only a folder has symlinks
    outside = tmp_path / "outside.json"
    outside.write_bytes(b"keep")
    root = Path(volume.address)
    (root / "c").mkdir(parents=True)
    (root / "c" / "control.json").symlink_to(outside)
    volume.write_json("c/control.json", {"action": "prune"})  # the controller's write heals the link
    assert outside.read_bytes() == b"keep"
    assert volume.read_json("c/control.json") == {"action": "prune"}
    (root / "c" / "gone.json").symlink_to(outside)
    volume.delete("c/gone.json")
    assert outside.exists() and not (root / "c" / "gone.json").is_symlink()


# -- the folder volume's fast path (Linux): it must answer as the resolving path does ----------------------------

needs_fd_names = pytest.mark.skipif(not DirectoryVolume(".")._fast, reason="no /proc/self/fd: every key is resolved")


def planted_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A volume folder holding plain files and every kind of symlink a pod can plant, and a folder outside it."""
    root, outside = tmp_path / "volume", tmp_path / "outside"
    (root / "t" / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_bytes(b"system file\n")
    (outside / "f").write_bytes(b"system file\n")
    (root / "t" / "plain").write_bytes(b"plain file\n")
    (root / "t" / "sub" / "f").write_bytes(b"in the sub folder\n")
    links = {
        "inner": "plain",  # in the volume: followed
        "abs_inner": str(root / "t" / "plain"),
        "dir_in": "sub",
        "up_in": "../t",
        "out": str(outside / "secret"),  # out of it: refused
        "dir_out": str(outside),
        "up_out": "../..",
        "dangling_out": str(outside / "missing"),
        "dangling_in": "missing",
        "loop_a": "loop_b",
        "loop_b": "loop_a",
    }
    for name, target in links.items():
        (root / "t" / name).symlink_to(target)
    os.mkfifo(root / "t" / "fifo")
    return root, outside


PLANTED_KEYS = [
    "t/plain", "t/sub/f", "t/sub", "t/missing", "t/plain/x", "t/missing/x",
    "t/inner", "t/abs_inner", "t/dir_in/f", "t/up_in/plain",
    "t/out", "t/dir_out/secret", "t/dir_out/f", "t/up_out/outside/secret", "t/dangling_out", "t/dangling_in",
    "t/loop_a", "t/loop_a/x", "t/fifo",
]  # fmt: skip


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("value", call())
    except VolumeError as exc:
        return (type(exc).__name__, str(exc))


@needs_fd_names
@pytest.mark.parametrize("key", PLANTED_KEYS)
def test_the_fast_path_answers_as_the_resolving_path_does(tmp_path: Path, key: str) -> None:
    root, _ = planted_tree(tmp_path)
    fast, slow = DirectoryVolume(root), DirectoryVolume(root)
    slow._fast = False
    reads: dict[str, Callable[[DirectoryVolume], Any]] = {
        "size": lambda v: v.size(key),
        "read_bytes": lambda v: v.read_bytes(key),
        "read_from": lambda v: v.read_from(key, 1),
        "read_range": lambda v: v.read_range(key, 1, 4),
        "read_range_past_end": lambda v: v.read_range(key, 100, 4),
    }
    if key == "t/fifo":
        reads = {"size": reads["size"]}  # opening a FIFO to read it waits for a writer, on either path
    for op, read in reads.items():
        got = outcome(lambda: read(fast))  # noqa: B023 (called at once)
        assert got == outcome(lambda: read(slow)), (op, key)  # noqa: B023
        assert b"system file" not in repr(got).encode(), (op, key)


@needs_fd_names
def test_the_fast_path_resolves_nothing_for_a_plain_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = planted_tree(tmp_path)
    volume = DirectoryVolume(root)

    def resolving(self: DirectoryVolume, key: str) -> Path:
        raise AssertionError(f"resolved {key}")

    monkeypatch.setattr(DirectoryVolume, "_path", resolving)
    assert volume.size("t/sub/f") == len(b"in the sub folder\n")
    assert volume.read_range("t/sub/f", 3, 5) == b"the s"
    assert volume.read_bytes("t/plain") == b"plain file\n"
    assert volume.size("t/missing") is None
    with pytest.raises(AssertionError, match="resolved t/inner"):
        volume.read_bytes("t/inner")  # a symlink on the way: the resolving path decides


@needs_fd_names
def test_the_fast_path_checks_the_file_it_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod swapping a folder for a symlink out of the volume just before the open: what was opened is refused."""
    root, outside = planted_tree(tmp_path)
    volume = DirectoryVolume(root)
    real_open = os.open
    swapped: list[str] = []

    def swapping_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if not swapped and str(path) == f"{root}/t/sub/f":
            (root / "t" / "sub").rename(root / "t" / "moved")
            (root / "t" / "sub").symlink_to(outside, target_is_directory=True)
            swapped.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(_directory.os, "open", swapping_open)
    with pytest.raises(VolumeEscapeError, match="t/sub/f"):
        volume.read_range("t/sub/f", 0, 100)
    assert swapped
    assert volume.size("t/sub/f") is None


def test_a_folder_volume_reads_a_file_that_grows_between_its_size_and_its_read(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "volume")
    volume.append_bytes("r/events.jsonl", b"one\n")
    assert volume.size("r/events.jsonl") == 4
    volume.append_bytes("r/events.jsonl", b"two\n")
    assert volume.read_range("r/events.jsonl", 4, 1 << 22) == b"two\n"
    assert volume.read_from("r/events.jsonl", 2) == b"e\ntwo\n"
