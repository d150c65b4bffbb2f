"""The trial object an objective receives inside a pod (or a local process).

It has the surface of :class:`optuna.Trial` that makes sense away from the
study: ``suggest_*`` return the values the controller already sampled,
``report`` appends to the attempt's event file, ``should_prune`` reads the
controller's verdict from ``control.json``. Checkpoint helpers and the resume
step let an objective continue where a preempted attempt stopped.

Every call that touches the volume runs under :func:`~hpo.agent._infra.infra`:
a volume or network failure in it raises :class:`~hpo.agent._infra.Interrupted`
(which the objective cannot catch with ``except Exception``) and is remembered,
so the attempt ends as interrupted even if the objective swallowed it anyway.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hpo.agent._checkpoint import decode_or_none, encode_checkpoint
from hpo.agent._infra import Interrupted, infra
from hpo.errors import VolumeNotFoundError
from hpo.events import BaseEvent, CheckpointEvent, ReportEvent, UserAttrEvent
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.trial_attrs import RESERVED_PREFIX, RESERVED_USER_ATTRS, is_reserved
from hpo.volume import Volume

CHECKPOINT_FILE = "checkpoint.npz"


def read_control(volume: Volume, layout: StudyLayout, trial: int) -> str | None:
    """The controller's order for ``trial`` (``"prune"`` or ``"stop"``), or None.

    A missing, malformed or foreign file is no order; a volume that cannot be
    read raises :class:`~hpo.errors.VolumeError` (the caller decides what a
    fault means where it reads).
    """
    try:
        data = volume.read_bytes(layout.control(trial))
    except VolumeNotFoundError:
        return None
    try:
        action = json.loads(data).get("action")
    except (ValueError, AttributeError):  # not JSON (ValueError covers decode errors), or not an object
        return None
    return action if action in ("prune", "stop") else None


class AgentTrial:
    """What ``objective(trial)`` gets on the pod.

    Args:
        spec: The trial's spec, as the controller wrote it.
        attempt: This attempt's number (0 for the first).
        volume: The study's volume.
        emit: Appends one event to the attempt's event file.
    """

    def __init__(self, spec: TrialSpec, attempt: int, volume: Volume, emit: Callable[[BaseEvent], None]) -> None:
        self._spec = spec
        self._volume = volume
        self._emit = emit
        self._layout = StudyLayout(spec.study)
        self.attempt = attempt
        self._checkpoint_key = f"{self._layout.checkpoint_dir(spec.trial)}/{CHECKPOINT_FILE}"
        self._checkpoint: tuple[dict[str, Any], int] | None = None
        self._checkpoint_loaded = False
        self.reported: dict[int, float] = {}
        #: The first infrastructure fault raised from this trial's methods, if any (see the module doc).
        self.fault: Interrupted | None = None

    @contextmanager
    def _infra(self, what: str) -> Iterator[None]:
        """Like :func:`infra`, and remember the fault: it ends the attempt whatever the objective does next."""
        try:
            with infra(what):
                yield
        except Interrupted as exc:
            if self.fault is None:
                self.fault = exc
            raise

    # -- optuna.Trial's surface -------------------------------------------------------

    @property
    def number(self) -> int:
        return self._spec.trial

    @property
    def study_name(self) -> str:
        return self._spec.study

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._spec.params)

    def _sampled(self, name: str, kind: str) -> Any:
        if name not in self._spec.search_space:
            known = ", ".join(sorted(self._spec.search_space)) or "(none)"
            raise ValueError(
                f"parameter {name!r} is not in the search space of study {self._spec.study!r}; "
                f"add it to studies.yaml (known: {known})"
            )
        declared = self._spec.search_space[name].get("type")
        if declared != kind:
            raise ValueError(f"parameter {name!r} is declared as {declared} in studies.yaml, not {kind}")
        return self._spec.params[name]

    def suggest_float(self, name: str, low: float | None = None, high: float | None = None, **_: Any) -> float:
        """The sampled value of float parameter ``name`` (bounds come from studies.yaml)."""
        return float(self._sampled(name, "float"))

    def suggest_int(self, name: str, low: int | None = None, high: int | None = None, **_: Any) -> int:
        """The sampled value of int parameter ``name`` (bounds come from studies.yaml)."""
        return int(self._sampled(name, "int"))

    def suggest_categorical(self, name: str, choices: Sequence[Any] | None = None) -> Any:
        """The sampled choice of categorical parameter ``name``."""
        return self._sampled(name, "categorical")

    def report(self, value: float, step: int) -> None:
        """Report the objective's intermediate ``value`` at ``step`` to the study."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"trial.report: value at step {step} is {value}; it must be finite")
        if int(step) != step or step < 0:
            raise ValueError(f"trial.report: step must be a non-negative integer, got {step!r}")
        event = ReportEvent(step=int(step), value=value)
        with self._infra(f"report at step {int(step)}"):
            self._emit(event)
        self.reported.setdefault(int(step), value)

    def should_prune(self) -> bool:
        """True once the controller has decided to prune this trial."""
        with self._infra("reading control.json"):
            return read_control(self._volume, self._layout, self.number) == "prune"

    def set_user_attr(self, key: str, value: Any) -> None:
        """Record a JSON-serializable attribute on the study's trial.

        Keys runpod-hpo keeps its own records under (``attempts``, ``error``,
        ``cost_usd``, ..., and any ``hpo:`` key) are refused: see :mod:`hpo.trial_attrs`.
        """
        if not isinstance(key, str) or not key:
            raise ValueError(f"set_user_attr: the key must be a non-empty string, not {key!r}")
        if is_reserved(key):
            raise ValueError(
                f"set_user_attr({key!r}): the key is reserved for runpod-hpo's own records "
                f"({', '.join(sorted(RESERVED_USER_ATTRS))}, and keys starting with {RESERVED_PREFIX!r}); "
                "choose another name"
            )
        event = UserAttrEvent(key=key, value=value)
        with self._infra(f"set_user_attr({key!r})"):
            self._emit(event)

    # -- fidelity and checkpoints -------------------------------------------------------

    @property
    def max_step(self) -> int:
        return self._spec.max_step

    @property
    def eval_interval(self) -> int:
        return self._spec.eval_interval

    @property
    def step_unit(self) -> str:
        return self._spec.step_unit

    @property
    def checkpoint_dir(self) -> Path | None:
        """The trial's checkpoint folder as a local path, where the volume is mounted."""
        return self._volume.local_path(self._layout.checkpoint_dir(self.number))

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The state saved by the last :meth:`save_checkpoint` of any attempt, or None."""
        if not self._checkpoint_loaded:
            with self._infra("load_checkpoint"):
                try:
                    data: bytes | None = self._volume.read_bytes(self._checkpoint_key)
                except VolumeNotFoundError:
                    data = None
            self._checkpoint_loaded = True
            where = f"{self._volume.url}: {self._checkpoint_key}"
            self._checkpoint = None if data is None else decode_or_none(data, where)  # junk: a fresh start
        return None if self._checkpoint is None else self._checkpoint[0]

    @property
    def resume_step(self) -> int:
        """The step the last checkpoint was taken at (0 when starting fresh)."""
        self.load_checkpoint()
        return 0 if self._checkpoint is None else self._checkpoint[1]

    def save_checkpoint(self, state: Mapping[str, Any], step: int) -> None:
        """Save ``state`` as of ``step`` atomically (temp, fsync, rename); a kill never leaves half a file."""
        data = encode_checkpoint(state, step)  # the objective's state: a TypeError here is the objective's
        with self._infra(f"save_checkpoint at step {step}"):
            self._volume.write_bytes(self._checkpoint_key, data)
            self._checkpoint = (dict(state), step)
            self._checkpoint_loaded = True
            self._emit(CheckpointEvent(step=step))
