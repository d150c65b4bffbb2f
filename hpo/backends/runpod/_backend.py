"""The ``runpod`` backend: each attempt is a (spot) pod named ``hpo-<study>-<trial>-<attempt>``.

Launching walks the study's GPU types in order of preference (v2 places one
type per call and never falls back): a sold-out type is skipped, a denied pool
is skipped for good, a spot create RunPod refuses for a reason we do not
recognise is skipped (logged with RunPod's text), and when every candidate
failed so the launch raises :class:`CapacityError` (with the texts) so the
controller queues the trial and tries later. Only a refusal that names what
every candidate shares (the image, the volume, the registry credential; a v2
422) stops the study. ``spot: true`` rents spot pods only; ``spot: prefer``
falls back to on-demand when no type has spot; ``spot: false`` is on-demand.

Placement follows the network volume: a pod can mount it only in its data
center, so every create names that data center (v2 ``dataCenterIds``, spot
``dataCenterId``), and spot is priced there (``lowestPrice`` per data
center). The bid per GPU-hour follows ``compute.bid``: ``market`` (default)
bids the going spot rate there (the listed spot price, never below that data
center's minimum bid), ``floor`` the minimum bid, a number caps the market
rate (the candidate is skipped when the floor is above the cap). The bid is
in the launch record and the handle's detail (``bid_per_gpu``).

Spot creates carry RunPod's own deadline (``terminateAfter``, from
:func:`spot_deadline_seconds`), so a pod ends even when no controller is
alive to end it. GraphQL is being retired and spot exists only there: once it
answers that it is gone, ``spot: prefer`` goes on on-demand (one warning) and
``spot: true`` stops with a line saying why.

A private image needs ``compute.registry_auth``: a credential's id, or its
name, resolved once per backend through ``GET /v2/registries``; it is sent on
both create paths (v2 ``registry``, GraphQL ``containerRegistryAuthId``).

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

Every handle carries what its pod costs (:class:`~hpo.workers.Billing`): the pod's own
``cost`` and creation time, so the controller meters it from the moment RunPod
bills it. Prices from RunPod's catalog (cached, or the shipped table when the
API cannot be reached) serve only where a pod does not state its cost, and to
say what the next launch may cost (:meth:`launch_rate`) before it exists.

One-off jobs (``hpo job``) run on pods named ``hpojob-<study>-<job id>``
(:func:`job_pod_name`), which :func:`parse_pod_name` never matches: the
controller, ``hpo status`` and ``hpo cleanup`` leave them alone. A job's pod
is on-demand (a preempted job would start over), of the study's image, GPU
types (or those ``hpo job --gpu`` names), data center and volume; its
environment is :func:`hpo.jobs.job_env`, and it terminates itself when the
command exits, as a trial's pod does.

Warm workers (:mod:`hpo.pool`: a worker runs attempt after attempt) are pods
named ``hpo-<study>-w<k>`` (:func:`worker_pod_name`), created exactly as an
attempt's pod is (GPU types in order, spot then on-demand as ``compute.spot``
says, the bid, the volume's data center, the registry credential) with
:func:`pod_env` less the attempt, plus ``HPO_WORKER=<k>`` and the pool's
settings; the launch is recorded in ``hpo/<study>/workers/w<k>/launch.json``
(the pod id, its price and bid: what reconciles its bill after a controller
crash). A spot worker's ``terminateAfter`` is :data:`SPOT_DEADLINE_MAX_S`
(it runs many trials; it ends itself when idle with no controller alive, and
RunPod's deadline is only the last resort). :meth:`RunPodBackend.list_live`
never reads a worker pod and :meth:`RunPodBackend.list_workers` never an
attempt's or a job's; both read one shared listing (:meth:`_listing`), so a
poll that calls both makes one ``GET /v2/pods``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hpo.backends._base import Backend, LaunchRate, warm_worker_env
from hpo.backends.runpod._api import (
    CandidateRefusedError,
    GraphQLGoneError,
    Pod,
    PodRequest,
    RunPodApi,
    by_age,
)
from hpo.backends.runpod._config import RunPodCompute, RunPodVolume
from hpo.backends.runpod._ids import GPU_TYPE_IDS, GPU_VENDOR_PREFIXES
from hpo.config import hint
from hpo.cost import PriceBook, load_price_book, price_cache_file
from hpo.errors import (
    BackendError,
    CapacityError,
    CloudError,
    ConfigError,
    LaunchUnknownError,
    PoolDeniedError,
    RequestRejectedError,
)
from hpo.jobs import JobRequest, JobWorker, is_job_id, job_env
from hpo.layout import StudyLayout
from hpo.volume import Volume
from hpo.workers import AttemptRef, Billing, PoolWorker, WorkerHandle

log = logging.getLogger(__name__)

_LIVE = ("provisioning", "starting", "running")

SPOT_DEADLINE_SLACK_S = 1800.0
"""Added to ``max_trial_seconds``: the image pull, the start, the last checkpoint's upload."""
SPOT_DEADLINE_BASE_S = 6 * 3600.0
SPOT_DEADLINE_PER_STEP_S = 600.0
SPOT_DEADLINE_MAX_S = 7 * 24 * 3600.0


