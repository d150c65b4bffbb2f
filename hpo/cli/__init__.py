"""The command line: ``python -m hpo <command>`` (or ``hpo <command>``).

Each command lives in its own module (``_run.py``, ``_status.py``...), which
is imported only when that command runs: ``hpo --help`` names the commands
from :data:`COMMANDS` alone, so it starts without Optuna, pandas, plotly,
boto3 or rich (Optuna's CLI does the same with its ``_LazyImport``).

A command module offers ``add_parser(commands)``, which adds its subparser
(arguments, description, and ``handler``, the function that runs it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NamedTuple

from hpo import __version__
from hpo.errors import HpoError

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader left (`| head`)


class Command(NamedTuple):
    """A command as ``hpo --help`` lists it: the module that builds and runs it, and its one-line help."""

    module: str
    help: str


#: Every command, in the order ``hpo --help`` lists them. The help is the listing's; each module
#: passes the same text to its own subparser (tests/test_cli_commands.py checks that they agree).
COMMANDS: dict[str, Command] = {
    "run": Command("hpo.cli._run", "run or resume a study"),
    "check": Command("hpo.cli._check", "check a study before paying for it"),
    "status": Command("hpo.cli._status", "show a study's trials"),
    "list": Command("hpo.cli._list", "list the studies in studies.yaml: trials done, best value"),
    "logs": Command("hpo.cli._logs", "print (or follow) a trial's log from the volume"),
    "report": Command("hpo.cli._report", "write a study's report: trials CSV, cost/loss Pareto front (HTML, PNG)"),
    "cleanup": Command("hpo.cli._cleanup", "terminate the study's pods (or processes) that no running trial owns"),
    "job": Command("hpo.cli._job", "run a one-off command (data preparation) on a pod of the study, with its volume; print its output"),
    "dashboard": Command("hpo.cli._dashboard", "serve optuna-dashboard on a study, live beside its controller"),
    "stop": Command("hpo.cli._stop", "stop the study's controller (a remote one's pod too); its running trials go on"),
    "secret": Command(
        "hpo.cli._secret", "store (or delete) the RunPod secret holding the API key a remote controller uses"
    ),
}

VERBOSE_HELP = "more log output on stderr (-vv: Optuna's too)"


def named_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, if any: its first word that is not an option.

    The top-level parser has no option that takes a value, so that word is the command.
    """
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in COMMANDS else None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``hpo`` parser, with the full subparser of the command ``argv`` names (every command's without ``argv``).

    Other commands get a stub that only lists them, so their modules (and what
    they import) are never loaded. ``build_parser()`` gives the whole tree, for
    tools that read it (``shtab --shell=bash hpo.cli.build_parser`` writes a completion script).
    """
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Hyperparameter optimization for GPU training on RunPod: Optuna studies whose trials "
        "run as (spot) pods or local processes.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    parser.add_argument("--version", action="version", version=f"hpo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = set(COMMANDS) if argv is None else {named_command(argv)}
    for name, command in COMMANDS.items():
        if name not in wanted:
            commands.add_parser(name, help=command.help)
            continue
        importlib.import_module(command.module).add_parser(commands)
        # `-v` after the command too (`hpo run --study demo -v`); counted apart and added to the top level's.
        commands.choices[name].add_argument(
            "-v", "--verbose", action="count", default=0, dest="command_verbose", help=VERBOSE_HELP
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become one line on stderr and a non-zero exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    from hpo.cli._common import setup_logging  # after parsing: `--help` never loads Optuna

    setup_logging(args.verbose + getattr(args, "command_verbose", 0))
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
        if args.command == "run":
            print("hpo: interrupted; running trials keep going and the next `hpo run` adopts them", file=sys.stderr)
        else:
            print("hpo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE


def _drop_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone, so the exit's flush raises nothing more.

    (The recipe of Python's signal module documentation, "Note on SIGPIPE".)
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's StringIO): nothing will flush into a closed pipe
