"""Run one attempt of one trial: the agent's whole job, from spec to final event.

An attempt ends with exactly one final event in its event file: ``done``,
``pruned``, ``error``, ``stopped``, ``preempted`` or ``interrupted`` (unless it
is SIGKILLed, in which case the controller sees it gone without one and treats
it as preempted). The exit code says the same for whoever watches the process.

``error`` is the objective's own failure and fails the trial. ``interrupted``
is a fault of the infrastructure (the volume or the network failed in our code:
reading the spec, unpacking the code, ``trial.report``, a checkpoint, an event
append; see :mod:`hpo.agent._infra`): like a preemption it leaves the trial to
a new attempt. When the volume is what failed, the event may not be written;
the exit code (:data:`EXIT_INFRA`) and the cause on stderr (the attempt's log)
still say it.
"""

from __future__ import annotations

import importlib
import json
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

from hpo.agent._infra import EXIT_INFRA, Interrupted, infra
from hpo.agent._trial import AgentTrial, read_control
from hpo.code import error_place, unpack_objectives
from hpo.errors import ObjectiveError
from hpo.events import (
    FINAL_TYPES,
    BaseEvent,
    DoneEvent,
    ErrorEvent,
    FinalEvent,
    InterruptedEvent,
    PreemptedEvent,
    PrunedEvent,
    StartEvent,
    StoppedEvent,
    drain,
    encode_event,
    one_line,
)
from hpo.journal import default_cache_dir
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.volume import Volume

log = logging.getLogger(__name__)

EXIT_DONE = 0
EXIT_ERROR = 1
EXIT_PREEMPTED = 143  # 128 + SIGTERM, as a shell would report it
# EXIT_INFRA (75, EX_TEMPFAIL: an infrastructure fault interrupted the attempt) lives in hpo.agent._infra.

