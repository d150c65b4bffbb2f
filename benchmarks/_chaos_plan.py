"""The seeded fault plan of a chaos run: what goes wrong, to which worker, and when.

"When" is counted in reports written to the volume (the study's own progress:
every ``report`` line any attempt appended), never in wall time, so one seed
gives the same plan on a fast machine and on a slow one. Two kinds of fault:

* a *fate* per attempt, drawn from ``(seed, trial, attempt)`` alone: whether
  the attempt is preempted, and after how many of its own reports. Whatever
  order attempts start in, each gets the same fate for a seed;
* *moments* over the whole study, each firing once the study has written
  ``at_reports`` reports: a controller SIGKILL (restarted ``restart_after``
  reports later, as a user would), a worker SIGKILLed, a pod deleted through
  the API, a RunPod API fault (create-then-500, a burst of 429s, a burst of
  5xx on ``GET /v2/pods`` alone, a 5xx outage of the whole API).
  Which live worker a moment hits depends on what runs at that instant; the
  choice among them (``pick``) is seeded.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

CONTROLLER_KILL = "controller_kill"
WORKER_KILL = "worker_kill"
DELETE = "delete"
CREATE_THEN_500 = "create_then_500"
RATE_LIMIT = "rate_limit"
LIST_ERROR = "list_error"
SERVER_ERROR = "server_error"
API_FAULTS: tuple[str, ...] = (LIST_ERROR, RATE_LIMIT, CREATE_THEN_500, SERVER_ERROR)
"""The fake's fault kinds the plan arms (``hpo.fake_runpod.FAULT_KINDS``); the first three come first."""
BURSTS: frozenset[str] = frozenset({LIST_ERROR, RATE_LIMIT, SERVER_ERROR})

RATE_LIMIT_SECONDS = (20.0, 60.0)
"""Fake seconds a 429 burst lasts (1 to 3 real seconds at the fake's 20x)."""
OUTAGE_SECONDS = (60.0, 300.0)
"""Fake seconds a 5xx burst lasts: one to five fake minutes (3 to 15 real seconds at 20x); RunPod's last minutes."""

PRUNED_SHARE = 0.55
"""Share of trials x max_step the study is expected to report, pruning included: moments are placed within it."""


@dataclass(frozen=True)
class Fate:
    """What happens to one attempt: preempted once it has written ``preempt_after`` reports, or nothing."""

    preempt_after: int | None


@dataclass(frozen=True)
class Moment:
    """One fault over the whole study, due once ``at_reports`` reports are on the volume.

    Attributes:
        at_reports: Reports written (all attempts together) when it fires.
        kind: One of the module's kinds (controller_kill, worker_kill, delete, or an API fault).
        seconds: How long an API fault burst lasts, in fake seconds (0: a single fault).
        pick: Which live worker it hits: this fraction into the workers sorted by (trial, attempt).
        restart_after: Controller kills only: reports to wait for before starting ``hpo run``
            again (workers go on meanwhile with no controller alive); 0 restarts at once.
    """

    at_reports: int
    kind: str
    seconds: float = 0.0
    pick: float = 0.0
    restart_after: int = 0


@dataclass(frozen=True)
class Plan:
    """A chaos run's faults, all derived from ``seed``."""

    seed: int
    preempt_rate: float
    max_step: int
    moments: tuple[Moment, ...] = field(default_factory=tuple)

    def fate(self, trial: int, attempt: int) -> Fate:
        """The attempt's fate: a function of (seed, trial, attempt) only, whatever the timing.

        First attempts are preempted on a seeded stride (exactly ``preempt_rate``
        of every run of trials, so a short run is not spared by luck); later
        attempts are drawn independently at the same rate.
        """
        rng = random.Random(f"chaos:{self.seed}:fate:{trial}:{attempt}")
        if attempt == 0:
            offset = random.Random(f"chaos:{self.seed}:stride").random()
            hit = math.floor((trial + 1) * self.preempt_rate + offset) > math.floor(trial * self.preempt_rate + offset)
        else:
            hit = rng.random() < self.preempt_rate
        if not hit:
            return Fate(None)
        # Early in the attempt, so a resumed attempt (fewer steps left) or a soon-pruned one is hit too.
        return Fate(rng.randint(1, max(1, self.max_step // 3)))

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON (for ``--json`` and for reading a run back)."""
        return {
            "seed": self.seed,
            "preempt_rate": self.preempt_rate,
            "max_step": self.max_step,
            "moments": [asdict(m) for m in self.moments],
        }


def make_plan(
    *,
    seed: int,
    trials: int,
    max_step: int,
    preempt_rate: float,
    controller_kills: int,
    worker_kills: int,
    deletes: int,
    api_faults: int,
) -> Plan:
    """Draw the moments of a run from ``seed``; the same arguments give the same plan.

    Moments land between 5 % and 75 % of the reports the study is expected to
    write (pruned trials report less), so they hit a study in full swing, and
    controller kills are spread one per slice of that range so they never
    bunch up. API faults cycle through 5xx on ``GET /v2/pods``, 429s and
    create-then-500 (in a seeded order), then a 5xx outage of the whole API.
    """
    rng = random.Random(f"chaos:{seed}:moments")
    expected = max(10, int(trials * max_step * PRUNED_SHARE))
    low, high = max(2, int(0.05 * expected)), max(3, int(0.75 * expected))
    moments: list[Moment] = []
    for i in range(controller_kills):
        # One kill per slice of [10 %, 70 %]: spread over the run.
        start = 0.10 + 0.60 * i / controller_kills
        end = 0.10 + 0.60 * (i + 1) / controller_kills
        at = max(low, int(expected * rng.uniform(start, end)))
        moments.append(Moment(at, CONTROLLER_KILL, restart_after=rng.randint(0, 3)))
    for _ in range(worker_kills):
        moments.append(Moment(rng.randint(low, high), WORKER_KILL, pick=rng.random()))
    for _ in range(deletes):
        moments.append(Moment(rng.randint(low, high), DELETE, pick=rng.random()))
    kinds = list(API_FAULTS[:3])
    rng.shuffle(kinds)
    kinds.append(SERVER_ERROR)
    for i in range(api_faults):
        kind = kinds[i % len(kinds)]
        seconds = 0.0
        if kind == RATE_LIMIT:
            seconds = round(rng.uniform(*RATE_LIMIT_SECONDS))
        elif kind in BURSTS:
            seconds = round(rng.uniform(*OUTAGE_SECONDS))
        moments.append(Moment(rng.randint(low, high), kind, seconds=seconds))
    moments.sort(key=lambda m: (m.at_reports, m.kind))
    return Plan(seed=seed, preempt_rate=preempt_rate, max_step=max_step, moments=tuple(moments))
