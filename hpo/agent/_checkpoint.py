"""Checkpoint encoding without pickle.

Any pod that mounts the volume can write to it, so nothing read back from it
may execute code: a checkpoint is an ``.npz`` archive opened with
``allow_pickle=False``. Arrays are stored as arrays; every other value (ints,
floats, strings, lists, nested dicts of those) goes into one JSON member.
Nested dicts are flattened with ``/`` in the member names and rebuilt on load.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

_META = "__hpo_meta__"


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
    np.savez(buffer, **members, **{_META: np.frombuffer(meta.encode(), dtype=np.uint8)})
    return buffer.getvalue()


def decode_checkpoint(data: bytes) -> tuple[dict[str, Any], int]:
    """Return ``(state, step)`` from :func:`encode_checkpoint` bytes; never unpickles."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        meta = json.loads(archive[_META].tobytes().decode())
        flat: dict[str, Any] = dict(meta["plain"])
        for i, name in enumerate(meta["arrays"]):
            flat[name] = archive[f"a{i}"]
    state: dict[str, Any] = {}
    for path, value in flat.items():
        node = state
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return state, int(meta["step"])
