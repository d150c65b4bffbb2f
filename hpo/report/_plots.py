"""The report's two pictures, as plotly figures (HTML, the dashboard) and one matplotlib PNG.

1. The front: every complete and pruned trial at (cost, loss), the
   non-dominated ones joined by a step line: for any spend, the best loss
   that money bought.
2. Over time: as trials finish, the study's cumulative spend on x and the
   best loss found so far on y: where more spending stopped paying.

All three drawings (the HTML's, the dashboard's, the PNG) take their loss
axis from :func:`hpo.report._axis.loss_axis`, so they agree on log or
linear and on which outliers sit on the edge. Points carry no text labels in
plotly (hover shows the trial, its parameters and its loss); the PNG labels
the front's points only, skipping a label that would overlap one already
placed.

matplotlib draws through its Agg canvas directly (no ``pyplot``), so the
report needs no display and changes no global backend setting.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hpo.report._axis import LossAxis, loss_axis

STATE_COLOURS = {"complete": "#1f77b4", "pruned": "#ff7f0e"}
FRONT_COLOUR = "#d62728"


@dataclass(frozen=True)
class Axes:
    """What the pictures plot: the cost column and its unit, the metric and its direction."""

    cost: str  # the frame's column: cost_usd, or cpu_seconds for a study whose workers are free
    unit: str  # USD, CPU-seconds
    metric: str
    direction: str

    @property
    def cost_label(self) -> str:
        return f"cost ({self.unit})"

    @property
    def loss_label(self) -> str:
        return f"{self.metric} ({'lower' if self.direction == 'minimize' else 'higher'} is better)"

    @property
    def spent_label(self) -> str:
        return f"spent so far ({self.unit})"

    @property
    def best_label(self) -> str:
        return f"best {self.metric} so far"


def front_points(frame: pd.DataFrame) -> pd.DataFrame:
    """The trials on the front, cheapest first (their loss then falls as the cost rises)."""
    if frame.empty or "on_front" not in frame:
        return frame.iloc[0:0]
    return frame[frame["on_front"]].sort_values(["plot_cost", "best_value"])


def plot_loss_axis(frame: pd.DataFrame, axes: Axes) -> LossAxis:
    """The loss axis of every picture of ``frame``: decided on the losses of the trials the front plot shows."""
    points = frame[frame["eligible"]] if "eligible" in frame else frame.iloc[0:0]
    return loss_axis(points["best_value"].astype(float).to_numpy() if not points.empty else [], axes.direction)


def history(frame: pd.DataFrame, axes: Axes) -> pd.DataFrame:
    """Trials in the order they finished, with the spend so far and the best loss so far.

    Every finished trial's cost counts towards the spend (failed ones
    included: they were paid for); only complete and pruned ones have a loss.
    """
    if frame.empty:
        return pd.DataFrame(columns=["trial", "spent", "loss", "best"])
    done = frame[frame["finished"].notna()].sort_values(["finished", "trial"])
    spent = done[axes.cost].fillna(0.0).cumsum()
    loss = done["best_value"].where(done["state"].isin(["complete", "pruned"]))
    best = loss.cummin() if axes.direction == "minimize" else loss.cummax()
    return pd.DataFrame({"trial": done["trial"], "spent": spent, "loss": loss, "best": best.ffill()})


def _hover(rows: pd.DataFrame) -> list[str]:
    params = [c for c in rows.columns if c.startswith("param_")]
    texts = []
    for _, row in rows.iterrows():
        shown = ", ".join(f"{c[len('param_'):]}={_short(row[c])}" for c in params)
        texts.append(f"trial {row['trial']} ({row['state']})<br>{shown}")
    return texts


def _list(values: pd.Series) -> list[float | None]:
    """Plain JSON numbers: plotly would encode a numpy array as base64, which older plotly.js
    (optuna-dashboard bundles its own) cannot read, and which hides the data from a reader of the page."""
    return [None if pd.isna(v) else float(v) for v in values]


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _symbols(losses: pd.Series, axis: LossAxis, symbol: str) -> list[str]:
    """``symbol`` for each point, a triangle pointing off the plot for a clipped one (open if ``symbol`` is)."""
    triangle = "triangle-up" if axis.worse_edge == "top" else "triangle-down"
    if symbol.endswith("-open"):
        triangle += "-open"
    return [triangle if axis.is_clipped(v) else symbol for v in _list(losses)]


def _loss_scatter(rows: pd.DataFrame, x: str, axis: LossAxis, symbol: str, **kwargs: Any) -> go.Scatter:
    """Markers at their placed loss; the true loss rides along for the hover text.

    Clipped points go last: plotly draws a trace's legend entry with its first
    point's symbol, and the legend should show the circle, not the triangle.
    """
    rows = rows.assign(_clipped=[axis.is_clipped(v) for v in _list(rows["best_value"])])
    rows = rows.sort_values("_clipped", kind="stable")
    marker = {**kwargs.pop("marker", {}), "symbol": _symbols(rows["best_value"], axis, symbol)}
    return go.Scatter(x=_list(rows[x]), y=axis.placed(_list(rows["best_value"])), customdata=_list(rows["best_value"]),
                      mode="markers", marker=marker, text=_hover(rows), **kwargs)


def _titled(title: str, axis: LossAxis, axes: Axes) -> str:
    """The title, with the clipping note under it: a plot that hides a scale says so on itself."""
    note = axis.note(axes.metric)
    # plotly reads a title as a little HTML: a "<" in the note (a metric to maximize) must stay text.
    return f"{title}<br><sup>{html.escape(note, quote=False)}</sup>" if note else title


def _loss_layout(figure: go.Figure, axis: LossAxis) -> None:
    """The y axis as :class:`LossAxis` has it: its type, and its range when something is clipped."""
    yaxis: dict[str, object] = {"type": axis.type}
    plotly_range = axis.plotly_range()
    if plotly_range is not None:
        yaxis.update(range=plotly_range, autorange=False)
    figure.update_yaxes(**yaxis)


def front_figure(frame: pd.DataFrame, axes: Axes, title: str, *, template: str = "plotly_white") -> go.Figure:
    """Cost against loss for complete and pruned trials, the front marked and joined, the loss axis per :mod:`._axis`."""
    figure = go.Figure()
    axis = plot_loss_axis(frame, axes)
    points = frame[frame["eligible"]] if "eligible" in frame else frame.iloc[0:0]
    hover = "%{text}<br>cost %{x:.4g}<br>loss %{customdata:.4g}"
    for state, colour in STATE_COLOURS.items():
        rows = points[points["state"] == state]
        if rows.empty:
            continue
        figure.add_trace(_loss_scatter(
            rows, "plot_cost", axis, "circle", name=state, marker={"color": colour, "size": 9, "opacity": 0.75},
            hovertemplate=hover + "<extra></extra>",
        ))
    front = front_points(frame)
    if not front.empty:
        # The step line in cost order, and the front's markers as their own trace (legend: one entry for both).
        figure.add_trace(go.Scatter(
            x=_list(front["plot_cost"]), y=axis.placed(_list(front["best_value"])), mode="lines", name="Pareto front",
            line={"color": FRONT_COLOUR, "shape": "hv", "width": 2}, legendgroup="front", showlegend=False,
            hoverinfo="skip",
        ))
        figure.add_trace(_loss_scatter(
            front, "plot_cost", axis, "circle-open", name="Pareto front", legendgroup="front",
            marker={"color": FRONT_COLOUR, "size": 13, "line": {"width": 2}},
            hovertemplate=hover + "<extra>front</extra>",
        ))
    figure.update_layout(
        title=_titled(title, axis, axes), xaxis_title=axes.cost_label, yaxis_title=axes.loss_label,
        template=template, legend={"orientation": "h", "y": -0.2},
    )
    _loss_layout(figure, axis)
    return figure


def history_figure(frame: pd.DataFrame, axes: Axes, title: str, *, template: str = "plotly_white") -> go.Figure:
    """The best loss so far against the study's spend so far, trial by finished trial (the front's loss axis)."""
    data = history(frame, axes)
    axis = plot_loss_axis(frame, axes)
    figure = go.Figure()
    if not data.empty:
        dots = data.assign(_clipped=[axis.is_clipped(v) for v in _list(data["loss"])])
        dots = dots.sort_values("_clipped", kind="stable")  # the legend shows the first point's symbol: a circle
        figure.add_trace(
            go.Scatter(
                x=_list(dots["spent"]), y=axis.placed(_list(dots["loss"])), customdata=_list(dots["loss"]),
                mode="markers", name="trial",
                marker={"color": "#7f7f7f", "size": 7, "opacity": 0.6, "symbol": _symbols(dots["loss"], axis, "circle")},
                text=[f"trial {t}" for t in dots["trial"]],
                hovertemplate="%{text}<br>spent %{x:.4g}<br>loss %{customdata:.4g}<extra></extra>",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=_list(data["spent"]), y=axis.placed(_list(data["best"])), mode="lines", name="best so far",
                line={"color": FRONT_COLOUR, "shape": "hv", "width": 2},
            )
        )
    figure.update_layout(
        title=_titled(title, axis, axes), xaxis_title=axes.spent_label, yaxis_title=axes.best_label,
        template=template, legend={"orientation": "h", "y": -0.2},
    )
    _loss_layout(figure, axis)
    return figure


def write_png(frame: pd.DataFrame, axes: Axes, title: str, path: Path, message: str | None = None) -> Path:
    """Both pictures side by side in one PNG (``message`` in place of the front when there is none)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 5.2), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    figure.suptitle(title)
    points = frame[frame["eligible"]] if "eligible" in frame else frame.iloc[0:0]
    if points.empty:
        for axis in (left, right):
            axis.text(0.5, 0.5, message or "no complete or pruned trial with a cost", ha="center", va="center",
                      wrap=True, transform=axis.transAxes)
            axis.set_axis_off()
    else:
        loss = plot_loss_axis(frame, axes)
        for state, colour in STATE_COLOURS.items():
            rows = points[points["state"] == state]
            if not rows.empty:
                _png_points(left, rows["plot_cost"], rows["best_value"], loss, s=30, c=colour, alpha=0.75, label=state)
        front = front_points(frame)
        front_y = _png_y(front["best_value"], loss)
        left.step(front["plot_cost"], front_y, where="post", color=FRONT_COLOUR, linewidth=1.8)
        _png_points(left, front["plot_cost"], front["best_value"], loss, s=110, facecolors="none",
                    edgecolors=FRONT_COLOUR, linewidths=1.8, label="Pareto front")
        left.set_xlabel(axes.cost_label)
        left.set_ylabel(axes.loss_label)
        left.legend(loc="best", fontsize=8)
        left.grid(alpha=0.3)
        data = history(frame, axes)
        _png_points(right, data["spent"], data["loss"], loss, s=18, c="#7f7f7f", alpha=0.6, label="trial")
        best = data.dropna(subset=["best"])
        right.step(best["spent"], _png_y(best["best"], loss), where="post", color=FRONT_COLOUR, linewidth=1.8,
                   label="best so far")
        right.set_xlabel(axes.spent_label)
        right.set_ylabel(axes.best_label)
        right.legend(loc="best", fontsize=8)
        right.grid(alpha=0.3)
        note = loss.note(axes.metric)
        for axis, name in ((left, "cost against loss"), (right, "loss against cost over time")):
            if loss.log:
                axis.set_yscale("log")
            if loss.range is not None:
                axis.set_ylim(*loss.range)
            axis.set_title(f"{name}\n{note}" if note else name, fontsize=10 if note else None)
        _label_front(left, front, front_y)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def _png_y(losses: pd.Series, axis: LossAxis) -> list[float]:
    """matplotlib's y for each loss: where :class:`LossAxis` places it, NaN for none."""
    return [np.nan if v is None else v for v in axis.placed(_list(losses))]


