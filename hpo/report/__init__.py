"""The study report: trials, the Pareto front of cost against loss, its plots and table, savings by pruning."""

from __future__ import annotations

from hpo.report._axis import LossAxis, loss_axis
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
from hpo.report._plots import Axes, front_figure, history, history_figure, plot_loss_axis, write_png
from hpo.report._savings import Savings, pruning_savings
from hpo.report._table import trial_table

__all__ = [
    "Axes",
    "LossAxis",
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
    "loss_axis",
    "pareto_front",
    "plot_loss_axis",
    "pruning_savings",
    "report_json",
    "summary_lines",
    "trial_frame",
    "trial_table",
    "write_png",
    "write_report",
]
