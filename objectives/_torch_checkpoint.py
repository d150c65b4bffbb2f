"""Checkpoints of a PyTorch training run through the trial's checkpoint API, without pickle.

A resumed attempt must continue exactly where the preempted one stopped, so a
checkpoint holds everything the next update depends on: the model, the
optimizer, the LR scheduler, an EMA of the weights (optional), named
``torch.Generator`` objects, the step, and the global RNG states (Python's
``random``, NumPy's legacy generator, torch's CPU generator and, where CUDA is
available, every CUDA device's). Where the data order comes from is the
caller's business: :class:`objectives._torch_training.EpochOrder` derives it
from the step alone.

Nothing is pickled, because any pod that mounts the volume can write to it
and loading a pickle runs code (``torch.save`` files are pickles). State dicts
are walked once: every tensor goes to a tensor store and everything else
(optimizer hyperparameters, scheduler counters, RNG tuples) becomes a tagged
JSON tree that keeps tuples, int dict keys and key order. The tensor store is

* a file ``torch-<step>.npz`` in ``trial.checkpoint_dir`` when the volume is
  mounted (always on a pod): written tensor by tensor (a GPU tensor is copied
  to the host only when its turn comes, so a multi-GB model is never held
  twice in host memory), then fsynced and renamed into place, and read back
  with ``allow_pickle=False``; the trial's own checkpoint (``save_checkpoint``)
  then records the tree and the file's name and size, and older tensor files
  are deleted only after that record is written, so a kill at any moment
  leaves a readable checkpoint;
* the trial's checkpoint itself (one in-memory ``.npz``) where there is no
  local folder (a volume reached over S3): fine for small models only.

NumPy lacks some torch dtypes (bfloat16, float8): those tensors are stored as
same-width integers and viewed back on load.
"""

from __future__ import annotations

import json
import logging
import os
import random
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: importing this module stays cheap
    import torch

log = logging.getLogger(__name__)

FORMAT = "hpo-torch-checkpoint/1"
TENSOR_FILE_PREFIX = "torch-"


class StatefulLike(Protocol):
    """Anything with ``state_dict()`` / ``load_state_dict()``: modules, optimizers, schedulers."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state_dict: Any) -> Any: ...


class TrialLike(Protocol):
    """The part of the agent's trial object (``hpo.agent.AgentTrial``) this module uses."""

    @property
    def checkpoint_dir(self) -> Path | None: ...

    def load_checkpoint(self) -> dict[str, Any] | None: ...

    def save_checkpoint(self, state: Mapping[str, Any], step: int) -> None: ...


class CheckpointError(RuntimeError):
    """A checkpoint on the volume cannot be restored (missing tensor file, foreign format, mismatch)."""


# ---------------------------------------------------------------- the tagged JSON tree


class _Encoder:
    """Turns nested state into a JSON tree, collecting tensors and arrays on the side."""

    def __init__(self) -> None:
        self.tensors: list[Any] = []  # torch.Tensor or np.ndarray, in reference order

    def encode(self, value: Any, path: str) -> Any:
        import torch

        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, torch.Tensor):
            if value.is_sparse or value.is_quantized:
                raise TypeError(f"checkpoint: {path}: sparse and quantized tensors are not supported")
            self.tensors.append(value)
            return {"$tensor": len(self.tensors) - 1, "dtype": str(value.dtype).removeprefix("torch.")}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError(f"checkpoint: {path}: object arrays cannot be stored without pickle")
            self.tensors.append(value)
            return {"$array": len(self.tensors) - 1}
        if isinstance(value, np.generic):  # a NumPy scalar keeps its type as a 0-d array
            self.tensors.append(np.asarray(value))
            return {"$array": len(self.tensors) - 1, "scalar": True}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: self.encode(v, f"{path}.{k}") for k, v in value.items()}
            # Optimizers key their state by int: keep keys' types (and order) as pairs.
            return {"$dict": [[self.encode(k, f"{path}<key>"), self.encode(v, f"{path}[{k!r}]")] for k, v in value.items()]}
        if isinstance(value, torch.dtype):
            return {"$dtype": str(value).removeprefix("torch.")}
        raise TypeError(f"checkpoint: {path}: cannot store a {type(value).__name__} without pickle")


