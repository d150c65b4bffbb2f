"""The report reads well with a diverged trial in it: one loss-axis rule, a visible front, a table that fits.

Fast: the axis rule (:func:`hpo.report.loss_axis`) on hand-made losses; every
picture (the HTML's two plots, the dashboard's, the PNG) taking the same
axis; the PNG's front spread over its height; the trial table's cells. Slow:
the report's page in headless Chromium, about 1000 pixels wide: the front's
points spread over most of the plot's height, the axis type the rule chose,
and no sideways scrolling.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd
import pytest
from browser import chromium_page, plot_points  # noqa: F401  (chromium_page is a pytest fixture)
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial
from PIL import Image
from studyfiles import make_workspace, study_config

from hpo.config import StudyConfig
from hpo.report import (
    Report,
    build_report,
    dashboard_figure,
    front_figure,
    history_figure,
    loss_axis,
    trial_table,
    write_report,
)
from hpo.report._plots import _label_front
from hpo.report._table import duration, short_number

if TYPE_CHECKING:
    from playwright.sync_api import Page

# ---------------------------------------------------------------------- the loss axis


def test_losses_within_a_decade_get_a_linear_axis_and_nothing_is_clipped() -> None:
    axis = loss_axis([0.25, 0.3, 0.33, 0.4, 0.5, 0.6], "minimize")
    assert axis.type == "linear" and axis.clipped == 0 and axis.range is None and axis.note("loss") is None
    assert axis.placed([0.3, None, math.nan]) == [0.3, None, None]


def test_losses_spanning_more_than_a_decade_get_a_log_axis() -> None:
    assert loss_axis([0.01, 0.03, 0.1, 0.3, 1.0], "minimize").type == "log"
    assert loss_axis([0.1, 0.5, 1.0], "minimize").type == "linear"  # exactly a decade: not more
    assert loss_axis([-1.0, 0.5, 100.0], "minimize").type == "linear"  # no log axis for a loss <= 0


def test_a_diverged_trial_is_clipped_to_the_top_edge_and_the_plot_says_so() -> None:
    losses = [0.25, 0.3, 0.33, 0.36, 0.4, 0.5, 10.0]
    axis = loss_axis(losses, "minimize")
    assert axis.clipped == 1 and axis.worst == 10.0 and axis.type == "linear"
    assert axis.range is not None and axis.edge is not None
    low, high = axis.range
    assert low < 0.25 and 0.5 < axis.edge < high < 1.0  # the axis is the other trials', the edge just above them
    assert axis.is_clipped(10.0) and not axis.is_clipped(0.5)
    assert axis.placed([10.0, 0.3]) == [axis.edge, 0.3]
    note = axis.note("val_loss")
    assert note is not None and note.startswith("1 trial off the scale (val_loss > ") and "worst 10" in note
    assert "top edge" in note


def test_outliers_are_clipped_before_the_scale_is_chosen() -> None:
    # 2.1 to 2.5 and one at 40 span more than a decade, but once 40 is clipped the rest is linear.
    axis = loss_axis([2.1, 2.2, 2.25, 2.3, 2.4, 2.5, 40.0], "minimize")
    assert axis.clipped == 1 and axis.type == "linear"
    # Losses spanning decades with one far off: clipped, then log over what is left.
    axis = loss_axis([0.04, 0.08, 0.15, 0.3, 0.6, 0.2, 0.5, 500.0], "minimize")
    assert axis.clipped == 1 and axis.type == "log"
    plotly_range = axis.plotly_range()
    assert plotly_range is not None and plotly_range[0] < math.log10(0.04) and plotly_range[1] < math.log10(1.0)


def test_a_metric_to_maximize_clips_its_low_outliers_only() -> None:
    axis = loss_axis([0.90, 0.91, 0.92, 0.93, 0.95, 0.05], "maximize")
    assert axis.clipped == 1 and axis.worst == 0.05 and axis.worse_edge == "bottom"
    assert axis.edge is not None and axis.range is not None and axis.range[0] < axis.edge < 0.90
    assert "< " in (axis.note("accuracy") or "") and "bottom edge" in (axis.note("accuracy") or "")
    # A far better loss is never clipped, in either direction: it is the front's best point.
    assert loss_axis([0.90, 0.91, 0.92, 0.93, 0.95, 9.0], "maximize").clipped == 0
    assert loss_axis([0.3, 0.31, 0.32, 0.33, 0.34, 0.0001], "minimize").clipped == 0


def test_too_few_equal_or_non_finite_losses_clip_nothing() -> None:
    assert loss_axis([0.3, 0.31, 0.32, 100.0], "minimize").clipped == 0  # four points: no quartiles to trust
    assert loss_axis([0.3] * 6 + [100.0], "minimize").clipped == 0  # no spread to measure "far" by
    assert loss_axis([], "minimize").type == "linear"
    axis = loss_axis([0.3, 0.31, 0.32, 0.33, 0.34, math.nan, math.inf], "minimize")
    assert axis.clipped == 0 and axis.type == "linear"
    # Losses that are not all positive are measured in their own units.
    axis = loss_axis([-1.0, -0.9, -0.8, -0.7, -0.6, 50.0], "minimize")
    assert axis.clipped == 1 and axis.type == "linear"
    with pytest.raises(ValueError, match="`direction`"):
        loss_axis([1.0], "down")


# ---------------------------------------------------------------------- a study with a diverged trial

# cost (USD), loss, state: the cheapest trial diverged (on the front, being the cheapest), the others
# a front from 0.6 down to 0.04, two dominated ones, and a failed one with a long error.
OUTLIER_POINTS = [
    (0.01, 500.0, TrialState.PRUNED),
    (0.05, 0.6, TrialState.PRUNED),
    (0.10, 0.3, TrialState.COMPLETE),
    (0.20, 0.15, TrialState.COMPLETE),
    (0.40, 0.08, TrialState.COMPLETE),
    (0.80, 0.04, TrialState.COMPLETE),
    (0.30, 0.2, TrialState.COMPLETE),
    (0.60, 0.5, TrialState.COMPLETE),
    (0.02, math.nan, TrialState.FAIL),
]
LONG_CHOICE = "a_categorical_choice_whose_name_goes_on_and_on_and_on"
LONG_ERROR = "RuntimeError: CUDA out of memory. " + "Tried to allocate 2.00 GiB; " * 8 + "<script>alert(1)</script>"


def outlier_trials() -> list[FrozenTrial]:
    """The trials of :data:`OUTLIER_POINTS`, with costs as user attributes (as an older study has them)."""
    trials = []
    for number, (cost, loss, state) in enumerate(OUTLIER_POINTS):
        trial = create_trial(
            state=state,
            value=None if state == TrialState.FAIL else loss,
            params={"lr": 0.0123456 * (number + 1), "activation": LONG_CHOICE if number % 2 else "relu"},
            distributions={"lr": FloatDistribution(1e-4, 1.0, log=True),
                           "activation": CategoricalDistribution(["relu", LONG_CHOICE])},
            intermediate_values={} if state == TrialState.FAIL else {1: loss * 2, 2: loss},
            user_attrs={"cost_usd": cost, "gpu_seconds": cost / 0.69 * 3600, "gpu_type": "NVIDIA GeForce RTX 4090",
                        "attempts": 2 if number == 3 else 1, "preemptions": 1 if number == 3 else 0,
                        **({"error": LONG_ERROR} if state == TrialState.FAIL else {})},
        )
        trial.datetime_start = datetime(2026, 2, 1, 12, 0) + timedelta(minutes=number)
        trial.datetime_complete = trial.datetime_start + timedelta(minutes=30 + number)
        trials.append(trial)
    return trials


def outlier_study(name: str = "steady") -> optuna.Study:
    study = optuna.create_study(study_name=name, direction="minimize")
    for trial in outlier_trials():
        study.add_trial(trial)
    return study


def outlier_report(tmp_path: Path) -> tuple[StudyConfig, optuna.Study, Report]:
    config = study_config(make_workspace(tmp_path / "ws", max_step=2), "steady")
    study = outlier_study()
    return config, study, build_report(config, study, study._storage, now=0.0)


def test_every_picture_takes_the_same_loss_axis(tmp_path: Path) -> None:
    config, study, report = outlier_report(tmp_path)
    assert list(report.front["trial"]) == [0, 1, 2, 3, 4, 5]  # the diverged trial is on the front: the cheapest
    figures = [
        front_figure(report.frame, report.axes, "front"),
        history_figure(report.frame, report.axes, "history"),
        dashboard_figure(config, study, study._storage),
    ]
    for figure in figures:
        assert figure is not None
        assert figure.layout.yaxis.type == "log"  # 0.04 to 0.6, once 500 is clipped
        low, high = figure.layout.yaxis.range
        assert low < math.log10(0.04) and math.log10(0.6) < high < math.log10(1.0)
        assert "1 trial off the scale" in figure.layout.title.text and "worst 500" in figure.layout.title.text
        assert all("text" not in trace.mode for trace in figure.data)  # no labels to overlap: hover text only
    front = next(t for t in figures[0].data if t.name == "Pareto front" and t.mode == "markers")
    # The diverged trial sits on the edge, drawn last (the legend shows a circle), its loss in the hover text.
    assert list(front.customdata) == [0.6, 0.3, 0.15, 0.08, 0.04, 500.0]
    assert front.y[-1] == pytest.approx(10 ** figures[0].layout.yaxis.range[1], rel=0.2)
    assert list(front.marker.symbol) == ["circle-open"] * 5 + ["triangle-up-open"]


def test_a_study_without_outliers_keeps_plotly_s_own_range(tmp_path: Path) -> None:
    config = study_config(make_workspace(tmp_path / "ws", max_step=2), "steady")
    study = optuna.create_study(study_name="steady")
    for trial in outlier_trials()[1:]:
        study.add_trial(trial)
    report = build_report(config, study, study._storage, now=0.0)
    figure = front_figure(report.frame, report.axes, "front")
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis.range is None
    assert figure.layout.title.text == "front"


def test_the_png_front_is_spread_over_the_plot_with_a_diverged_trial(tmp_path: Path) -> None:
    _, _, report = outlier_report(tmp_path)
    paths = write_report(report, tmp_path / "out")
    pixels = np.asarray(Image.open(paths["png"]).convert("RGB")).astype(int)
    left = pixels[:, : pixels.shape[1] // 2]  # the front's plot; the right one has a red line as well
    red = np.abs(left - np.array([0xD6, 0x27, 0x28])).sum(axis=2) < 60
    # The front's step line: its long level segments (0.3, 0.15 and 0.08, each 60 pixels or more) lie at
    # heights spread over the plot, not in a flat line along its bottom under a diverged trial far above.
    levels = np.flatnonzero(red.sum(axis=1) >= 60)
    assert levels.size and levels.max() - levels.min() > 0.15 * pixels.shape[0]


def test_the_png_labels_front_points_only_where_a_label_has_room() -> None:
    from matplotlib.figure import Figure

    axes = Figure(figsize=(6, 4)).subplots()
    front = pd.DataFrame({"trial": [1, 2, 3, 4], "plot_cost": [0.10, 0.101, 0.5, 0.9]})
    losses = [0.5, 0.499, 0.3, 0.1]  # trials 1 and 2 nearly at one point: one label for both
    axes.scatter(front["plot_cost"], losses)
    _label_front(axes, front, losses)
    assert [text.get_text() for text in axes.texts] == ["1", "3", "4"]


# ---------------------------------------------------------------------- the table


def table_of(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows of cell HTML, read back with the standard library's parser."""
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = []
            elif tag == "br" and self.cell is not None:
                self.cell.append("\n")

        def handle_endtag(self, tag: str) -> None:
            if tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append("".join(self.cell))
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    parser = Cells()
    parser.feed(trial_table(frame))
    return parser.rows[0], parser.rows[1:]


