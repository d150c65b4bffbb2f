"""A warm worker: ``python -m hpo.agent`` with ``HPO_WORKER=<k>`` runs attempt after attempt (see :mod:`hpo.pool`).

The controller tells worker ``k`` what to do in ``workers/w<k>/assignment.json``
(run an attempt, stop it, exit); the worker says what it did in its own
``workers/w<k>/log.jsonl``, one writer per file as everywhere on the volume:

* it logs a ``boot`` first; a ``start`` without its ``end`` in the log means the
  container died under that attempt (RunPod restarts a pod's container), so it
  logs that attempt's ``end`` with exit code -9 and never runs it again;
* it reads its assignment every ``HPO_WORKER_POLL`` seconds and acts on each
  ``seq`` once: ``run`` logs ``start``, runs the attempt in a process of its own
  and logs ``end`` once that process exited (its final event is then already
  in the attempt's ``events.jsonl``); ``stop`` sends that process SIGTERM (the
  attempt writes ``pruned`` or ``stopped`` as ``control.json`` says) and SIGKILL
  after the grace, and the worker waits for the next; ``exit`` stops what runs
  and ends the worker;
* idle for ``HPO_WORKER_IDLE_LIMIT`` seconds with no live controller holding
  the study's lease, it ends itself (a live controller decides for itself);
* SIGTERM (a spot preemption, or the local backend stopping it) is passed on
  to the running attempt, which ends as preempted (or as the control file
  says); the worker logs its end and exits with 143, leaving the worker to
  whoever stops it.

Each attempt is forked from a warm fork server (:mod:`hpo.agent._forkserver`)
that imported the objective of the first attempt's code snapshot. An attempt
whose spec names another snapshot (or whose spec the worker cannot read) runs
cold, as a new ``python -m hpo.agent`` process: correct first, warm for the
common case.

"Ends the worker" means the backend's :class:`~hpo.backends.WorkerHook`
``end`` (a pod terminates itself, since RunPod restarts a container that exits);
a local worker just exits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import IO

from pydantic import ValidationError

from hpo.agent._forkserver import PLAN_ENV, ChildOrder, ForkServer, describe_probe
from hpo.agent._infra import EXIT_INFRA
from hpo.agent._output import redirect_output
from hpo.agent._runner import EXIT_PREEMPTED
from hpo.backends import worker_hook
from hpo.code import unpack_objectives
from hpo.errors import HpoError, VolumeError, VolumeNotFoundError
from hpo.journal import default_cache_dir
from hpo.layout import StudyLayout
from hpo.lease import Lease
from hpo.pool import (
    ASSIGNMENT_POLL_SECONDS,
    WORKER_ATTEMPT_ENV,
    WORKER_ENV,
    WORKER_IDLE_ENV,
    WORKER_LOG_ENTRY,
    WORKER_POLL_ENV,
    Assignment,
    BootEntry,
    EndEntry,
    ExitEntry,
    StartEntry,
    assignment_key,
    encode_entry,
    worker_log_key,
    worker_output_key,
)
from hpo.spec import TrialSpec
from hpo.volume import Volume, open_volume

log = logging.getLogger("hpo.worker")

#: Seconds idle before a worker with no live controller ends itself (the study's ``workers.idle_limit``).
DEFAULT_IDLE_LIMIT = 120.0
#: Seconds between SIGTERM and SIGKILL when an attempt is stopped (as the local backend's kill grace).
STOP_GRACE = 5.0
#: Seconds between two reads of the lease while idle past the limit under a live controller.
LEASE_RECHECK = 5.0
#: The exit code an attempt's ``end`` gets when the container died under it (its process was SIGKILLed with it).
EXIT_DIED = -9
#: The worker's own variables, which an attempt's process does not get (it is an attempt, not a worker).
WORKER_ONLY_ENV = (WORKER_ENV, WORKER_POLL_ENV, WORKER_IDLE_ENV, PLAN_ENV)


def run_worker(env: Mapping[str, str]) -> int:
    """Run worker ``HPO_WORKER`` until told to exit, idle with no controller, or SIGTERMed; the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s hpo.worker: %(message)s", stream=sys.stderr)
    try:
        worker = Worker.from_env(env)
    except HpoError as exc:  # a worker misconfigured: it will not get better by restarting
        print(f"hpo.worker: {exc}", file=sys.stderr)
        _end_worker(env)
        return exc.exit_code
    try:
        return worker.run()
    except VolumeError as exc:  # the volume failed where the worker cannot go on (its log at boot)
        print(f"hpo.worker: {exc}", file=sys.stderr)
        return EXIT_INFRA


