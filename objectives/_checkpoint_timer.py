"""When a training loop checkpoints: by time, not by step count.

A multi-GB checkpoint written at every evaluation costs a share of the GPU
time that grows with the model and shrinks with the volume's bandwidth
(docker/README.md, "Checkpoint overhead"). Written every ``interval``
seconds instead, its cost is bounded whatever the update time, and a
preemption loses at most about ``interval`` seconds of work. The interval is
the study's ``fidelity.checkpoint_seconds`` (``trial.checkpoint_seconds``).
The clock is injected, so tests say what time it is instead of waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class CheckpointTimer:
    """Says whether a checkpoint is due: ``interval`` seconds after the last one, or after this attempt started.

    Counting from the attempt's start, not from the last checkpoint on the
    volume, is what bounds the work a preemption loses: a resumed attempt has
    checkpointed nothing yet.

    Args:
        interval: Least seconds between checkpoints; None: due whenever asked (one per evaluation).
        clock: Monotonic seconds (``time.monotonic``); tests pass a fake one.
    """

    def __init__(self, interval: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        if interval is not None and not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"CheckpointTimer: `interval` must be a positive number of seconds or None (got {interval!r})")
        self.interval = interval
        self._clock = clock
        self._last = clock()

    def due(self) -> bool:
        """True if a checkpoint written now would be ``interval`` seconds or more after the last one."""
        return self.interval is None or self._clock() - self._last >= self.interval

    def saved(self) -> None:
        """Record that a checkpoint was just written: the next one is due ``interval`` seconds from now."""
        self._last = self._clock()
