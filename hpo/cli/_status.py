"""``hpo status --study NAME``: the study's trials, one row each, laid out for the terminal's width.

The table keeps its short columns (trial, state, step, last, best, cost) and
adds what fits: attempts when a trial needed more than one, the worker, the
parameters (on one line each, else wrapped in their column, else left to
``--wide``). What is too long for a column (a failed trial's error, a pod's
description) goes below the table, one trial per line, with the command that
shows a failed trial's log. Nothing is cut off with ``…``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hpo.backends import AttemptRef, WorkerHandle
from hpo.cli._common import add_study_arguments, print_json, study_from_args
from hpo.config import StudyConfig
from hpo.controller import make_backend, open_study_volume
from hpo.errors import HpoError
from hpo.status import SpendSummary, TrialRow, best_row, spend_summary, study_rows
from hpo.volume import Volume

PIPE_WIDTH = 200
"""Width for output that is neither a terminal nor told its width (``COLUMNS``): a row stays on one line."""

MIN_PARAMS_WIDTH = 24
"""The narrowest column the parameters wrap in; narrower than this, they are left to ``--wide``."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "status",
        help="show a study's trials",
        description="Show each trial's state, last step, the value it reported there (last) and its best "
        "value, attempts, cost, worker and parameters, as the terminal's width allows; the study's spend, its "
        "budget left, and the cheapest trial within 1 % of the best loss.",
    )
    add_study_arguments(parser)
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the trials as JSON")
    shown.add_argument(
        "--wide", action="store_true",
        help="every column (final value, worker, parameters) with each trial on one line, however wide",
    )
    parser.set_defaults(handler=status)


@dataclass(frozen=True)
class _Column:
    """One column of the table: its header, which side it keeps to, and what it shows of a row."""

    name: str
    cell: Callable[[TrialRow], str]
    right: bool = False


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _cost(row: TrialRow, unit: str) -> str:
    if unit == "USD":
        return "-" if row.cost_usd is None else f"${row.cost_usd:.4f}"
    return "-" if row.cpu_seconds is None else f"{row.cpu_seconds:.1f} cpu-s"


def _params(row: TrialRow) -> str:
    return ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in row.params.items())


def _state(row: TrialRow) -> str:
    return "failed" if row.state == "fail" else row.state


def _columns(unit: str) -> dict[str, _Column]:
    """Every column, in the order they stand in the table."""
    columns = [
        _Column("trial", lambda r: str(r.number), right=True),
        _Column("state", _state),
        _Column("step", lambda r: "-" if r.last_step is None else str(r.last_step), right=True),
        _Column("last", lambda r: _fmt(r.last_value)),
        _Column("best", lambda r: _fmt(r.best_value)),
        _Column("value", lambda r: _fmt(r.value)),
        _Column("attempts", lambda r: str(r.attempts), right=True),
        _Column("cost", lambda r: _cost(r, unit), right=True),
        _Column("worker", lambda r: r.worker or "-"),
        _Column("params", _params),
    ]
    return {column.name: column for column in columns}


CORE = ("trial", "state", "step", "last", "best", "cost")
"""The columns every layout has: short, and what a glance at a study needs."""


def _table(title: str, rows: Sequence[TrialRow], columns: Sequence[_Column], fold: Collection[str] = ()) -> Table:
    """The rows under ``columns``, each cell on one line, except in the columns named in ``fold``, which wrap."""
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )
    for column in columns:
        wraps = column.name in fold
        table.add_column(
            column.name, justify="right" if column.right else "left", no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis", min_width=MIN_PARAMS_WIDTH if column.name == "params" else None,
        )
    for row in rows:
        table.add_row(*(Text(column.cell(row)) for column in columns))  # Text: a value's [brackets] are no markup
    return table


def _natural_width(console: Console, table: Table) -> int:
    """How wide ``table`` is with every cell on one line (rich's own measure stops at the console's width)."""
    return console.measure(table, options=console.options.update_width(1_000_000)).maximum


