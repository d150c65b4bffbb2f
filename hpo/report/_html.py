"""The report as one self-contained HTML page: summary, notes, both plots, the trial table.

plotly.js is inlined once (about 4.5 MB), so the page opens offline, from a
mail attachment or a pod's volume, with nothing fetched from the network.
Everything that comes from the study (parameter values, error texts) is
HTML-escaped. The page fits a window about 1000 pixels wide with no
sideways scrolling: the plots take the page's width, and the table
(:mod:`hpo.report._table`) wraps its text cells.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from hpo.report._table import trial_table

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; padding: 0 1em;
       max-width: 1200px; color: #222; overflow-wrap: break-word; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
ul.summary li { margin: 0.2em 0; }
.note { background: #fff4e5; border-left: 4px solid #ff9800; padding: 0.5em 1em; margin: 0.5em 0; }
table.trials { border-collapse: collapse; font-size: 0.85em; width: 100%; }
table.trials th, table.trials td { border: 1px solid #ddd; padding: 0.25em 0.4em; text-align: right;
                                   vertical-align: top; white-space: nowrap; }
table.trials .text { text-align: left; white-space: normal; overflow-wrap: anywhere; }
table.trials tr.front td { background: #fdecea; font-weight: 600; }
"""


def render_html(
    title: str,
    summary: Sequence[str],
    notes: Sequence[str],
    figures: Sequence[go.Figure],
    frame: pd.DataFrame,
) -> str:
    """The whole page as a string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<ul class="summary">' + "".join(f"<li>{html.escape(line)}</li>" for line in summary) + "</ul>",
    ]
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
    for index, figure in enumerate(figures):
        # plotly.js once, inline, with the first figure; the others reuse it.
        parts.append(pio.to_html(figure, include_plotlyjs=index == 0, full_html=False, default_width="100%",
                                 config={"responsive": True}))
    parts.append("<h2>Trials</h2>")
    parts.append(trial_table(frame))
    parts.append("</body></html>")
    return "\n".join(parts)
