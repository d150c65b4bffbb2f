"""``hpo report --study NAME [--out DIR]``: the trials as CSV, the cost/loss front as HTML and PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpo.cli._common import add_study_arguments, print_json, study_from_args
from hpo.controller import open_study_volume
from hpo.errors import HpoError
from hpo.journal import open_storage


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="write a study's report: trials CSV, cost/loss Pareto front (HTML, PNG)",
        description="Write the study's trials as CSV, and the Pareto front of cost against loss and the loss "
        "against the spend over time as a self-contained HTML page and a PNG; print a summary (spend, savings "
        "by pruning, the front) and the files' paths. Read-only: it runs beside a live controller.",
    )
    add_study_arguments(parser)
    parser.add_argument(
        "--out", metavar="DIR", type=Path, default=None,
        help="where the files go (default: reports/NAME beside studies.yaml)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON, nothing else")
    parser.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    # plotly, matplotlib and pandas load only here: other commands stay quick to start.
    from hpo.report import build_report, check_out_dir, report_json, summary_lines, write_report

    config = study_from_args(args)
    out = args.out if args.out is not None else config.source.parent / "reports" / config.name
    check_out_dir(out)  # before the study is read: a wrong --out fails at once
    volume = open_study_volume(config)
    storage = open_storage(volume, config.name, url=config.storage)
    study = storage.load_study(config.name)
    if study is None:
        raise HpoError(f"study {config.name} has not been run yet: nothing to report; run `python -m hpo run --study {config.name}`")
    result = build_report(config, study, storage.optuna)
    if result.frame.empty:
        raise HpoError(f"study {config.name} has no trials yet: nothing to report")
    paths = write_report(result, out)
    if args.json:
        print_json(report_json(result, paths))
        return 0
    print(f"study {config.name}")
    for line in summary_lines(result):
        print(f"  {line}")
    for line in ([result.message] if result.message else []) + result.notes:
        print(f"note: {line}", file=sys.stderr if line == result.message else sys.stdout)
    print("files:")
    for path in paths.values():
        print(f"  {path}")
    return 0
