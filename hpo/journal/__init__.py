"""The Optuna storage of a study: a journal on the volume (fenced by writer epochs), or an RDB URL."""

from __future__ import annotations

from hpo.journal._backend import VolumeJournalBackend
from hpo.journal._cache import default_cache_dir
from hpo.journal._storage import CheckedJournalStorage, StudyStorage, open_storage

__all__ = ["CheckedJournalStorage", "StudyStorage", "VolumeJournalBackend", "default_cache_dir", "open_storage"]
