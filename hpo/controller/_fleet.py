"""The study's workers as the provider lists them: outages ridden out, duplicates and strays ended.

Everything here is about the provider's side of the world, not about trials:
one listing per poll (or none while the provider's API cannot be reached),
surplus workers of one attempt, workers no running trial owns, and the wait
at the end of a run until no worker outlives its trial.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping

from hpo.backends import AttemptRef, Backend, WorkerHandle
from hpo.controller._progress import ProgressSink
from hpo.controller._runs import duration
from hpo.errors import ApiUnavailableError

log = logging.getLogger(__name__)

OUTAGE_NOTICE_INTERVAL = 60.0  # seconds between "API unreachable" lines while an outage lasts
STRAY_GRACE = 30.0  # seconds a worker no running trial owns may live on (a finished one exits by itself)

Listing = dict[AttemptRef, WorkerHandle]


class Fleet:
    """One study's live workers at one backend.

    Args:
        study: The study's name (for messages).
        backend: Where its workers run.
        progress: Where news goes.
        clock: Monotonic clock; ``sleep`` waits. Both injectable.
        poll_interval: Seconds between looks while waiting.
    """

    def __init__(
        self,
        study: str,
        backend: Backend,
        progress: ProgressSink,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        poll_interval: float,
    ) -> None:
        self.study = study
        self.backend = backend
        self.progress = progress
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self._outage_since: float | None = None  # monotonic time the provider's API stopped answering
        self._outage_noticed = -math.inf  # when the last "unreachable" line was shown
        self._unowned_since: dict[str, float] = {}  # worker id -> when it was first seen with no running trial

    @property
    def provider(self) -> str:
        """The provider's name as a user spells it."""
        return {"runpod": "RunPod"}.get(self.backend.name, self.backend.name)

    def look(self) -> Listing | None:
        """One listing of the study's live workers, or None while the provider's API cannot be reached.

        An outage (5xx, 429, timeouts, refused connections, for as long as it
        lasts) never ends the run: the client has retried within its deadline,
        and the next poll tries again. Meanwhile reports still reach the
        study, and workers end themselves when their attempt is over. What
        retrying cannot fix (a bad key, an empty balance) still raises.
        """
        try:
            live = self.backend.list_live()
        except ApiUnavailableError as exc:
            now = self.clock()
            if self._outage_since is None:
                self._outage_since = now
            if now - self._outage_noticed >= OUTAGE_NOTICE_INTERVAL:
                self._outage_noticed = now
                self.progress.message(
                    f"{self.study}: {self.provider} API unreachable for {duration(now - self._outage_since)}, "
                    f"retrying ({exc})"
                )
            return None
        if self._outage_since is not None:
            self.progress.message(
                f"{self.study}: {self.provider} API reachable again after {duration(self.clock() - self._outage_since)}"
            )
            self._outage_since, self._outage_noticed = None, -math.inf
        return live

    def wait_for_listing(self, renew: Callable[[], None]) -> Listing:
        """The first listing of a run: recovery needs it, so wait out an outage (calling ``renew`` between looks)."""
        live = self.look()
        while live is None:
            self.sleep(self.poll_interval)
            renew()
            live = self.look()
        return live

    def settle_extras(self) -> None:
        """Terminate every surplus worker of an attempt (two pods with one name): it bills, so it is metered."""
        for handle in self.backend.extras():
            log.warning("terminating %s: a second worker of %s (the oldest one goes on)", handle.id, handle.ref)
            self.progress.message(f"terminating duplicate worker {handle.id} of {handle.ref}")
            self.backend.terminate(handle)

    def end_strays(self, live: Mapping[AttemptRef, WorkerHandle], owned: Collection[AttemptRef]) -> None:
        """Terminate at once every listed worker no running trial owns (a new controller found them)."""
        for ref, handle in live.items():
            if ref not in owned:
                log.info("terminating stray worker %s (%s): no running trial owns it", handle.id, ref)
                self.progress.message(f"terminating stray worker of {ref}")
                self.backend.terminate(handle)

    def sweep_strays(self, live: Mapping[AttemptRef, WorkerHandle], owned: Collection[AttemptRef]) -> None:
        """Terminate workers no running trial owns once they outlived :data:`STRAY_GRACE`.

        A finished or pruned trial's worker ends by itself (or was terminated,
        maybe during an outage, when that call failed); one that lives on past
        the grace bills for nothing.
        """
        now = self.clock()
        seen = {}
        for ref, handle in live.items():
            if ref in owned:
                continue
            since = seen[handle.id] = self._unowned_since.get(handle.id, now)
            if now - since >= STRAY_GRACE:
                log.info("terminating stray worker %s (%s): no running trial owns it", handle.id, ref)
                self.backend.terminate(handle)
        self._unowned_since = seen

    def await_unowned(self, owned: Collection[AttemptRef], timeout: float = 30.0, exit_grace: float = 5.0) -> None:
        """Wait (bounded) until no worker lives that no running trial owns: none outlives its trial.

        Finished workers exit by themselves and pruned ones were already told to;
        any still alive after ``exit_grace`` is terminated (the backend escalates).
        """
        started = self.clock()
        while True:
            try:
                listing = self.backend.list_live()
            except ApiUnavailableError as exc:
                log.warning("study %s: cannot list workers at the end of the run (%s); they end themselves", self.study, exc)
                return
            unowned = [h for ref, h in listing.items() if ref not in owned]
            waited = self.clock() - started
            if not unowned:
                return
            if waited >= timeout:
                for handle in unowned:
                    log.warning("worker %s of %s still alive after %.0fs; `hpo cleanup` will stop it", handle.id, handle.ref, waited)
                return
            if waited >= exit_grace:
                for handle in unowned:
                    self.backend.terminate(handle)  # idempotent
            self.sleep(min(0.1, self.poll_interval))
