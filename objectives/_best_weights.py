"""The weights of a trial's best evaluation: held in host memory, written beside its checkpoint.

A trial returns its best evaluation, so the weights that scored it, not the
last state, are the ones to deploy. On each new best, :class:`BestWeights`
copies the evaluated weights (the EMA's, for a model deployed from its EMA)
to host memory: a quick copy, nothing written yet. When the loop checkpoints,
a copy not yet written goes to ``best-<step><suffix>`` in the trial's
checkpoint folder (temporary file, fsync, rename) *before* the checkpoint
record that names it, and older best files are deleted only *after* that
record is written: a kill at any moment leaves the file the record names, and
the best value the record holds is the value of those weights. Written only
when the best changed, and only at checkpoints, they cost far less than the
training state (docker/README.md, "Checkpoint overhead").

Where the trial has no local folder (a volume reached over S3; small models
only), the weights ride inside the checkpoint record instead.

The file format is the caller's: F5-TTS's ``.safetensors`` (loadable by its
inference as is), or :func:`write_npz`, read back with :func:`read_npz`
without pickle.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: importing this module stays cheap
    import torch

BEST_PREFIX = "best-"

Weights = Mapping[str, "torch.Tensor"]
WeightsWriter = Callable[[Path, Weights], None]
"""Writes a state dict to a path (the path is a temporary file :class:`BestWeights` then renames)."""


def write_npz(path: Path, weights: Weights) -> None:
    """Write a state dict as an uncompressed ``.npz``, one member per key, never pickled.

    Raises:
        TypeError: A tensor's dtype has no NumPy equivalent (bfloat16, float8): write safetensors instead.
    """
    with open(path, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, tensor in weights.items():
            try:
                array = tensor.detach().to("cpu").numpy()
            except TypeError:
                raise TypeError(f"write_npz: {name!r} is {tensor.dtype}, which NumPy lacks; write safetensors") from None
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def read_npz(path: Path) -> dict[str, torch.Tensor]:
    """A state dict written by :func:`write_npz`, as torch tensors; never unpickles."""
    import torch

    with np.load(path, allow_pickle=False) as archive:
        return {name: torch.from_numpy(archive[name]) for name in archive.files}


def _write_atomically(path: Path, weights: Weights, write: WeightsWriter) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp, weights)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # also a preemption (the agent raises it from SIGTERM): leave no temp behind
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename durable; some filesystems cannot open a directory, and the rename is atomic anyway
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class BestWeights:
    """The best evaluation so far (lower is better): its value, its step, and its weights.

    Args:
        weights: Returns the state dict of what was evaluated (called on each new best);
            None keeps only the value and step.
        suffix: The weights file's suffix (``.npz``, ``.safetensors``).
        write: Writes the file in the format ``suffix`` names.
    """

    def __init__(
        self,
        weights: Callable[[], Weights] | None = None,
        *,
        suffix: str = ".npz",
        write: WeightsWriter = write_npz,
    ) -> None:
        self._weights = weights
        self._suffix = suffix
        self._write = write
        self.value = math.inf
        self.step: int | None = None
        #: The file in the checkpoint folder holding the best weights, once written.
        self.file: str | None = None
        self._held: dict[str, torch.Tensor] | None = None  # host copy of the best weights
        self._unwritten = False

    def offer(self, value: float, step: int) -> bool:
        """Take ``value`` (evaluated at ``step``) if it beats the best so far; True if it did.

        The weights are copied to host memory now, while they are the ones evaluated.
        """
        if not value < self.value:
            return False
        self.value, self.step = value, step
        if self._weights is not None:
            self._held = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in self._weights().items()}
            self._unwritten = True
        return True

    def save(self, folder: Path | None) -> dict[str, Any]:
        """Write best weights not yet written into ``folder``; return what the checkpoint record must hold.

        Call it before writing the checkpoint record, and :meth:`forget_older`
        after. With no folder, the record holds the weights themselves.
        """
        record: dict[str, Any] = {"best": self.value, "best_step": self.step, "best_file": self.file or ""}
        if self._held is None:
            return record
        if folder is None:
            record["best_weights"] = dict(self._held)
            return record
        if self._unwritten:
            assert self.step is not None  # set with the weights
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{BEST_PREFIX}{self.step:09d}{self._suffix}"
            _write_atomically(folder / name, self._held, self._write)
            self.file, self._unwritten = name, False
            self._held = None  # on disk now: free the host memory (1.35 GB for F5-TTS)
            record["best_file"] = name
        return record

    def forget_older(self, folder: Path | None) -> None:
        """Delete best-weights files the checkpoint record no longer names (call after writing it)."""
        if folder is None or not folder.is_dir():
            return
        stale = [*folder.glob(f"{BEST_PREFIX}*{self._suffix}"), *folder.glob(f".{BEST_PREFIX}*.tmp")]
        for path in stale:
            if path.name != self.file:
                path.unlink(missing_ok=True)

    def restore(self, record: Mapping[str, Any]) -> None:
        """Take back what :meth:`save` put in a checkpoint record (a resumed attempt)."""
        self.value = float(record.get("best", math.inf))
        step = record.get("best_step")
        self.step = None if step is None else int(step)
        self.file = record.get("best_file") or None
        inline = record.get("best_weights")
        self._held = dict(inline) if inline else None
        self._unwritten = False