def _decode(node: Any, arrays: list[np.ndarray]) -> Any:
    import torch

    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if not isinstance(node, dict):
        return node
    if "$tensor" in node:
        return _to_tensor(arrays[node["$tensor"]], node["dtype"])
    if "$array" in node:
        array = arrays[node["$array"]]
        return array[()] if node.get("scalar") else array
    if "$tuple" in node:
        return tuple(_decode(v, arrays) for v in node["$tuple"])
    if "$dict" in node:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in node["$dict"]}
    if "$dtype" in node:
        return getattr(torch, node["$dtype"])
    return {k: _decode(v, arrays) for k, v in node.items()}


# ---------------------------------------------------------------- tensors <-> arrays

_SAME_WIDTH_INT = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}


def _to_array(tensor: Any) -> np.ndarray:
    """A host copy of ``tensor`` as NumPy; dtypes NumPy lacks become same-width integers."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        return tensor
    host = tensor.detach().to("cpu")
    try:
        return host.numpy()
    except TypeError:  # bfloat16, float8, ...: keep the bits, not the values
        return host.view(getattr(torch, _SAME_WIDTH_INT[host.element_size()])).numpy()


def _to_tensor(array: np.ndarray, dtype: str) -> torch.Tensor:
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(array))
    wanted = getattr(torch, dtype)
    return tensor if tensor.dtype == wanted else tensor.view(wanted)


# ---------------------------------------------------------------- RNG states


def capture_rng() -> dict[str, Any]:
    """The global RNG states an update may draw from: Python, NumPy, torch CPU and CUDA."""
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put back the states :func:`capture_rng` took."""
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    saved_cuda = state.get("cuda")
    if saved_cuda and torch.cuda.is_available():
        devices = torch.cuda.device_count()
        if devices != len(saved_cuda):
            log.warning("checkpoint has CUDA RNG states for %d device(s), this machine has %d", len(saved_cuda), devices)
        for index, device_state in enumerate(saved_cuda[:devices]):
            torch.cuda.set_rng_state(device_state, index)
    elif saved_cuda:
        log.warning("checkpoint has CUDA RNG states but CUDA is not available: GPU randomness will differ")


# ---------------------------------------------------------------- the tensor file


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some filesystems cannot open a directory; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_tensor_file(path: Path, tensors: list[Any]) -> int:
    """Write ``tensors`` as an uncompressed ``.npz`` at ``path`` atomically; return its size.

    Members are ``t0.npy``, ``t1.npy``, ... written one at a time (a GPU tensor
    reaches host memory only when its turn comes) into a temporary file beside
    ``path``, which is fsynced and renamed over it: a kill leaves either the
    old file or the new one, never half of one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                for index, tensor in enumerate(tensors):
                    with archive.open(f"t{index}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, _to_array(tensor), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # also a preemption (hpo.agent raises it from SIGTERM): leave no temp behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path.stat().st_size


def read_tensor_file(path: Path, count: int, size: int | None = None) -> list[np.ndarray]:
    """The ``count`` arrays of a file from :func:`write_tensor_file`; never unpickles."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint tensor file {path} is missing; the trial cannot resume from it")
    if size is not None and path.stat().st_size != size:
        raise CheckpointError(f"checkpoint tensor file {path} has {path.stat().st_size} bytes, the checkpoint recorded {size}")
    with np.load(path, allow_pickle=False) as archive:
        try:
            return [archive[f"t{i}"] for i in range(count)]
        except KeyError as exc:
            raise CheckpointError(f"checkpoint tensor file {path} lacks member {exc}") from None


def _tensor_files(folder: Path) -> Iterator[Path]:
    yield from folder.glob(f"{TENSOR_FILE_PREFIX}*.npz")
    yield from folder.glob(f".{TENSOR_FILE_PREFIX}*.tmp")  # left by a writer killed mid-file


# ---------------------------------------------------------------- save / restore


