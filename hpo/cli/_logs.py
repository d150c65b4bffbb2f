"""``hpo logs --study NAME --trial N [--attempt K] [-f]``: an attempt's log from the volume, followed as it grows.

``hpo logs --study NAME --controller [-f]`` prints a remote controller's log
(``controller/log.txt``: what ``hpo run`` would have printed on the laptop);
following it stops when no controller holds the study any more.

Each attempt writes its stdout and stderr to ``trials/<n>/attempts/<a>/log.txt``
on the volume (:class:`hpo.layout.StudyLayout`). The log is read through the
Volume API in ranged reads of at most :data:`CHUNK` bytes from the last
offset, so following a log over S3 costs one small GET per poll, never the
whole file again. Following stops when the attempt has said its last word,
the final event in its ``events.jsonl`` (or a later attempt of the trial
has begun, which only happens once this one is over), or at Ctrl-C.
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from collections.abc import Callable

from hpo.cli._common import add_study_arguments, study_from_args
from hpo.errors import HpoError
from hpo.events import FINAL_TYPES, EventTail
from hpo.layout import StudyLayout
from hpo.volume import Volume

CHUNK = 1 << 20
"""The most bytes one read of the log takes (a log may be gigabytes: it is copied out a chunk at a time)."""

FOLLOW_INTERVAL = 1.0
"""Seconds between two looks at a followed log: one ranged GET of the log and one of the events on S3."""


def _count(text: str) -> int:
    """A trial or attempt number, 0 or more; anything else is a usage error (exit 2), not a traceback."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a number, 0 or more (got {text!r})")
    return int(text)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "logs",
        help="print (or follow) a trial's log from the volume",
        description="Print a trial attempt's log (its stdout and stderr) from the study's volume, a folder or "
        "RunPod's S3 API. With -f, keep printing what it appends until the attempt ends (its final event) or "
        "Ctrl-C. The attempt is the latest that has a log unless --attempt names one. --controller prints the "
        "remote controller's log instead (followed until no controller holds the study).",
    )
    add_study_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=_count, metavar="N", help="the trial's number")
    which.add_argument("--controller", action="store_true",
                       help="the log of the study's remote controller (`hpo run --remote`) instead")
    parser.add_argument("--attempt", type=_count, metavar="K",
                        help="the attempt's number, from 0 (default: the latest that has a log)")
    parser.add_argument("-f", "--follow", action="store_true",
                        help="keep printing what the log gains until the attempt ends, or Ctrl-C")
    parser.set_defaults(handler=logs)


def logs(args: argparse.Namespace) -> int:
    config = study_from_args(args)
    volume = config.volume.open()
    layout = StudyLayout(config.name)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()  # as it comes: a follower (or `| grep`) sees each chunk now

    try:
        if args.controller:
            print_controller_log(volume, layout, write, follow=args.follow)
            return 0
        attempt = pick_attempt(volume, layout, args.trial, args.attempt)
        print_log(volume, layout, args.trial, attempt, write, follow=args.follow)
    except KeyboardInterrupt:
        # Ctrl-C is how a follow normally ends: no message, the exit code says it (as `tail -f`).
        from hpo.cli import EXIT_INTERRUPTED

        return EXIT_INTERRUPTED
    return 0


def logged_attempts(volume: Volume, layout: StudyLayout, trial: int) -> list[int]:
    """The trial's attempts that have a log on the volume, in order: one listing of its attempts folder."""
    prefix = f"{layout.trial_dir(trial)}/attempts/"
    found = set()
    for info in volume.list(prefix):
        attempt = info.key.removeprefix(prefix).partition("/")[0]
        if attempt.isdigit() and info.key == layout.log(trial, int(attempt)):
            found.add(int(attempt))
    return sorted(found)