def _png_points(target: Any, x: pd.Series, losses: pd.Series, axis: LossAxis, **style: Any) -> None:
    """A scatter at the placed losses: circles, and triangles pointing off the plot for the clipped ones."""
    y = np.asarray(_png_y(losses, axis), dtype=float)
    clipped = np.asarray([axis.is_clipped(v) for v in _list(losses)], dtype=bool)
    xs = np.asarray(_list(x), dtype=float)
    target.scatter(xs[~clipped], y[~clipped], marker="o", **style)
    if clipped.any():
        style.pop("label", None)
        target.scatter(xs[clipped], y[clipped], marker="^" if axis.worse_edge == "top" else "v", **style)


LABEL_GAP = (0.045, 0.05)
"""Two labels closer than this (axes fractions, x and y) would overlap: the later one is left out."""


def _label_front(target: Any, front: pd.DataFrame, front_y: list[float]) -> None:
    """The trial number beside each front point, cheapest first, skipping one that would overlap one placed.

    Positions are compared in axes fractions, once the axis limits are final
    (``autoscale_view``), so a log axis and a clipped range count as drawn.
    """
    target.autoscale_view()
    to_axes = target.transScale + target.transLimits  # data -> the axes' 0..1 box
    placed: list[tuple[float, float]] = []
    for (_, row), y in zip(front.iterrows(), front_y, strict=True):
        if not np.isfinite(y):
            continue
        fx, fy = to_axes.transform((float(row["plot_cost"]), y))
        if any(abs(fx - px) < LABEL_GAP[0] and abs(fy - py) < LABEL_GAP[1] for px, py in placed):
            continue
        placed.append((fx, fy))
        target.annotate(str(int(row["trial"])), (row["plot_cost"], y), textcoords="offset points", xytext=(5, 5),
                        fontsize=8, color=FRONT_COLOUR)
