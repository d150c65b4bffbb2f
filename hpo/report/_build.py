"""Assemble a study's report: the frame, its front and savings, the notes, and the files.

Read-only, like ``hpo status``: the journal is opened as a reader, so a
report can be drawn while the controller runs, on any machine that reaches
the volume.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.storages import BaseStorage

from hpo.config import StudyConfig
from hpo.cost import (
    PRICES_ATTR,
    Overhead,
    PriceBook,
    controller_usd,
    load_controller_costs,
    study_overhead,
    trial_costs,
)
from hpo.errors import HpoError
from hpo.report._frame import trial_frame
from hpo.report._html import render_html
from hpo.report._pareto import pareto_front
from hpo.report._plots import Axes, front_figure, front_points, history_figure, write_png
from hpo.report._savings import Savings, pruning_savings

FRONT_STATES = ("complete", "pruned")


@dataclass
class Report:
    """Everything the report says about one study.

    ``frame`` has, besides :mod:`hpo.report._frame`'s columns, ``eligible``
    (complete or pruned, with a loss and a cost), ``plot_cost`` (the cost
    axis's value) and ``on_front``. ``message`` says why there is no front,
    when there is none.
    """

    study: str
    metric: str
    direction: str
    frame: pd.DataFrame
    axes: Axes
    savings: Savings
    budget_usd: float | None = None
    budget_gpu_hours: float | None = None
    notes: list[str] = field(default_factory=list)
    message: str | None = None
    overhead: Overhead = Overhead(0.0, 0.0, 0)  # warm workers' bills outside attempts: in the spend, on no trial
    controller_usd: float = 0.0  # remote controllers' pods (hpo run --remote): in the spend, on no trial

    @property
    def front(self) -> pd.DataFrame:
        return front_points(self.frame)

    @property
    def counts(self) -> dict[str, int]:
        if self.frame.empty:
            return {}
        return {str(k): int(v) for k, v in self.frame["state"].value_counts().sort_index().items()}

    def best(self) -> pd.Series | None:
        """The complete trial with the best final value (Optuna's best trial)."""
        done = self.frame[(self.frame["state"] == "complete") & self.frame["value"].notna()] if not self.frame.empty else self.frame
        if done.empty:
            return None
        index = done["value"].idxmin() if self.direction == "minimize" else done["value"].idxmax()
        return done.loc[index]


def choose_axes(frame: pd.DataFrame, config: StudyConfig) -> tuple[Axes, str | None]:
    """USD where any trial cost money; CPU-seconds for a study whose workers are free (local), saying so."""
    usd = Axes("cost_usd", "USD", config.metric, config.direction)
    if frame.empty:
        return usd, None
    candidates = frame[frame["state"].isin(FRONT_STATES)]
    if (candidates["cost_usd"].fillna(0.0) > 0).any():
        return usd, None
    if (candidates["cpu_seconds"].fillna(0.0) > 0).any():
        note = (
            "this study's workers cost nothing (local processes, $0): the cost axis is the CPU-seconds "
            "each trial used instead"
        )
        return Axes("cpu_seconds", "CPU-seconds", config.metric, config.direction), note
    return usd, None


def build_report(config: StudyConfig, study: optuna.Study, storage: BaseStorage, *, now: float | None = None) -> Report:
    """The report of ``study`` as its storage has it now."""
    now = time.time() if now is None else now
    trials = study.get_trials(deepcopy=False)
    costs = trial_costs(storage, study._study_id, trials, now)
    frame = trial_frame(trials, costs, config.direction)
    axes, axis_note = choose_axes(frame, config)
    notes = [axis_note] if axis_note else []
    if frame.empty:
        return Report(config.name, config.metric, config.direction, frame, axes, pruning_savings(frame, 1),
                      config.budget.usd, config.budget.gpu_hours, notes, f"study {config.name} has no trials yet")
    frame["plot_cost"] = frame[axes.cost].astype(float)
    loss = frame["best_value"].astype(float)
    frame["eligible"] = frame["state"].isin(FRONT_STATES) & np.isfinite(loss) & np.isfinite(frame["plot_cost"])
    signed = loss if config.direction == "minimize" else -loss  # the front minimizes both axes
    frame["on_front"] = pareto_front(frame["plot_cost"].where(frame["eligible"]), signed)
    message = None
    if not frame["eligible"].any():
        counts = ", ".join(f"{n} {state}" for state, n in frame["state"].value_counts().sort_index().items())
        message = f"no complete or pruned trial with a cost yet ({counts}): no Pareto front to draw"
    notes += _price_notes(storage, study)
    sources = set(frame.loc[frame["eligible"], "cost_source"])
    if sources & {"estimate", "mixed"}:
        notes.append(
            "some costs are the controller's estimates (pod lifetime x rate, up to one poll high): "
            "RunPod's bill had not covered them at the end of the last run"
        )
    savings = pruning_savings(frame, config.fidelity.max_step)
    overhead = study_overhead(storage, study._study_id)
    controller = controller_usd(load_controller_costs(storage.get_study_system_attrs(study._study_id)).values())
    savings = replace(savings, spent_usd=savings.spent_usd + overhead.usd + controller)
    return Report(config.name, config.metric, config.direction, frame, axes, savings, config.budget.usd,
                  config.budget.gpu_hours, notes, message, overhead, controller)


def _price_notes(storage: BaseStorage, study: optuna.Study) -> list[str]:
    """Say so when the last run's prices did not come fresh from RunPod (only a launch estimate used them)."""
    raw = storage.get_study_system_attrs(study._study_id).get(PRICES_ATTR)
    if not isinstance(raw, dict):
        return []
    book = PriceBook.from_json(raw)
    if book.source in ("stale cache", "fallback") or book.note:
        return [f"the last run's budget guard used {book.describe()}; pods' own billed rates are unaffected"]
    return []


def summary_lines(report: Report) -> list[str]:
    """The report's summary, one line each (terminal and HTML)."""
    frame, savings = report.frame, report.savings
    usd_study = report.axes.cost == "cost_usd"
    counts = report.counts
    lines = [
        f"{len(frame)} trials: " + ", ".join(f"{n} {state}" for state, n in counts.items()) if counts else "no trials"
    ]
    best = report.best()
    if best is not None:
        lines.append(f"best: trial {best['trial']}, {report.metric} {best['value']:.6g}, cost {_cost(best, report)}")
    if usd_study:
        spent = f"spent: ${savings.spent_usd:.4f}, {savings.gpu_hours:.4f} GPU-hours"
    else:
        spent = f"spent: {savings.cpu_seconds:.1f} CPU-seconds (${savings.spent_usd:.2f}: the workers are free)"
    if report.budget_usd is not None:
        spent += f"; budget ${report.budget_usd:g} (${max(0.0, report.budget_usd - savings.spent_usd):.4f} left)"
    if report.budget_gpu_hours is not None:
        left = max(0.0, report.budget_gpu_hours - savings.gpu_hours)
        spent += f"; budget {report.budget_gpu_hours:g} GPU-hours ({left:.4f} left)"
    if report.overhead.seconds > 0:
        spent += (
            f"; of it, warm workers' overhead (provisioning, image pull, idle) ${report.overhead.usd:.4f}, "
            f"{report.overhead.seconds:.0f} worker-seconds over {report.overhead.workers} worker(s)"
        )
    if report.controller_usd > 0:
        spent += f"; of it, the remote controller's pod ${report.controller_usd:.4f}"
    lines.append(spent)
    if savings.pruned_trials:
        if usd_study:
            saved = f"{savings.gpu_hours_saved:.4f} GPU-hours, ${savings.usd_saved:.4f}"
        else:
            saved = f"{savings.cpu_seconds_saved:.1f} CPU-seconds"
        lines.append(
            f"pruning saved {saved}: {savings.steps_saved} steps {savings.pruned_trials} pruned trials did not run"
        )
    front = report.front
    if not front.empty:
        lines.append(
            f"Pareto front ({report.axes.cost_label} against {report.metric}): "
            + "; ".join(f"trial {r['trial']} {_cost(r, report)} -> {r['best_value']:.4g}" for _, r in front.iterrows())
        )
    return lines


def _cost(row: pd.Series, report: Report) -> str:
    value = row[report.axes.cost]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    return f"${value:.4f}" if report.axes.cost == "cost_usd" else f"{value:.1f} CPU-s"


def check_out_dir(out_dir: Path) -> None:
    """Refuse a report folder that cannot be one before any work is done, in one line naming it.

    The folder need not exist yet (it is created when the files are written),
    but the nearest existing folder above it must be writable. Root passes the
    permission check anyway: :func:`write_report` catches what is left.

    Raises:
        HpoError: ``--out`` is an existing file, lies under one, or is in a folder this user cannot write.
    """
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():
            break  # a dangling link: let mkdir say what is wrong with it
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "" if probe == out_dir else f" ({probe} is a file)"
        raise HpoError(f"report folder {out_dir}: not a folder{where}; give --out a folder for the report's files")
    if probe.is_dir() and not os.access(probe, os.W_OK | os.X_OK):
        raise HpoError(f"report folder {out_dir}: cannot write in {probe}: permission denied")


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write the CSV, HTML and PNG; returns their paths by kind.

    Raises:
        HpoError: The folder or a file cannot be written (one line naming the path).
    """
    check_out_dir(out_dir)
    try:
        return _write_files(report, out_dir)
    except OSError as exc:
        path = exc.filename or out_dir
        raise HpoError(f"report folder {out_dir}: cannot write {path}: {exc.strerror or exc}") from None


def _write_files(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write the CSV, HTML and PNG into ``out_dir`` (made if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / f"{report.study}-trials.csv",
        "html": out_dir / f"{report.study}-report.html",
        "png": out_dir / f"{report.study}-front.png",
    }
    columns = [c for c in report.frame.columns if c not in ("eligible", "plot_cost")]
    report.frame[columns].to_csv(paths["csv"], index=False)
    title = f"study {report.study}: cost against {report.metric}"
    figures = [
        front_figure(report.frame, report.axes, f"{report.study}: Pareto front of cost against {report.metric}"),
        history_figure(report.frame, report.axes, f"{report.study}: loss against cost over time"),
    ]
    notes = ([report.message] if report.message else []) + report.notes
    page = render_html(title, summary_lines(report), notes, figures, report.frame)
    paths["html"].write_text(page, encoding="utf-8")
    write_png(report.frame, report.axes, title, paths["png"], report.message)
    return paths


def report_json(report: Report, paths: dict[str, Path] | None) -> dict[str, Any]:
    """The report for scripts (``hpo report --json``)."""
    best = report.best()
    front = report.front
    s = report.savings
    return json.loads(json.dumps({
        "study": report.study,
        "trials": len(report.frame),
        "states": report.counts,
        "cost_axis": report.axes.cost,
        "best": None if best is None else {"trial": int(best["trial"]), "value": float(best["value"]),
                                           "cost": _float(best[report.axes.cost])},
        "spent_usd": s.spent_usd,
        "gpu_hours": s.gpu_hours,
        "cpu_seconds": s.cpu_seconds,
        "budget_usd": report.budget_usd,
        "overhead": {"usd": report.overhead.usd, "seconds": report.overhead.seconds, "workers": report.overhead.workers},
        "controller_usd": report.controller_usd,
        "budget_gpu_hours": report.budget_gpu_hours,
        "pruning_saved": {"pruned_trials": s.pruned_trials, "steps": s.steps_saved, "gpu_hours": s.gpu_hours_saved,
                          "usd": s.usd_saved, "cpu_seconds": s.cpu_seconds_saved},
        "front": [{"trial": int(r["trial"]), "cost": _float(r["plot_cost"]), "loss": _float(r["best_value"]),
                   "state": r["state"]} for _, r in front.iterrows()],
        "message": report.message,
        "notes": report.notes,
        "files": {k: str(v) for k, v in (paths or {}).items()},
    }, default=str))


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def dashboard_figure(config: StudyConfig, study: optuna.Study, storage: BaseStorage) -> go.Figure | None:
    """The front as a small plotly figure for optuna-dashboard (None while there is no front)."""
    report = build_report(config, study, storage)
    if report.message is not None or report.front.empty:
        return None
    # template "none": the figure is stored in the journal, and plotly's default template is 6 kB of it.
    return front_figure(report.frame, report.axes, f"cost against {config.metric} (Pareto front)", template="none")
