"""Checkpoint encoding without pickle.

Any pod that mounts the volume can write to it, so nothing read back from it
may execute code: a checkpoint is an ``.npz`` archive opened with
``allow_pickle=False``. Arrays are stored as arrays; every other value (ints,
floats, strings, lists, nested dicts of those) goes into one JSON member.
Nested dicts are flattened with ``/`` in the member names and rebuilt on load.

A checkpoint read back may be anything a pod wrote: :func:`decode_checkpoint`
raises :class:`CheckpointError` (one short reason) for whatever is not one of
ours, and :func:`decode_or_none` turns that into one warning naming the file
and a fresh start. Starting afresh is what a user expects of a resume whose
checkpoint is unusable: the trial still gives its result (at the cost of
training again), and the next save replaces the bad file, whereas failing the
trial would fail every later attempt of it the same way.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_META = "__hpo_meta__"
#: The largest metadata member a checkpoint may hold (its plain values); arrays are not bounded.
MAX_META_BYTES = 64 << 20
_MAX_STEP = 2**53 - 1


class CheckpointError(ValueError):
    """The bytes are not a checkpoint :func:`encode_checkpoint` wrote (or could have)."""


def _flatten(state: Mapping[str, Any], prefix: str, arrays: dict[str, np.ndarray], plain: dict[str, Any]) -> None:
    for key, value in state.items():
        if not isinstance(key, str) or "/" in key or key == _META:
            raise ValueError(f"checkpoint key {key!r} must be a string without '/'")
        path = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError(f"checkpoint value {path!r}: object arrays cannot be stored without pickle")
            arrays[path] = value
        elif isinstance(value, Mapping) and any(isinstance(v, (np.ndarray, Mapping)) for v in value.values()):
            _flatten(value, f"{path}/", arrays, plain)
        else:
            plain[path] = value


def encode_checkpoint(state: Mapping[str, Any], step: int) -> bytes:
    """Serialize ``state`` (arrays and JSON-able values, nested dicts allowed) with its step."""
    arrays: dict[str, np.ndarray] = {}
    plain: dict[str, Any] = {}
    _flatten(state, "", arrays, plain)
    try:
        meta = json.dumps({"step": step, "plain": plain, "arrays": sorted(arrays)})
    except TypeError as exc:
        raise TypeError(f"checkpoint state must hold numpy arrays or JSON values: {exc}") from exc
    buffer = io.BytesIO()
    members = {f"a{i}": arrays[name] for i, name in enumerate(sorted(arrays))}
    members[_META] = np.frombuffer(meta.encode(), dtype=np.uint8)
    # mypy checks **members against savez's `allow_pickle: bool` too (numpy 2's stubs declare it before
    # **kwds), though no key here is "allow_pickle"; passing it instead would store an array of that name
    # on numpy 1.26, which has no such parameter.
    np.savez(buffer, **members)  # type: ignore[arg-type]
    return buffer.getvalue()


def decode_checkpoint(data: bytes) -> tuple[dict[str, Any], int]:
    """Return ``(state, step)`` from :func:`encode_checkpoint` bytes; never unpickles.

    Raises:
        CheckpointError: ``data`` is not such a checkpoint (the message is one short line).
    """
    try:
        flat, step = _read_archive(data)
        return _unflatten(flat), step
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001  zipfile, numpy, json, unicode: each raises its own, all mean "not ours"
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise CheckpointError(reason if len(reason) <= 200 else reason[:197] + "...") from None


def decode_or_none(data: bytes, where: str) -> tuple[dict[str, Any], int] | None:
    """:func:`decode_checkpoint`, or None with one warning naming ``where`` if ``data`` is no checkpoint."""
    try:
        return decode_checkpoint(data)
    except CheckpointError as exc:
        log.warning("%s: not a valid checkpoint (%s); ignoring it, the trial starts afresh from step 0", where, exc)
        return None


def _read_archive(data: bytes) -> tuple[dict[str, Any], int]:
    archive = np.load(io.BytesIO(data), allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError("not an .npz archive")
    with archive:
        if archive.zip is None:  # only a closed NpzFile has none
            raise CheckpointError("not an .npz archive")
        try:
            size = archive.zip.getinfo(f"{_META}.npy").file_size
        except KeyError:
            raise CheckpointError(f"no {_META} member") from None
        if size > MAX_META_BYTES:
            raise CheckpointError(f"its metadata is {size} bytes, more than {MAX_META_BYTES}")
        meta = json.loads(archive[_META].tobytes().decode())
        if not isinstance(meta, dict):
            raise CheckpointError("its metadata is not a JSON object")
        step, plain, arrays = meta.get("step"), meta.get("plain"), meta.get("arrays")
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= _MAX_STEP:
            raise CheckpointError(f"its step must be an integer from 0 to {_MAX_STEP}")
        if not isinstance(plain, dict) or not isinstance(arrays, list) or not all(isinstance(a, str) for a in arrays):
            raise CheckpointError("its metadata lacks 'plain' values or 'arrays' names")
        flat: dict[str, Any] = dict(plain)
        for i, name in enumerate(arrays):
            flat[name] = archive[f"a{i}"]
    for path in flat:
        if any(not part for part in path.split("/")):
            raise CheckpointError(f"bad member name {path[:40]!r}")
    return flat, step


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for path, value in flat.items():
        node = state
        *parents, leaf = path.split("/")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CheckpointError(f"member {path[:40]!r} clashes with a value of the same name")
            node = child
        if isinstance(node.get(leaf), dict):
            raise CheckpointError(f"member {path[:40]!r} clashes with a folder of the same name")
        node[leaf] = value
    return state
