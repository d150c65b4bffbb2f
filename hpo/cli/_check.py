"""``hpo check --study NAME``: what would break or waste money, before the first ``hpo run``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hpo.check import CheckLine, check_file, failed
from hpo.cli._common import add_study_arguments, print_json

STYLE = {"ok": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "check",
        help="check a study before paying for it",
        description="Check the API key, the network volume (data center, S3 access, space), the image and its "
        "registry credential, GPU types with their prices and stock, placeholders left in the study, and a cost "
        "estimate against budget.usd. One line each, ✓ or ✗ with the fix; exit 1 on any ✗.",
    )
    add_study_arguments(parser)
    parser.add_argument("--seconds-per-step", type=float, metavar="S",
                        help="seconds one step takes, for the estimate when the study has no history yet")
    parser.add_argument("--json", action="store_true", help="print the lines as JSON")
    parser.set_defaults(handler=check)


def check(args: argparse.Namespace) -> int:
    lines = check_file(Path(args.studies), args.study, seconds_per_step=args.seconds_per_step)
    bad = failed(lines)
    if args.json:
        print_json({"study": args.study, "ok": not bad, "lines": [line.as_json() for line in lines]})
    else:
        print_table(args.study, lines)
    return 1 if bad else 0


def print_table(study: str, lines: list[CheckLine]) -> None:
    """The lines as one table on stdout."""
    table = Table(title=f"hpo check --study {study}", title_justify="left", show_lines=False)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result")
    table.add_column("fix")
    for line in lines:
        style = STYLE[line.status]
        table.add_row(f"[{style}]{line.mark}[/]", line.check, line.detail, line.fix)
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160, soft_wrap=False)
    console.print(table)
