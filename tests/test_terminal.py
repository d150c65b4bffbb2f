"""The terminal: the live display and ``hpo status`` fit 80 columns, and an interrupted run gives the cursor back.

Issue 14. Nothing may be cut off with ``…`` and no line may pass 80
columns; the live display shows the pace (elapsed, trials per hour, ETA on
the controller's clock), the spend against the budget and what is starting,
running and queued; SIGTERM and Ctrl-C leave the terminal as they found it.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from controller_harness import Seam
from rich.console import Console
from studyfiles import REPO, make_workspace, study_config, study_processes, wait_for

from hpo.backends import AttemptRef
from hpo.cli._status import print_status
from hpo.config import load_study
from hpo.controller import LineProgress, LiveProgress, StudyTally
from hpo.errors import CapacityError
from hpo.status import SpendSummary, TrialRow

WIDTH = 80
SHOW_CURSOR = b"\x1b[?25h"
HIDE_CURSOR = b"\x1b[?25l"


def assert_fits(text: str, width: int = WIDTH) -> None:
    """No line wider than ``width`` and nothing cut off with an ellipsis."""
    assert "…" not in text, text
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, too_wide


def busy_tally(study: str = "f5-lr-sweep") -> StudyTally:
    """A pod study half-way: some finished, pods starting, running and queued, money spent, a pace."""
    return StudyTally(
        study, 24, complete=5, pruned=1, failed=1, running=4, best_value=0.046173421, best_trial=3,
        starting=1, queued=1, started_at=100.0, now=100.0 + 720.0, spent_usd=1.234, budget_usd=25.0,
    )


# -- the live display ----------------------------------------------------------------------


def test_the_live_display_shows_pace_spend_and_pods_within_80_columns() -> None:
    lines = busy_tally().lines(WIDTH)
    text = "\n".join(lines)
    assert_fits(text)
    assert "f5-lr-sweep: 7/24 done (5 complete, 1 pruned, 1 failed)" in text
    assert "best 0.04617 (trial 3)" in text
    assert "in progress: 2 running, 1 starting, 1 queued for capacity" in text
    # 7 trials in 12 minutes: 35 an hour, and the 17 left take 29 minutes more.
    assert "elapsed 12m" in text and "35 trials/h" in text and "ETA 29m" in text
    assert "spent $1.23 of $25" in text


def test_a_live_display_too_long_for_its_line_wraps_and_loses_nothing() -> None:
    tally = busy_tally(study="a-study-whose-name-is-much-longer-than-anyone-would-type-in-a-terminal-x")
    for width in (80, 40, 12):
        lines = tally.lines(width)
        assert_fits("\n".join(lines), width)
        assert tally.study in "".join(lines)  # folded, not cut


def test_the_pace_counts_only_what_this_run_finished() -> None:
    tally = StudyTally("s", 10, complete=4, running=1, started_at=0.0, now=1800.0, finished_before=3)
    assert tally.trials_per_hour == pytest.approx(2.0)  # one trial in half an hour
    assert tally.eta_seconds == pytest.approx(3 * 3600.0)
    fresh = dataclasses.replace(tally, finished_before=4)
    assert fresh.trials_per_hour is None and fresh.eta_seconds is None
    assert "ETA" not in "\n".join(fresh.lines(WIDTH)) and "elapsed 30m" in "\n".join(fresh.lines(WIDTH))


def test_a_free_study_without_a_budget_shows_no_money() -> None:
    tally = StudyTally("demo", 24, complete=1, running=3, started_at=0.0, now=60.0)
    text = "\n".join(tally.lines(WIDTH))
    assert "$" not in text and "in progress: 3 running" in text


def test_the_live_display_on_an_80_column_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, force_terminal=True, color_system=None)
    progress = LiveProgress(console)
    tally = busy_tally()
    progress.start(tally)
    progress.trial_finished(tally, 12, "complete", 0.0461734, 50)
    progress.message("trial 13 queued: POST /v2/pods: no instances available for [NVIDIA RTX A4000]")
    progress.stop(tally)
    progress.stop(tally)  # a second stop (hpo run's own, on its way out) is harmless
    raw = out.getvalue()
    # The screen as the terminal draws it: rich moves the cursor and erases lines between frames.
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", raw).replace("\r", "\n")
    assert_fits(shown)
    assert "f5-lr-sweep: 7/24 done (5 complete, 1 pruned, 1 failed) · best 0.04617 (trial 3)" in shown
    assert "in progress: 2 running, 1 starting, 1 queued for capacity" in shown
    assert "trial 12 complete at step 50, value 0.04617" in shown
    assert "[NVIDIA RTX A4000]" in shown  # a message is printed as written, not read as markup
    assert raw.rindex(SHOW_CURSOR.decode()) > raw.rindex(HIDE_CURSOR.decode())


def test_log_lines_go_above_the_live_display_not_through_it() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(sys.stderr)  # as `hpo -v` sets up its log, before the display
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        progress = LiveProgress(Console(file=out, width=WIDTH, force_terminal=True, color_system=None))
        progress.start(busy_tally())
        logging.getLogger("hpo.test").warning("trial 2 failed: RuntimeError: boom")
        progress.stop(busy_tally())
    finally:
        root.removeHandler(handler)
    assert "trial 2 failed: RuntimeError: boom\n" in out.getvalue()  # through the display's console, a line of its own
    assert handler.stream is sys.stderr  # and back to where it wrote before


def test_the_cursor_comes_back_when_an_interrupt_cuts_the_display_s_stop_short(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    progress = LiveProgress(Console(file=out, width=WIDTH, force_terminal=True))
    tally = busy_tally()
    progress.start(tally)
    from rich.live import Live

    def interrupted(self: Live) -> None:
        raise KeyboardInterrupt  # a second Ctrl-C while the display was being taken down

    monkeypatch.setattr(Live, "stop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        progress.stop(tally)
    assert out.getvalue().endswith(SHOW_CURSOR.decode())
    assert not progress.active


def test_a_log_line_per_finished_trial_fits_80_columns() -> None:
    out = io.StringIO()
    tally = busy_tally()
    LineProgress(out).trial_finished(tally, 123, "complete", 1.234567e-05, 1000)
    text = out.getvalue()
    assert_fits(text)
    # What does not fit goes on an indented line of its own.
    assert text == (
        "trial 123 complete at step 1000, value 1.235e-05; 7/24 done\n"
        "  best 0.04617 (trial 3); ETA 29m; spent $1.23 of $25\n"
    )


# -- what the controller feeds the display -----------------------------------------------------


def test_the_controller_counts_starting_running_and_queued_workers_and_the_pace_on_its_clock(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=3, concurrency=3, budget="usd: 25")
    seam.backend.usd_per_hr = 0.9
    no_room = CapacityError("POST /v2/pods: no instances available", method="POST", path="/v2/pods", status=500)
    seam.backend.launch_faults.append((no_room, False))
    seam.controller.begin()
    seam.controller.cycle()  # trial 0 finds no room; trials 1 and 2 launch
    tally = seam.controller.tally
    assert (tally.running, tally.queued, tally.starting) == (3, 1, 0)

    ref = AttemptRef(1, 0)
    seam.backend.alive[ref] = dataclasses.replace(seam.backend.alive[ref], status="starting")  # a pod provisioning
    seam.controller.cycle()
    assert (tally.running, tally.queued, tally.starting) == (3, 1, 1)
    assert "in progress: 1 running, 1 starting, 1 queued for capacity" in "\n".join(tally.lines(WIDTH))

    seam.clock.sleep(1800.0)  # half an hour: trial 2 finishes, trial 0 finds room
    seam.write(2, {"type": "report", "step": 1, "value": 0.5}, {"type": "done", "value": 0.5})
    seam.backend.gone(2)
    seam.controller.cycle()
    assert tally.elapsed == pytest.approx(1800.0)
    assert tally.trials_per_hour == pytest.approx(2.0) and tally.eta_seconds == pytest.approx(3600.0)
    assert tally.budget_usd == 25.0 and tally.spent_usd == pytest.approx(0.9)  # two pods for half an hour at $0.9/h
    text = "\n".join(tally.lines(WIDTH))
    assert "elapsed 30m · 2.0 trials/h · ETA 1h00m · spent $0.90 of $25" in text


# -- hpo status --------------------------------------------------------------------------------

DEMO_PARAMS = {
    "lr": 0.012345678, "hidden": 256, "depth": 2, "weight_decay": 1.2345e-05, "batch_size": 64, "activation": "relu",
}
POD = "pod abc123xyz NVIDIA RTX A5000 spot bid $0.140/GPU-h running up 12m $0.140/h"


def _row(number: int, state: str, **changes: object) -> TrialRow:
    row = TrialRow(
        number=number, state=state, last_step=50, last_value=0.0461734213, value=None, attempts=1, preemptions=0,
        params=DEMO_PARAMS, worker=None, error=None, best_value=0.0451234, cost_usd=0.01234, gpu_seconds=300.0,
    )
    return dataclasses.replace(row, **changes)  # type: ignore[arg-type]


def _status_text(width: int | None, *, wide: bool = False) -> str:
    config = load_study(REPO / "studies.yaml", "demo-pods")
    rows = [
        _row(0, "complete", value=0.0461734213),
        _row(1, "pruned", last_step=12),
        _row(2, "fail", last_step=3, error="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; "
             "23.65 GiB total capacity; [21.1 GiB already allocated])"),
        _row(3, "running", attempts=2, preemptions=1, worker=POD, error="last interrupted: preempted (spot)"),
        _row(4, "queued", last_step=None, last_value=None, best_value=None, cost_usd=None),
    ]
    spend = SpendSummary(
        usd=1.2345, gpu_hours=0.5, cpu_seconds=0.0, budget_usd=25.0, budget_gpu_hours=None, usd_left=23.7655,
        gpu_hours_left=None, best_loss=0.0451234, cheapest_near_best=0, cheapest_cost=0.01234, cost_unit="USD",
    )
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    print_status(console, config, rows, spend, wide=wide)
    return console.export_text()


def test_status_fits_80_columns_with_named_columns_and_parameters_wrapped_in_theirs() -> None:
    text = _status_text(WIDTH)
    assert_fits(text)
    header = next(line for line in text.splitlines() if line.startswith("trial"))
    assert header.split() == ["trial", "state", "step", "last", "best", "cost", "params"]
    assert "complete" in text and "failed" in text and "0.04617" in text
    words = text.replace(",", " ").split()
    for name, value in (("lr", "0.01235"), ("weight_decay", "1.234e-05"), ("activation", "relu")):
        assert f"{name}={value}" in words  # wrapped between parameters, never inside one
    # What no column holds goes below the table, with the way to a failed trial's log.
    assert "trial 2 failed: RuntimeError: CUDA out of memory." in text
    assert "its log: hpo logs --study demo-pods --trial 2" in text
    assert "[21.1 GiB already allocated]" in text.replace("\n", " ")
    assert "trial 3 running (attempt 2): last interrupted: preempted (spot)" in text  # no room for attempts
    assert "trial 3 runs on pod abc123xyz" in text and "$0.140/h" in text


def test_status_on_a_narrow_terminal_leaves_the_parameters_to_wide_and_cuts_nothing() -> None:
    text = _status_text(60)
    assert_fits(text, 60)
    assert "lr=" not in text
    assert "parameters: hpo status --study demo-pods --wide (or --json)" in text
    assert_fits(_status_text(30), 30)  # every cell wraps: nothing is cut even there


def test_status_wide_puts_each_trial_on_one_line_with_every_column() -> None:
    text = _status_text(WIDTH, wide=True)
    assert "…" not in text
    header = next(line for line in text.splitlines() if line.startswith("trial"))
    assert header.split() == ["trial", "state", "step", "last", "best", "value", "attempts", "cost", "worker", "params"]
    row3 = next(line for line in text.splitlines() if line.lstrip().startswith("3 "))
    assert POD in row3 and "activation=relu" in row3


# -- an interrupted `hpo run` gives the terminal back ------------------------------------------


def _read_all(fd: int, into: bytearray) -> None:
    """Drain the pty's master side until the child closes it (so the child never blocks on a full pty)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer of the slave side is gone
            return
        if not chunk:
            return
        into.extend(chunk)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_an_interrupted_run_with_the_live_display_shows_the_cursor_again(tmp_path: Path, signum: int) -> None:
    import fcntl
    import termios

    gate = tmp_path / "gate"
    # Warm workers left without a controller end themselves once idle: soon, here.
    studies = make_workspace(tmp_path / "project", trials=4, concurrency=2, max_step=3, pace=0.0, gate=gate, idle_limit=1)
    config = study_config(studies, "steady")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, WIDTH, 0, 0))
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / "cache"), "TERM": "xterm-256color", "PYTHONPATH": str(REPO)}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo", "run", "--study", "steady", "--studies", str(studies)],
        cwd=tmp_path / "project", stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )
    os.close(slave)
    output = bytearray()
    reader = threading.Thread(target=_read_all, args=(master, output), daemon=True)
    reader.start()
    events = tmp_path / "project" / "storage" / "hpo" / "steady" / "trials" / "0" / "attempts" / "0" / "events.jsonl"
    try:
        # A trial is running (it reported step 1 and waits at the gate) and the display is up.
        wait_for(lambda: HIDE_CURSOR in output and events.exists() and b'"report"' in events.read_bytes(),
                 120, "a running trial under the live display")
        proc.send_signal(signum)
        assert proc.wait(timeout=120) == 130
        reader.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        gate.write_text("")  # the trials left running may finish now
        wait_for(lambda: not study_processes(config), 120, "the study's trial processes to end")
    text = bytes(output)
    assert text.rindex(SHOW_CURSOR) > text.rindex(HIDE_CURSOR), text[-400:]
    assert b"interrupted; running trials keep going" in text
    assert b"Traceback" not in text