def spot_deadline_seconds(max_trial_seconds: float | None, max_step: int | None) -> float:
    """How long after its creation RunPod itself ends a spot pod (``terminateAfter``), for a study.

    With ``budget.max_trial_seconds``: that plus 30 minutes (the controller
    stops the attempt first; RunPod's deadline is for when no controller is
    alive). Without it, a generous bound from the fidelity: 6 hours plus 10
    minutes per step of ``fidelity.max_step``; either way at most 7 days (the
    7 days when the study declares neither: a trial's length is unknown).
    """
    if max_trial_seconds is not None:
        bound = max_trial_seconds + SPOT_DEADLINE_SLACK_S
    elif max_step is None:
        bound = SPOT_DEADLINE_MAX_S
    else:
        bound = SPOT_DEADLINE_BASE_S + SPOT_DEADLINE_PER_STEP_S * max_step
    return min(SPOT_DEADLINE_MAX_S, bound)


class _BidRefused(Exception):
    """This candidate's floor is above the study's bid cap (``compute.bid``): skip it."""


def pod_name(study: str, ref: AttemptRef) -> str:
    """The name that says what a pod is: ``hpo-<study>-<trial>-<attempt>``."""
    return f"hpo-{study}-{ref.trial}-{ref.attempt}"


def parse_pod_name(study: str, name: str) -> AttemptRef | None:
    """The attempt a pod of ``study`` runs, or None for any other pod."""
    match = re.fullmatch(rf"hpo-{re.escape(study)}-(\d+)-(\d+)", name)
    return AttemptRef(int(match.group(1)), int(match.group(2))) if match else None


JOB_POD_PREFIX = "hpojob-"
"""Job pods' names start so; trial pods' with ``hpo-``, so neither is ever read as the other."""


def job_pod_name(study: str, job_id: str) -> str:
    """The name of one-off job ``job_id``'s pod: ``hpojob-<study>-<job id>``."""
    return f"{JOB_POD_PREFIX}{study}-{job_id}"


def parse_job_pod_name(study: str, name: str) -> str | None:
    """The job a pod of ``study`` runs, or None for any other pod (a trial's, another study's)."""
    prefix = f"{JOB_POD_PREFIX}{study}-"
    job_id = name[len(prefix) :] if name.startswith(prefix) else None
    return job_id if is_job_id(job_id) else None


def controller_pod_name(study: str) -> str:
    """The name of the pod that runs the study's controller (``hpo run --remote``): ``hpo-<study>-controller``.

    Neither :func:`parse_pod_name` nor :func:`parse_worker_pod_name` matches it, so no
    controller or ``hpo cleanup`` takes it for a trial's or a worker's pod.
    """
    return f"hpo-{study}-controller"


def pod_env(study: str, ref: AttemptRef, mount_path: str) -> dict[str, str]:
    """Everything the agent needs to find its spec; never a key or a secret."""
    return {"HPO_STUDY": study, "HPO_TRIAL": str(ref.trial), "HPO_ATTEMPT": str(ref.attempt), "HPO_VOLUME": mount_path}


def worker_pod_name(study: str, index: int) -> str:
    """The name of warm worker ``index``'s pod: ``hpo-<study>-w<index>``."""
    return f"hpo-{study}-w{index}"


def parse_worker_pod_name(study: str, name: str) -> int | None:
    """The warm worker index of a pod of ``study``, or None for any other pod (an attempt's, a job's, another study's)."""
    match = re.fullmatch(rf"hpo-{re.escape(study)}-w(\d{{1,7}})", name)
    return int(match.group(1)) if match else None


