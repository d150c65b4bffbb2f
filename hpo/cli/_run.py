"""``hpo run --study NAME``: run (or resume) a study until its trial budget is spent.

With ``--remote`` the controller runs on a RunPod CPU pod instead (:mod:`hpo.remote`), and this returns at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from hpo.check import check_study
from hpo.cli._common import add_study_arguments, print_json, study_from_args
from hpo.config import StudyConfig
from hpo.controller import LineProgress, LiveProgress, ProgressSink, StudyTally, build_controller


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run",
        help="run or resume a study",
        description="Run a study until budget.trials trials are finished. A study that already "
        "has trials is resumed: live trials are adopted, interrupted ones resume from their checkpoints.",
    )
    add_study_arguments(parser)
    parser.add_argument(
        "--remote",
        action="store_true",
        help="run the controller on a RunPod CPU pod (hpo-<study>-controller) instead of here, and return at once: "
        "the study goes on while this machine sleeps (README, 'Leave it running')",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("-q", "--quiet", action="store_true", help="print only the final summary line")
    output.add_argument("--json", action="store_true", help="print the final summary as JSON, nothing else")
    parser.set_defaults(handler=run)


def _progress_for(args: argparse.Namespace) -> ProgressSink:
    if args.quiet or args.json:
        return ProgressSink()
    return LiveProgress() if sys.stderr.isatty() else LineProgress()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While the run lasts, SIGTERM (``kill``, systemd, ``docker stop``, ``timeout``) stops it as Ctrl-C does.

    Python's default SIGTERM ends the process on the spot: no lease released,
    no journal flushed, the terminal left with its cursor hidden. As a
    KeyboardInterrupt it takes the run's usual way out (running trials keep
    going; the next run adopts them), and exit code 130.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (a test calling main() from another thread)
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminal_restored(progress: ProgressSink, tally: StudyTally) -> Iterator[None]:
    """However the run ends, the live display is gone and the cursor shown.

    The controller stops its display on the way out, but an interrupt that
    lands during its clean-up (a second Ctrl-C or SIGTERM, a failing flush
    before it) can skip that call; stopping again is harmless.
    """
    try:
        yield
    finally:
        progress.stop(tally)


def preflight(config: StudyConfig) -> bool:
    """``hpo check``'s checks, quietly: print only the ✗ lines (stderr); False when one would waste money.

    A local study has only local checks, so ``hpo run --study demo`` needs no RunPod account.
    """
    lines = check_study(config)
    for line in lines:
        if line.status == "fail":
            fix = f"; fix: {line.fix}" if line.fix else ""
            print(f"hpo: check: ✗ {line.check}: {line.detail}{fix}", file=sys.stderr)
    blocking = [line.check for line in lines if line.status == "fail" and line.blocks_run]
    if blocking:
        print(
            f"hpo: error: study {config.name!r}: not started: {', '.join(blocking)} would waste money "
            f"(`hpo check --study {config.name}` shows every check)",
            file=sys.stderr,
        )
    return not blocking


def finished_already(config: StudyConfig) -> bool:
    """Whether the study has finished its ``budget.trials`` trials already, so a run has nothing to launch.

    Read-only, as ``hpo list`` reads it. A storage that cannot be read says
    no: the run meets the problem itself and reports it.
    """
    from hpo.cli._list import FINISHED, study_progress
    from hpo.errors import HpoError

    try:
        return study_progress(config).state == FINISHED
    except HpoError:
        return False


def run(args: argparse.Namespace) -> int:
    config = study_from_args(args)
    if not preflight(config):
        return 1
    if args.remote:
        return run_remote(config, args)
    was_finished = finished_already(config)
    progress = _progress_for(args)
    controller = build_controller(config, progress=progress)
    with _sigterm_interrupts(), _terminal_restored(progress, controller.tally):
        summary = controller.run()
    # A run that produced no result because its trials failed is a failure too, for a script.
    all_failed = summary.complete == 0 and summary.failed > 0 and summary.running == 0
    exit_code = 1 if summary.stopped or all_failed else 0
    if was_finished and summary.running == 0:
        # The run had nothing to do (it still ended strays and settled the bill): say why, not "... in 0s".
        if args.json:
            print_json(dataclasses.asdict(summary))
        else:
            done = summary.complete + summary.pruned + summary.failed
            print(
                f"study {summary.study} is finished: {done} of {config.budget.trials} trials; "
                "raise budget.trials to run more"
            )
        return 0
    if args.json:
        print_json(dataclasses.asdict(summary))
        return exit_code
    best = (
        f"best value {summary.best_value:.6g} (trial {summary.best_trial}) with {summary.best_params}"
        if summary.best_value is not None
        else "no completed trial"
    )
    print(
        f"study {summary.study}: {summary.complete} complete, {summary.pruned} pruned, "
        f"{summary.failed} failed in {summary.seconds:.0f}s; {best}"
    )
    if summary.stopped:
        resume = (
            f"; {summary.running} trial(s) resume with the next `hpo run --study {summary.study}`" if summary.running else ""
        )
        print(f"hpo: error: study {summary.study} stopped early: {summary.stopped}{resume}", file=sys.stderr)
    elif all_failed:
        print(
            f"hpo: error: study {summary.study}: no trial completed; {summary.failed} failed "
            f"(`hpo status --study {summary.study}` shows why)",
            file=sys.stderr,
        )
    return exit_code


def run_remote(config: StudyConfig, args: argparse.Namespace) -> int:
    """``hpo run --remote``: start the controller's pod, say how to watch and stop it, return."""
    from hpo.controller import open_study_volume
    from hpo.remote import launch_remote

    if finished_already(config):
        print(f"study {config.name} is finished: raise budget.trials to run more; no controller pod started")
        return 0
    launched = launch_remote(config, open_study_volume(config))
    if args.json:
        print_json(dataclasses.asdict(launched) | {"price_per_month": launched.price_per_month})
        return 0
    price = (
        f"${launched.price_per_hour:.3f}/h (${launched.price_per_month:.0f} a month, while it runs)"
        if launched.price_per_hour is not None and launched.price_per_month is not None
        else "price unknown"
    )
    name = config.name
    lines = [
        f"study {name}: controller pod {launched.pod_id} ({launched.pod_name}) created in {launched.data_center}: "
        f"{launched.cpu}, {launched.vcpus} vCPUs, {price}",
        "it runs the study from the network volume and ends itself when the study is finished or stopped;",
        "this machine may sleep now. To watch it:",
        f"  hpo status --study {name}            # trials, spend (the controller's pod included), where it runs",
        f"  hpo logs --study {name} --controller -f",
        f"  hpo dashboard --study {name}",
        "to stop it (running trials go on; the next `hpo run` adopts them):",
        f"  hpo stop --study {name}",
    ]
    if not args.quiet:
        print("\n".join(lines))
    else:
        print(launched.pod_id)
    return 0