def _layout(console: Console, title: str, rows: Sequence[TrialRow], unit: str, *, wide: bool) -> tuple[Table, set[str]]:
    """The richest table that fits the console's width, and the names of its columns.

    ``attempts`` and ``worker`` are offered only when a row has something to
    say there. In order: every column on one line; the workers left out (to
    the notes); the parameters wrapped in their column; the attempts left out
    too (to the notes); the parameters left out (to ``--wide``); and on a
    terminal too narrow even for that, every cell wrapped, never cut off.
    ``wide`` takes every column on one line and widens the console to fit.
    """
    every = _columns(unit)
    attempts = {"attempts"} if wide or any(r.attempts > 1 for r in rows) else set()
    worker = {"worker"} if wide or any(r.worker for r in rows) else set()

    def table(names: set[str], fold: Collection[str] = ()) -> Table:
        return _table(title, rows, [c for name, c in every.items() if name in names], fold)

    if wide:
        names = set(every)
        chosen = table(names)
        console.width = max(console.width, _natural_width(console, chosen))  # the terminal wraps what it must
        return chosen, names
    core = set(CORE)
    for names in (core | attempts | worker | {"params"}, core | attempts | {"params"}):
        chosen = table(names)
        if _natural_width(console, chosen) <= console.width:
            return chosen, names
    for names in (core | attempts, core):
        # 2: the gap before one more column
        if _natural_width(console, table(names)) + 2 + MIN_PARAMS_WIDTH <= console.width:
            return table(names | {"params"}, fold={"params"}), names | {"params"}
    for names in (core | attempts, core):
        chosen = table(names)
        if _natural_width(console, chosen) <= console.width:
            return chosen, names
    return table(core, fold=core), core


def _notes(rows: Sequence[TrialRow], study: str, shown: set[str]) -> list[str]:
    """What no column holds: errors (and the command that shows the log), interruptions, attempts, workers."""
    lines = []
    for row in rows:
        head = f"trial {row.number} {_state(row)}"
        if "attempts" not in shown and row.attempts > 1:
            head += f" (attempt {row.attempts})"
        if row.state == "fail":
            lines.append(f"{head}: {row.error or 'no error recorded'}")
            lines.append(f"  its log: hpo logs --study {study} --trial {row.number}")
        elif row.error:
            lines.append(f"{head}: {row.error}")
        elif head != f"trial {row.number} {_state(row)}":
            lines.append(head)
        if "worker" not in shown and row.worker:
            lines.append(f"trial {row.number} runs on {row.worker}")
    return lines


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


def print_status(
    console: Console, config: StudyConfig, rows: Sequence[TrialRow], spend: SpendSummary, *, wide: bool = False
) -> None:
    """The table, the notes below it, the best trial and the spend, within ``console.width`` unless ``wide``."""
    title = f"study {config.name} ({len(rows)}/{config.budget.trials} trials)"
    table, shown = _layout(console, title, rows, spend.cost_unit, wide=wide)
    console.print(table)
    lines = _notes(rows, config.name, shown)
    if "params" not in shown:
        lines.append(f"parameters: hpo status --study {config.name} --wide (or --json)")
    best = best_row(list(rows), config.direction)
    if best is not None:
        lines.append(f"best: trial {best.number}, value {best.value:.6g}")
    for line in lines + _spend_lines(spend, config):
        console.print(Text(line), highlight=False)  # Text: an error's [brackets] are no markup


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


def _console() -> Console:
    """stdout at the terminal's width, or ``COLUMNS``; a pipe or file gets :data:`PIPE_WIDTH`."""
    told = sys.stdout.isatty() or (os.environ.get("COLUMNS") or "").isdigit()
    return Console(file=sys.stdout, width=None if told else PIPE_WIDTH)


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
    print_status(_console(), config, rows, spend, wide=args.wide)
    return 0