def test_the_table_shows_few_short_columns_with_the_parameters_in_one_cell(tmp_path: Path) -> None:
    _, _, report = outlier_report(tmp_path)
    header, rows = table_of(report.frame)
    assert header == ["trial", "state", "params", "steps", "value", "best", "cost $", "GPU-h", "GPU", "attempts",
                      "duration", "error"]  # no CPU-s (none known), dates and cost sources: in the CSV
    row = dict(zip(header, rows[3], strict=True))
    assert row["params"] == "lr=0.04938\nactivation=a_categorical_choice_whose_name…"  # 32 characters
    assert row["best"] == "0.15" and row["cost $"] == "0.2" and row["GPU-h"] == "0.2899"
    assert row["GPU"] == "RTX 4090" and row["attempts"] == "2 (1 preempted)" and row["duration"] == "33 min"
    assert dict(zip(header, rows[0], strict=True))["best"] == "500"


def test_the_table_cuts_long_text_keeps_it_whole_in_the_tooltip_and_escapes_it(tmp_path: Path) -> None:
    _, _, report = outlier_report(tmp_path)
    page = trial_table(report.frame)
    assert "<script>" not in page and "&lt;script&gt;" in page  # only in the tooltip: the cell is cut before it
    header, rows = table_of(report.frame)
    error = dict(zip(header, rows[8], strict=True))["error"]
    assert len(error) == 80 and error.endswith("…") and error.startswith("RuntimeError: CUDA out of memory.")
    assert f'title="{LONG_CHOICE}' not in page and f"activation={LONG_CHOICE}" in page  # the whole value, in title
    # The front's rows are marked; the text cells may wrap, the numbers do not.
    assert page.count('<tr class="front">') == 6
    assert '<th class="text">params</th>' in page and '<td class="text"' in page