#: The longest one-line message an ``error`` event carries (the traceback holds the rest).
MESSAGE_MAX = 1000


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
    Unpacking the snapshot is our code (a fault there raises :class:`Interrupted`);
    importing the module runs the objective's code, so what fails there is the
    objective's error, an :class:`ObjectiveError` that says which file, line and import.
    """
    module_name, _, func_name = spec.objective.partition(":")
    package_dir: Path | None = None
    if spec.code:
        with infra("unpacking the code snapshot"):
            root = unpack_objectives(volume, spec.study, spec.code, cache_dir)
        package_dir = root / "objectives"
        sys.path.insert(0, str(root))
        # The snapshot's package must win over any `objectives` imported before (an installed copy); one
        # imported from this very snapshot is kept (a warm worker's fork server preloaded it for this process).
        if not _imported_from(sys.modules.get("objectives"), package_dir):
            for name in [n for n in sys.modules if n == "objectives" or n.startswith("objectives.")]:
                del sys.modules[name]
            importlib.invalidate_caches()  # the folder was just unpacked
    module = _import_objective(module_name, package_dir)
    func = getattr(module, func_name or "objective", None)
    if not callable(func):
        raise ObjectiveError(f"{_objective_file(module_name)} has no function {func_name or 'objective'!r}")
    return func


def _imported_from(package: Any, package_dir: Path) -> bool:
    """Whether ``package`` (the imported ``objectives``, if any) is the one in ``package_dir``."""
    paths = getattr(package, "__path__", None) or []
    return any(Path(path).resolve() == package_dir.resolve() for path in paths)


def _objective_file(module_name: str) -> str:
    return f"objectives/{module_name.replace('.', '/')}.py"


def _import_objective(module_name: str, package_dir: Path | None) -> Any:
    """Import ``objectives.<module_name>``; a failure says whether the module is missing or what inside it failed."""
    dotted = f"objectives.{module_name}"
    file = _objective_file(module_name)
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == dotted or dotted.startswith(exc.name + ".")):
            raise ObjectiveError(f"objective module {file} not found ({exc})") from exc
        raise ObjectiveError(_import_failed(exc, file, package_dir)) from exc
    except ImportError as exc:
        raise ObjectiveError(_import_failed(exc, file, package_dir)) from exc
    except SyntaxError as exc:
        where = _where(exc, file, package_dir)
        raise ObjectiveError(one_line(f"{file}: {type(exc).__name__}{where}: {exc.msg}", MESSAGE_MAX)) from exc
    except Exception as exc:
        where = _where(exc, file, package_dir)
        raise ObjectiveError(
            one_line(f"{file}: importing it raised {type(exc).__name__}{where}: {exc}", MESSAGE_MAX)
        ) from exc


def _import_failed(exc: ImportError, file: str, package_dir: Path | None) -> str:
    return one_line(f"{file}: import failed: {exc}{_where(exc, file, package_dir)}", MESSAGE_MAX)


def _where(exc: BaseException, file: str, package_dir: Path | None) -> str:
    """`` at line N`` (in the objective's file) or `` at objectives/other.py line N``, or "" if unknown.

    The place is the innermost frame inside the objectives package (for a
    SyntaxError, the file and line it names), so an import failing in a helper
    module of the objective names the helper.
    """
    if package_dir is None:
        package = sys.modules.get("objectives")
        origin = getattr(package, "__file__", None)
        package_dir = Path(origin).parent if origin else None
    place = error_place(exc, package_dir) if package_dir is not None else None
    if place is None:
        return ""
    relative, lineno = place
    line = f"line {lineno}" if lineno else "an unknown line"
    return f" at {line}" if relative == file else f" at {relative} {line}"


def _install_sigterm() -> None:
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # A second SIGTERM while we wind down means "now": leave without ceremony.
        signal.signal(signal.SIGTERM, lambda *_: os._exit(EXIT_PREEMPTED))
        raise Preempted

    signal.signal(signal.SIGTERM, on_sigterm)


def run_attempt(address: AttemptAddress, volume: Volume, *, cache_dir: Path | None = None) -> int:
    """Run the attempt named by ``address`` and return the process exit code.

    Never raises for a volume fault: one ends the attempt with ``interrupted``
    (written if the volume still takes it) and :data:`EXIT_INFRA`.
    """
    layout = StudyLayout(address.study)
    events_key = layout.events(address.trial, address.attempt)

    def emit(event: BaseEvent) -> None:
        if isinstance(event, FinalEvent):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            event = event.model_copy(update={"cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)})
        volume.append_bytes(events_key, encode_event(event))

    try:
        return _run(address, volume, layout, emit, cache_dir or default_cache_dir())
    except Interrupted as exc:
        return _end_interrupted(exc, emit)


def _run(
    address: AttemptAddress, volume: Volume, layout: StudyLayout, emit: Callable[[BaseEvent], None], cache_dir: Path
) -> int:
    """The attempt itself; an infrastructure fault leaves it as :class:`Interrupted`."""

    def final(event: DoneEvent | PrunedEvent | ErrorEvent | StoppedEvent) -> None:
        with infra(f"writing the {event.type} event"):
            emit(event)

    # A container that exits is restarted (RunPod does this to pods): never run a
    # finished attempt twice.
    with infra("reading the attempt's event file"):
        events = drain(volume, layout.events(address.trial, address.attempt))
    finished = [e for e in events if e.type in FINAL_TYPES]
    if finished:
        log.info("attempt %d of trial %d already ended (%s); nothing to do", address.attempt, address.trial, finished[-1].type)
        return EXIT_DONE

    _install_sigterm()
    trial: AgentTrial | None = None
    try:
        with infra("reading control.json"):
            order = read_control(volume, layout, address.trial)
        if order is not None:
            final(PrunedEvent() if order == "prune" else StoppedEvent())
            return EXIT_DONE
        spec = _read_spec(volume, layout.spec(address.trial))
        trial = AgentTrial(spec, address.attempt, volume, emit)
        start = StartEvent(pid=os.getpid(), host=socket.gethostname(), resume_step=trial.resume_step)
        with infra("writing the start event"):
            emit(start)
        objective = load_objective(volume, spec, cache_dir)
        value = objective(trial)
        _raise_fault(trial)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ObjectiveError(f"objective returned {value!r}; it must return a float") from None
        if not math.isfinite(value):
            raise ObjectiveError(f"objective returned {value}; it must return a finite float")
        final(DoneEvent(value=value))
        return EXIT_DONE
    except Preempted:
        try:
            order = read_control(volume, layout, address.trial)
        except Exception:  # noqa: BLE001  the volume may be down too: then it was a preemption as far as we can tell
            order = None
        event = PrunedEvent() if order == "prune" else StoppedEvent() if order == "stop" else PreemptedEvent()
        try:
            emit(event)
        except Exception as exc:  # noqa: BLE001  the volume may be down: the exit code still says preempted
            _say(f"hpo.agent: SIGTERM; could not write the {event.type} event: {one_line(str(exc), MESSAGE_MAX)}")
        return EXIT_PREEMPTED
    except optuna.TrialPruned:
        _raise_fault(trial)
        final(PrunedEvent(step=max(trial.reported, default=None) if trial is not None else None))
        return EXIT_DONE
    except Exception as exc:  # noqa: BLE001  the objective's own failure: record it and fail the trial
        _raise_fault(trial)  # ... unless it came after one of our faults the objective swallowed
        message = str(exc) if isinstance(exc, ObjectiveError) else f"{type(exc).__name__}: {exc}"
        traceback.print_exc()  # first: if the volume refuses the event, the log still has the error
        final(ErrorEvent(message=one_line(message, MESSAGE_MAX), traceback=traceback.format_exc(limit=20)))
        return EXIT_ERROR


def _read_spec(volume: Volume, key: str) -> TrialSpec:
    """The trial's spec; a volume fault is :class:`Interrupted`, a malformed spec an :class:`ObjectiveError`.

    The controller writes the spec atomically, so a malformed one will be
    malformed on every attempt: retrying it would only spend attempts.
    """
    with infra("reading the trial spec"):
        data = volume.read_bytes(key)
    try:
        return TrialSpec.model_validate(json.loads(data))
    except ValueError as exc:  # JSON, UTF-8 and pydantic's ValidationError are all ValueErrors
        raise ObjectiveError(one_line(f"{volume.url}: {key}: not a valid trial spec ({exc})", MESSAGE_MAX)) from exc


def _raise_fault(trial: AgentTrial | None) -> None:
    """Raise the infrastructure fault our trial methods raised, if the objective swallowed it.

    An objective can catch :class:`Interrupted` only with a bare ``except:`` (or
    ``except BaseException``); whatever it did next (return a value, raise its
    own error, prune itself) happened after a report or a checkpoint was lost,
    so the attempt still ends as interrupted.
    """
    if trial is not None and trial.fault is not None:
        raise trial.fault


def _end_interrupted(exc: Interrupted, emit: Callable[[BaseEvent], None]) -> int:
    """End an attempt an infrastructure fault interrupted: say why on stderr and, if the volume lets us, in an event."""
    _say(f"hpo.agent: attempt interrupted by an infrastructure fault (a new attempt can resume the trial): {exc.cause}")
    _say("".join(traceback.format_exception(exc)).rstrip())
    try:
        emit(InterruptedEvent(cause=exc.cause))
    except Exception as write_exc:  # noqa: BLE001  the volume is likely what failed: the exit code still says it
        _say(f"hpo.agent: could not write the interrupted event either: {one_line(str(write_exc), MESSAGE_MAX)}")
    return EXIT_INFRA


def _say(text: str) -> None:
    """Print ``text`` to stderr, which may itself be a file on the failing volume: never raise."""
    try:
        print(text, file=sys.stderr, flush=True)
    except Exception:  # noqa: BLE001  stderr on a failing volume: nothing left to tell
        pass
