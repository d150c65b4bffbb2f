"""The report's trial table as HTML: one row per trial, made to fit a page about 1000 pixels wide.

The CSV has every column at full precision; the table is for reading, so it
shows fewer and shorter: a trial's parameters in one cell, one ``name=value``
per line; numbers to four significant digits; the GPU type without its
vendor; the duration in the largest unit that reads well; a long error cut
short, whole in its tooltip (``title``); the start and finish times and the
cost's source left to the CSV; a column empty for every trial (GPU-hours of a
local study) left out. Parameter and error cells may wrap anywhere, so no
value, however long, pushes the table wider than the page. Everything from
the study is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

MAX_TEXT = 80
"""Longest error text shown in a cell (the whole text is in its tooltip)."""

MAX_PARAM = 32
"""Longest parameter value shown (a categorical's long string, say), likewise."""

_TEXT = ' class="text"'  # a cell (and its header) whose text wraps, left-aligned


@dataclass(frozen=True)
class Cell:
    """One cell's text, and the whole value for its tooltip when the text is cut short."""

    text: str
    title: str | None = None


@dataclass(frozen=True)
class Column:
    """A column of the table: its header, how a row becomes its cell, and whether its text may wrap."""

    header: str
    cell: Callable[[pd.Series], Cell]
    wraps: bool = False


def trial_table(frame: pd.DataFrame) -> str:
    """The trials of ``frame`` (:func:`hpo.report.trial_frame`'s columns, ``on_front`` if known) as an HTML table."""
    if frame.empty:
        return "<p>no trials</p>"
    columns = [c for c in table_columns(frame) if c.header in ("trial", "state") or _any_text(frame, c)]
    head = "".join(f"<th{_TEXT if c.wraps else ''}>{html.escape(c.header)}</th>" for c in columns)
    rows = []
    for _, row in frame.iterrows():
        cells = "".join(_td(column.cell(row), column.wraps) for column in columns)
        css = ' class="front"' if _true(row.get("on_front")) else ""
        rows.append(f"<tr{css}>{cells}</tr>")
    return f'<table class="trials"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def table_columns(frame: pd.DataFrame) -> list[Column]:
    """Every column the table can show for ``frame``, in order (empty ones are dropped by :func:`trial_table`)."""
    params = [c for c in frame.columns if c.startswith("param_")]
    return [
        Column("trial", lambda r: Cell(_text(r.get("trial")))),
        Column("state", lambda r: Cell(_text(r.get("state")))),
        Column("params", lambda r: _params(r, params), wraps=True),
        Column("steps", lambda r: Cell(_number(r.get("last_step")))),
        Column("value", lambda r: Cell(_number(r.get("value")))),
        Column("best", lambda r: Cell(_number(r.get("best_value")))),
        Column("cost $", lambda r: Cell(_number(r.get("cost_usd")))),
        Column("GPU-h", lambda r: Cell(_number(r.get("gpu_hours")))),
        Column("CPU-s", lambda r: Cell(_number(r.get("cpu_seconds")))),
        Column("GPU", _gpu, wraps=True),
        Column("attempts", _attempts),
        Column("duration", lambda r: Cell(duration(r.get("duration_s")))),
        Column("error", lambda r: _cut(_text(r.get("error")), MAX_TEXT), wraps=True),
    ]


def short_number(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, without a trailing ``.0`` (``0.123456`` -> ``0.1235``)."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 10**digits:
        return str(int(value))
    return f"{value:.{digits}g}"


def duration(seconds: object) -> str:
    """A duration in the largest unit that reads well: ``42 s``, ``12.5 min``, ``3.2 h`` ('' for none)."""
    if _missing(seconds):
        return ""
    value = float(seconds)  # type: ignore[arg-type]
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.3g} min"
    return f"{value / 3600:.3g} h"


def _params(row: pd.Series, names: list[str]) -> Cell:
    lines, whole = [], []
    for column in names:
        value = row.get(column)
        if _missing(value):
            continue
        text = _number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
        name = column[len("param_"):]
        whole.append(f"{name}={text}")
        lines.append(f"{name}={text if len(text) <= MAX_PARAM else text[: MAX_PARAM - 1] + '…'}")
    shown = "\n".join(lines)
    return Cell(shown, "\n".join(whole) if whole != lines else None)


def _gpu(row: pd.Series) -> Cell:
    name = _text(row.get("gpu_type"))
    short = name.replace("NVIDIA ", "").replace("GeForce ", "")
    return Cell(short, name if short != name else None)


def _attempts(row: pd.Series) -> Cell:
    attempts, preempted = row.get("attempts"), row.get("preemptions")
    text = _number(attempts)
    if text and not _missing(preempted) and int(preempted) > 0:
        text += f" ({int(preempted)} preempted)"
    return Cell(text)


def _cut(text: str, limit: int) -> Cell:
    return Cell(text) if len(text) <= limit else Cell(text[: limit - 1] + "…", text)


def _td(cell: Cell, wraps: bool) -> str:
    text = "<br>".join(html.escape(line) for line in cell.text.split("\n"))
    title = f' title="{html.escape(cell.title)}"' if cell.title else ""
    return f"<td{_TEXT if wraps else ''}{title}>{text}</td>"


def _any_text(frame: pd.DataFrame, column: Column) -> bool:
    return any(column.cell(row).text for _, row in frame.iterrows())


def _number(value: object) -> str:
    if _missing(value):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) or hasattr(value, "__float__"):
        try:
            return short_number(float(value))
        except (TypeError, ValueError, OverflowError):
            pass
    return str(value)


def _text(value: object) -> str:
    return "" if _missing(value) else str(value)


def _true(value: object) -> bool:
    return not _missing(value) and bool(value)


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        return bool(pd.isna(value))  # pandas' NA for nullable integers
    except (TypeError, ValueError):
        return False
