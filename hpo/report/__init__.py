"""The study report: trials as a frame, the Pareto front of cost against loss, plots, savings by pruning."""

from __future__ import annotations

from hpo.report._build import (
    Report,
    build_report,
    check_out_dir,
    choose_axes,
    dashboard_figure,
    report_json,
    summary_lines,
    write_report,
)
from hpo.report._frame import best_value, trial_frame
from hpo.report._pareto import dominated_by, pareto_front
from hpo.report._plots import Axes, front_figure, history, history_figure, write_png
from hpo.report._savings import Savings, pruning_savings

__all__ = [
    "Axes",
    "Report",
    "Savings",
    "best_value",
    "build_report",
    "check_out_dir",
    "choose_axes",
    "dashboard_figure",
    "dominated_by",
    "front_figure",
    "history",
    "history_figure",
    "pareto_front",
    "pruning_savings",
    "report_json",
    "summary_lines",
    "trial_frame",
    "write_png",
    "write_report",
]