def worker_pod_env(study: str, index: int, mount_path: str, env: Mapping[str, str]) -> dict[str, str]:
    """A warm worker pod's environment: :func:`pod_env` without the attempt, ``HPO_WORKER``, then ``env``; no secret."""
    return warm_worker_env(pod_env(study, AttemptRef(0, 0), mount_path), index, env)


def worker_launch_key(study: str, index: int) -> str:
    """Warm worker ``index``'s launch record on the volume: ``hpo/<study>/workers/w<index>/launch.json``."""
    return f"{StudyLayout(study).root}/workers/w{index}/launch.json"


LISTING_REUSE_S = 2.0
"""Seconds one ``GET /v2/pods`` may serve the other of list_live/list_workers (one poll calls both at once)."""


@dataclass
class _Listing:
    """One ``GET /v2/pods``: when it was made (the backend's clock), its pods, and which readers have used it."""

    at: float
    pods: list[Pod]
    used: set[str] = field(default_factory=set)


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
        spot_deadline_s: Seconds after its creation RunPod ends a spot pod (``terminateAfter``; see
            :func:`spot_deadline_seconds`); None sends no deadline (to warm workers' pods either).
        listing_reuse_s: How long (on ``clock``) one ``GET /v2/pods`` made by :meth:`list_live` may serve
            :meth:`list_workers`, or the other way round, once each (see :meth:`_listing`).
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
        spot_deadline_s: float | None = None,
        listing_reuse_s: float = LISTING_REUSE_S,
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
        self._spot_deadline_s = spot_deadline_s
        self._bids: dict[str, float] = {}  # bid per GPU-hour by pod id, of the pods this backend created
        self._registry_id: str | None = None  # compute.registry_auth resolved to an id (once)
        self._graphql_gone: str | None = None  # why spot cannot be had any more (GraphQL retired)
        self._listing_reuse_s = listing_reuse_s
        self._last_listing: _Listing | None = None  # the last GET /v2/pods, shared by list_live and list_workers
        self._worker_extras: list[PoolWorker] = []  # live worker pods duplicating an older one's index
        self._dead_workers: dict[str, PoolWorker] = {}  # exited worker pods seen by the last list_workers
        self._spots: dict[str, bool] = {}  # spot or not by pod id, of the worker pods this backend created

    @property
    def data_centers(self) -> tuple[str, ...]:
        """Where pods go: the network volume's data center (a pod mounts the volume only there)."""
        return (self._volume_config.data_center,)

    def registry_auth_id(self) -> str | None:
        """``compute.registry_auth`` as a credential id: an id as given, a name resolved once via ``GET /v2/registries``.

        Raises :class:`ConfigError` (one line, naming the study and key, listing
        the known names) when it is neither an id nor a name of the account.
        """
        wanted = self._compute.registry_auth
        if wanted is None:
            return None
        if self._registry_id is None:
            known = self._api.registries()
            if wanted in known.values():
                self._registry_id = wanted
            elif wanted in known:
                self._registry_id = known[wanted]
            else:
                names = ", ".join(sorted(known)) or "none"
                raise ConfigError(
                    f"study {self._study!r}: compute.registry_auth {wanted!r} is neither the id nor the name of a "
                    f"container registry credential of this RunPod account (known names: {names}); "
                    "create one in RunPod's console under Settings > Container Registry Auth"
                )
        return self._registry_id

    # -- launching ----------------------------------------------------------------------

    def _spot_modes(self) -> tuple[bool, ...]:
        return {True: (True,), False: (False,), "prefer": (True, False)}[self._compute.spot]

    def _spot_gone(self, exc: GraphQLGoneError | None) -> None:
        """GraphQL (the only way to spot) is gone: warn once under ``spot: prefer``; under ``spot: true`` stop."""
        if exc is not None and self._graphql_gone is None:
            self._graphql_gone = exc.detail or str(exc)
            if self._compute.spot == "prefer":
                log.warning(
                    "study %s: RunPod's GraphQL API, the only way to rent spot pods, is gone (%s); "
                    "launching on-demand pods from now on",
                    self._study, self._graphql_gone,
                )
        if self._compute.spot is True:
            raise BackendError(
                f"study {self._study!r}: compute.spot is true, but spot pods exist only through RunPod's GraphQL "
                f"API, which is gone ({self._graphql_gone}); set compute.spot to prefer or false"
            )

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        env = pod_env(self._study, ref, self._volume_config.mount_path)
        pod, spot, bid = self._place(pod_name(self._study, ref), env, self._spot_deadline_s)
        handle = self._handle(ref, pod, spot=spot, bid=bid)
        self._record_launch(self._layout.launch(ref.trial, ref.attempt), pod, spot, bid)
        self._just_created(pod)
        return handle

    def _place(self, name: str, env: Mapping[str, str], deadline_s: float | None) -> tuple[Pod, bool, float | None]:
        """Create pod ``name`` on the first candidate that takes it; returns it, whether spot, and the bid.

        Candidates are the study's GPU types in order, spot first then
        on-demand as ``compute.spot`` says; see the module's docstring for what
        each refusal does. ``deadline_s``: a spot pod's ``terminateAfter``.
        """
        registry_id = self.registry_auth_id()
        failed: list[str] = []
        tried = False
        for spot in self._spot_modes():
            if spot and self._graphql_gone is not None:
                self._spot_gone(None)  # spot: true stops here; prefer goes on on-demand
                continue
            kind = "spot" if spot else "on-demand"
            for gpu_type in self._compute.gpu_types:
                if gpu_type in self._denied:
                    continue
                tried = True
                try:
                    pod, bid = self._create(name, env, gpu_type, spot, registry_id, deadline_s)
                except LaunchUnknownError:
                    # The pod of this type may exist: another type's create could make a second one.
                    raise
                except GraphQLGoneError as exc:
                    self._spot_gone(exc)
                    break
                except CandidateRefusedError as exc:
                    log.warning(
                        "study %s: RunPod refused %s pod %s (%s), trying the next candidate: %s",
                        self._study, kind, name, gpu_type, exc.detail or exc,
                    )
                    failed.append(f"{gpu_type} ({kind}): {exc.detail or exc}")
                    continue
                except _BidRefused as exc:
                    log.info("study %s: skipping %s %s: %s", self._study, kind, gpu_type, exc)
                    failed.append(f"{gpu_type} ({kind}): {exc}")
                    continue
                except CapacityError:
                    failed.append(f"{gpu_type} ({kind}): no capacity")
                    continue
                except PoolDeniedError as exc:
                    log.warning("study %s: skipping GPU type %s: %s", self._study, gpu_type, exc.detail)
                    self._denied.add(gpu_type)
                    continue
                except RequestRejectedError as exc:
                    # The study asks for something RunPod will never place: say which study and what.
                    raise self._refused(exc, f"{kind} pod {name} ({gpu_type})") from None
                return pod, spot, bid
        if not failed:
            if not tried:
                raise BackendError(f"study {self._study!r}: no GPU type in compute.gpu_types is usable (all denied)")
            raise CapacityError(f"study {self._study!r}: no candidate could be tried")
        raise CapacityError(f"no pod could be created: {'; '.join(failed)}")

    def _create(
        self,
        name: str,
        env: Mapping[str, str],
        gpu_type: str,
        spot: bool,
        registry_id: str | None,
        deadline_s: float | None,
    ) -> tuple[Pod, float | None]:
        """Create one candidate's pod; returns it and the bid per GPU-hour (None on-demand)."""
        data_centers = self.data_centers
        terminate_after = None
        if spot and deadline_s is not None:
            now = self.provider_now() or self._clock()  # RunPod's clock: the deadline is on it
            terminate_after = datetime.fromtimestamp(now, UTC) + timedelta(seconds=deadline_s)
        request = PodRequest(
            name=name,
            image=self._compute.image,
            gpu_type=gpu_type,
            gpu_count=self._compute.gpu_count,
            data_center_ids=data_centers,
            cuda_versions=tuple(self._compute.cuda_versions or ()),
            container_disk_gb=self._compute.container_disk_gb,
            volume_id=self._volume_config.id,
            mount_path=self._volume_config.mount_path,
            env=dict(env),
            ports=tuple(self._compute.ports),
            registry_auth_id=registry_id,
            terminate_after=terminate_after,
        )
        if not spot:
            return self._api.create_pod(request), None
        bid = self._bid(gpu_type, data_centers[0])
        return self._api.create_spot_pod(request, bid), bid

    def _bid(self, gpu_type: str, data_center: str) -> float:
        """The bid per GPU-hour for ``gpu_type`` in ``data_center`` under ``compute.bid``.

        Raises :class:`CapacityError` when RunPod quotes no spot price there,
        :class:`_BidRefused` when the floor is above the study's cap, and
        :class:`CandidateRefusedError` when RunPod does not price the type.
        """
        try:
            price = self._api.spot_price(gpu_type, gpu_count=self._compute.gpu_count, data_center=data_center)
        except RequestRejectedError as exc:
            raise CandidateRefusedError(
                f"cannot price {gpu_type}: {exc.detail or exc}", detail=exc.detail or str(exc)
            ) from None
        market, floor = price.market, price.minimum_bid
        if market is None:
            raise CapacityError(f"RunPod quotes no spot price for {gpu_type} in {data_center}")
        policy = self._compute.bid
        if policy == "market":
            return market
        if policy == "floor":
            return floor if floor is not None else market
        cap = float(policy)
        if floor is not None and floor > cap + 1e-9:
            raise _BidRefused(
                f"minimum bid ${floor:.3f}/GPU-h in {data_center} is above compute.bid ${cap:.3f}/GPU-h"
            )
        return min(cap, market)

    def _refused(self, exc: RequestRejectedError, what: str) -> RequestRejectedError:
        """RunPod's refusal to create ``what``, saying which study asked (the study asks for what RunPod will never place)."""
        return RequestRejectedError(
            f"study {self._study!r}: RunPod refused to create {what}: {exc.detail or exc}",
            method=exc.method, path=exc.path, status=exc.status, detail=exc.detail,
        )

    def _record_launch(self, key: str, pod: Pod, spot: bool, bid: float | None = None) -> None:
        self._volume.write_json(
            key,
            {
                "backend": self.name,
                "pod_id": pod.id,
                "pod_name": pod.name,
                "gpu_type": pod.gpu_type,
                "spot": spot,
                "bid_per_gpu": bid,
                "cost_per_hr": pod.cost_per_hr,
                "launched_at": self._clock(),
            },
        )

    def _handle(self, ref: AttemptRef, pod: Pod, spot: bool | None, bid: float | None = None) -> WorkerHandle:
        status, detail = self._status_detail(pod, spot, bid)
        return WorkerHandle(ref, pod.id, status, detail, self._billing(pod, spot))

    def _status_detail(self, pod: Pod, spot: bool | None, bid: float | None) -> tuple[str, dict[str, Any]]:
        """Our word for the pod's state, and what ``hpo status`` shows of it."""
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
        bid = bid if bid is not None else self._bids.get(pod.id)
        if bid is not None:
            self._bids[pod.id] = bid
            detail["bid_per_gpu"] = bid
        return status, detail

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
        spot_modes = tuple(s for s in self._spot_modes() if not (s and self._graphql_gone))
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

    def _listing(self, reader: str) -> list[Pod]:
        """The study's pods for ``reader`` (``live``, ``workers``): one ``GET /v2/pods`` serves both readers once each.

        RunPod is polled once per cycle: a poll that calls :meth:`list_live`
        and :meth:`list_workers` (in either order) makes one request, the
        second reader taking the listing the first made, provided it is not
        older than ``listing_reuse_s`` on the backend's clock. A reader that
        already had that listing (its next poll) gets a fresh one, so one
        reader alone lists afresh every time, as before. Pods this backend
        created or terminated since are applied to the kept listing, so the
        second reader sees its own launches and terminations.
        """
        now = self._clock()
        last = self._last_listing
        if last is not None and reader not in last.used and 0.0 <= now - last.at <= self._listing_reuse_s:
            last.used.add(reader)
            return list(last.pods)
        pods = self._api.list_pods()
        self._read_provider_clock(pods, now)
        self._last_listing = _Listing(now, list(pods), {reader})
        return pods

    def _just_created(self, pod: Pod) -> None:
        if self._last_listing is not None:
            self._last_listing.pods.append(pod)

    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        pods = self._listing("live")
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
        """Terminate the exited pods of the last listings: attempts' (returned) and warm workers' (not returned).

        Exited (a preemption stops a spot pod) or broken: it will not run its
        attempt again, and a stopped pod still costs its disk.
        """
        reaped = []
        for pod_id, handle in self._dead.items():
            log.info("terminating %s pod %s of %s", handle.detail.get("pod_status"), pod_id, handle.ref)
            if self._terminate_id(pod_id):
                reaped.append(handle)
        self._dead = {}
        for pod_id, worker in self._dead_workers.items():
            log.info("terminating %s pod %s of worker %d", worker.detail.get("pod_status"), pod_id, worker.index)
            self._terminate_id(pod_id)
        self._dead_workers = {}
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
        if self._last_listing is not None:  # gone from RunPod's listing now: so from the one kept
            self._last_listing.pods = [pod for pod in self._last_listing.pods if pod.id != pod_id]
        return True

    # -- warm workers ---------------------------------------------------------------------

    @property
    def supports_workers(self) -> bool:
        return True

    def launch_worker(self, index: int, env: Mapping[str, str]) -> PoolWorker:
        """Create pod ``hpo-<study>-w<index>`` as an attempt's pod is created; returns once RunPod accepted it.

        Raises what :meth:`launch` raises (:class:`CapacityError` when no
        candidate has room, :class:`LaunchUnknownError` when a create may have
        made the pod, ...).
        """
        full_env = worker_pod_env(self._study, index, self._volume_config.mount_path, env)
        deadline = SPOT_DEADLINE_MAX_S if self._spot_deadline_s is not None else None
        pod, spot, bid = self._place(worker_pod_name(self._study, index), full_env, deadline)
        self._spots[pod.id] = spot
        worker = self._pool_worker(index, pod, spot=spot, bid=bid)
        self._record_launch(worker_launch_key(self._study, index), pod, spot, bid)
        self._just_created(pod)
        return worker

    def list_workers(self) -> dict[int, PoolWorker]:
        """The study's live worker pods by index, from the poll's one listing (shared with :meth:`list_live`)."""
        by_index: dict[int, list[Pod]] = {}
        self._dead_workers = {}
        for pod in self._listing("workers"):
            index = parse_worker_pod_name(self._study, pod.name)
            if index is None:
                continue
            if pod.status in _LIVE:
                by_index.setdefault(index, []).append(pod)
            elif pod.id not in self._terminated:
                self._dead_workers[pod.id] = self._pool_worker(index, pod, spot=None)
        live: dict[int, PoolWorker] = {}
        extras: list[PoolWorker] = []
        for index, same in by_index.items():
            oldest, *others = sorted(same, key=by_age)
            live[index] = self._pool_worker(index, oldest, spot=None)
            for pod in others:
                log.warning("study %s: pod %s duplicates worker %d (pod %s)", self._study, pod.id, index, oldest.id)
                extras.append(self._pool_worker(index, pod, spot=None))
        self._worker_extras = extras
        return live

    def worker_extras(self) -> list[PoolWorker]:
        """Live worker pods of the last :meth:`list_workers` whose index an older pod holds."""
        return list(self._worker_extras)

    def terminate_worker(self, worker: PoolWorker) -> None:
        self._terminate_id(worker.id)

    def _pool_worker(self, index: int, pod: Pod, spot: bool | None, bid: float | None = None) -> PoolWorker:
        spot = spot if spot is not None else self._spots.get(pod.id)
        status, detail = self._status_detail(pod, spot, bid)
        return PoolWorker(index, pod.id, status, detail, self._billing(pod, spot))

    # -- the remote controller's pod ------------------------------------------------------

    def launch_controller(self, env: Mapping[str, str]) -> Pod:
        """Create the study's controller pod: on-demand CPU (``compute.controller``), the study's image and volume.

        ``env`` is the pod's whole environment (:mod:`hpo.remote` makes it; it
        holds a RunPod secret's placeholder, never a key).

        Raises:
            CapacityError: RunPod has no CPU pod of that flavor in the volume's data center now.
            RequestRejectedError: RunPod refused the request (one line naming the study and pod).
        """
        spec = self._compute.controller
        name = controller_pod_name(self._study)
        request = PodRequest(
            name=name,
            image=self._compute.image,
            gpu_type="",
            cpu_flavor=spec.cpu,
            vcpu_count=spec.vcpus,
            data_center_ids=self.data_centers,
            container_disk_gb=spec.disk_gb,
            volume_id=self._volume_config.id,
            mount_path=self._volume_config.mount_path,
            env=dict(env),
            registry_auth_id=self.registry_auth_id(),
        )
        try:
            return self._api.create_pod(request)
        except RequestRejectedError as exc:
            raise self._refused(exc, f"the controller pod {name} ({spec.cpu}, {spec.vcpus} vCPUs)") from None

    def controller_pods(self) -> list[Pod]:
        """The study's live controller pods, oldest first (one ``GET /v2/pods``)."""
        name = controller_pod_name(self._study)
        return [pod for pod in sorted(self._api.list_pods(), key=by_age) if pod.name == name and pod.status in _LIVE]

    def controller_pod(self, pod_id: str) -> Pod | None:
        """The pod ``pod_id`` as RunPod shows it now (None once it is gone)."""
        return self._api.get_pod(pod_id)

    def controller_price(self) -> float | None:
        """What the controller pod costs per hour (USD) at RunPod's CPU catalog price; None if unknown."""
        spec = self._compute.controller
        try:
            per_vcpu = self._api.cpu_prices().get(spec.cpu)
        except CloudError as exc:
            log.info("RunPod's CPU catalog cannot be read (%s): the controller pod's price is unknown", exc)
            return None
        return None if per_vcpu is None else per_vcpu * spec.vcpus

    def terminate_pod(self, pod_id: str) -> bool:
        """Terminate pod ``pod_id`` (the controller's); False when RunPod did not take the call yet."""
        return self._terminate_id(pod_id)

    def secret_names(self) -> set[str]:
        """The names of the account's RunPod secrets (never their values: RunPod does not return them)."""
        return set(self._api.secrets())

    # -- one-off jobs ---------------------------------------------------------------------

    def launch_job(self, request: JobRequest) -> JobWorker:
        """An on-demand pod for job ``request.job_id``, trying its GPU types in order (the study's by default).

        A sold-out or denied type is skipped, as for trials; when every one
        failed, :class:`CapacityError` lists why. Never spot: a preempted job
        would have to start over.
        """
        gpu_types = request.gpu_types or tuple(self._compute.gpu_types)
        for gpu_type in gpu_types:
            if gpu_type not in GPU_TYPE_IDS:
                raise ConfigError(
                    f"study {self._study!r}: --gpu: unknown GPU type {gpu_type!r}"
                    f"{hint(gpu_type, sorted(GPU_TYPE_IDS), tails=GPU_VENDOR_PREFIXES, listing=None)}"
                )
        gpu_count = request.gpu_count or self._compute.gpu_count
        name = job_pod_name(self._study, request.job_id)
        registry_id = self.registry_auth_id()
        failed: list[str] = []
        for gpu_type in gpu_types:
            pod_request = PodRequest(
                name=name,
                image=self._compute.image,
                gpu_type=gpu_type,
                gpu_count=gpu_count,
                data_center_ids=self.data_centers,
                cuda_versions=tuple(self._compute.cuda_versions or ()),
                container_disk_gb=self._compute.container_disk_gb,
                volume_id=self._volume_config.id,
                mount_path=self._volume_config.mount_path,
                env=job_env(self._study, request.job_id, self._volume_config.mount_path),
                registry_auth_id=registry_id,
            )
            try:
                pod = self._api.create_pod(pod_request)
            except (CapacityError, PoolDeniedError) as exc:
                failed.append(f"{gpu_type}: {exc.detail or exc}")
                continue
            except RequestRejectedError as exc:
                raise self._refused(exc, f"job pod {name} ({gpu_type})") from None
            return self._job_worker(request.job_id, pod)
        raise CapacityError(f"study {self._study!r}: no pod for job {request.job_id}: {'; '.join(failed)}")

    def list_jobs(self) -> list[JobWorker]:
        """The study's job pods RunPod lists, live or exited, oldest first (one ``GET /v2/pods``)."""
        workers = []
        for pod in sorted(self._api.list_pods(), key=by_age):
            job_id = parse_job_pod_name(self._study, pod.name)
            if job_id is not None and pod.status != "terminated":
                workers.append(self._job_worker(job_id, pod))
        return workers

    def terminate_job(self, worker: JobWorker) -> None:
        self._terminate_id(worker.id)

    def _job_worker(self, job_id: str, pod: Pod) -> JobWorker:
        detail = {"pod_id": pod.id, "gpu_type": pod.gpu_type, "cost_per_hr": pod.cost_per_hr, "pod_status": pod.status}
        return JobWorker(job_id, pod.id, pod.status, pod.status in _LIVE, detail)

    def close(self) -> None:
        self._api.close()
