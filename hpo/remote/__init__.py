"""A study's controller on a RunPod CPU pod: ``hpo run --remote``, so the study goes on while the laptop sleeps.

Where things live:

- ``_launch.py``: the laptop's side (checks, the bundle, the pod ``hpo-<study>-controller``);
- ``_bundle.py``: what the pod runs (the study and its code), pinned by a hash in the pod's environment;
- ``_pod.py``: the pod's side (``python -m hpo.agent`` with ``HPO_CONTROLLER`` set);
- ``_meter.py``: what the controller's pod has cost the study;
- ``_secret.py``: the RunPod secret that holds the key the controller creates pods with (``hpo secret``).

One controller per study, wherever it runs: the study's lease names the pod,
so ``hpo run`` on the laptop is refused while the pod holds the study, and
``hpo stop`` (:mod:`hpo.controller._stop`) asks it to stop.
"""

from __future__ import annotations

from hpo.remote._bundle import BUNDLE_ENV, ControllerBundle, make_bundle, read_bundle, write_bundle
from hpo.remote._launch import (
    CONTROLLER_ENV,
    HOURS_PER_MONTH,
    KEY_ENV,
    RemoteLaunch,
    controller_env,
    launch_remote,
    runpod_backend,
    secret_placeholder,
)

__all__ = [
    "BUNDLE_ENV",
    "CONTROLLER_ENV",
    "HOURS_PER_MONTH",
    "KEY_ENV",
    "ControllerBundle",
    "RemoteLaunch",
    "controller_env",
    "launch_remote",
    "make_bundle",
    "read_bundle",
    "runpod_backend",
    "secret_placeholder",
    "write_bundle",
]
