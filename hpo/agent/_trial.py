"""The trial object an objective receives inside a pod (or a local process): ``hpo.Trial``.

It is an Optuna trial (a :class:`optuna.trial.BaseTrial`, as Optuna's own
``FixedTrial`` is), so an objective written for Optuna, and the pruning
callbacks of ``optuna_integration`` it passes the trial to, run unchanged:
``suggest_*`` return the values the controller already sampled (checked
against the study's search space: a name it lacks, or a range that disagrees
with it, is an error naming both), ``report`` appends to the attempt's event
file, ``should_prune`` reads the controller's verdict from ``control.json``,
``trial.study`` tells the study's name and direction (:mod:`hpo.agent._study`).
Checkpoint helpers and the resume step let an objective continue where a
preempted attempt stopped.

Every call that touches the volume runs under :func:`~hpo.agent._infra.infra`:
a volume or network failure in it raises :class:`~hpo.agent._infra.Interrupted`
(which the objective cannot catch with ``except Exception``) and is remembered,
so the attempt ends as interrupted even if the objective swallowed it anyway.
"""

from __future__ import annotations

import datetime
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, overload

from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import BaseTrial

from hpo.agent._checkpoint import decode_or_none, encode_checkpoint
from hpo.agent._infra import Interrupted, infra
from hpo.agent._study import WorkerStudy
from hpo.errors import VolumeNotFoundError
from hpo.events import BaseEvent, CheckpointEvent, ReportEvent, UserAttrEvent
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec, declaration, describe, distribution
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