def test_numbers_and_durations_are_short() -> None:
    assert short_number(0.0123456) == "0.01235" and short_number(2.0) == "2" and short_number(123456.0) == "1.235e+05"
    assert short_number(math.inf) == "inf" and short_number(1234.5) == "1234" and short_number(-0.5) == "-0.5"
    assert duration(42.4) == "42 s" and duration(750.0) == "12.5 min" and duration(3 * 3600.0) == "3 h"
    assert duration(math.nan) == "" and duration(None) == ""


def test_a_local_study_s_table_leaves_out_the_gpu_columns() -> None:
    frame = pd.DataFrame({
        "trial": [0, 1], "state": ["complete", "running"], "param_x": [0.5, 0.25], "last_step": [3, None],
        "value": [0.1, None], "best_value": [0.1, math.nan], "cost_usd": [0.0, math.nan],
        "gpu_seconds": [0.0, math.nan], "gpu_hours": [math.nan, math.nan], "cpu_seconds": [12.3456, math.nan],
        "gpu_type": [None, None], "cost_source": ["", ""], "attempts": [1, 1], "preemptions": [0, 0],
        "started": [None, None], "finished": [None, None], "duration_s": [30.0, math.nan], "error": [None, None],
        "on_front": [True, False],
    }).astype({"last_step": "Int64"})
    header, rows = table_of(frame)
    assert header == ["trial", "state", "params", "steps", "value", "best", "cost $", "CPU-s", "attempts", "duration"]
    assert rows[1] == ["1", "running", "x=0.25", "", "", "", "", "", "1", ""]
    assert trial_table(frame.iloc[0:0]) == "<p>no trials</p>"