def pick_attempt(volume: Volume, layout: StudyLayout, trial: int, attempt: int | None) -> int:
    """The attempt to print: ``attempt`` if it has a log, else the latest that has one.

    Raises:
        HpoError: The trial has no folder on the volume, or no log (of that attempt) yet; one
            line naming the study, the trial and the volume.
    """
    logged = logged_attempts(volume, layout, trial)
    where = f"study {layout.study!r}: trial {trial}"
    if not logged and not volume.exists(layout.spec(trial)):
        raise HpoError(f"{where}: no such trial on {volume.url} (`hpo status --study {layout.study}` lists the trials)")
    if attempt is None:
        if not logged:
            raise HpoError(f"{where}: no log yet (its first attempt has not started writing one)")
        return logged[-1]
    if attempt not in logged:
        have = f"attempts with a log: {', '.join(map(str, logged))}" if logged else "no attempt has one yet"
        raise HpoError(f"{where}: attempt {attempt} has no log yet ({have})")
    return attempt


def print_log(
    volume: Volume,
    layout: StudyLayout,
    trial: int,
    attempt: int,
    write: Callable[[str], None],
    *,
    follow: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = FOLLOW_INTERVAL,
) -> None:
    """Write the attempt's log through ``write``; with ``follow``, keep writing what it gains until the attempt ends.

    Bytes are decoded as UTF-8 (bad bytes shown as U+FFFD), a character split
    between two reads joined whole. ``sleep`` and ``interval`` pace the
    follow loop (injectable, so tests drive it without waiting).
    """
    events = EventTail(volume, layout.events(trial, attempt))
    ended = (lambda: _ended(volume, layout, trial, attempt, events)) if follow else None
    _print_until(volume, layout.log(trial, attempt), write, ended, sleep=sleep, interval=interval)


def print_controller_log(
    volume: Volume,
    layout: StudyLayout,
    write: Callable[[str], None],
    *,
    follow: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = FOLLOW_INTERVAL,
) -> None:
    """Write the remote controller's log; with ``follow``, keep writing until no controller holds the study.

    Raises:
        HpoError: The study has no controller log (no remote controller has run it).
    """
    from hpo.lease import Lease

    key = layout.controller_log
    if not volume.exists(key):
        raise HpoError(
            f"study {layout.study!r}: no controller log on {volume.url}: no remote controller has run it "
            f"(`hpo run --study {layout.study} --remote` starts one)"
        )
    lease = Lease(volume, layout.study)

    def no_controller() -> bool:
        holder = lease.current()
        return holder is None or holder.expires_at <= time.time()

    _print_until(volume, key, write, no_controller if follow else None, sleep=sleep, interval=interval)


def _print_until(
    volume: Volume,
    key: str,
    write: Callable[[str], None],
    ended: Callable[[], bool] | None,
    *,
    sleep: Callable[[float], None],
    interval: float,
) -> None:
    """Write the log at ``key`` through ``write``; with ``ended``, keep writing what it gains until that is true.

    The end is looked for before each read: whatever was logged before the
    end is on the volume by then, so the last read gets it all. Bytes are
    decoded as UTF-8 (bad bytes shown as U+FFFD), a character split between
    two reads joined whole.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset = 0
    while True:
        over = ended is None or ended()
        offset = _copy(volume, key, offset, decoder, write)
        if over:
            break
        sleep(interval)
    rest = decoder.decode(b"", final=True)
    if rest:
        write(rest)


def _copy(volume: Volume, key: str, offset: int, decoder: codecs.IncrementalDecoder, write: Callable[[str], None]) -> int:
    """Write the log's bytes from ``offset`` to its end, a chunk at a time; return the new offset."""
    while True:
        data = volume.read_range(key, offset, CHUNK)
        offset += len(data)
        text = decoder.decode(data)
        if text:
            write(text)
        if len(data) < CHUNK:
            return offset


def _ended(volume: Volume, layout: StudyLayout, trial: int, attempt: int, events: EventTail) -> bool:
    """Whether the attempt is over: its final event is written, or the trial's next attempt has begun."""
    if any(event.type in FINAL_TYPES for event in events.poll()):
        return True
    # A worker killed outright (SIGKILL, a pod gone) writes no final event; the controller starts
    # the next attempt only once this one's worker is gone.
    return volume.exists(layout.launch(trial, attempt + 1))
