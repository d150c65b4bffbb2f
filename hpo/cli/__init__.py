"""The command line: ``python -m hpo <command>`` (or ``hpo <command>``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from hpo.cli import _check, _cleanup, _dashboard, _report, _run, _status
from hpo.cli._common import setup_logging
from hpo.errors import HpoError

EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The ``hpo`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Hyperparameter optimization for GPU training on RunPod: Optuna studies whose trials "
        "run as (spot) pods or local processes.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (-vv: Optuna's too)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run.add_parser(commands)
    _check.add_parser(commands)
    _status.add_parser(commands)
    _report.add_parser(commands)
    _cleanup.add_parser(commands)
    _dashboard.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors become one line on stderr and a non-zero exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    # A shell starts a background job (`hpo run ... &`) with SIGINT ignored, and Python keeps
    # that: `kill -INT` must still stop the command as Ctrl-C does, cleanly.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return int(args.handler(args))
    except HpoError as exc:
        print(f"hpo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpo: interrupted; running trials keep going and the next `hpo run` adopts them", file=sys.stderr)
        return EXIT_INTERRUPTED
