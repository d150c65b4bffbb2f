"""``python -m hpo.agent``: run the attempt named by HPO_STUDY, HPO_TRIAL, HPO_ATTEMPT, HPO_VOLUME.

With ``HPO_JOB`` set it runs a one-off job instead (:mod:`hpo.agent._job`);
with ``HPO_CONTROLLER`` set, the study's controller (a pod of ``hpo run --remote``:
:mod:`hpo.remote._pod`); with ``HPO_WORKER`` set, a warm worker that runs attempt after attempt
(:mod:`hpo.agent._worker`). An attempt a warm worker runs cold (a process of
its own, ``HPO_WORKER_ATTEMPT`` set) runs only the attempt: its output goes
where the worker sent it, and the worker, not the attempt, ends the pod.

Whatever ends the attempt (a result, the objective's error, an infrastructure
fault, even a bug of ours), an agent inside a worker whose backend says so
ends its worker afterwards (:class:`~hpo.backends.WorkerHook`): a RunPod pod
whose container exits is restarted by RunPod and would bill on. Only a
preemption (SIGTERM) skips that, since the worker is being stopped anyway.
The agent names no backend: the registry (:func:`~hpo.backends.worker_hook`)
tells from the environment which backend's worker this is, if any.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Mapping

from hpo.agent._job import run_job_worker
from hpo.agent._output import redirect_output
from hpo.agent._runner import EXIT_ERROR, EXIT_PREEMPTED, AttemptAddress, Preempted, run_attempt
from hpo.backends import worker_hook
from hpo.errors import HpoError
from hpo.jobs import JOB_ENV
from hpo.layout import StudyLayout
from hpo.pool import WORKER_ATTEMPT_ENV, WORKER_ENV
from hpo.volume import open_volume

log = logging.getLogger("hpo.agent")

CONTROLLER_ENV = "HPO_CONTROLLER"  # hpo.remote.CONTROLLER_ENV, named here so that a trial's agent never imports hpo.remote


def main() -> int:
    """Run the attempt, then (where its backend says so) end the worker; return the exit code."""
    env = dict(os.environ)
    if env.get(JOB_ENV):  # a one-off job's worker (`hpo job`), not a trial's
        return run_job_worker(env)
    if env.get(CONTROLLER_ENV):  # the study's controller, on a pod of `hpo run --remote`
        from hpo.remote._pod import run_controller_pod  # the controller's machinery: only this pod needs it

        return run_controller_pod(env)
    if env.get(WORKER_ENV):  # a warm worker: attempt after attempt, as its assignments say
        from hpo.agent._worker import run_worker  # only a worker needs the fork server's machinery

        return run_worker(env)
    logging.basicConfig(level=logging.INFO, format="hpo.agent: %(message)s", stream=sys.stderr)
    in_worker = bool(env.get(WORKER_ATTEMPT_ENV))  # run by a warm worker, which ends the pod itself
    try:
        code = _attempt(env, redirect=not in_worker)
    except HpoError as exc:
        print(f"hpo.agent: {exc}", file=sys.stderr)
        code = exc.exit_code
    except Preempted:  # SIGTERM after the attempt's own handling
        code = EXIT_PREEMPTED
    except Exception:  # noqa: BLE001 - a bug of ours: say it, and still end the worker below
        traceback.print_exc()
        code = EXIT_ERROR
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the attempt is over: a SIGTERM now just ends us
    if code != EXIT_PREEMPTED and not in_worker:
        end_worker(env)
    return code


def end_worker(env: Mapping[str, str]) -> None:
    """End the worker this agent runs in, the way its backend does (a pod terminates itself); a process just exits."""
    hook = worker_hook(env)
    if hook is not None:
        hook.end(env)


def _attempt(env: Mapping[str, str], *, redirect: bool = True) -> int:
    """Open the volume, send our output to the attempt's log (where the worker's own is lost), run the attempt."""
    address = AttemptAddress.from_env(dict(env))
    volume = open_volume(address.volume_root)
    hook = worker_hook(env)
    if redirect and hook is not None and hook.log_to_volume:
        log_path = volume.local_path(StudyLayout(address.study).log(address.trial, address.attempt))
        if log_path is not None:
            try:
                redirect_output(log_path)
            except OSError as exc:  # the volume may be failing: the attempt finds out and says so
                log.warning("cannot write the attempt's log %s (%s); logging to the container's output", log_path, exc)
    return run_attempt(address, volume)


if __name__ == "__main__":
    sys.exit(main())
