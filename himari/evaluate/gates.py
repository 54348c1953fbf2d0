"""Pass/fail gates an evaluation checks before anyone risks money on a model.

A gate is ``NAME OP THRESHOLD`` (``oos_sharpe>=1.5``) or a flag (``no_collapse``). The defaults
are the thresholds the project's origin set and never met: out-of-sample Sharpe >= 1.5, deflated
Sharpe >= 0.95, p < 0.05 against buy-and-hold, and no collapse onto one action.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from himari.errors import ConfigError

GATES: dict[str, tuple[str, Callable[[dict[str, Any]], float | None]]] = {
    "oos_sharpe": ("mean out-of-sample Sharpe of the walk-forward over seeds (after costs)",
                   lambda e: e["walk_forward"]["mean"]["sharpe"]),
    "oos_return": ("mean out-of-sample total return of the walk-forward over seeds (after costs)",
                   lambda e: e["walk_forward"]["mean"]["total_return"]),
    "psr": ("probabilistic Sharpe ratio of the seed ensemble (against 0)", lambda e: e["statistics"]["psr"]),
    "dsr": ("deflated Sharpe ratio of the best trial, deflated by the number of trials",
            lambda e: e["statistics"]["dsr"]),
    "p_vs_buy_and_hold": ("p-value of the seed ensemble's excess return over buy-and-hold",
                          lambda e: e["statistics"]["p_value"]["vs_buy_and_hold"]),
    "p_vs_never_trade": ("p-value of the seed ensemble's excess return over never-trade",
                         lambda e: e["statistics"]["p_value"]["vs_never_trade"]),
    "cpcv_sharpe": ("mean out-of-sample Sharpe over the CPCV paths",
                    lambda e: None if e.get("cpcv") is None else e["cpcv"]["sharpe"]["mean"]),
    "pbo": ("probability of backtest overfitting across the configurations",
            lambda e: e["statistics"].get("pbo")),
}
FLAGS = {"no_collapse": "runs that collapse onto one action (> 90% of decisions) on their fold, of every fold and seed"}
DEFAULT_GATES = ("oos_sharpe>=1.5", "dsr>=0.95", "p_vs_buy_and_hold<0.05", "no_collapse")
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_SPEC = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Gate:
    name: str
    op: str | None
    threshold: float | None

    def text(self) -> str:
        return self.name if self.op is None else f"{self.name} {self.op} {self.threshold:g}"


def parse_gate(spec: str) -> Gate:
    """``oos_sharpe>=1.5`` or ``no_collapse``; anything else is a ConfigError naming the known gates."""
    known = ", ".join([*GATES, *FLAGS])
    if spec.strip() in FLAGS:
        return Gate(spec.strip(), None, None)
    m = _SPEC.match(spec)
    if not m:
        raise ConfigError(f"--gate {spec!r}: expected NAME>=X, NAME<X ... or a flag; gates: {known}")
    name, op, value = m.groups()
    if name in FLAGS:
        raise ConfigError(f"--gate {spec!r}: {name} takes no threshold; give it alone (--gate {name})")
    if name not in GATES:
        raise ConfigError(f"--gate {spec!r}: unknown gate {name!r}; gates: {known}")
    try:
        threshold = float(value)
    except ValueError:
        raise ConfigError(f"--gate {spec!r}: {value!r} is not a number") from None
    if not math.isfinite(threshold):
        raise ConfigError(f"--gate {spec!r}: the threshold must be a finite number")
    return Gate(name, op, threshold)


def check_gates(gates: list[Gate], evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Each gate's value on the evaluation and whether it passed (a gate whose value the
    evaluation does not have, such as pbo with one configuration, fails with value None)."""
    out = []
    for g in gates:
        if g.op is None:
            collapsed = [f"{fold.get('name', fold['fold'])}/seed {seed}" for fold in evaluation["folds"]
                         for seed, run in fold["runs"].items() if run["metrics"]["collapsed"]]
            out.append({"name": g.name, "op": "<=", "threshold": 0.0, "value": len(collapsed), "passed": not collapsed,
                        "description": FLAGS[g.name] + (f" (collapsed: {', '.join(collapsed)})" if collapsed else "")})
            continue
        description, get = GATES[g.name]
        value = get(evaluation)
        passed = value is not None and math.isfinite(value) and _OPS[g.op](value, g.threshold)
        out.append({"name": g.name, "op": g.op, "threshold": g.threshold, "value": value, "passed": bool(passed),
                    "description": description})
    return out
