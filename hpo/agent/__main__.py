"""``python -m hpo.agent``: run the attempt named by HPO_STUDY, HPO_TRIAL, HPO_ATTEMPT, HPO_VOLUME."""

from __future__ import annotations

import logging
import os
import signal
import sys

from hpo.agent._pod import end_pod, in_pod, redirect_output
from hpo.agent._runner import EXIT_PREEMPTED, AttemptAddress, run_attempt
from hpo.errors import HpoError
from hpo.layout import StudyLayout
from hpo.volume import open_volume


def main() -> int:
    env = dict(os.environ)
    logging.basicConfig(level=logging.INFO, format="hpo.agent: %(message)s", stream=sys.stderr)
    try:
        address = AttemptAddress.from_env(env)
        volume = open_volume(address.volume_root)
        if in_pod(env):
            log_path = volume.local_path(StudyLayout(address.study).log(address.trial, address.attempt))
            if log_path is not None:
                redirect_output(log_path)
        code = run_attempt(address, volume)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the attempt is over: a SIGTERM now just ends us
    except HpoError as exc:
        print(f"hpo.agent: {exc}", file=sys.stderr)
        code = exc.exit_code
    if in_pod(env) and code != EXIT_PREEMPTED:
        # Exiting would restart the container (RunPod's rule): end the pod instead.
        end_pod(env)
    return code


if __name__ == "__main__":
    sys.exit(main())
