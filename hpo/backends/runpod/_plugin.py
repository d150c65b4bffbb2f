"""The ``runpod`` backend as the rest of runpod-hpo uses it: built from a study, its pods shown, its in-pod hook."""

from __future__ import annotations

from pathlib import Path

from hpo.backends._plugin import BackendPlugin
from hpo.backends.runpod._api import RunPodApi
from hpo.backends.runpod._backend import RunPodBackend, spot_deadline_seconds
from hpo.backends.runpod._config import RunPodCompute, RunPodVolume
from hpo.backends.runpod._in_pod import HOOK
from hpo.config import StudyConfig
from hpo.errors import AuthError, ConfigError
from hpo.journal import default_cache_dir
from hpo.records import LaunchRecord
from hpo.volume import Volume
from hpo.workers import WorkerHandle


def build(config: StudyConfig, volume: Volume, *, cache_dir: Path | None = None) -> RunPodBackend:
    """The study's pods, through the API key in the environment; prices cached in ``cache_dir`` (default: ours).

    Raises:
        AuthError: No usable ``RUNPOD_API_KEY``; the message names the study.
    """
    compute, volume_config = config.compute, config.volume
    if not isinstance(compute, RunPodCompute) or not isinstance(volume_config, RunPodVolume):
        # The config refuses this already; keep the types honest.
        raise ConfigError(f"study {config.name!r}: runpod compute needs a RunPod network volume")
    try:
        api = RunPodApi.from_env()
    except AuthError as exc:
        raise AuthError(f"study {config.name!r} runs on RunPod: {exc}") from None
    return RunPodBackend(
        config.name, compute, volume_config, volume, api, cache_dir=cache_dir or default_cache_dir(),
        spot_deadline_s=spot_deadline_seconds(config.budget.max_trial_seconds, config.fidelity.max_step),
    )  # fmt: skip


def describe_worker(launch: LaunchRecord, handle: WorkerHandle | None, *, listed: bool) -> str | None:
    """``pod abc123 NVIDIA RTX A5000 spot bid $0.140/GPU-h running up 12m $0.140/h``, from what is known.

    The live pod (``handle``) wins over the launch record; a pod missing from
    a listing is ``gone``.
    """
    detail = handle.detail if handle is not None else {}
    # A warm worker's attempt handle is named per attempt (``<pod>/<assignment>``): the pod id is in its detail.
    pod_id = detail.get("pod_id") or (handle.id if handle is not None else launch.pod_id)
    if pod_id is None:
        return None
    parts = [f"pod {pod_id}"]
    if launch.worker is not None:
        parts.append(f"(warm worker w{launch.worker})")
    gpu = detail.get("gpu_type") or launch.gpu_type
    if gpu:
        parts.append(str(gpu))
    if launch.spot is not None:
        parts.append("spot" if launch.spot else "on-demand")
    bid = detail.get("bid_per_gpu") or launch.bid_per_gpu
    if isinstance(bid, float):
        parts.append(f"bid ${bid:.3f}/GPU-h")
    if handle is not None:
        parts.append(str(detail.get("pod_status", handle.status)))
        uptime = detail.get("uptime_s")
        if uptime is not None:
            parts.append(f"up {uptime / 60:.0f}m")
    elif listed:
        parts.append("gone")
    price = detail.get("cost_per_hr") or launch.cost_per_hr
    if price is not None:
        parts.append(f"${price:.3f}/h")
    return " ".join(parts)


PLUGIN = BackendPlugin(
    name="runpod",
    compute=RunPodCompute,
    volume=RunPodVolume,
    build=build,
    describe_worker=describe_worker,
    worker_hook=HOOK,
)
