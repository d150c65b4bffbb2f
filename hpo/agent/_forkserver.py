"""Start each attempt of a warm worker in a fresh process forked from a warm parent (a fork server).

A cold attempt is a new interpreter that spends most of its fixed cost on
imports (optuna, numpy, our own modules, the objective's module and whatever
it imports) before the objective runs. A warm worker pays that once: it starts
one fork server (the standard library's ``forkserver`` start method) that
imports all of it, and every attempt is a child forked from that server. The
child is still a process of its own, so no state, GPU memory or module-level
side effect of one trial reaches the next; it runs
:func:`~hpo.agent._runner.run_attempt` unchanged and its exit code is the
attempt's.

How the server is made to preload, and why not just ``set_forkserver_preload``
with the module names: Python 3.11's fork server ignores the ``sys.path`` it is
handed (so the code snapshot's folder would not be found), swallows an
``ImportError`` silently, and dies on any other exception an objective's import
raises. So the server preloads this very module, and this module, seeing
:data:`PLAN_ENV` in its environment (set by the worker only while it starts
the server), puts the worker's ``sys.path`` in place, ignores SIGTERM (see
below), and imports the planned modules one by one, remembering each failure
for :func:`probe` to report. A module that fails to preload is simply imported
again by the attempt, which reports its error as a cold attempt would.

Never fork after CUDA is initialised: the server only imports. An objective
module that initialises CUDA at import time would poison every child, so each
child checks at start and fails its attempt with an error that names the module.

Signals: the server ignores SIGTERM, so a signal to the worker's whole process
group (the local backend stops a worker that way) does not kill the server,
which reports the children's exit codes. Each child makes its own process
group at once, so only the worker signals it (once: a second SIGTERM means
"now" to an attempt) and a signal reaches everything the objective started.
A child whose worker vanished (SIGKILLed) stops itself the same way: SIGTERM,
then SIGKILL after the grace, so no attempt outlives its worker.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

from hpo.agent._output import redirect_output
from hpo.agent._runner import EXIT_DONE, EXIT_ERROR, EXIT_PREEMPTED, AttemptAddress, Preempted, run_attempt
from hpo.errors import HpoError, ObjectiveError
from hpo.events import FINAL_TYPES, ErrorEvent, drain, encode_event, one_line
from hpo.layout import StudyLayout
from hpo.volume import Volume, open_volume

log = logging.getLogger("hpo.worker")

#: Carries the preload plan (JSON: ``sys_path``, ``modules``) to the fork server, and only to it.
PLAN_ENV = "HPO_FORKSERVER_PLAN"
#: How long the worker waits for the probe child to answer before it gives up on the fork server.
PROBE_TIMEOUT = 60.0

#: In the fork server (and so in every child): each planned module that failed to import, with why.
preload_failures: dict[str, str] = {}


def _preload(plan_text: str) -> None:
    """In the fork server: the worker's ``sys.path``, SIGTERM ignored, then each planned module imported."""
    plan = json.loads(plan_text)
    sys.path[:] = [str(entry) for entry in plan["sys_path"]]
    importlib.invalidate_caches()  # the snapshot's folder may be new since this interpreter started
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for name in plan["modules"]:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001  an objective's import may raise anything; its attempt says what
            preload_failures[name] = one_line(f"{type(exc).__name__}: {exc}", 300)


@dataclass(frozen=True)
class ProbeResult:
    """What a first child of the fork server saw: whether the preload happened, and what a fork costs."""

    pid: int
    server_pid: int
    loaded: list[str]
    failures: dict[str, str]
    cpu_seconds: float
    cuda_initialised: bool


@dataclass(frozen=True)
class ChildOrder:
    """Everything a forked child needs to run one attempt (pickled to it by the fork server's protocol).

    ``log_path``: where the attempt's output goes (None: the worker's own);
    ``env``: variables to set in the child (its trial and attempt), ``unset``: to remove (the worker's own).
    """

    study: str
    trial: int
    attempt: int
    volume_root: str
    objective_module: str
    log_path: str | None
    grace: float
    env: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()


