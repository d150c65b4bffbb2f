"""The ``runpod`` backend: each attempt is a (spot) pod named ``hpo-<study>-<trial>-<attempt>``.

Launching walks the study's GPU types in order of preference (v2 places one
type per call and never falls back): a sold-out type is skipped, a denied pool
is skipped for good, and when every type is sold out the launch raises
:class:`CapacityError` so the controller queues the trial and tries later.
``spot: true`` rents spot pods only; ``spot: prefer`` falls back to on-demand
when no type has spot capacity; ``spot: false`` is on-demand only.

Launching never creates one attempt's pod twice: a create that RunPod
answered with a 5xx, and that no lookup by name could settle, raises
:class:`LaunchUnknownError` at once, without trying the next GPU type (the
pod of the first may exist); the controller lets a later listing tell.

Polling is one ``GET /v2/pods`` per cycle for the whole study, matched to
attempts by name, so a pod created just before a controller crash is found
by the next one. Where two live pods carry one attempt's name, the oldest
runs the attempt and the others are :meth:`RunPodBackend.extras`, for the
controller to meter and terminate. A pod that has exited (a spot preemption
stops it) is terminated as soon as it is seen: it can never run again for
us, and no pod outlives its attempt.

RunPod's clock: a running pod's ``startedAt`` plus its ``runtime.uptime``
is RunPod's time at the listing; :meth:`RunPodBackend.provider_now` carries
the latest such reading forward by the wall time since. A rehearsal's fake
RunPod runs its clock faster than the wall's, and bills by its own.

Every handle carries what its pod costs (:class:`Billing`): the pod's own
``cost`` and creation time, so the controller meters it from the moment RunPod
bills it. Prices from RunPod's catalog (cached, or the shipped table when the
API cannot be reached) serve only where a pod does not state its cost, and to
say what the next launch may cost (:meth:`launch_rate`) before it exists.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from hpo.backends._base import AttemptRef, Backend, Billing, LaunchRate, WorkerHandle
from hpo.backends.runpod._api import Pod, PodRequest, RunPodApi, by_age
from hpo.config import RunPodCompute, RunPodVolume
from hpo.cost._prices import PriceBook, load_price_book, price_cache_file
from hpo.errors import (
    BackendError,
    CapacityError,
    CloudError,
    LaunchUnknownError,
    PoolDeniedError,
    RequestRejectedError,
)
from hpo.layout import StudyLayout
from hpo.volume import Volume

log = logging.getLogger(__name__)

_LIVE = ("provisioning", "starting", "running")


def pod_name(study: str, ref: AttemptRef) -> str:
    """The name that says what a pod is: ``hpo-<study>-<trial>-<attempt>``."""
    return f"hpo-{study}-{ref.trial}-{ref.attempt}"


def parse_pod_name(study: str, name: str) -> AttemptRef | None:
    """The attempt a pod of ``study`` runs, or None for any other pod."""
    match = re.fullmatch(rf"hpo-{re.escape(study)}-(\d+)-(\d+)", name)
    return AttemptRef(int(match.group(1)), int(match.group(2))) if match else None


def pod_env(study: str, ref: AttemptRef, mount_path: str) -> dict[str, str]:
    """Everything the agent needs to find its spec; never a key or a secret."""
    return {"HPO_STUDY": study, "HPO_TRIAL": str(ref.trial), "HPO_ATTEMPT": str(ref.attempt), "HPO_VOLUME": mount_path}


class RunPodBackend(Backend):
    """Attempts as RunPod pods.

    Args:
        study: The study's name.
        compute: The study's RunPod compute block.
        volume_config: The study's network volume (mounted at its ``mount_path``).
        volume: The same volume as this machine reaches it (for launch records).
        api: The API client.
        clock: Wall-clock seconds (for uptimes, and to carry RunPod's clock on between listings), injectable.
        cache_dir: Where RunPod's prices are cached (None: not cached).
    """

    name = "runpod"

    def __init__(
        self,
        study: str,
        compute: RunPodCompute,
        volume_config: RunPodVolume,
        volume: Volume,
        api: RunPodApi,
        *,
        clock: Callable[[], float] = time.time,
        cache_dir: Path | None = None,
    ) -> None:
        self._study = study
        self._compute = compute
        self._volume_config = volume_config
        self._volume = volume
        self._api = api
        self._clock = clock
        self._layout = StudyLayout(study)
        self._denied: set[str] = set()
        self._terminated: set[str] = set()
        self._dead: dict[str, WorkerHandle] = {}  # exited pods seen by the last listing
        self._extras: list[WorkerHandle] = []  # live pods duplicating an older pod's attempt, by the last listing
        self._provider_sample: tuple[float, float] | None = None  # (wall time, RunPod's time) at the last reading
        self._provider_last: float | None = None  # the last provider_now() answered: it never goes backwards
        self._cache_dir = cache_dir
        self._prices: PriceBook | None = None
        self._unpriced_warned = False

    # -- launching ----------------------------------------------------------------------

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        name = pod_name(self._study, ref)
        spot_modes = {True: (True,), False: (False,), "prefer": (True, False)}[self._compute.spot]
        sold_out: list[str] = []
        for spot in spot_modes:
            for gpu_type in self._compute.gpu_types:
                if gpu_type in self._denied:
                    continue
                try:
                    pod = self._create(name, ref, gpu_type, spot)
                except LaunchUnknownError:
                    # The pod of this type may exist: another type's create could make a second one.
                    raise
                except CapacityError:
                    sold_out.append(f"{gpu_type} ({'spot' if spot else 'on-demand'})")
                    continue
                except PoolDeniedError as exc:
                    log.warning("study %s: skipping GPU type %s: %s", self._study, gpu_type, exc.detail)
                    self._denied.add(gpu_type)
                    continue
                except RequestRejectedError as exc:
                    # The study asks for something RunPod will never place: say which study and what.
                    kind = "spot" if spot else "on-demand"
                    raise RequestRejectedError(
                        f"study {self._study!r}: RunPod refused to create {kind} pod {name} ({gpu_type}): "
                        f"{exc.detail or exc}",
                        method=exc.method, path=exc.path, status=exc.status, detail=exc.detail,
                    ) from None
                handle = self._handle(ref, pod, spot=spot)
                self._record_launch(ref, pod, spot)
                return handle
        if not sold_out:
            raise BackendError(f"study {self._study!r}: no GPU type in compute.gpu_types is usable (all denied)")
        raise CapacityError(f"no capacity for {', '.join(sold_out)}")

    def _create(self, name: str, ref: AttemptRef, gpu_type: str, spot: bool) -> Pod:
        request = PodRequest(
            name=name,
            image=self._compute.image,
            gpu_type=gpu_type,
            gpu_count=self._compute.gpu_count,
            data_center_ids=tuple(self._compute.data_centers or (self._volume_config.data_center,)),
            cuda_versions=tuple(self._compute.cuda_versions or ()),
            container_disk_gb=self._compute.container_disk_gb,
            volume_id=self._volume_config.id,
            mount_path=self._volume_config.mount_path,
            env=pod_env(self._study, ref, self._volume_config.mount_path),
            ports=tuple(self._compute.ports),
        )
        if not spot:
            return self._api.create_pod(request)
        price = self._api.gpu_price(gpu_type)
        bid = price.minimum_bid or price.spot
        if bid is None:
            raise CapacityError(f"RunPod quotes no spot price for {gpu_type}")
        return self._api.create_spot_pod(request, bid)

    def _record_launch(self, ref: AttemptRef, pod: Pod, spot: bool) -> None:
        self._volume.write_json(
            self._layout.launch(ref.trial, ref.attempt),
            {
                "backend": self.name,
                "pod_id": pod.id,
                "pod_name": pod.name,
                "gpu_type": pod.gpu_type,
                "spot": spot,
                "cost_per_hr": pod.cost_per_hr,
                "launched_at": self._clock(),
            },
        )

    def _handle(self, ref: AttemptRef, pod: Pod, spot: bool | None) -> WorkerHandle:
        uptime = None
        if pod.started_at is not None:
            uptime = max(0.0, self._clock() - pod.started_at.astimezone(UTC).timestamp())
        status = "running" if pod.status == "running" else "starting"
        detail = {
            "pod_id": pod.id,
            "gpu_type": pod.gpu_type,
            "cost_per_hr": pod.cost_per_hr,
            "pod_status": pod.status,
            "uptime_s": uptime,
        }
        if spot is not None:
            detail["spot"] = spot
        return WorkerHandle(ref, pod.id, status, detail, self._billing(pod, spot))

    def _billing(self, pod: Pod, spot: bool | None) -> Billing:
        """What the pod bills: its own ``cost`` where it states one, else the price list's figure."""
        rate = pod.cost_per_hr if pod.cost_per_hr else None
        # An exited pod states $0 and bills no more: only a live one without a price needs the list.
        if rate is None and pod.gpu_type and pod.status in _LIVE:
            as_spot = spot if spot is not None else self._compute.spot is not False
            rate = self.prices().hourly(pod.gpu_type, spot=as_spot, gpu_count=pod.gpu_count)
        started = pod.created_at.astimezone(UTC).timestamp() if pod.created_at is not None else None
        return Billing(usd_per_hr=rate, gpu_count=pod.gpu_count, gpu_type=pod.gpu_type, started_at=started)

    # -- prices and bills ---------------------------------------------------------------

    def prices(self) -> PriceBook:
        """Secure Cloud prices, read once per backend (cached on disk across runs)."""
        if self._prices is None:
            cache = price_cache_file(self._cache_dir, self._api.rest_url) if self._cache_dir is not None else None
            self._prices = load_price_book(self._api, cache_file=cache)
        return self._prices

    def launch_rate(self) -> LaunchRate:
        """The dearest pod a launch may make: the most expensive usable GPU type in the study's spot modes."""
        spot_modes = {True: (True,), False: (False,), "prefer": (True, False)}[self._compute.spot]
        book = self.prices()
        count = self._compute.gpu_count
        rates = [
            book.hourly(gpu_type, spot=spot, gpu_count=count)
            for spot in spot_modes
            for gpu_type in self._compute.gpu_types
            if gpu_type not in self._denied
        ]
        known = [r for r in rates if r is not None]
        if len(known) < len(rates) and not self._unpriced_warned:
            self._unpriced_warned = True
            log.warning(
                "study %s: no price known for some of %s; the budget guard counts only the others",
                self._study, ", ".join(self._compute.gpu_types),
            )
        return LaunchRate(max(known, default=0.0), count)

    def billed_usd(self, worker_ids: list[str], since: float) -> dict[str, float]:
        """USD per pod from ``GET /v2/billing/pods`` (one call); {} when the bill cannot be read now."""
        if not worker_ids:
            return {}
        try:
            billed = self._api.pod_billing(datetime.fromtimestamp(since, UTC))
        except CloudError as exc:
            log.warning("study %s: cannot read RunPod's bill (%s); keeping the estimates", self._study, exc)
            return {}
        wanted = set(worker_ids)
        return {pod_id: usd for pod_id, usd in billed.items() if pod_id in wanted}

    # -- polling and stopping -----------------------------------------------------------

    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        pods = self._api.list_pods()
        self._read_provider_clock(pods, self._clock())
        by_ref: dict[AttemptRef, list[Pod]] = {}
        self._dead = {}
        for pod in pods:
            ref = parse_pod_name(self._study, pod.name)
            if ref is None:
                continue
            if pod.status in _LIVE:
                by_ref.setdefault(ref, []).append(pod)
            elif pod.id not in self._terminated:
                self._dead[pod.id] = self._handle(ref, pod, spot=None)
        live: dict[AttemptRef, WorkerHandle] = {}
        extras: list[WorkerHandle] = []
        for ref, same in by_ref.items():
            oldest, *others = sorted(same, key=by_age)
            live[ref] = self._handle(ref, oldest, spot=None)
            for pod in others:
                log.warning("study %s: pod %s duplicates %s (pod %s runs it)", self._study, pod.id, ref, oldest.id)
                extras.append(self._handle(ref, pod, spot=None))
        self._extras = extras
        return live

    def extras(self) -> list[WorkerHandle]:
        """Live pods of the last listing whose attempt an older pod of the same name runs."""
        return list(self._extras)

    def _read_provider_clock(self, pods: list[Pod], wall: float) -> None:
        """Remember RunPod's time at this listing: the latest ``startedAt`` + uptime over its pods.

        Any pod of the account reads the same clock. A pod whose container
        restarted reads short (its ``startedAt`` predates the container's
        start), never long, so the largest reading is the best.
        """
        readings = [t for t in (pod.provider_time() for pod in pods) if t is not None]
        if readings:
            self._provider_sample = (wall, max(readings))

    def provider_now(self) -> float | None:
        """RunPod's time now: the last listing's reading advanced by the wall time since; None before any.

        Never goes backwards, though a later listing may read less than the
        wall-clock extrapolation of an earlier one.
        """
        if self._provider_sample is None:
            return None
        wall, provider = self._provider_sample
        now = provider + max(0.0, self._clock() - wall)
        if self._provider_last is not None:
            now = max(now, self._provider_last)
        self._provider_last = now
        return now

    def reap_dead(self) -> list[WorkerHandle]:
        # Exited (a preemption stops a spot pod) or broken: it will not run its
        # attempt again, and a stopped pod still costs its disk.
        reaped = []
        for pod_id, handle in self._dead.items():
            log.info("terminating %s pod %s of %s", handle.detail.get("pod_status"), pod_id, handle.ref)
            if self._terminate_id(pod_id):
                reaped.append(handle)
        self._dead = {}
        return reaped

    def terminate(self, handle: WorkerHandle) -> None:
        self._terminate_id(handle.id)

    def _terminate_id(self, pod_id: str) -> bool:
        try:
            self._api.terminate_pod(pod_id)
        except CloudError as exc:
            log.warning("could not terminate pod %s yet: %s", pod_id, exc)
            return False
        self._terminated.add(pod_id)
        return True

    def close(self) -> None:
        self._api.close()
