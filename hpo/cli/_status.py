"""``hpo status --study NAME``: the study's trials, one row each, laid out for the terminal's width.

The table keeps its short columns (trial, state, step, last, best, cost) and
adds what fits: attempts when a trial needed more than one, the worker, the
parameters (on one line each, else wrapped in their column, else left to
``--wide``). What is too long for a column (a failed trial's error, a pod's
description) goes below the table, one trial per line, with the command that
shows a failed trial's log. Nothing is cut off with ``…``. Below them, one
line says where the study's controller runs (its lease: a pod of its own, a
process on some host, or none), then the spend, the budget left and the
cheapest trial near the best loss.

By default it draws what fits the terminal's height (``LINES``, else the
terminal's, else :data:`PIPE_HEIGHT` lines for a pipe): every running and
queued trial, the best few, the latest failed ones, then the most recent
others, in trial order, and a line saying how many trials are not shown and
that ``--all`` shows them. Rows not shown are never built into the table, so
a study of thousands of trials costs what a screenful does; ``--all`` draws
every trial and ``--json`` always holds every trial.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import os
import shutil
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from hpo.backends import AttemptRef, WorkerHandle
from hpo.cli._common import add_study_arguments, print_json, study_from_args
from hpo.config import StudyConfig
from hpo.controller import make_backend, open_study_volume
from hpo.errors import HpoError
from hpo.lease import human_seconds
from hpo.status import (
    ControllerView,
    SpendSummary,
    TrialRow,
    best_row,
    read_controller,
    rows_by_priority,
    spend_summary,
    study_view,
)
from hpo.volume import Volume

PIPE_WIDTH = 200
"""Width for output that is neither a terminal nor told its width (``COLUMNS``): a row stays on one line."""

PIPE_HEIGHT = 40
"""Lines for output that is neither a terminal nor told its height (``LINES``): a screenful, as a terminal's."""

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
    parser.add_argument(
        "--all", action="store_true",
        help="every trial; without it, what fits the terminal's height: running and queued trials, the best, "
        "the latest failed, then the most recent",
    )
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print every trial as JSON")
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


class _Cells:
    """Each column's text for each row, worked out once however many layouts are tried."""

    def __init__(self, rows: Sequence[TrialRow]) -> None:
        self.rows = rows
        self._texts: dict[str, list[str]] = {}

    def of(self, column: _Column) -> list[str]:
        """The column's text for every row, in row order."""
        texts = self._texts.get(column.name)
        if texts is None:
            texts = self._texts[column.name] = [column.cell(row) for row in self.rows]
        return texts

    def widest(self, column: _Column) -> str:
        """The column's text that is widest on one line ("" for no rows)."""
        return max(self.of(column), key=_line_width, default="")


def _line_width(text: str) -> int:
    """How many terminal cells ``text`` takes with each of its lines unwrapped: its longest line."""
    return max((cell_len(line) for line in text.splitlines()), default=0)


def _table(
    title: str, cells: Sequence[Sequence[str]], columns: Sequence[_Column], fold: Collection[str] = ()
) -> Table:
    """A table of ``cells`` (one sequence per row) under ``columns``, each cell on one line except in ``fold``."""
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )
    for column in columns:
        wraps = column.name in fold
        table.add_column(
            column.name, justify="right" if column.right else "left", no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis", min_width=MIN_PARAMS_WIDTH if column.name == "params" else None,
        )
    for row in cells:
        table.add_row(*(Text(text) for text in row))  # Text: a value's [brackets] are no markup
    return table


def _natural_width(console: Console, title: str, cells: _Cells, columns: Sequence[_Column]) -> int:
    """How wide the table of ``cells`` under ``columns`` is with every cell on one line.

    Measured on a one-row table of each column's widest text, which is as
    wide as the whole table (rich's own measure stops at the console's width,
    so it is asked at a width no table reaches).
    """
    table = _table(title, [[cells.widest(column) for column in columns]] if cells.rows else [], columns)
    return console.measure(table, options=console.options.update_width(1_000_000)).maximum