class ForkServer:
    """The worker's one fork server, warm with one code snapshot's objective module.

    The standard library keeps one fork server per process, so a worker has one
    :class:`ForkServer` for its whole life; an attempt of another snapshot runs
    cold (see :mod:`hpo.agent._worker`).

    Args:
        code: The code snapshot (sha256) whose objective module is preloaded (None: the installed ``objectives``).
        objective_module: ``objectives.<module>``, already importable from ``sys.path``.
        extra_modules: Other modules to preload (the volume's module for an S3 volume).
    """

    def __init__(self, code: str | None, objective_module: str, extra_modules: tuple[str, ...] = ()) -> None:
        self.code = code
        self.objective_module = objective_module
        self.modules = [__name__, "optuna", *extra_modules, objective_module]
        self._ctx: ForkServerContext = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload([__name__])
        self._plan = json.dumps({"sys_path": list(sys.path), "modules": self.modules})

    @contextmanager
    def _planned(self) -> Iterator[None]:
        """:data:`PLAN_ENV` set while a start may launch the server (it is launched again if it died)."""
        os.environ[PLAN_ENV] = self._plan
        try:
            yield
        finally:
            os.environ.pop(PLAN_ENV, None)

    def start(self) -> ProbeResult:
        """Start the server and fork one probe child from it: what it preloaded, what a fork costs.

        Raises:
            OSError: The server could not be started or did not answer (the caller runs attempts cold).
        """
        receive, send = self._ctx.Pipe(duplex=False)
        child = self._ctx.Process(target=probe, args=(send, self.modules), name="hpo-probe")
        with self._planned():
            child.start()
        send.close()
        try:
            if not receive.poll(PROBE_TIMEOUT):
                raise OSError(f"the fork server's probe did not answer in {PROBE_TIMEOUT:.0f}s")
            result: ProbeResult = receive.recv()
        except EOFError as exc:
            raise OSError("the fork server's probe died before answering") from exc
        finally:
            receive.close()
            child.join(PROBE_TIMEOUT)
            if child.exitcode is not None:
                child.close()
        return result

    def launch(self, order: ChildOrder) -> BaseProcess:
        """Fork the attempt's process from the server; it runs at once (its pid and sentinel are set)."""
        child = self._ctx.Process(
            target=attempt_child, args=(order,), name=f"hpo-attempt-{order.trial}.{order.attempt}"
        )
        with self._planned():
            child.start()
        return child

    def stop(self) -> None:
        """Stop the fork server and the resource tracker it brought, and reap them: a worker leaves no process behind.

        Both would end by themselves once the worker is gone (their pipes
        close), but only after it: whoever waits for the worker to exit (the
        local backend, a test counting the study's processes) would still see
        them for a moment. The standard library stops them this way in its own
        tests (``_stop``); where a Python lacks it they end as said.
        """
        from multiprocessing import forkserver, resource_tracker

        for helper in (getattr(forkserver, "_forkserver", None), getattr(resource_tracker, "_resource_tracker", None)):
            stop = getattr(helper, "_stop", None)
            if callable(stop):
                try:
                    stop()
                except OSError:  # already gone
                    pass


def probe(send: Connection, modules: list[str]) -> None:
    """In a child of the fork server: report what the server preloaded and what this child costs so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    send.send(
        ProbeResult(
            pid=os.getpid(),
            server_pid=os.getppid(),
            loaded=[name for name in modules if name in sys.modules],
            failures=dict(preload_failures),
            cpu_seconds=round(usage.ru_utime + usage.ru_stime, 4),
            cuda_initialised=cuda_initialised(),
        )
    )
    send.close()


def cuda_initialised() -> bool:
    """Whether CUDA was initialised in this process or before it was forked (torch marks such a child "bad fork")."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None:
        return False
    try:
        bad_fork = getattr(cuda, "_is_in_bad_fork", None)
        return bool(cuda.is_initialized() or (callable(bad_fork) and bad_fork()))
    except Exception:  # noqa: BLE001  a torch too old or too new to ask: nothing says it was
        return False


