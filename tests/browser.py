"""Headless Chromium for tests that look at a page as a person would.

The browser is Debian's Chromium (``/usr/bin/chromium``, or ``$HPO_CHROMIUM``),
driven by Playwright for Python. Playwright's own browser download cannot run
here (no network beyond the package registries), so ``playwright install`` is
never used: Playwright starts the system's binary through ``executable_path``.

A missing browser or Playwright *fails* the test with a message saying what to
install; it never skips, because a skipped browser test in CI would pass
without having looked at anything (``.ci/run`` installs Chromium).

Import the fixture into a test module to use it::

    from browser import chromium_page  # noqa: F401  (a pytest fixture)

:func:`plot_points` reads where a plotly plot on the page drew a trace's
points (plotly keeps the figure and its computed axes on the plot's div), so
a test can say "the front is spread over most of the plot's height" without
comparing screenshots.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

DEFAULT_CHROMIUM = "/usr/bin/chromium"

CHROMIUM_ARGS = [
    # Playwright adds --headless itself (headless=True below) and the profile's --user-data-dir.
    "--no-sandbox",  # tests run as root in CI, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--no-first-run",
    # Nothing but the page under test may touch the network: no updates, sync or pings.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TIMEOUT_MS = 15_000
"""Longest wait for one page action; the whole browser test stays well under 30 s."""


def chromium_executable() -> str:
    """The Chromium binary to drive; fails the test (never skips) when there is none."""
    wanted = os.environ.get("HPO_CHROMIUM")
    if wanted:  # asked for by name: that one or nothing
        found = wanted if os.access(wanted, os.X_OK) else None
    else:
        wanted = DEFAULT_CHROMIUM
        found = wanted if os.access(wanted, os.X_OK) else shutil.which("chromium")
    if not found:
        pytest.fail(
            f"Chromium not found at {wanted}: install it with `apt-get install -y chromium` "
            "(.ci/run does), or point $HPO_CHROMIUM at a Chromium binary",
            pytrace=False,
        )
    return found


@pytest.fixture
def chromium_page(tmp_path: Path) -> Iterator[Page]:
    """A fresh page in headless Chromium with a new profile under ``tmp_path``."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: `pip install -e '.[dev]'` (never `playwright install`)", pytrace=False)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh profile: no state leaks between tests
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=TIMEOUT_MS * 2,  # a cold start on a busy CI machine
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


# -- reading a plotly plot on the page ---------------------------------------------------------------

PLOT_POINTS_JS = """
([title, trace]) => {
    // The plot whose title contains `title`; plotly keeps its figure and computed axes on the div.
    const plot = [...document.querySelectorAll('.js-plotly-plot')].find(div => {
        const t = div.layout && div.layout.title;
        return div._fullLayout && String(t && (t.text ?? t)).includes(title);
    });
    if (!plot) return null;
    const axis = plot._fullLayout.yaxis;
    const ys = plot.data.filter(t => t.name === trace && String(t.mode).includes('markers'))
        .flatMap(t => [...t.y]).filter(y => y !== null);
    // Pixels from the top of the plotting area, where each point's marker is drawn.
    return {type: axis.type, height: axis._length, pixels: ys.map(y => axis.l2p(axis.d2l(y)))};
}
"""


@dataclass(frozen=True)
class PlotPoints:
    """Where one trace's points sit on a plotly plot in the page: the y-axis type, the plot area's height,
    and each point's distance in pixels from the plot area's top."""

    axis_type: str
    height: float
    pixels: list[float]

    @property
    def spread(self) -> float:
        """The points' vertical spread as a fraction of the plot area's height (0: a flat line)."""
        return (max(self.pixels) - min(self.pixels)) / self.height if self.pixels else 0.0


def plot_points(page: Page, title: str, trace: str) -> PlotPoints:
    """The points of the trace named ``trace`` on the plot whose title contains ``title``, once it is drawn."""
    handle = page.wait_for_function(PLOT_POINTS_JS, arg=[title, trace])
    found = handle.json_value()
    return PlotPoints(found["type"], float(found["height"]), [float(p) for p in found["pixels"]])
