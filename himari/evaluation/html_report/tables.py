"""The report's tables as HTML: the leaderboard of the targets, and per target its folds, gates
and statistics. Every text that comes from a file is escaped; numbers are formatted for reading
(percentages for returns and shares, two decimals for ratios)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from himari.evaluation.html_report.target import ReportTarget

DASH = "—"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def ratio(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:+.2f}"


def percent(value: Any, signed: bool = True) -> str:
    v = _num(value)
    return DASH if v is None else (f"{100 * v:+.2f}%" if signed else f"{100 * v:.1f}%")


def count(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:,.0f}"


def general(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:.4g}"


def probability(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:.3f}"


def with_spread(value: Any, spread: Any, fmt: Callable[[Any], str]) -> str:
    return fmt(value) if _num(spread) is None else f"{fmt(value)} ± {fmt(spread).lstrip('+')}"


def action_mix(metrics: dict[str, Any]) -> str:
    dist = metrics.get("actions")
    if not isinstance(dist, dict):
        return DASH
    return "/".join(f"{100 * float(dist.get(a, 0.0)):.0f}" for a in ("SELL", "HOLD", "BUY"))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], css: str = "",
          row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; cells are HTML already (escape text before)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return (f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def gates_passed(target: ReportTarget) -> str:
    if not target.gates:
        return DASH
    passed = sum(bool(g["passed"]) for g in target.gates)
    cls = "pass" if passed == len(target.gates) else "fail"
    return f'<span class="{cls}">{passed}/{len(target.gates)} passed</span>'


EVALUATION_COLUMNS = ("DSR", "PBO", "p vs B&amp;H", "gates")
"""The leaderboard's last columns, which only an evaluation fills."""
LEADERBOARD_HEADERS = ("#", "target", "model", "scored on", "Sharpe", "return", "max DD", "trades", "exposure",
                       "win rate", "B&amp;H Sharpe", "B&amp;H return", "Sharpe − B&amp;H", *EVALUATION_COLUMNS)


def ranked(targets: Sequence[ReportTarget]) -> list[ReportTarget]:
    """Targets by Sharpe ratio after costs, best first (a missing Sharpe last)."""
    def key(t: ReportTarget) -> float:
        v = _num(t.summary.get("sharpe"))
        return math.inf if v is None else -v  # a Sharpe of exactly 0 (a flat run) is a value, not a gap

    return sorted(targets, key=key)


def leaderboard(targets: Sequence[ReportTarget]) -> str:
    """One row per target, best Sharpe first: its metrics after costs (an evaluation's are the
    mean over seeds of the chained out-of-sample series, ± their spread), buy-and-hold on the
    same bars, and an evaluation's statistics and gates."""
    rows, classes = [], []
    for rank, t in enumerate(ranked(targets), start=1):
        m, sd = t.summary, t.summary_std
        bh = m.get("buy_and_hold") or {}
        stats = t.statistics or {}
        p_values = stats.get("p_value") if isinstance(stats.get("p_value"), dict) else {}
        sharpe, bh_sharpe = _num(m.get("sharpe")), _num(bh.get("sharpe"))
        edge = DASH if sharpe is None or bh_sharpe is None else ratio(sharpe - bh_sharpe)
        name = escape(t.label) + (' <span class="fail">collapsed</span>' if m.get("collapsed") else "")
        rows.append([str(rank), name, escape(t.model), escape(t.scope),
                     with_spread(m.get("sharpe"), sd.get("sharpe"), ratio),
                     with_spread(m.get("total_return"), sd.get("total_return"), percent),
                     percent(m.get("max_drawdown"), signed=False), count(m.get("n_trades")),
                     percent(m.get("exposure"), signed=False), percent(m.get("win_rate"), signed=False),
                     ratio(bh.get("sharpe")), percent(bh.get("total_return")), edge,
                     probability(stats.get("dsr")), probability(stats.get("pbo")),
                     probability(p_values.get("vs_buy_and_hold")), gates_passed(t)])
        classes.append("edge" if sharpe is not None and bh_sharpe is not None and sharpe > bh_sharpe else "")
    if not any(t.statistics or t.gates for t in targets):  # runs alone: no statistics, no gates
        keep = len(LEADERBOARD_HEADERS) - len(EVALUATION_COLUMNS)
        return table(LEADERBOARD_HEADERS[:keep], [r[:keep] for r in rows], "leaderboard", classes)
    return table(LEADERBOARD_HEADERS, rows, "leaderboard", classes)


FOLD_HEADERS = ("fold", "test span", "strategy", "Sharpe", "return", "max DD", "trades", "exposure", "win rate",
                "S/H/B %", "B&amp;H Sharpe", "B&amp;H return")


def folds(target: ReportTarget) -> str:
    rows, classes = [], []
    for f in target.folds:
        m, bh = f.metrics, f.buy_and_hold or {}
        rows.append([escape(f.fold), f"{escape(f.start)} → {escape(f.end)}", escape(f.strategy),
                     ratio(m.get("sharpe")), percent(m.get("total_return")),
                     percent(m.get("max_drawdown"), signed=False), count(m.get("n_trades")),
                     percent(m.get("exposure"), signed=False), percent(m.get("win_rate"), signed=False),
                     action_mix(m) + (' <span class="fail">collapsed</span>' if m.get("collapsed") else ""),
                     ratio(bh.get("sharpe")), percent(bh.get("total_return"))])
        classes.append("collapsed" if m.get("collapsed") else "")
    return table(FOLD_HEADERS, rows, "folds", classes)


def gates(target: ReportTarget) -> str:
    if not target.gates:
        return ('<p class="note">No gates: a run directory is scored on one split; an evaluation '
                "directory carries the gates its model must pass.</p>")
    rows, classes = [], []
    for g in target.gates:
        ok = bool(g["passed"])
        rows.append([escape(str(g["name"])), general(g["value"]), general(g["threshold"]),
                     '<span class="pass">passed</span>' if ok else '<span class="fail">FAILED</span>',
                     escape(str(g["description"]))])
        classes.append("" if ok else "failed")
    return table(("gate", "value", "threshold", "result", "description"), rows, "gates", classes)


def statistics(target: ReportTarget) -> str:
    """The evaluation's statistics (probabilistic and deflated Sharpe ratios, probability of
    backtest overfitting, bootstrap p-values) and its CPCV paths; empty for a run."""
    s = target.statistics
    if not s:
        return ""
    p_values = s.get("p_value") if isinstance(s.get("p_value"), dict) else {}
    rows = [("trials", count(s.get("n_trials"))),
            ("probabilistic Sharpe ratio (PSR)", probability(s.get("psr"))),
            ("deflated Sharpe ratio (DSR)", probability(s.get("dsr"))),
            ("probability of backtest overfitting (PBO)",
             probability(s.get("pbo")) if s.get("pbo") is not None else "not computed"),
            ("p-value, model vs buy-and-hold", probability(p_values.get("vs_buy_and_hold"))),
            ("p-value, model vs never-trade", probability(p_values.get("vs_never_trade"))),
            ("test", escape(str(s.get("method", DASH)))),
            ("block length (bars)", count(s.get("block_length"))),
            ("resamples", count(s.get("resamples")))]
    cpcv = target.cpcv
    if cpcv:
        sharpe = cpcv.get("sharpe") or {}
        rows.append(("CPCV paths", count(len(cpcv.get("paths") or []))))
        rows.append(("CPCV Sharpe", with_spread(sharpe.get("mean"), sharpe.get("std"), ratio)))
    else:
        rows.append(("CPCV", "not run"))
    return table(("statistic", "value"), [list(r) for r in rows], "statistics")