def attempt_child(order: ChildOrder) -> None:
    """A forked child's whole life: own process group, the attempt's environment and log, the attempt, its exit code."""
    server = os.getppid()
    _term_when_parent_dies()
    if os.getppid() != server:  # the fork server died before the kernel was told: it will never say so
        os._exit(EXIT_PREEMPTED)
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the server ignores SIGTERM; the attempt installs its own
    for name in order.unset:
        os.environ.pop(name, None)
    os.environ.update(order.env)
    if order.log_path is not None:
        try:
            redirect_output(Path(order.log_path))
        except OSError as exc:  # the volume may be failing: the attempt finds out and says so
            print(f"hpo.agent: cannot write the attempt's log {order.log_path} ({exc})", file=sys.stderr)
    _watch_worker(order.grace)
    sys.exit(_run_child(order))


def _run_child(order: ChildOrder) -> int:
    """Run the attempt as ``python -m hpo.agent`` would; the exit code."""
    address = AttemptAddress(order.study, order.trial, order.attempt, order.volume_root)
    try:
        volume = open_volume(address.volume_root)  # our own: a client made before the fork is never shared
        if cuda_initialised():
            return _fail_cuda(order, address, volume)
        return run_attempt(address, volume)
    except HpoError as exc:
        print(f"hpo.agent: {exc}", file=sys.stderr)
        return exc.exit_code
    except Preempted:
        return EXIT_PREEMPTED
    except Exception:  # noqa: BLE001 - a bug of ours: say it; the exit code says error
        traceback.print_exc()
        return EXIT_ERROR


def _fail_cuda(order: ChildOrder, address: AttemptAddress, volume: Volume) -> int:
    """End the attempt with an error naming the module that initialised CUDA in the fork server."""
    file = f"objectives/{order.objective_module.removeprefix('objectives.').replace('.', '/')}.py"
    error = ObjectiveError(
        f"{file} initialises CUDA when it is imported: a warm worker imports it once and forks each attempt from "
        "that process, and a process forked after CUDA is initialised cannot use CUDA; move the CUDA work "
        "(tensors or models on the GPU, torch.cuda calls other than device_count) into the objective function"
    )
    print(f"hpo.agent: {error}", file=sys.stderr)
    key = StudyLayout(address.study).events(address.trial, address.attempt)
    if any(event.type in FINAL_TYPES for event in drain(volume, key)):
        return EXIT_DONE  # it ended before (never end an attempt twice)
    volume.append_bytes(key, encode_event(ErrorEvent(message=one_line(str(error), 1000))))
    return EXIT_ERROR


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _term_when_parent_dies() -> None:
    """Ask Linux for SIGTERM when the fork server dies (``PR_SET_PDEATHSIG``); elsewhere only the watch thread acts.

    The attempt leaves its worker's process group, so a container's or a
    backend's group kill misses it; the fork server is in that group. The
    kernel's word arrives even while the attempt's main thread is deep in C
    code, before the watch thread (below) has started.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl to call: the watch thread still stops the attempt
        pass


def _watch_worker(grace: float) -> None:
    """Stop this attempt if its worker vanishes: SIGTERM (the attempt writes its final event), SIGKILL after ``grace``.

    The worker holds its end of the pipe the fork server handed this child
    until the attempt is over, so the pipe's end of file means the worker died
    (it never exits before its attempt did).
    """
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if not isinstance(sentinel, int):
        return

    def watch() -> None:
        wait([sentinel])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="hpo-worker-watch", daemon=True).start()


def describe_probe(result: ProbeResult) -> str:
    """One line for the worker's log: what the fork server holds and what a fork costs."""
    return (
        f"fork server pid {result.server_pid} preloaded {', '.join(result.loaded)}; "
        f"a forked attempt starts with {result.cpu_seconds * 1000:.0f} ms of CPU"
    )


_plan = os.environ.pop(PLAN_ENV, None)
if _plan is not None:  # this process is the fork server, importing this module as its preload
    _preload(_plan)
