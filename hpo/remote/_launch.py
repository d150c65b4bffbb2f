"""``hpo run --remote``'s side on the laptop: check, upload, create the controller pod, return.

In order, and nothing is created until every check passed:

1. the study runs on RunPod (a ``local`` study's controller runs where its trials do) and keeps its
   journal on the volume (a database URL may hold a password, and the pod must reach it);
2. no controller holds the study (its lease), and no controller pod of the study is alive;
3. the RunPod secret ``compute.controller.secret`` exists (``hpo secret set`` makes it);
4. the objectives snapshot and the controller bundle go to the volume (:mod:`hpo.remote._bundle`);
5. the CPU pod ``hpo-<study>-controller`` is created in the volume's data center, the volume mounted,
   with the bundle's sha256 and the secret's placeholder in its environment (:func:`controller_env`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from hpo.backends import backend_plugin
from hpo.backends.runpod._backend import RunPodBackend, controller_pod_name
from hpo.backends.runpod._config import RunPodCompute, RunPodVolume
from hpo.code import publish_objectives
from hpo.config import StudyConfig, study_document
from hpo.controller._build import check_objective
from hpo.errors import ConfigError, HpoError, LeaseError
from hpo.lease import Lease
from hpo.remote._bundle import BUNDLE_ENV, make_bundle, write_bundle
from hpo.volume import Volume

CONTROLLER_ENV = "HPO_CONTROLLER"
"""The controller pod's variable naming its study: ``python -m hpo.agent`` then runs the controller."""

KEY_ENV = "HPO_RUNPOD_API_KEY"
"""The controller pod's variable that RunPod fills from the secret when the container boots.

Not ``RUNPOD_API_KEY``: RunPod sets that one in every pod (the pod-scoped key),
and its own variables win over a pod's."""

VOLUME_ENV = "HPO_VOLUME"

HOURS_PER_MONTH = 730.0
"""A month of hours as cloud price lists count them (365 * 24 / 12)."""


def secret_placeholder(name: str) -> str:
    """How a pod's environment refers to RunPod secret ``name``; RunPod puts in the value when the pod boots."""
    return "{{ RUNPOD_SECRET_" + name + " }}"


def controller_env(config: StudyConfig, bundle_sha: str) -> dict[str, str]:
    """The controller pod's environment: the study, the mount, the bundle's hash, the key's placeholder; no secret."""
    compute, volume = _runpod_parts(config)
    return {
        CONTROLLER_ENV: config.name,
        VOLUME_ENV: volume.mount_path,
        BUNDLE_ENV: bundle_sha,
        KEY_ENV: secret_placeholder(compute.controller.secret),
    }


@dataclass(frozen=True)
class RemoteLaunch:
    """What ``hpo run --remote`` started."""

    study: str
    pod_id: str
    pod_name: str
    cpu: str
    vcpus: int
    price_per_hour: float | None
    bundle: str
    data_center: str

    @property
    def price_per_month(self) -> float | None:
        return None if self.price_per_hour is None else self.price_per_hour * HOURS_PER_MONTH


def launch_remote(
    config: StudyConfig,
    volume: Volume,
    *,
    backend: RunPodBackend | None = None,
    clock: Callable[[], float] = time.time,
) -> RemoteLaunch:
    """Start study ``config``'s controller on a RunPod CPU pod (see the module docstring); return at once.

    Raises:
        ConfigError: The study cannot run remotely (not RunPod, a database storage, no objective module).
        LeaseError: A controller holds the study, or a controller pod of it is alive (named).
        HpoError: The secret is missing (says how to make it), or RunPod refused the pod.
    """
    compute, volume_config = _runpod_parts(config)
    if config.storage is not None:
        raise ConfigError(
            f"{config.source.name}: study {config.name!r}: key 'storage': a remote controller keeps the study's "
            "journal on the network volume; leave 'storage' out to run it with --remote"
        )
    objectives = config.source.parent / "objectives"
    check_objective(config, objectives)
    backend = backend or runpod_backend(config, volume)
    _refuse_if_running(config, volume, backend, clock)
    _require_secret(config, backend, compute.controller.secret)
    code = publish_objectives(volume, config.name, objectives)
    bundle = write_bundle(volume, make_bundle(config.name, study_document(config.source, config.name), code))
    pod = backend.launch_controller(controller_env(config, bundle))
    return RemoteLaunch(
        study=config.name,
        pod_id=pod.id,
        pod_name=pod.name,
        cpu=compute.controller.cpu,
        vcpus=compute.controller.vcpus,
        price_per_hour=pod.cost_per_hr if pod.cost_per_hr else backend.controller_price(),
        bundle=bundle,
        data_center=volume_config.data_center,
    )


def _runpod_parts(config: StudyConfig) -> tuple[RunPodCompute, RunPodVolume]:
    compute, volume = config.compute, config.volume
    if not isinstance(compute, RunPodCompute) or not isinstance(volume, RunPodVolume):
        raise ConfigError(
            f"{config.source.name}: study {config.name!r}: --remote runs the controller on a RunPod CPU pod, "
            f"for studies whose trials run on RunPod (compute.backend: runpod); this one's is "
            f"{config.compute.backend!r}: run it without --remote"
        )
    return compute, volume


def runpod_backend(config: StudyConfig, volume: Volume) -> RunPodBackend:
    """The RunPod backend of a study on RunPod, as its plug-in builds it (the controller pod's calls need no pool)."""
    _runpod_parts(config)
    backend = backend_plugin("runpod").build(config, volume)
    if not isinstance(backend, RunPodBackend):  # the plug-in builds one; keep the type honest
        raise ConfigError(f"study {config.name!r}: --remote needs the runpod backend")
    return backend


def _refuse_if_running(config: StudyConfig, volume: Volume, backend: RunPodBackend, clock: Callable[[], float]) -> None:
    """:class:`LeaseError` when a controller holds the study or a controller pod of it lives (both named)."""
    holder = Lease(volume, config.name).current()
    if holder is not None and holder.live(clock()):
        pod = getattr(holder, "pod", None)
        where = f"a remote controller on pod {pod}" if pod else f"a controller ({holder.describe()})"
        raise LeaseError(
            f"study {config.name!r} is already run by {where}; `hpo status --study {config.name}` shows it, "
            f"`hpo stop --study {config.name}` stops it"
        )
    pods = backend.controller_pods()
    if pods:
        raise LeaseError(
            f"study {config.name!r}: its controller pod {pods[0].id} ({controller_pod_name(config.name)}) is "
            f"{pods[0].status} already; `hpo logs --study {config.name} --controller` shows what it does, "
            f"`hpo stop --study {config.name}` stops it"
        )


def _require_secret(config: StudyConfig, backend: RunPodBackend, name: str) -> None:
    """The RunPod secret holding the controller's key must exist before a pod refers to it."""
    try:
        known = backend.secret_names()
    except HpoError as exc:
        raise HpoError(
            f"study {config.name!r}: cannot list your RunPod secrets to find {name!r} ({exc}); "
            "the API key in RUNPOD_API_KEY needs read access to secrets"
        ) from None
    if name not in known:
        raise HpoError(
            f"study {config.name!r}: no RunPod secret {name!r}: the controller pod reads the API key it creates "
            f"and terminates pods with from it. Make it with `hpo secret set --study {config.name}` (it stores "
            f"the key you choose as that secret, after asking), or in RunPod's console (Settings > Secrets)"
        )
