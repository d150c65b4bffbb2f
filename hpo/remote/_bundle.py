"""The controller bundle: the study and code a remote controller runs, pinned by a hash in its pod's environment.

``hpo run --remote`` writes ``hpo/<study>/controller/bundle-<sha256>.json``:
the study as written in studies.yaml (its ``defaults`` merged, the volume's
laptop-side keys dropped) and the sha256 of the objectives snapshot it runs.
The pod is created with ``HPO_CONTROLLER_BUNDLE=<sha256>`` in its environment,
which only a holder of the account's API key can set, while every pod of the
study can write the volume: the controller pod runs a bundle only if its
bytes hash to that value, and the snapshot only if its bytes hash to the
bundle's ``code`` (:func:`hpo.code.unpack_objectives`). A trial pod cannot
change what the controller, which holds the user's key, runs.

Nothing secret goes into a bundle: keys come from the environment, never
from studies.yaml, and a study whose ``storage`` names a database (its URL
may carry a password) is refused by :mod:`hpo.remote._launch` before any
bundle is written.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from hpo.errors import ConfigError, VolumeNotFoundError
from hpo.layout import StudyLayout
from hpo.volume import Volume

BUNDLE_ENV = "HPO_CONTROLLER_BUNDLE"
"""The pod's variable naming the bundle's sha256."""

MAX_BUNDLE_BYTES = 1024 * 1024
"""A bundle holds one study of a studies.yaml (itself at most 1 MiB)."""

#: Keys of ``volume`` that say how the laptop reaches it; the pod mounts it (``local_path`` is set there).
LAPTOP_VOLUME_KEYS = ("local_path", "endpoint")

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ControllerBundle:
    """What a remote controller runs.

    Attributes:
        study: The study's name.
        document: The study's keys as written (defaults merged, laptop-side volume keys dropped).
        code: The sha256 of the objectives snapshot on the volume (``hpo/<study>/code/<sha>.tar.gz``).
    """

    study: str
    document: dict[str, Any]
    code: str

    def to_bytes(self) -> bytes:
        """The bundle as canonical JSON (same bundle -> same bytes -> same sha256)."""
        value = {"study": self.study, "document": self.document, "code": self.code}
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def studies_yaml(self, volume_root: str) -> str:
        """A studies.yaml holding only this study, its volume reached as the folder ``volume_root`` (the mount)."""
        document = json.loads(json.dumps(self.document))  # a deep copy of plain JSON values
        volume = document.get("volume")
        if isinstance(volume, dict):
            volume["local_path"] = volume_root
        return yaml.safe_dump({"studies": {self.study: document}}, sort_keys=False, allow_unicode=True)


def make_bundle(study: str, document: Any, code: str) -> ControllerBundle:
    """A bundle of study ``study`` as :func:`hpo.config.study_document` read it, running snapshot ``code``.

    The document is round-tripped through JSON: only plain values travel (a
    YAML date, say, would not survive the trip, so it is refused here).

    Raises:
        ConfigError: The document holds values JSON cannot carry.
    """
    if not isinstance(document, dict):
        raise ConfigError(f"study {study!r}: must be a mapping of keys")
    try:
        plain = json.loads(json.dumps(document, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"study {study!r}: cannot be sent to a remote controller: {exc}") from None
    volume = plain.get("volume")
    if isinstance(volume, dict):
        for key in LAPTOP_VOLUME_KEYS:
            volume.pop(key, None)
    return ControllerBundle(study, plain, code)


def write_bundle(volume: Volume, bundle: ControllerBundle) -> str:
    """Put ``bundle`` on the volume (content-addressed, so rewriting it is harmless); return its sha256."""
    data = bundle.to_bytes()
    if len(data) > MAX_BUNDLE_BYTES:
        raise ConfigError(f"study {bundle.study!r}: its controller bundle is {len(data)} bytes, more than {MAX_BUNDLE_BYTES}")
    sha = bundle.sha256
    volume.write_bytes(StudyLayout(bundle.study).controller_bundle(sha), data)
    return sha


def read_bundle(volume: Volume, study: str, sha: str) -> ControllerBundle:
    """The bundle ``sha`` names, checked against it.

    Raises:
        ConfigError: ``sha`` is no sha256, the bundle is missing, its bytes do not hash to
            ``sha``, or it is not a bundle of ``study`` (one line naming the volume's key).
        VolumeError: The volume failed (worth a retry: the caller's container restarts).
    """
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise ConfigError(f"{BUNDLE_ENV} {sha!r} is not a sha256 (64 lowercase hex digits)")
    key = StudyLayout(study).controller_bundle(sha)
    try:
        size = volume.size(key)
        if size is not None and size > MAX_BUNDLE_BYTES:
            raise ConfigError(f"controller bundle {key} on {volume.url} is {size} bytes, more than a bundle holds")
        data = volume.read_bytes(key)
    except VolumeNotFoundError:
        raise ConfigError(f"controller bundle {key} is not on {volume.url}; run `hpo run --study {study} --remote` again") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha:
        raise ConfigError(
            f"controller bundle {key} on {volume.url} does not match its checksum "
            f"(sha256 {actual[:12]}..., named {sha[:12]}...): refusing to run it"
        )
    try:
        raw = json.loads(data)
    except ValueError:
        raise ConfigError(f"controller bundle {key}: not JSON") from None
    if not isinstance(raw, dict) or raw.get("study") != study:
        raise ConfigError(f"controller bundle {key}: not a bundle of study {study!r}")
    document, code = raw.get("document"), raw.get("code")
    if not isinstance(document, dict) or not isinstance(code, str) or not _SHA256.fullmatch(code):
        raise ConfigError(f"controller bundle {key}: malformed (a 'document' mapping and a 'code' sha256 are needed)")
    return ControllerBundle(study, document, code)