def _layout(
    console: Console, title: str, rows: Sequence[TrialRow], unit: str, *, wide: bool, wrap_params: bool = True
) -> tuple[Table, set[str]]:
    """The richest table that fits the console's width, and the names of its columns.

    ``attempts`` and ``worker`` are offered only when a row has something to
    say there. In order: every column on one line; the workers left out (to
    the notes); the parameters wrapped in their column; the attempts left out
    too (to the notes); the parameters left out (to ``--wide``); and on a
    terminal too narrow even for that, every cell wrapped, never cut off.
    ``wide`` takes every column on one line and widens the console to fit;
    ``wrap_params`` False skips the wrapped parameters (a row a line, for a
    view that must fit the terminal's height). Each cell's text is worked out once, and widths are measured without
    building the whole table: only the table chosen holds every row.
    """
    every = _columns(unit)
    cells = _Cells(rows)
    attempts = {"attempts"} if wide or any(r.attempts > 1 for r in rows) else set()
    worker = {"worker"} if wide or any(r.worker for r in rows) else set()

    def chosen(names: set[str]) -> list[_Column]:
        return [column for name, column in every.items() if name in names]

    def width(names: set[str]) -> int:
        return _natural_width(console, title, cells, chosen(names))

    def table(names: set[str], fold: Collection[str] = ()) -> tuple[Table, set[str]]:
        columns = chosen(names)
        texts = [cells.of(column) for column in columns]
        return _table(title, list(zip(*texts, strict=True)) if texts else [], columns, fold), names

    if wide:
        names = set(every)
        console.width = max(console.width, width(names))  # the terminal wraps what it must
        return table(names)
    core = set(CORE)
    for names in (core | attempts | worker | {"params"}, core | attempts | {"params"}):
        if width(names) <= console.width:
            return table(names)
    for names in (core | attempts, core) if wrap_params else ():
        # 2: the gap before one more column
        if width(names) + 2 + MIN_PARAMS_WIDTH <= console.width:
            return table(names | {"params"}, fold={"params"})
    for names in (core | attempts, core):
        if width(names) <= console.width:
            return table(names)
    return table(core, fold=core)


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


def controller_line(controller: ControllerView) -> str:
    """Where the study's controller runs, on one line: a pod of its own (its uptime and cost), a process, or none."""
    if not controller.running:
        return "controller: none running"
    if controller.where == "remote":
        line = f"controller: remote, pod {controller.pod}"
    else:
        line = f"controller: pid {controller.pid} on {controller.host}"
        if controller.this_machine:
            line += " (this machine)"
    if controller.uptime_seconds is not None:
        line += f", up {human_seconds(controller.uptime_seconds)}"
    if controller.usd is not None:
        line += f", ${controller.usd:.4f} so far"
    return line


def _spend_lines(spend: SpendSummary, config: StudyConfig) -> list[str]:
    """Spend so far, budget left, the cheapest trial near the best loss."""
    line = f"spent: ${spend.usd:.4f}, {spend.gpu_hours:.4f} GPU-hours"
    if spend.cost_unit != "USD":
        line += f", {spend.cpu_seconds:.1f} CPU-seconds (local workers cost nothing)"
    parts = []
    if spend.overhead_seconds > 0:
        # What warm workers billed outside attempts: the price of keeping them warm, in the spend above.
        parts.append(
            f"warm workers' overhead (provisioning, image pull, idle) ${spend.overhead_usd:.4f},"
            f" {spend.overhead_seconds:.0f} worker-seconds"
        )
    if spend.controller_pods > 0:
        parts.append(f"controller ${spend.controller_usd:.4f}")  # its own pod's (hpo run --remote), in the spend
    if parts:
        line += "; of it, " + "; ".join(parts)
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
    console: Console,
    config: StudyConfig,
    rows: Sequence[TrialRow],
    spend: SpendSummary,
    *,
    wide: bool = False,
    height: int | None = None,
    controller: ControllerView | None = None,
) -> None:
    """The table, the notes below it, the best trial, the controller and the spend, within ``console.width`` unless ``wide``.

    ``height``: the terminal's lines; the view then shows the trials that fit
    in them (:func:`fitting_rows`) and says how many it leaves out. None
    shows every trial. ``controller``: where the study's controller runs
    (None: no line about it).
    """
    shown, wrap_params = (list(rows), True) if height is None else fitting_rows(
        console, config, rows, spend, wide=wide, height=height, controller=controller
    )
    for part in _view(
        console, config, rows, shown, spend, wide=wide, wrap_params=wrap_params, controller=controller
    ):
        console.print(part, highlight=False)


def _view(
    console: Console,
    config: StudyConfig,
    rows: Sequence[TrialRow],
    shown: Sequence[TrialRow],
    spend: SpendSummary,
    *,
    wide: bool,
    wrap_params: bool = True,
    controller: ControllerView | None = None,
) -> list[RenderableType]:
    """What ``hpo status`` prints when it shows the trials ``shown`` of ``rows``: the table, then one Text a line."""
    title = f"study {config.name} ({len(rows)}/{config.budget.trials} trials)"
    table, columns = _layout(console, title, shown, spend.cost_unit, wide=wide, wrap_params=wrap_params)
    lines = []
    if len(shown) < len(rows):
        lines.append(_hidden_line(rows, shown, config.name))
    lines += _notes(shown, config.name, columns)
    if "params" not in columns:
        lines.append(f"parameters: hpo status --study {config.name} --wide (or --json)")
    best = best_row(list(rows), config.direction)
    if best is not None:
        lines.append(f"best: trial {best.number}, value {best.value:.6g}")
    if controller is not None:
        lines.append(controller_line(controller))
    return [table, *(Text(line) for line in lines + _spend_lines(spend, config))]  # Text: [brackets] are no markup


