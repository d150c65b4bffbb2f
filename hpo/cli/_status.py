"""``hpo status --study NAME``: the study's trials, one row each."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from rich.console import Console
from rich.table import Table

from hpo.cli._common import add_study_arguments, print_json, study_from_args
from hpo.backends import AttemptRef, WorkerHandle
from hpo.config import StudyConfig
from hpo.controller import make_backend, open_study_volume
from hpo.errors import HpoError
from hpo.volume import Volume
from hpo.status import best_row, study_rows


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "status",
        help="show a study's trials",
        description="Show each trial's state, last step and value, attempts and worker.",
    )
    add_study_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the trials as JSON")
    parser.set_defaults(handler=status)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _live_workers(config: StudyConfig, volume: Volume) -> dict[AttemptRef, WorkerHandle] | None:
    """The backend's view of live workers, or None (with a warning) when it cannot be asked."""
    try:
        backend = make_backend(config, volume)
        try:
            return backend.list_live()
        finally:
            backend.close()
    except HpoError as exc:
        print(f"hpo: warning: cannot list the study's workers ({exc}); showing launch records", file=sys.stderr)
        return None


def status(args: argparse.Namespace) -> int:
    config = study_from_args(args)
    volume = open_study_volume(config)
    rows = study_rows(config, volume, live=_live_workers(config, volume))
    if args.json:
        print_json({"study": config.name, "trials": [dataclasses.asdict(r) for r in rows or []]})
        return 0
    if rows is None:
        print(f"study {config.name}: not started yet; run `python -m hpo run --study {config.name}`")
        return 0
    table = Table(title=f"study {config.name} ({len(rows)}/{config.budget.trials} trials)", title_justify="left")
    for column in ("trial", "state", "step", "last value", "value", "attempts", "worker", "params"):
        table.add_column(column, justify="right" if column in ("trial", "step", "attempts") else "left")
    for row in rows:
        params = ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in row.params.items())
        state = row.state if not row.error else f"{row.state}: {row.error}"
        table.add_row(
            str(row.number), state, "-" if row.last_step is None else str(row.last_step),
            _fmt(row.last_value), _fmt(row.value), str(row.attempts), row.worker or "-", params,
        )
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)
    console.print(table)
    best = best_row(rows, config.direction)
    if best is not None:
        console.print(f"best: trial {best.number}, value {best.value:.6g}")
    return 0