# ---------------------------------------------------------------------- in the browser


@pytest.mark.slow  # headless Chromium
def test_the_report_page_shows_the_front_spread_out_and_fits_1000_pixels(tmp_path: Path, chromium_page: Page) -> None:
    page = chromium_page
    _, _, report = outlier_report(tmp_path)
    paths = write_report(report, tmp_path / "out")
    page.set_viewport_size({"width": 1000, "height": 800})
    page.goto(paths["html"].as_uri())
    try:
        front = plot_points(page, "Pareto front of cost against", "Pareto front")
        assert front.axis_type == "log"  # the rule's choice for this study, as the page drew it
        assert len(front.pixels) == 6
        kept, clipped = front.pixels[:-1], front.pixels[-1]
        # The five front trials below the diverged one fill most of the plot's height ...
        assert (max(kept) - min(kept)) / front.height > 0.6
        # ... and the diverged one sits on the top edge, inside the plot.
        assert 0 <= clipped < 0.1 * front.height
        history = plot_points(page, "loss against cost over time", "trial")
        assert history.axis_type == "log"
        assert page.get_by_text("1 trial off the scale").first.is_visible()

        # No sideways scrolling at 1000 pixels: neither the page nor the table is wider than the window.
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth,"
            " document.querySelector('table.trials').getBoundingClientRect().right]"
        )
        assert widths[0] <= widths[1] and widths[2] <= widths[1], widths
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)  # what the page showed, for debugging
        raise
