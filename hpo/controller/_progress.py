"""What the controller tells the person (or script) watching it.

The controller calls a :class:`ProgressSink` at each change; three sinks
exist: a live status line for a terminal, one plain line per finished trial
for logs and pipes, and silence for ``--quiet``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO

from rich.console import Console
from rich.live import Live
from rich.text import Text


@dataclass
class StudyTally:
    """Counts the progress display shows."""

    study: str
    target: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best_value: float | None = None
    best_trial: int | None = None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    def line(self) -> str:
        best = "-" if self.best_value is None else f"{self.best_value:.4g} (trial {self.best_trial})"
        return (
            f"{self.study}: {self.finished}/{self.target} done, {self.complete} complete, "
            f"{self.pruned} pruned, {self.failed} failed, {self.running} running; best {best}"
        )


class ProgressSink:
    """Receives the controller's news; the base class ignores it all (``--quiet``)."""

    def start(self, tally: StudyTally) -> None:
        """The run begins."""

    def update(self, tally: StudyTally) -> None:
        """Counts changed (called at most once per poll cycle)."""

    def trial_finished(self, tally: StudyTally, trial: int, state: str, value: float | None, step: int | None) -> None:
        """A trial completed, was pruned or failed."""

    def message(self, text: str) -> None:
        """Something worth a line of its own (adoption, preemption, ...)."""

    def stop(self, tally: StudyTally) -> None:
        """The run ends."""


class LineProgress(ProgressSink):
    """One plain line per event, for logs and pipes (no cursor tricks)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr

    def trial_finished(self, tally: StudyTally, trial: int, state: str, value: float | None, step: int | None) -> None:
        at = f" at step {step}" if step is not None else ""
        shown = f" value {value:.4g}" if value is not None else ""
        print(f"trial {trial} {state}{at}{shown} | {tally.line()}", file=self._stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=self._stream, flush=True)


class LiveProgress(ProgressSink):
    """A live status line on a terminal, with finished trials scrolling above it."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._live: Live | None = None

    def start(self, tally: StudyTally) -> None:
        self._live = Live(Text(tally.line()), console=self._console, refresh_per_second=4, transient=True)
        self._live.start()

    def update(self, tally: StudyTally) -> None:
        if self._live is not None:
            self._live.update(Text(tally.line()))

    def trial_finished(self, tally: StudyTally, trial: int, state: str, value: float | None, step: int | None) -> None:
        colour = {"complete": "green", "pruned": "yellow", "failed": "red"}.get(state, "white")
        at = f" at step {step}" if step is not None else ""
        shown = f", value {value:.4g}" if value is not None else ""
        self._console.print(f"trial {trial} [{colour}]{state}[/{colour}]{at}{shown}")
        self.update(tally)

    def message(self, text: str) -> None:
        self._console.print(text)

    def stop(self, tally: StudyTally) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