def _hidden_line(rows: Sequence[TrialRow], shown: Sequence[TrialRow], study: str) -> str:
    """How many trials the view leaves out (and how many of those failed), and the command that shows them."""
    numbers = {r.number for r in shown}
    hidden = [r for r in rows if r.number not in numbers]
    failed = sum(r.state == "fail" for r in hidden)
    more = f", {failed:,} of them failed" if failed else ""
    return f"{len(hidden):,} of {len(rows):,} trials not shown{more}; all of them: hpo status --study {study} --all"


def fitting_rows(
    console: Console,
    config: StudyConfig,
    rows: Sequence[TrialRow],
    spend: SpendSummary,
    *,
    wide: bool,
    height: int,
    controller: ControllerView | None = None,
) -> tuple[list[TrialRow], bool]:
    """The trials a view of ``height`` lines shows, in trial order, and whether its parameters may wrap.

    The trials are a prefix of :func:`~hpo.status.rows_by_priority`'s list.
    The view is drawn off screen (a screenful of rows) and measured in the
    terminal's lines, one kept for the prompt after it; rows are dropped from
    the end of the list until it fits, but never the running and queued
    trials. Parameters wrapped in their column make a row several lines
    tall, so they wrap only when every trial fits that way; else each row
    keeps to one line and the parameters are left to ``--wide``. Every trial
    is tried first only when they are few (a row takes a line at least).
    """
    ordered, must = rows_by_priority(rows, config.direction)
    room = max(1, height - 1)

    def view(take: int, wrap_params: bool) -> tuple[list[TrialRow], bool]:
        shown = sorted(ordered[:take], key=lambda r: r.number)
        used = _lines_used(
            console, config, rows, shown, spend, wide=wide, wrap_params=wrap_params, controller=controller
        )
        return shown, used <= room

    if len(ordered) <= room:
        shown, fits = view(len(ordered), True)
        if fits:
            return shown, True
    # The most rows that fit, a row a line: a binary search (each row takes a line at least, so at most `room`).
    low, high = must, min(len(ordered), max(must, room))
    while low < high:
        middle = (low + high + 1) // 2
        if view(middle, False)[1]:
            low = middle
        else:
            high = middle - 1
    return view(low, False)[0], False


def _lines_used(
    console: Console,
    config: StudyConfig,
    rows: Sequence[TrialRow],
    shown: Sequence[TrialRow],
    spend: SpendSummary,
    *,
    wide: bool,
    wrap_params: bool,
    controller: ControllerView | None = None,
) -> int:
    """How many terminal lines the view of ``shown`` takes (a line wider than the terminal wraps on screen)."""
    width = console.width
    out = io.StringIO()
    scratch = Console(file=out, width=width, color_system=None, legacy_windows=False)
    for part in _view(scratch, config, rows, shown, spend, wide=wide, wrap_params=wrap_params, controller=controller):
        scratch.print(part, highlight=False)
    return sum(max(1, math.ceil(cell_len(line) / width)) for line in out.getvalue().splitlines())


def _live_workers(config: StudyConfig, volume: Volume) -> dict[AttemptRef, WorkerHandle] | None:
    """The backend's view of live workers, or None (with a warning) when it cannot be asked."""
    try:
        backend = make_backend(config, volume, passive=True)
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
    view = study_view(config, volume, live=_live_workers(config, volume))
    if view is None:
        rows, spend = None, spend_summary([], config)
        controller = read_controller(volume, config.name)  # a controller may be starting the study now
    else:
        rows, controller = view.rows, view.controller
        spend = spend_summary(rows, config, view.overhead, view.controller_costs.values())
    if args.json:
        print_json(
            {
                "study": config.name,
                "trials": [dataclasses.asdict(r) for r in rows or []],
                "spend": dataclasses.asdict(spend),
                "controller": dataclasses.asdict(controller),
            }
        )
        return 0
    if rows is None:
        print(f"study {config.name}: not started yet; run `python -m hpo run --study {config.name}`")
        return 0
    print_status(
        _console(), config, rows, spend, wide=args.wide, height=None if args.all else _height(), controller=controller
    )
    return 0


def _height() -> int:
    """The terminal's lines: ``LINES``, else the terminal's own, else :data:`PIPE_HEIGHT` for a pipe or file."""
    told = os.environ.get("LINES") or ""
    if told.isdigit():
        return int(told)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((PIPE_WIDTH, PIPE_HEIGHT)).lines
    return PIPE_HEIGHT
