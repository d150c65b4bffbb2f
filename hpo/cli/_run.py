"""``hpo run --study NAME``: run (or resume) a study until its trial budget is spent."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from hpo.check import check_study
from hpo.cli._common import add_study_arguments, print_json, study_from_args
from hpo.config import StudyConfig
from hpo.controller import LineProgress, LiveProgress, ProgressSink, build_controller


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run",
        help="run or resume a study",
        description="Run a study until budget.trials trials are finished. A study that already "
        "has trials is resumed: live trials are adopted, interrupted ones resume from their checkpoints.",
    )
    add_study_arguments(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("-q", "--quiet", action="store_true", help="print only the final summary line")
    output.add_argument("--json", action="store_true", help="print the final summary as JSON, nothing else")
    parser.set_defaults(handler=run)


def _progress_for(args: argparse.Namespace) -> ProgressSink:
    if args.quiet or args.json:
        return ProgressSink()
    return LiveProgress() if sys.stderr.isatty() else LineProgress()


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


def run(args: argparse.Namespace) -> int:
    config = study_from_args(args)
    if not preflight(config):
        return 1
    controller = build_controller(config, progress=_progress_for(args))
    summary = controller.run()
    # A run that produced no result because its trials failed is a failure too, for a script.
    all_failed = summary.complete == 0 and summary.failed > 0 and summary.running == 0
    exit_code = 1 if summary.stopped or all_failed else 0
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
