"""What the controller tells the person (or script) watching it.

The controller calls a :class:`ProgressSink` at each change; three sinks
exist: a live status display for a terminal, one plain line per finished
trial for logs and pipes, and silence for ``--quiet``. Both displays fit the
width they are given (80 columns for logs): what does not fit on a line goes
on the next, never cut off with ``…``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from hpo.controller._runs import duration

if TYPE_CHECKING:  # rich only where a terminal shows the live view: a remote controller's pod has none (nor rich)
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live

LOG_WIDTH = 80
"""How wide :class:`LineProgress` keeps its lines: logs and pipes have no width of their own."""


@dataclass
class StudyTally:
    """What the progress display shows; the controller refreshes it once per poll cycle.

    ``running`` counts every trial in progress; of those, ``starting`` have a
    worker the provider says is not running yet (a pod provisioning or pulling
    its image, or a create whose answer was lost and that the next listing
    confirms) and ``queued`` have none: no GPU type had room (or the
    provider's API was unreachable), and the launch is retried with back-off.
    The rest have a running worker.

    Times are on the controller's (injected, monotonic) clock: ``started_at``
    is its first refresh of this run, ``now`` its latest one, and
    ``finished_before`` the trials already finished at that first refresh, so
    the pace counts only what this run finished.
    """

    study: str
    target: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    starting: int = 0
    queued: int = 0
    started_at: float | None = None
    now: float | None = None
    finished_before: int = 0
    spent_usd: float = 0.0
    budget_usd: float | None = None
    gpu_hours: float = 0.0
    budget_gpu_hours: float | None = None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def elapsed(self) -> float | None:
        """Seconds since this run's first refresh (None before it)."""
        if self.started_at is None or self.now is None:
            return None
        return max(0.0, self.now - self.started_at)

    @property
    def trials_per_hour(self) -> float | None:
        """This run's pace: trials it finished per hour (None until it finished one)."""
        elapsed = self.elapsed
        done = self.finished - self.finished_before
        if elapsed is None or elapsed <= 0 or done <= 0:
            return None
        return done * 3600.0 / elapsed

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until ``target`` trials are finished at this run's pace (None: no pace yet, or nothing left)."""
        pace = self.trials_per_hour
        left = self.target - self.finished
        if pace is None or left <= 0:
            return None
        return left * 3600.0 / pace

    def best_text(self) -> str:
        return "best -" if self.best_value is None else f"best {self.best_value:.4g} (trial {self.best_trial})"

    def pace_parts(self) -> list[str]:
        """Elapsed time, trials per hour and the ETA, as far as they are known."""
        parts = []
        if self.elapsed is not None:
            parts.append(f"elapsed {duration(self.elapsed)}")
        pace = self.trials_per_hour
        if pace is not None:
            parts.append(f"{pace:.1f} trials/h" if pace < 10 else f"{pace:.0f} trials/h")
        eta = self.eta_seconds
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        return parts

    def spend_parts(self) -> list[str]:
        """``spent $1.23 of $25``: spend against each budget set (a free study without one shows nothing)."""
        parts = []
        if self.budget_usd is not None:
            parts.append(f"spent ${self.spent_usd:.2f} of ${self.budget_usd:g}")
        elif self.spent_usd > 0:
            parts.append(f"spent ${self.spent_usd:.2f}")
        if self.budget_gpu_hours is not None:
            parts.append(f"{self.gpu_hours:.2f} of {self.budget_gpu_hours:g} GPU-hours")
        return parts

    def in_progress(self) -> str | None:
        """``in progress: 2 running, 1 starting, 1 queued for capacity`` (None when nothing is)."""
        if self.running <= 0:
            return None
        working = max(0, self.running - self.starting - self.queued)
        counts = [(working, "running"), (self.starting, "starting"), (self.queued, "queued for capacity")]
        return "in progress: " + ", ".join(f"{n} {what}" for n, what in counts if n > 0)

    def lines(self, width: int) -> list[str]:
        """The live display: counts and best; what is in progress; pace and spend; each line at most ``width``."""
        counts = f"{self.study}: {self.finished}/{self.target} done"
        if self.finished:
            counts += f" ({self.complete} complete, {self.pruned} pruned, {self.failed} failed)"
        groups = [[counts, self.best_text()], [self.in_progress() or "nothing in progress"],
                  self.pace_parts() + self.spend_parts()]
        return [line for group in groups if group for line in pack(group, width, " · ")]


def pack(parts: Sequence[str], width: int, sep: str, indent: str = "") -> list[str]:
    """Lay ``parts`` out in lines of at most ``width`` characters, ``sep`` between parts on one line.

    A part goes to the next line (after ``indent``) when it does not fit; a
    part wider than a whole line is folded, so no text is ever cut off.
    """
    width = max(width, len(indent) + 8)  # a line holds a word or so, however narrow the terminal
    lines: list[str] = []
    line = ""
    for part in parts:
        if line and len(line) + len(sep) + len(part) <= width:
            line += sep + part
            continue
        if line:
            lines.append(line)
        line = (indent if lines else "") + part
        while len(line) > width:
            lines.append(line[:width])
            line = indent + line[width:]
    if line:
        lines.append(line)
    return lines


class _TallyView:
    """The live display as rich renders it: laid out for the terminal's width at each refresh."""

    def __init__(self, tally: StudyTally) -> None:
        self._tally = tally

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        yield Text("\n".join(self._tally.lines(options.max_width)), no_wrap=True, overflow="fold")


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
        """The run ends (or is interrupted); may be called more than once."""


def _finished_text(trial: int, state: str, value: float | None, step: int | None) -> str:
    at = f" at step {step}" if step is not None else ""
    shown = f", value {value:.4g}" if value is not None else ""
    return f"trial {trial} {state}{at}{shown}"


class LineProgress(ProgressSink):
    """One plain line per event, for logs and pipes (no cursor tricks), at most ``width`` columns.

    A finished trial's line carries the study's count, best, ETA and spend; what
    does not fit goes on an indented second line.
    """

    def __init__(self, stream: IO[str] | None = None, width: int = LOG_WIDTH) -> None:
        self._stream = stream or sys.stderr
        self._width = width

    def trial_finished(self, tally: StudyTally, trial: int, state: str, value: float | None, step: int | None) -> None:
        parts = [_finished_text(trial, state, value, step), f"{tally.finished}/{tally.target} done", tally.best_text()]
        eta = tally.eta_seconds
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        parts += tally.spend_parts()
        for line in pack(parts, self._width, "; ", indent="  "):
            print(line, file=self._stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=self._stream, flush=True)


class LiveProgress(ProgressSink):
    """A live status display on a terminal, with finished trials scrolling above it.

    :meth:`stop` puts the terminal back (the display erased, the cursor
    shown) however the run ends; ``hpo run`` calls it again on its way out in
    case an interrupt cut the controller's own call short.
    """

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self._console = console or Console(stderr=True)
        self._live: Live | None = None
        self._rerouted: list[tuple[logging.StreamHandler[IO[str]], IO[str]]] = []

    @property
    def active(self) -> bool:
        """Whether the display is on screen (the cursor hidden)."""
        return self._live is not None

    def start(self, tally: StudyTally) -> None:
        if self._live is not None:
            return
        stderr = sys.stderr
        from rich.live import Live

        self._live = Live(self._view(tally), console=self._console, refresh_per_second=4, transient=True)
        self._live.start()
        self._reroute_logs(stderr)

    def _reroute_logs(self, stderr: IO[str]) -> None:
        """Log lines (a trial's failure, an outage) go above the display, not through the middle of it.

        The display catches what is written to ``sys.stderr`` while it is up,
        but a log handler holds the stream it was given at start-up: for the
        display's time, such a handler writes through ``sys.stderr`` as it is now.
        """
        if sys.stderr is stderr:
            return  # the display redirects nothing (not a terminal): nothing to go around
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler and handler.stream is stderr:
                self._rerouted.append((handler, stderr))
                handler.setStream(sys.stderr)

    def _restore_logs(self) -> None:
        for handler, stream in self._rerouted:
            handler.setStream(stream)
        self._rerouted = []

    def update(self, tally: StudyTally) -> None:
        if self._live is not None:
            self._live.update(self._view(tally))

    @staticmethod
    def _view(tally: StudyTally) -> _TallyView:
        # A copy: rich renders from its own thread while the controller changes the tally.
        return _TallyView(dataclasses.replace(tally))

    def trial_finished(self, tally: StudyTally, trial: int, state: str, value: float | None, step: int | None) -> None:
        from rich.text import Text

        colour = {"complete": "green", "pruned": "yellow", "failed": "red"}.get(state, "white")
        text = Text(_finished_text(trial, state, value, step))
        text.stylize(colour, len(f"trial {trial} "), len(f"trial {trial} {state}"))
        self._console.print(text)
        self.update(tally)

    def message(self, text: str) -> None:
        from rich.text import Text

        self._console.print(Text(text))  # as written: a message may hold [brackets] rich would read as markup

    def stop(self, tally: StudyTally) -> None:
        live, self._live = self._live, None
        if live is None:
            return
        try:
            self._restore_logs()
            live.stop()
        finally:
            # Whatever cut the stop short (a second Ctrl-C), the cursor comes back: the last word on the terminal.
            self._console.show_cursor(True)