def _end_worker(env: Mapping[str, str]) -> None:
    """End the worker the way its backend does (a pod terminates itself); a local process just exits."""
    hook = worker_hook(env)
    if hook is not None:
        hook.end(env)


@dataclass
class _Running:
    """The attempt the worker runs now, and when it was told to stop."""

    seq: int
    trial: int
    attempt: int
    pid: int
    poll: Callable[[], int | None]
    sentinel: int | None
    release: Callable[[], None]
    term_at: float | None = None  # monotonic time of its SIGTERM (sent once: a second one means "now")


class Worker:
    """One warm worker's loop (see the module's docstring).

    Args:
        study: The study's name.
        index: This worker's index ``k``.
        volume: The study's volume; ``volume_root`` is what the attempts reopen it from.
        env: The worker's environment (for the hook, and the attempts' own).
        poll: Seconds between reads of the assignment.
        idle_limit: Seconds idle before ending itself when no controller is alive.
        grace: Seconds between SIGTERM and SIGKILL of an attempt.
    """

    def __init__(
        self,
        *,
        study: str,
        index: int,
        volume: Volume,
        volume_root: str,
        env: Mapping[str, str],
        poll: float = ASSIGNMENT_POLL_SECONDS,
        idle_limit: float = DEFAULT_IDLE_LIMIT,
        grace: float = STOP_GRACE,
    ) -> None:
        self.study = study
        self.index = index
        self.volume = volume
        self.volume_root = volume_root
        self.env = dict(env)
        self.poll = poll
        self.idle_limit = idle_limit
        self.grace = grace
        self._layout = StudyLayout(study)
        self._log_key = worker_log_key(study, index)
        self._assignment_key = assignment_key(study, index)
        self._hook = worker_hook(env)
        self._unwritten: list[BootEntry | StartEntry | EndEntry | ExitEntry] = []
        self._acted = 0  # the highest assignment seq acted on
        self._running: _Running | None = None
        self._pending: Assignment | None = None  # a run that came while another attempt ran
        self._idle_since = time.monotonic()
        self._lease_checked_at: float | None = None
        self._problem: str | None = None  # the last assignment problem warned about (each is said once)
        self._log_failing = False  # the last append to the worker's log failed (warned about once)
        self._server: ForkServer | None = None
        self._server_failed = False
        self._sigterm = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Worker:
        """The worker its environment names; its output goes to the volume where nobody reads the container's."""
        missing = [name for name in ("HPO_STUDY", "HPO_VOLUME", WORKER_ENV) if not env.get(name)]
        if missing:
            raise HpoError(f"a warm worker lacks the environment variable(s) {', '.join(missing)}")
        try:
            index = int(env[WORKER_ENV])
            poll = float(env.get(WORKER_POLL_ENV) or ASSIGNMENT_POLL_SECONDS)
            idle_limit = float(env.get(WORKER_IDLE_ENV) or DEFAULT_IDLE_LIMIT)
        except ValueError as exc:
            raise HpoError(f"{WORKER_ENV}, {WORKER_POLL_ENV} and {WORKER_IDLE_ENV} must be numbers ({exc})") from exc
        if index < 0 or not poll > 0 or not idle_limit >= 0:
            raise HpoError(f"bad worker settings: index {index}, poll {poll}s, idle limit {idle_limit}s")
        study, root = env["HPO_STUDY"], env["HPO_VOLUME"]
        volume = open_volume(root)
        hook = worker_hook(env)
        if hook is not None and hook.log_to_volume:
            path = volume.local_path(worker_output_key(study, index))
            if path is not None:
                try:
                    redirect_output(path)
                except OSError as exc:
                    log.warning("cannot write the worker's output to %s (%s); it goes to the container's", path, exc)
        return cls(study=study, index=index, volume=volume, volume_root=root, env=env, poll=poll, idle_limit=idle_limit)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> int:
        """Boot, then act on assignments until the worker ends; the exit code."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._boot()
        while True:
            if self._sigterm:
                return self._preempted()
            self._reap()
            self._kill_overdue()
            order = self._read_assignment()
            if order is not None and order.seq > self._acted:
                self._acted = order.seq
                if order.action == "exit":
                    return self._exit("assigned")
                self._act(order)
            if self._running is None and self._pending is not None and self._flush():
                self._start(self._pending)
            if self._idle_over():
                return self._exit("idle")
            self._wait()

    def _boot(self) -> None:
        """Log the boot; close an attempt a dead container left open (never run it again)."""
        started: dict[int, StartEntry] = {}
        for entry in self._read_log():
            if isinstance(entry, StartEntry):
                started[entry.seq] = entry
                self._acted = max(self._acted, entry.seq)
            elif isinstance(entry, EndEntry):
                started.pop(entry.seq, None)
                self._acted = max(self._acted, entry.seq)
        self._append(BootEntry(pid=os.getpid(), host=os.uname().nodename))
        for entry in started.values():
            log.warning(
                "attempt %d of trial %d (assignment %d) was running when this worker's container died; "
                "not running it again", entry.attempt, entry.trial, entry.seq,
            )  # fmt: skip
            self._append(EndEntry(seq=entry.seq, trial=entry.trial, attempt=entry.attempt, exit_code=EXIT_DIED))
        if self._unwritten:
            raise VolumeError(f"{self.volume.url}: cannot write {self._log_key}")

    def _read_log(self) -> list[BootEntry | StartEntry | EndEntry | ExitEntry]:
        try:
            data = self.volume.read_bytes(self._log_key)
        except VolumeNotFoundError:
            return []
        entries = []
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append(WORKER_LOG_ENTRY.validate_json(line))
            except ValueError:
                log.warning("%s line %d: not a worker log entry; skipped", self._log_key, number)
        return entries

    def _act(self, order: Assignment) -> None:
        """A new ``run`` or ``stop`` (``exit`` is the loop's)."""
        if order.action == "run":
            if order.trial is None or order.attempt is None:
                log.warning("assignment %d says run but names no trial and attempt; skipped", order.seq)
            elif self._running is not None:
                log.warning(
                    "assignment %d (trial %d attempt %d) came while attempt %d of trial %d runs; it runs next",
                    order.seq, order.trial, order.attempt, self._running.attempt, self._running.trial,
                )  # fmt: skip
                self._pending = order
            else:
                self._pending = order
            return
        running, pending = self._running, self._pending
        if running is not None and (running.trial, running.attempt) == (order.trial, order.attempt):
            log.info("stopping attempt %d of trial %d (assignment %d)", running.attempt, running.trial, order.seq)
            self._terminate(running)
        elif pending is not None and (pending.trial, pending.attempt) == (order.trial, order.attempt):
            log.info("attempt %d of trial %d is stopped before it started", order.attempt, order.trial)
            self._pending = None
        else:
            log.info("assignment %d stops attempt %s of trial %s, which this worker does not run", order.seq,
                     order.attempt, order.trial)  # fmt: skip

    def _read_assignment(self) -> Assignment | None:
        """The assignment as the controller last wrote it, or None (a problem is warned about once)."""
        try:
            order = Assignment.model_validate_json(self.volume.read_bytes(self._assignment_key))
        except VolumeNotFoundError:
            problem = "no assignment yet; waiting for one"
        except VolumeError as exc:
            problem = f"cannot read it ({exc}); trying again"
        except ValueError as exc:  # not JSON, or not an assignment (pydantic's ValidationError is a ValueError)
            reason = _first_error(exc)
            problem = f"not a valid assignment ({reason}); ignoring it"
        else:
            if order.worker == self.index:
                self._problem = None
                return order
            problem = f"assignment {order.seq} is for worker {order.worker}; ignoring it"
        if problem != self._problem:  # each problem is said once, however many polls it lasts
            log.warning("%s: %s", self._assignment_key, problem)
            self._problem = problem
        return None

    def _wait(self) -> None:
        """Sleep one poll, waking early when the attempt ends or a SIGTERM comes."""
        handles = [self._wake_r]
        if self._running is not None and self._running.sentinel is not None:
            handles.append(self._running.sentinel)
        try:
            ready, _, _ = select.select(handles, [], [], self.poll)
        except InterruptedError:
            return
        if self._wake_r in ready:
            os.read(self._wake_r, 64)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._sigterm = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:  # the pipe is full: the loop wakes anyway
            pass

    # -- attempts -------------------------------------------------------------------------------

    def _start(self, order: Assignment) -> None:
        """Log ``start``, then run the attempt in its own process (warm where the snapshot allows, else cold)."""
        assert order.trial is not None and order.attempt is not None
        self._pending = None
        self._append(StartEntry(seq=order.seq, trial=order.trial, attempt=order.attempt))
        try:
            self._running = self._launch(order.seq, order.trial, order.attempt)
        except OSError as exc:  # not even a cold process could start: the attempt ends without a final event
            log.error("cannot start attempt %d of trial %d: %s", order.attempt, order.trial, exc)
            self._append(EndEntry(seq=order.seq, trial=order.trial, attempt=order.attempt, exit_code=EXIT_INFRA))
            self._idle_since = time.monotonic()
            return
        log.info("attempt %d of trial %d started (pid %d)", order.attempt, order.trial, self._running.pid)

    def _launch(self, seq: int, trial: int, attempt: int) -> _Running:
        spec = self._read_spec(trial)
        server = self._warm_server(spec) if spec is not None else None
        log_path = self._attempt_log_path(trial, attempt)
        if server is not None and spec is not None and spec.code == server.code:
            order = ChildOrder(
                study=self.study, trial=trial, attempt=attempt, volume_root=self.volume_root,
                objective_module=server.objective_module, log_path=str(log_path) if log_path else None,
                grace=self.grace, env=self._attempt_env(trial, attempt, {}), unset=WORKER_ONLY_ENV,
            )  # fmt: skip
            try:
                child = server.launch(order)
            except (OSError, EOFError, ValueError) as exc:
                log.warning("the fork server failed to start attempt %d of trial %d (%s); running it cold", attempt,
                            trial, exc)  # fmt: skip
            else:
                return _warm(seq, trial, attempt, child)
        elif server is not None and spec is not None:
            log.info("trial %d runs code %s, not the fork server's %s: running it cold", trial,
                     (spec.code or "(installed)")[:12], (server.code or "(installed)")[:12])  # fmt: skip
        return self._cold(seq, trial, attempt, log_path)

    def _cold(self, seq: int, trial: int, attempt: int, log_path: Path | None) -> _Running:
        """The attempt as a new ``python -m hpo.agent`` process (its own process group, not its own session)."""
        env = self._attempt_env(trial, attempt, os.environ)
        output: IO[bytes] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            output = open(log_path, "ab")  # closed below, once the child has it
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hpo.agent"], env=env, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT if output is not None else None, process_group=0,
            )  # fmt: skip
        finally:
            if output is not None:
                output.close()
        return _Running(seq, trial, attempt, proc.pid, proc.poll, None, lambda: None)

    def _attempt_env(self, trial: int, attempt: int, base: Mapping[str, str]) -> dict[str, str]:
        """An attempt's variables on top of ``base``, without the worker's own."""
        env = {name: value for name, value in base.items() if name not in WORKER_ONLY_ENV}
        env.update(HPO_STUDY=self.study, HPO_VOLUME=self.volume_root, HPO_TRIAL=str(trial), HPO_ATTEMPT=str(attempt))
        env[WORKER_ATTEMPT_ENV] = "1"
        return env

    def _read_spec(self, trial: int) -> TrialSpec | None:
        """The trial's spec, or None (then the attempt runs cold and reports the problem itself)."""
        try:
            return TrialSpec.model_validate(json.loads(self.volume.read_bytes(self._layout.spec(trial))))
        except (VolumeError, ValueError) as exc:
            log.warning("cannot read trial %d's spec (%s); its attempt runs cold", trial, exc)
            return None

    def _warm_server(self, spec: TrialSpec) -> ForkServer | None:
        """The fork server, started warm with ``spec``'s snapshot on the first attempt; None if it cannot be.

        A snapshot that cannot be unpacked now (the volume failed) leaves this
        attempt cold and the next one tries again; a fork server that cannot be
        started leaves every attempt cold (the standard library's fork server
        and its preload are set once per process).
        """
        if self._server is not None or self._server_failed:
            return self._server
        module = "objectives." + spec.objective.partition(":")[0]
        if spec.code:
            try:
                root = unpack_objectives(self.volume, self.study, spec.code, default_cache_dir())
            except Exception as exc:  # noqa: BLE001  the attempt unpacks it again itself, and says what failed
                log.warning("cannot unpack code snapshot %s (%s); this attempt runs cold", spec.code[:12], exc)
                return None
            # Before the server starts: it takes this sys.path, so the snapshot's objective is importable there.
            sys.path.insert(0, str(root))
        volume_module = type(self.volume).__module__
        extra = (volume_module,) if volume_module != "hpo.volume._directory" else ()  # boto3, for an S3 volume
        try:
            server = ForkServer(spec.code, module, extra)
            result = server.start()
        except Exception as exc:  # noqa: BLE001  a fork server is an optimisation: without one, attempts run cold
            log.warning("no fork server (%s); attempts run cold", exc)
            self._server_failed = True
            return None
        log.info("%s", describe_probe(result))
        for name, why in result.failures.items():
            log.warning("the fork server could not import %s (%s); each attempt imports it itself", name, why)
        if result.cuda_initialised:
            log.error("%s initialises CUDA when imported: attempts forked from the fork server will fail", module)
        self._server = server
        return server

    def _attempt_log_path(self, trial: int, attempt: int) -> Path | None:
        """Where an attempt's output goes: where a single-attempt agent's would (None: the worker's own output)."""
        path = self.volume.local_path(self._layout.log(trial, attempt))
        if path is not None or self._hook is not None:
            return path
        # A local worker on a volume that is no folder: the local backend's log folder on this machine.
        volume_key = hashlib.sha256(self.volume.url.encode()).hexdigest()[:16]
        return default_cache_dir() / "logs" / volume_key / self.study / f"{trial}.{attempt}.log.txt"

    def _reap(self) -> None:
        """Log the running attempt's end once its process exited."""
        running = self._running
        if running is None:
            return
        code = running.poll()
        if code is None:
            return
        self._running = None
        running.release()
        log.info("attempt %d of trial %d ended (exit code %d)", running.attempt, running.trial, code)
        self._append(EndEntry(seq=running.seq, trial=running.trial, attempt=running.attempt, exit_code=_clamp(code)))
        self._idle_since = time.monotonic()

    def _terminate(self, running: _Running) -> None:
        """SIGTERM the attempt's process group once; SIGKILL follows after the grace (:meth:`_kill_overdue`)."""
        if running.term_at is None:
            running.term_at = time.monotonic()
            _signal(running.pid, signal.SIGTERM)

    def _kill_overdue(self) -> None:
        running = self._running
        if running is not None and running.term_at is not None and time.monotonic() - running.term_at >= self.grace:
            log.warning("attempt %d of trial %d outlived its grace after SIGTERM: SIGKILL", running.attempt,
                        running.trial)  # fmt: skip
            _signal(running.pid, signal.SIGKILL)
            running.term_at = float("inf")  # killed: just wait for its exit to be reported

    def _finish_running(self) -> None:
        """Stop the running attempt and wait until its end is logged (SIGKILL after the grace)."""
        running = self._running
        if running is None:
            return
        self._terminate(running)
        while self._running is not None:
            self._kill_overdue()
            self._reap()
            if self._running is not None:
                self._wait()

    # -- ending ---------------------------------------------------------------------------------

    def _exit(self, reason: str) -> int:
        """Stop what runs, log the exit, end the worker; 0."""
        self._pending = None
        self._finish_running()
        log.info("exiting (%s)", reason)
        self._stop_server()
        self._append(ExitEntry(reason=reason))
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # being ended: a SIGTERM now just ends us
        _end_worker(self.env)
        return 0

    def _preempted(self) -> int:
        """SIGTERM: pass it on to the attempt, log its end (or the exit, when idle), exit 143 without the hook."""
        running = self._running
        if running is not None:
            log.info("SIGTERM: stopping attempt %d of trial %d", running.attempt, running.trial)
            self._finish_running()
        self._stop_server()
        if running is None:
            log.info("SIGTERM while idle: exiting")
        # Always, after the attempt's end: the controller must not hand this worker another attempt.
        self._append(ExitEntry(reason="sigterm"))
        return EXIT_PREEMPTED

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _idle_over(self) -> bool:
        """Idle past the limit with no live controller holding the study's lease (read at most every few seconds)."""
        now = time.monotonic()
        if self._running is not None or self._pending is not None or now - self._idle_since < self.idle_limit:
            return False
        recheck = min(LEASE_RECHECK, max(self.idle_limit, self.poll))
        if self._lease_checked_at is not None and now - self._lease_checked_at < recheck:
            return False
        self._lease_checked_at = now
        holder = Lease(self.volume, self.study).current()
        if holder is not None and holder.expires_at > time.time():
            return False  # a live controller ends idle workers itself
        return True

    # -- the worker's log -----------------------------------------------------------------------

    def _append(self, entry: BootEntry | StartEntry | EndEntry | ExitEntry) -> None:
        """Append ``entry`` to the worker's log, after any entry a failing volume held back (order is kept)."""
        self._unwritten.append(entry)
        self._flush()

    def _flush(self) -> bool:
        """Write the held-back entries in order; whether all are written (a failure is warned about once)."""
        while self._unwritten:
            try:
                self.volume.append_bytes(self._log_key, encode_entry(self._unwritten[0]))
            except (VolumeError, OSError) as exc:
                if not self._log_failing:
                    log.warning("%s: cannot append (%s); trying again", self._log_key, exc)
                self._log_failing = True
                return False
            self._unwritten.pop(0)
        self._log_failing = False
        return True


def _warm(seq: int, trial: int, attempt: int, child: BaseProcess) -> _Running:
    """A forked attempt, as the loop watches it (its exit code comes from the fork server)."""
    pid = child.pid
    assert pid is not None

    def release() -> None:
        child.join(0)
        child.close()

    return _Running(seq, trial, attempt, pid, lambda: child.exitcode, child.sentinel, release)


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal the attempt's process group (it and what it started); the process alone if it has none yet."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    except PermissionError:
        traceback.print_exc()


def _first_error(exc: ValueError) -> str:
    """The first line of a validation error (pydantic's run over several)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", ""))
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _clamp(code: int) -> int:
    """An exit code as the log takes it (-255..255)."""
    return max(-255, min(255, code))
