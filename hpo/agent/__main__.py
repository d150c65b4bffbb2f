"""``python -m hpo.agent``: run the attempt named by HPO_STUDY, HPO_TRIAL, HPO_ATTEMPT, HPO_VOLUME.

Whatever ends the attempt (a result, the objective's error, an infrastructure
fault, even a bug of ours), an agent in a RunPod pod ends its own pod
afterwards: a container that exits is restarted by RunPod and would bill on.
Only a preemption (SIGTERM) skips that, since the pod is being stopped anyway.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Mapping

from hpo.agent._pod import end_pod, in_pod, redirect_output
from hpo.agent._runner import EXIT_ERROR, EXIT_PREEMPTED, AttemptAddress, Preempted, run_attempt
from hpo.errors import HpoError
from hpo.layout import StudyLayout
from hpo.volume import open_volume

log = logging.getLogger("hpo.agent")


def main() -> int:
    """Run the attempt, then (in a pod) end the pod; return the exit code."""
    env = dict(os.environ)
    logging.basicConfig(level=logging.INFO, format="hpo.agent: %(message)s", stream=sys.stderr)
    try:
        code = _attempt(env)
    except HpoError as exc:
        print(f"hpo.agent: {exc}", file=sys.stderr)
        code = exc.exit_code
    except Preempted:  # SIGTERM after the attempt's own handling
        code = EXIT_PREEMPTED
    except Exception:  # a bug of ours: say it, and still end the pod below
        traceback.print_exc()
        code = EXIT_ERROR
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the attempt is over: a SIGTERM now just ends us
    if in_pod(env) and code != EXIT_PREEMPTED:
        # Exiting would restart the container (RunPod's rule): end the pod instead.
        end_pod(env)
    return code


def _attempt(env: Mapping[str, str]) -> int:
    """Open the volume, send our output to the attempt's log (in a pod), and run the attempt."""
    address = AttemptAddress.from_env(dict(env))
    volume = open_volume(address.volume_root)
    if in_pod(env):
        log_path = volume.local_path(StudyLayout(address.study).log(address.trial, address.attempt))
        if log_path is not None:
            try:
                redirect_output(log_path)
            except OSError as exc:  # the volume may be failing: the attempt finds out and says so
                log.warning("cannot write the attempt's log %s (%s); logging to the container's output", log_path, exc)
    return run_attempt(address, volume)


if __name__ == "__main__":
    sys.exit(main())