class AgentTrial(BaseTrial):
    """What ``objective(trial)`` gets in a worker; ``hpo.Trial`` names it.

    Beyond Optuna's trial: ``max_step``, ``eval_interval`` and ``step_unit``
    (the study's fidelity), ``attempt``, ``resume_step`` and the checkpoint
    helpers. ``suggest_float("lr")`` without a range takes the study's.

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
        self._study = WorkerStudy(spec.study, spec.direction, spec.metric, spec.study_user_attrs)
        self._user_attrs: dict[str, Any] = {}
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

    # -- who and what --------------------------------------------------------------------

    @property
    def number(self) -> int:
        return self._spec.trial

    @property
    def study(self) -> WorkerStudy:
        """The study's name, direction, metric name and user attributes (the rest lives with the controller)."""
        return self._study

    @property
    def study_name(self) -> str:
        return self._spec.study

    @property
    def params(self) -> dict[str, Any]:
        """Every parameter the controller sampled for this trial (for a define-by-run study, those its
        ``search_space(trial)`` suggested), whether or not the objective has asked for it yet."""
        return dict(self._spec.params)

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna's distribution of each parameter in :attr:`params`."""
        return self._spec.distributions()

    @property
    def user_attrs(self) -> dict[str, Any]:
        """The attributes this attempt set with :meth:`set_user_attr` (earlier attempts' are in the study)."""
        return dict(self._user_attrs)

    @property
    def system_attrs(self) -> dict[str, Any]:
        """Always empty: system attributes are the controller's, and none reach the worker."""
        return {}

    @property
    def datetime_start(self) -> datetime.datetime | None:
        """When the controller asked the study for this trial (None in specs that do not say)."""
        when = self._spec.datetime_start
        try:
            return None if when is None else datetime.datetime.fromisoformat(when)
        except ValueError:
            return None

    @property
    def constraints(self) -> dict[str, float]:
        return {}

    def set_constraint(self, key: str, value: float) -> None:
        """Not supported: constrained samplers would need the value in the study before the trial ends."""
        raise NotImplementedError(
            f"trial.set_constraint({key!r}): constraints are not supported in runpod-hpo's trials (study {self.study_name!r})"
        )

    # -- the search space ----------------------------------------------------------------

    def _space_name(self) -> str:
        if self._spec.space_source == "search_space":
            return f"search_space(trial) in objectives/{self._spec.objective.partition(':')[0]}.py"
        return f"the search_space of study {self._spec.study!r} in studies.yaml"

    def _sampled(self, call: str, name: str, kind: str, requested: BaseDistribution | None) -> Any:
        """The value sampled for ``name``, once its declaration agrees with the ``suggest_*`` call."""
        declared = self._spec.search_space.get(name)
        if declared is None:
            known = ", ".join(sorted(self._spec.search_space)) or "(none)"
            if self._spec.space_source == "search_space":
                raise ValueError(
                    f"{call}: parameter {name!r} was not sampled for trial {self.number} of study {self._spec.study!r}: "
                    f"{self._space_name()} did not suggest it (sampled: {known}); suggest it there, under the same conditions"
                )
            raise ValueError(
                f"parameter {name!r} is not in the search space of study {self._spec.study!r}; "
                f"add it to studies.yaml (known: {known})"
            )
        dist = distribution(declared)  # the spec was validated: it is one Optuna accepts
        if declared.get("type") != kind:
            raise ValueError(
                f"{call}: parameter {name!r} is declared as {declared.get('type')} in {self._space_name()}, not {kind}"
            )
        if requested is not None and declaration(requested) != declaration(dist):
            raise ValueError(
                f"{call}: parameter {name!r}: the objective asks for {describe(requested)}, but {self._space_name()} "
                f"declares {describe(dist)}; make them the same (or leave the range out: {call.partition('(')[0]}"
                f"({name!r}) takes the study's)"
            )
        if name not in self._spec.params:
            raise ValueError(f"{call}: the trial's spec declares {name!r} but holds no value for it")
        return self._spec.params[name]

    def suggest_float(
        self, name: str, low: float | None = None, high: float | None = None, *, step: float | None = None,
        log: bool = False,
    ) -> float:
        """The sampled value of float parameter ``name``; a range given must be the study's."""
        call = f"trial.suggest_float({name!r})"
        requested = _requested(call, low, high, step is not None or log, FloatDistribution, log=log, step=step)
        return float(self._sampled(call, name, "float", requested))

    def suggest_int(
        self, name: str, low: int | None = None, high: int | None = None, *, step: int = 1, log: bool = False
    ) -> int:
        """The sampled value of int parameter ``name``; a range given must be the study's."""
        call = f"trial.suggest_int({name!r})"
        requested = _requested(call, low, high, step != 1 or log, IntDistribution, log=log, step=step)
        return int(self._sampled(call, name, "int", requested))

    @overload
    def suggest_categorical(self, name: str, choices: Sequence[None]) -> None: ...

    @overload
    def suggest_categorical(self, name: str, choices: Sequence[bool]) -> bool: ...

    @overload
    def suggest_categorical(self, name: str, choices: Sequence[int]) -> int: ...

    @overload
    def suggest_categorical(self, name: str, choices: Sequence[float]) -> float: ...

    @overload
    def suggest_categorical(self, name: str, choices: Sequence[str]) -> str: ...

    @overload
    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType] | None = None
    ) -> CategoricalChoiceType: ...

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType] | None = None
    ) -> CategoricalChoiceType:
        """The sampled choice of categorical parameter ``name``; choices given must be the study's, in order."""
        call = f"trial.suggest_categorical({name!r})"
        requested = None
        if choices is not None:
            try:
                requested = CategoricalDistribution(list(choices))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{call}: {exc}") from None
        value: CategoricalChoiceType = self._sampled(call, name, "categorical", requested)
        return value

    def suggest_uniform(self, name: str, low: float, high: float) -> float:
        """Optuna 2's name for ``suggest_float(name, low, high)`` (deprecated there too)."""
        _deprecated("suggest_uniform", "suggest_float(..., low, high)")
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name: str, low: float, high: float) -> float:
        """Optuna 2's name for ``suggest_float(name, low, high, log=True)``."""
        _deprecated("suggest_loguniform", "suggest_float(..., log=True)")
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name: str, low: float, high: float, q: float) -> float:
        """Optuna 2's name for ``suggest_float(name, low, high, step=q)``."""
        _deprecated("suggest_discrete_uniform", "suggest_float(..., step=...)")
        return self.suggest_float(name, low, high, step=q)

    # -- reports and attributes ------------------------------------------------------------

    def report(self, value: float, step: int) -> None:
        """Report the objective's intermediate ``value`` at ``step`` to the study."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"trial.report: the value at step {step} must be a float, not {value!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"trial.report: value at step {step} is {value}; it must be finite")
        if isinstance(step, bool) or not isinstance(step, int | float) or int(step) != step or step < 0:
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
        self._user_attrs[key] = value

    # -- fidelity and checkpoints -------------------------------------------------------

    @property
    def max_step(self) -> int:
        """The step a full trial ends at (``fidelity.max_step``); an error if the study declares none."""
        if self._spec.max_step is None:
            raise ValueError(
                f"trial.max_step: study {self.study_name!r} declares no fidelity.max_step in studies.yaml "
                "(a one-shot objective needs none); add fidelity: {max_step: N} to use it"
            )
        return self._spec.max_step

    @property
    def eval_interval(self) -> int:
        return self._spec.eval_interval

    @property
    def step_unit(self) -> str:
        return self._spec.step_unit

    @property
    def checkpoint_seconds(self) -> float | None:
        """The study's ``fidelity.checkpoint_seconds``: checkpoint at the first evaluation this long after the last.

        None: checkpoint at every evaluation. The objective keeps the time
        (``objectives/_torch_training.py``'s ``CheckpointTimer`` does, with an
        injected clock); the agent only carries the setting.
        """
        return self._spec.checkpoint_seconds

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


def _requested(
    call: str, low: float | None, high: float | None, options: bool, kind: type[FloatDistribution] | type[IntDistribution],
    **kwargs: Any,
) -> BaseDistribution | None:
    """The distribution a ``suggest_float``/``suggest_int`` call names, or None when it names no range.

    Optuna builds it, with the same adjustments (a ``step`` that does not
    divide the range lowers ``high``) as when the study declared it.
    """
    if low is None and high is None:
        if options:
            raise ValueError(f"{call}: give low and high with step or log, or none of them (to take the study's)")
        return None
    if low is None or high is None:
        raise ValueError(f"{call}: give both low and high, or neither (to take the study's range)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's note on an adjusted high: the comparison says what matters
            return kind(low, high, **kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{call}: {exc}") from None


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"trial.{old} is deprecated (as in Optuna): use trial.{new}", FutureWarning, stacklevel=3)
