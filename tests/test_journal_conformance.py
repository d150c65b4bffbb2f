"""Optuna's own storage conformance suite (``optuna.testing``'s ``StorageTestCase``) on the volume journal.

Every inherited test runs against the storage :func:`hpo.journal.open_storage`
builds for a writer (the controller), in three variants:

* ``directory``: exactly what ``open_storage`` returns, on a DirectoryVolume;
  logs stay pending in memory until the fixture flushes them at the end;
* ``directory-flushed``: the same backend flushing after every append, so each
  log Optuna writes goes to the volume as its own segment (and the journal is
  compacted every few segments), as a controller that flushes before every act;
* ``s3-flushed``: the same on an S3Volume, on moto's S3 server on loopback,
  flushing every few appends (each request to moto costs ~10 ms).

Each test has a study of its own (the S3 variant shares one bucket in the module).

When a test is done, the fixture flushes the writer and checks that what it
wrote reads back the same from the volume: a fresh reader (empty cache, as on
another machine) and a new writer reopening over the writer's own cache must
both replay every study and trial exactly as the writer sees them. So every
log shape the suite produces (infinite and NaN floats, JSON attrs, template
trials, deleted studies) is also checked through segments, compactions, the
log validation of :mod:`hpo.journal._validate` and the local cache.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import BaseStorage
from optuna.testing.pytest_storages import StorageTestCase

from hpo.journal import CheckedJournalStorage, VolumeJournalBackend, open_storage
from hpo.volume import DirectoryVolume, Volume

optuna.logging.set_verbosity(optuna.logging.WARNING)


class FlushingBackend(VolumeJournalBackend):
    """The controller's backend, flushing after every ``every`` appends (Optuna appends one log at a time)."""

    every = 1

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        super().append_logs(logs)
        if self.pending >= self.every:
            self.flush()


@pytest.fixture(scope="module")
def s3_volume(moto_s3: str) -> Iterator[Volume]:
    """One bucket and client for the module: making them costs more than a test (tests use their own study)."""
    from s3_server import CREDENTIALS_ENV, make_bucket

    from hpo.volume import S3Volume

    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS_ENV.items():
            patch.setenv(name, value)
        yield S3Volume(make_bucket(moto_s3), endpoint_url=moto_s3, region="EU-RO-1")


def _replayed(storage: BaseStorage) -> list[str]:
    """Every study and trial of ``storage``, as text (``repr`` shows NaN equal to NaN, unlike ``==``)."""
    seen = []
    for study in sorted(storage.get_all_studies(), key=lambda s: s._study_id):
        seen.append(repr(study.__dict__))
        seen.extend(repr(trial) for trial in storage.get_all_trials(study._study_id, deepcopy=False))
    return seen


#: Variant -> (flush after this many appends, compact after this many segments); None: open_storage as it is.
VARIANTS: dict[str, tuple[int, int] | None] = {
    "directory": None,
    "directory-flushed": (1, 5),
    "s3-flushed": (8, 3),  # batched: moto answers a PUT or a LIST in ~10 ms
}


@pytest.fixture(params=list(VARIANTS))
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BaseStorage]:
    # Durability is not what this suite checks, and each fsync costs milliseconds on a test
    # machine's disk: a flush fsyncs the segment and the cache (the suite writes ~800 logs a variant).
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    if request.param.startswith("s3"):
        volume: Volume = request.getfixturevalue("s3_volume")
    else:
        volume = DirectoryVolume(tmp_path / "volume")
    study = f"conformance-{uuid.uuid4().hex[:8]}"
    cache = tmp_path / "cache"
    flushing = VARIANTS[request.param]
    backend: VolumeJournalBackend
    writer: BaseStorage
    if flushing is not None:
        every, compact_every = flushing
        backend = FlushingBackend(volume, study, writer=True, cache_dir=cache, compact_every=compact_every)
        backend.every = every
        writer = CheckedJournalStorage(backend, study)  # what open_storage wraps its backend in
    else:
        opened = open_storage(volume, study, writer=True, cache_dir=cache)
        assert opened.journal is not None
        backend, writer = opened.journal, opened.optuna
    yield writer

    backend.flush()
    assert backend.pending == 0
    expected = _replayed(writer)
    reader = open_storage(volume, study, cache_dir=tmp_path / "another-machine")
    assert _replayed(reader.optuna) == expected
    successor = open_storage(volume, study, writer=True, cache_dir=cache)
    assert _replayed(successor.optuna) == expected


class TestVolumeJournalStorage(StorageTestCase):
    """Optuna's storage tests, inherited whole."""
