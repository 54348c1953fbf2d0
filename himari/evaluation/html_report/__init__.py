"""HTML reports: one self-contained page (plotly figures and tables) that shows whether a model
has an edge over buy-and-hold after costs.

``load_evaluation`` reads an evaluation directory (``himari evaluate``); a run directory is
scored into the same ``ReportTarget`` by ``himari.training.report_runs``; ``write_report``
draws any number of targets into one file (``himari report``).
"""

from __future__ import annotations

from himari.evaluation.html_report.evaluation_dir import is_evaluation_dir, load_evaluation
from himari.evaluation.html_report.page import check_output, render_report, write_report
from himari.evaluation.html_report.target import FoldRow, ReportTarget

__all__ = ["FoldRow", "ReportTarget", "check_output", "is_evaluation_dir", "load_evaluation", "render_report",
           "write_report"]
