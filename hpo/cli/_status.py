"""``hpo status --study NAME``: the study's trials, one row each."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from rich.console import Console
from rich.table import Table

from hpo.backends import AttemptRef, WorkerHandle
from hpo.cli._common import add_study_arguments, print_json, study_from_args
from hpo.config import StudyConfig
from hpo.controller import make_backend, open_study_volume
from hpo.errors import HpoError
from hpo.status import SpendSummary, TrialRow, best_row, spend_summary, study_rows
from hpo.volume import Volume


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "status",
        help="show a study's trials",
        description="Show each trial's state, last step and value, attempts, worker and cost; the study's "
        "spend, its budget left, and the cheapest trial within 1 % of the best loss.",
    )
    add_study_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the trials as JSON")
    parser.set_defaults(handler=status)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _cost(row: TrialRow, unit: str) -> str:
    if unit == "USD":
        return "-" if row.cost_usd is None else f"${row.cost_usd:.4f}"
    return "-" if row.cpu_seconds is None else f"{row.cpu_seconds:.1f} cpu-s"


def _spend_lines(spend: SpendSummary, config: StudyConfig) -> list[str]:
    """Spend so far, budget left, the cheapest trial near the best loss."""
    line = f"spent: ${spend.usd:.4f}, {spend.gpu_hours:.4f} GPU-hours"
    if spend.cost_unit != "USD":
        line += f", {spend.cpu_seconds:.1f} CPU-seconds (local workers cost nothing)"
    lines = [line]
    budget = []
    if spend.budget_usd is not None:
        budget.append(f"${spend.usd_left:.4f} of ${spend.budget_usd:g} left")
    if spend.budget_gpu_hours is not None:
        budget.append(f"{spend.gpu_hours_left:.4f} of {spend.budget_gpu_hours:g} GPU-hours left")
    lines.append("budget: " + ("; ".join(budget) if budget else "no budget.usd or budget.gpu_hours set"))
    if spend.cheapest_near_best is not None and spend.cheapest_cost is not None:
        cost = f"${spend.cheapest_cost:.4f}" if spend.cost_unit == "USD" else f"{spend.cheapest_cost:.1f} CPU-seconds"
        lines.append(
            f"cheapest within 1% of the best {config.metric} ({spend.best_loss:.6g}): "
            f"trial {spend.cheapest_near_best}, cost {cost}"
        )
    return lines


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
    spend = spend_summary(rows or [], config)
    if args.json:
        print_json(
            {"study": config.name, "trials": [dataclasses.asdict(r) for r in rows or []], "spend": dataclasses.asdict(spend)}
        )
        return 0
    if rows is None:
        print(f"study {config.name}: not started yet; run `python -m hpo run --study {config.name}`")
        return 0
    table = Table(title=f"study {config.name} ({len(rows)}/{config.budget.trials} trials)", title_justify="left")
    for column in ("trial", "state", "step", "last value", "value", "attempts", "cost", "worker", "params"):
        table.add_column(column, justify="right" if column in ("trial", "step", "attempts", "cost") else "left")
    for row in rows:
        params = ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in row.params.items())
        state = row.state if not row.error else f"{row.state}: {row.error}"
        table.add_row(
            str(row.number), state, "-" if row.last_step is None else str(row.last_step),
            _fmt(row.last_value), _fmt(row.value), str(row.attempts), _cost(row, spend.cost_unit), row.worker or "-", params,
        )
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)
    console.print(table)
    best = best_row(rows, config.direction)
    if best is not None:
        console.print(f"best: trial {best.number}, value {best.value:.6g}")
    for line in _spend_lines(spend, config):
        console.print(line, highlight=False)
    return 0
