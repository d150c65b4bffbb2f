"""The report's two pictures, as plotly figures (HTML, the dashboard) and one matplotlib PNG.

1. The front: every complete and pruned trial at (cost, loss), the
   non-dominated ones joined by a step line: for any spend, the best loss
   that money bought.
2. Over time: as trials finish, the study's cumulative spend on x and the
   best loss found so far on y: where more spending stopped paying.

matplotlib draws through its Agg canvas directly (no ``pyplot``), so the
report needs no display and changes no global backend setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

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


def front_figure(frame: pd.DataFrame, axes: Axes, title: str, *, template: str = "plotly_white") -> go.Figure:
    """Cost against loss for complete and pruned trials, the front marked and joined."""
    figure = go.Figure()
    points = frame[frame["eligible"]] if "eligible" in frame else frame.iloc[0:0]
    for state, colour in STATE_COLOURS.items():
        rows = points[points["state"] == state]
        if rows.empty:
            continue
        figure.add_trace(
            go.Scatter(
                x=_list(rows["plot_cost"]), y=_list(rows["best_value"]), mode="markers", name=state,
                marker={"color": colour, "size": 9, "opacity": 0.75},
                text=_hover(rows), hovertemplate="%{text}<br>cost %{x:.4g}<br>loss %{y:.4g}<extra></extra>",
            )
        )
    front = front_points(frame)
    if not front.empty:
        figure.add_trace(
            go.Scatter(
                x=_list(front["plot_cost"]), y=_list(front["best_value"]), mode="lines+markers", name="Pareto front",
                line={"color": FRONT_COLOUR, "shape": "hv", "width": 2},
                marker={"color": FRONT_COLOUR, "size": 13, "symbol": "circle-open", "line": {"width": 2}},
                text=_hover(front), hovertemplate="%{text}<br>cost %{x:.4g}<br>loss %{y:.4g}<extra>front</extra>",
            )
        )
    figure.update_layout(
        title=title, xaxis_title=axes.cost_label, yaxis_title=axes.loss_label, template=template,
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def history_figure(frame: pd.DataFrame, axes: Axes, title: str, *, template: str = "plotly_white") -> go.Figure:
    """The best loss so far against the study's spend so far, trial by finished trial."""
    data = history(frame, axes)
    figure = go.Figure()
    if not data.empty:
        figure.add_trace(
            go.Scatter(
                x=_list(data["spent"]), y=_list(data["loss"]), mode="markers", name="trial",
                marker={"color": "#7f7f7f", "size": 7, "opacity": 0.6},
                text=[f"trial {t}" for t in data["trial"]],
                hovertemplate="%{text}<br>spent %{x:.4g}<br>loss %{y:.4g}<extra></extra>",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=_list(data["spent"]), y=_list(data["best"]), mode="lines", name="best so far",
                line={"color": FRONT_COLOUR, "shape": "hv", "width": 2},
            )
        )
    figure.update_layout(
        title=title, xaxis_title=axes.spent_label, yaxis_title=axes.best_label,
        template=template, legend={"orientation": "h", "y": -0.2},
    )
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
        for state, colour in STATE_COLOURS.items():
            rows = points[points["state"] == state]
            if not rows.empty:
                left.scatter(rows["plot_cost"], rows["best_value"], s=30, c=colour, alpha=0.75, label=state)
        front = front_points(frame)
        left.step(front["plot_cost"], front["best_value"], where="post", color=FRONT_COLOUR, linewidth=1.8)
        left.scatter(front["plot_cost"], front["best_value"], s=110, facecolors="none", edgecolors=FRONT_COLOUR,
                     linewidths=1.8, label="Pareto front")
        for _, row in front.iterrows():
            left.annotate(str(row["trial"]), (row["plot_cost"], row["best_value"]), textcoords="offset points",
                          xytext=(5, 5), fontsize=8, color=FRONT_COLOUR)
        left.set_xlabel(axes.cost_label)
        left.set_ylabel(axes.loss_label)
        left.set_title("cost against loss")
        left.legend(loc="best", fontsize=8)
        left.grid(alpha=0.3)
        data = history(frame, axes)
        right.scatter(data["spent"], data["loss"], s=18, c="#7f7f7f", alpha=0.6, label="trial")
        best = data.dropna(subset=["best"])
        right.step(best["spent"], best["best"], where="post", color=FRONT_COLOUR, linewidth=1.8, label="best so far")
        right.set_xlabel(axes.spent_label)
        right.set_ylabel(axes.best_label)
        right.set_title("loss against cost over time")
        right.legend(loc="best", fontsize=8)
        right.grid(alpha=0.3)
        if np.isfinite(points["best_value"]).all() and (points["best_value"] > 0).all():
            spread = points["best_value"].max() / points["best_value"].min()
            if spread > 50:  # losses spanning orders of magnitude read better on a log scale
                left.set_yscale("log")
                right.set_yscale("log")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
