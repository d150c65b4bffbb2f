"""Run one attempt of one trial: the agent's whole job, from spec to final event.

An attempt ends with exactly one final event in its event file: ``done``,
``pruned``, ``error``, ``stopped`` or ``preempted`` (unless it is SIGKILLed, in
which case the controller sees it gone without one and treats it as
preempted). The exit code says the same for whoever watches the process.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import resource
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import optuna

from hpo.agent._trial import AgentTrial, read_control
from hpo.code import unpack_objectives
from hpo.errors import ObjectiveError
from hpo.events import (
    FINAL_TYPES,
    DoneEvent,
    ErrorEvent,
    PreemptedEvent,
    PrunedEvent,
    StartEvent,
    StoppedEvent,
    BaseEvent,
    FinalEvent,
    drain,
    encode_event,
)
from hpo.journal import default_cache_dir
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.volume import Volume

log = logging.getLogger(__name__)

EXIT_DONE = 0
EXIT_ERROR = 1
EXIT_PREEMPTED = 143  # 128 + SIGTERM, as a shell would report it


class Preempted(BaseException):
    """Raised in the main thread by the SIGTERM handler.

    A BaseException, so an objective's ``except Exception`` cannot swallow it.
    Python runs signal handlers between bytecodes, so it never interrupts an
    event append in the middle of its single write call.
    """


@dataclass(frozen=True)
class AttemptAddress:
    """Which attempt this process runs, from its environment."""

    study: str
    trial: int
    attempt: int
    volume_root: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> AttemptAddress:
        missing = [k for k in ("HPO_STUDY", "HPO_TRIAL", "HPO_ATTEMPT", "HPO_VOLUME") if not env.get(k)]
        if missing:
            raise ObjectiveError(f"hpo.agent: missing environment variable(s) {', '.join(missing)}")
        try:
            return cls(env["HPO_STUDY"], int(env["HPO_TRIAL"]), int(env["HPO_ATTEMPT"]), env["HPO_VOLUME"])
        except ValueError as exc:
            raise ObjectiveError(f"hpo.agent: HPO_TRIAL and HPO_ATTEMPT must be integers ({exc})") from exc


def load_objective(volume: Volume, spec: TrialSpec, cache_dir: Path) -> Callable[[Any], float]:
    """Import ``objectives/<module>.py`` from the spec's code snapshot and return its function.

    ``spec.objective`` is ``module`` (function ``objective``) or ``module:function``.
    """
    module_name, _, func_name = spec.objective.partition(":")
    if spec.code:
        root = unpack_objectives(volume, spec.study, spec.code, cache_dir)
        sys.path.insert(0, str(root))
        # The snapshot's package must win over any `objectives` imported before (an installed copy).
        for name in [n for n in sys.modules if n == "objectives" or n.startswith("objectives.")]:
            del sys.modules[name]
        importlib.invalidate_caches()  # the folder was just unpacked
    try:
        module = importlib.import_module(f"objectives.{module_name}")
    except ModuleNotFoundError as exc:
        raise ObjectiveError(f"objective module objectives/{module_name}.py not found ({exc})") from exc
    func = getattr(module, func_name or "objective", None)
    if not callable(func):
        raise ObjectiveError(f"objectives/{module_name}.py has no function {func_name or 'objective'!r}")
    return func


def _install_sigterm() -> None:
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # A second SIGTERM while we wind down means "now": leave without ceremony.
        signal.signal(signal.SIGTERM, lambda *_: os._exit(EXIT_PREEMPTED))
        raise Preempted

    signal.signal(signal.SIGTERM, on_sigterm)


def run_attempt(address: AttemptAddress, volume: Volume, *, cache_dir: Path | None = None) -> int:
    """Run the attempt named by ``address`` and return the process exit code."""
    layout = StudyLayout(address.study)
    events_key = layout.events(address.trial, address.attempt)

    def emit(event: BaseEvent) -> None:
        if isinstance(event, FinalEvent):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            event = event.model_copy(update={"cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)})
        volume.append_bytes(events_key, encode_event(event))

    # A container that exits is restarted (RunPod does this to pods): never run a
    # finished attempt twice.
    finished = [e for e in drain(volume, events_key) if e.type in FINAL_TYPES]
    if finished:
        log.info("attempt %d of trial %d already ended (%s); nothing to do", address.attempt, address.trial, finished[-1].type)
        return EXIT_DONE

    _install_sigterm()
    try:
        order = read_control(volume, layout, address.trial)
        if order is not None:
            emit(PrunedEvent() if order == "prune" else StoppedEvent())
            return EXIT_DONE
        spec = TrialSpec.read(volume, layout.spec(address.trial))
        trial = AgentTrial(spec, address.attempt, volume, emit)
        emit(StartEvent(pid=os.getpid(), host=socket.gethostname(), resume_step=trial.resume_step))
        objective = load_objective(volume, spec, cache_dir or default_cache_dir())
        value = objective(trial)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ObjectiveError(f"objective returned {value!r}; it must return a float") from None
        if not math.isfinite(value):
            raise ObjectiveError(f"objective returned {value}; it must return a finite float")
        emit(DoneEvent(value=value))
        return EXIT_DONE
    except Preempted:
        order = read_control(volume, layout, address.trial)
        if order == "prune":
            emit(PrunedEvent())
        elif order == "stop":
            emit(StoppedEvent())
        else:
            emit(PreemptedEvent())
        return EXIT_PREEMPTED
    except optuna.TrialPruned:
        emit(PrunedEvent(step=max(trial.reported, default=None)))
        return EXIT_DONE
    except Exception as exc:  # the objective's own failure: record it and fail the trial
        emit(ErrorEvent(message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=20)))
        traceback.print_exc()
        return EXIT_ERROR
