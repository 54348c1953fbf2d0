"""The report page: one self-contained HTML file that opens offline.

plotly.js is embedded once, in the page head (about 4.8 MB, the bulk of the file); each figure
is a div and a short script calling ``Plotly.newPlot`` with its data. Nothing is fetched from a
network when the page opens, so a report can be mailed, archived or opened on a machine
without internet access. The file is written atomically: a failed report leaves nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from himari.data.atomic import output_target, write_text_atomic
from himari.errors import DataError
from himari.evaluation.html_report import tables
from himari.evaluation.html_report.figures import MAX_POINTS, build_figures
from himari.evaluation.html_report.target import ReportTarget

SECTIONS = {"leaderboard": "Leaderboard", "equity": "Equity", "drawdown": "Drawdown",
            "rolling-sharpe": "Rolling Sharpe", "positions": "Positions", "action-mix": "Action mix",
            "targets": "Folds, gates and statistics"}

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1400px; padding: 0 16px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta, .note { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.88em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e5e5; text-align: right; white-space: nowrap; }
th { background: #f5f5f5; }
td:nth-child(-n+3), th:nth-child(-n+3) { text-align: left; }
table.leaderboard td:nth-child(4), table.leaderboard th:nth-child(4) { text-align: left; }
table.gates td:last-child, table.statistics td:first-child { text-align: left; white-space: normal; }
tr.edge td:nth-child(13) { color: #1a7f37; font-weight: 600; }
tr.failed, tr.collapsed { background: #fff4f4; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #c62828; font-weight: 600; }
.scroll { overflow-x: auto; }
.figure { margin: 12px 0 24px; border-top: 1px solid #ddd; }
nav { font-size: 0.9em; margin: 8px 0 0; } nav a { margin-right: 14px; color: #1f77b4; text-decoration: none; }
"""


REPORT_SUFFIXES = (".html", ".htm")


def check_output(path: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """The report's absolute path, refused at once (before any scoring) when it cannot be
    written: a directory, a path under a file, or one that could replace what the report reads:
    an input file itself, or a file inside an input directory other than an HTML page (a run's
    ``config.yaml`` or an evaluation's ``evaluation.json`` written over would destroy it, while
    an evaluation's own ``report.html`` may be written again)."""
    target = output_target(path)
    if target.is_dir():
        raise DataError(f"--out {path}: is a directory; give the report's file name (report.html)")
    for source in inputs:
        where = output_target(source)
        inside = where.is_dir() and where in target.parents
        if target == where:
            raise DataError(f"--out {path}: is the input {source}; write the report elsewhere")
        if inside and target.suffix.lower() not in REPORT_SUFFIXES:
            raise DataError(f"--out {path}: inside the input {source} only an .html page may be written (this "
                            f"name could replace a file the report reads)")
    for ancestor in target.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise DataError(f"--out {path}: {ancestor} is a file, not a directory")
            break
    return target


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    # MathJax 'local': plotly.js never tries to load MathJax from a network
    return ("<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
            f'<script type="text/javascript">{get_plotlyjs()}</script>')


def _figure_html(key: str, fig: Any) -> str:
    import plotly.io as pio

    height = int(fig.layout.height or 420)
    div = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=f"figure-{key}",
                      default_height=f"{height}px", default_width="100%",
                      config={"displaylogo": False, "responsive": True})
    return f'<section class="figure" id="{key}">{div}</section>'


def _target_section(t: ReportTarget) -> str:
    costs = t.costs or {}
    cost_text = (f", fee {costs['fee']:g} + slippage {costs['slippage']:g} per fill"
                 if "fee" in costs and "slippage" in costs else "")
    parts = [f'<section class="target"><h3>{escape(t.label)}</h3>',
             f'<p class="meta">{escape(t.kind)} of {escape(t.model)} on {escape(t.data)}: {escape(t.scope)}'
             f"{escape(cost_text)}</p>",
             "<h4>Folds</h4>", tables.folds(t), "<h4>Gates</h4>", tables.gates(t)]
    stats = tables.statistics(t)
    if stats:
        parts += ["<h4>Statistics</h4>", stats]
    parts.append("</section>")
    return "\n".join(parts)


def render_report(targets: Sequence[ReportTarget], *, title: str = "himari report", window: int | None = None,
                  max_points: int = MAX_POINTS) -> str:
    """The whole page as one HTML string."""
    import himari

    figures = build_figures(targets, window=window, max_points=max_points)
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{len(targets)} target{"s" if len(targets) != 1 else ""}; created {created} '
            f"by himari {escape(himari.__version__)}. All metrics are after fees and slippage.</p>",
            "<nav>" + "".join(f'<a href="#{key}">{name}</a>' for key, name in SECTIONS.items()) + "</nav>",
            '<section id="leaderboard"><h2>Leaderboard</h2>',
            '<p class="note">Best Sharpe ratio first. An evaluation shows the mean over its seeds of the '
            "walk-forward out-of-sample metrics (± their standard deviation); B&amp;H is buy-and-hold on the "
            "same bars; a highlighted Sharpe − B&amp;H beats buy-and-hold.</p>",
            tables.leaderboard(targets), "</section>"]
    body += [_figure_html(key, fig) for key, fig in figures]
    body.append('<section id="targets"><h2>Folds, gates and statistics</h2>')
    body += [_target_section(t) for t in tables.ranked(targets)]
    body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n{_plotly_js()}\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_report(targets: Sequence[ReportTarget], out: str | Path, **options: Any) -> Path:
    """Render the report and write it to ``out`` atomically; returns its absolute path."""
    path = check_output(out)
    write_text_atomic(path, render_report(targets, **options))
    return path