def _parts(
    model: StatefulLike,
    optimizer: StatefulLike | None,
    scheduler: StatefulLike | None,
    ema: StatefulLike | None,
) -> dict[str, StatefulLike]:
    named = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "ema": ema}
    return {name: part for name, part in named.items() if part is not None}


def save_training_state(
    trial: TrialLike,
    step: int,
    *,
    model: StatefulLike,
    optimizer: StatefulLike | None = None,
    scheduler: StatefulLike | None = None,
    ema: StatefulLike | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Checkpoint a training run as of ``step`` (the updates done so far).

    Args:
        trial: The agent's trial; its ``save_checkpoint`` records the step.
        step: The last completed step; ``trial.resume_step`` returns it next time.
        model, optimizer, scheduler, ema: Saved through their ``state_dict()``.
        generators: Named ``torch.Generator`` objects the run draws from (a sampler's, say).
        extra: JSON values the caller wants back (the best loss so far, ...).
    """
    encoder = _Encoder()
    tree = {
        "parts": {name: encoder.encode(part.state_dict(), name) for name, part in _parts(model, optimizer, scheduler, ema).items()},
        "generators": {name: encoder.encode(g.get_state(), f"generators.{name}") for name, g in (generators or {}).items()},
        "rng": encoder.encode(capture_rng(), "rng"),
        "extra": encoder.encode(dict(extra or {}), "extra"),
    }
    import torch

    record: dict[str, Any] = {
        "format": FORMAT,
        "torch": torch.__version__,
        "tree": json.dumps(tree),
        "count": len(encoder.tensors),
        "file": "",
        "size": 0,
        "inline": {},
    }
    folder = trial.checkpoint_dir
    if folder is None:
        record["inline"] = {f"t{i}": _to_array(t) for i, t in enumerate(encoder.tensors)}
        trial.save_checkpoint(record, step)
        return
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{TENSOR_FILE_PREFIX}{step:09d}.npz"
    record["file"] = name
    record["size"] = write_tensor_file(folder / name, encoder.tensors)
    trial.save_checkpoint(record, step)
    # Only now is the new file the one the checkpoint names: the old ones can go.
    for stale in _tensor_files(folder):
        if stale.name != name:
            stale.unlink(missing_ok=True)


def load_training_state(
    trial: TrialLike,
    *,
    model: StatefulLike,
    optimizer: StatefulLike | None = None,
    scheduler: StatefulLike | None = None,
    ema: StatefulLike | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
) -> dict[str, Any] | None:
    """Restore what :func:`save_training_state` saved, in place; return its ``extra`` (None: no checkpoint).

    Call it after building the model, optimizer, scheduler and EMA exactly as
    the first attempt did (same parameters, same order): their state dicts are
    loaded into them. The global RNG states are restored last, so nothing the
    caller does before its first update may draw random numbers.
    """
    record = trial.load_checkpoint()
    if record is None:
        return None
    if record.get("format") != FORMAT:
        raise CheckpointError(
            f"the trial's checkpoint is not a PyTorch training state ({FORMAT}); "
            f"found format {record.get('format')!r}"
        )
    count = int(record["count"])
    if record["file"]:
        folder = trial.checkpoint_dir
        if folder is None:
            raise CheckpointError(
                f"the checkpoint's tensors are in {record['file']} in the trial's checkpoint folder, "
                "which is not mounted here (the volume is reached over S3)"
            )
        arrays = read_tensor_file(folder / record["file"], count, int(record["size"]))
    else:
        inline = record.get("inline") or {}
        arrays = [inline[f"t{i}"] for i in range(count)]
    tree = _decode(json.loads(record["tree"]), arrays)
    parts = _parts(model, optimizer, scheduler, ema)
    if set(parts) != set(tree["parts"]):
        raise CheckpointError(
            f"the checkpoint holds {sorted(tree['parts'])} but the objective restores {sorted(parts)}"
        )
    for name, part in parts.items():
        part.load_state_dict(tree["parts"][name])
    for name, generator in (generators or {}).items():
        if name not in tree["generators"]:
            raise CheckpointError(f"the checkpoint has no state for generator {name!r}")
        generator.set_state(tree["generators"][name])
    restore_rng(tree["rng"])
    return dict(tree["extra"])

