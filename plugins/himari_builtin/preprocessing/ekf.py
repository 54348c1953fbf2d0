"""ekf: the state of himari's Extended Kalman filter as features (seed code A1).

The native EKF (docs/ekf.md) filters the log close of each run of bars with a 4-D state: the
level of the log price, its velocity and acceleration (a constant-acceleration trend) and the
log variance of one bar's return (a stochastic-volatility observation, Harvey, Ruiz and
Shephard 1994). It is causal: the state at bar t uses closes up to t. The filter restarts at
each contiguous segment and at the first row of each train range (``filter_ranges``), so the
train rows' features come from train bars alone.

Features, chosen so a network gets stationary, scale-free inputs (the level itself is a price
and drifts without bound; its distance from the price does not):

- ``ekf_fit_gap``: log close minus the filtered level, the part of the price the filter treats as
  noise (log-return units; positive when the price is above its filtered value);
- ``ekf_fit_velocity``, ``ekf_fit_acceleration``: the trend per bar and its change, as they are
  (log-return units, already free of the price level);
- ``ekf_fit_log_variance``: the filtered log variance of one bar's return.

With ``standardize`` (the default) each is then standardised with the mean and standard
deviation of its train rows and clipped like ``zscore``: raw, on 5-minute bars the velocity
varies by about 1e-4 and the acceleration by 1e-6, and the columns come after ``zscore``'s
standardised ones. ``mode: append`` adds them to the input columns, ``replace`` gives the four
alone.

Fitting on the train split: with ``estimate`` (the default) the parameters that depend on the
asset and the bar interval are estimated from the train bars' log returns r, by moments, the way
the model's observation equations read:

- ``mu`` (long-run log variance): mean(log(r^2 + c)) + 1.2704, since log r^2 is the log variance
  plus log z^2 with E[log z^2] = -1.2704 for a standard normal z (the quasi-likelihood moment);
- ``r_level`` (microstructure noise on the log price): minus the first-order autocovariance of
  r (Roll 1984: noise e_t adds -var(e) to cov(r_t, r_t-1)), at least 1e-4 of var(r);
- ``q_level``: var(r) - 2 r_level, the rest of the return variance; ``q_velocity`` and
  ``q_acceleration`` keep their configured ratios to ``q_level``.

The Kalman gains depend on the ratios of these variances only, so the estimate sets how much
the filter smooths (the noise share of the returns) and where the volatility reverts to, from
the train data; the configured values are used as they are with ``estimate: false``. The fitted
parameters and the train rows' means and deviations are the state saved with the run.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from himari.plugin.api import PreprocessorSpec, hookimpl

OUTPUT_NAMES = ("ekf_fit_gap", "ekf_fit_velocity", "ekf_fit_acceleration", "ekf_fit_log_variance")
"""Named apart from the prepared data's own EKF columns (ekf_velocity, ...: fixed 5-minute parameters)."""
LOG_CHI2_MEAN = -1.2703628454614782
"""E[log z^2] for a standard normal z: digamma(1/2) + log 2 = -euler_gamma - log 2."""
MIN_RETURNS = 10
"""Fewest train returns (inside segments) the estimate accepts."""
NOISE_FLOOR = 1e-4
"""r_level is at least this share of the train return variance (no negative autocovariance)."""


@dataclass(frozen=True)
class EKFConfig:
    mode: Literal["append", "replace"] = "append"
    """append: the four filter columns after the input columns; replace: the four alone."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Where the filter runs: cpu, or cuda (the CUDA EKF, one GPU thread per segment; needs a GPU)."""
    estimate: bool = True
    """Estimate mu, r_level and the q_* scale from the train returns; false uses the values below."""
    standardize: bool = True
    """Standardise the four columns with their train rows' mean and standard deviation."""
    clip: float = 10.0
    """Clip standardised values to [-clip, clip]; 0 disables."""
    q_level: float = 1e-6
    """Process variance of the log-price level per bar (estimated: var(r) - 2 r_level)."""
    q_velocity: float = 1e-10
    """Process variance of the velocity (estimated: keeps its ratio to q_level)."""
    q_acceleration: float = 1e-14
    """Process variance of the acceleration (estimated: keeps its ratio to q_level)."""
    q_log_variance: float = 0.05
    """Process variance of the log variance of returns."""
    r_level: float = 2.5e-7
    """Variance of the microstructure noise on the log price (estimated: Roll's -cov(r_t, r_t-1))."""
    r_log_square: float = 4.934802200544679
    """Variance of the log-squared-return observation (pi^2 / 2, that of log chi^2_1)."""
    square_floor: float = 1e-10
    """c in log(r^2 + c): keeps flat bars (r = 0) finite."""
    phi: float = 0.99
    """Per-bar persistence of the log variance (AR(1) coefficient), in (-1, 1)."""
    mu: float = -13.0
    """Long-run log variance of one bar's log return (estimated: mean log(r^2 + c) + 1.2704)."""
    p0_level: float = 1e-4
    """Initial variance of the level."""
    p0_velocity: float = 1e-8
    """Initial variance of the velocity."""
    p0_acceleration: float = 1e-12
    """Initial variance of the acceleration."""
    p0_log_variance: float = 1.0
    """Initial variance of the log variance."""
    use_volatility_obs: bool = True
    """Use the log-squared-return observation; false reduces the filter to a linear Kalman filter."""

    def __post_init__(self) -> None:
        if self.clip < 0:
            raise ValueError("clip must be >= 0")
        positive = ("q_level", "q_velocity", "q_acceleration", "q_log_variance", "r_level", "r_log_square",
                    "square_floor", "p0_level", "p0_velocity", "p0_acceleration", "p0_log_variance")
        bad = [n for n in positive if not getattr(self, n) > 0]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be > 0")
        if not -1 < self.phi < 1:
            raise ValueError(f"phi must be in (-1, 1), got {self.phi}")


PARAM_FIELDS = tuple(f.name for f in fields(EKFConfig) if f.name not in
                     ("mode", "device", "estimate", "standardize", "clip"))


def estimate_params(log_close: np.ndarray, pieces: list[tuple[int, int]], base: dict[str, Any]) -> dict[str, Any]:
    """The noise parameters estimated from the log returns inside ``pieces`` (the module
    docstring says how); ``base`` gives the rest and the velocity/acceleration ratios."""
    from himari.plugin.api import DataError

    returns = [np.diff(log_close[a:b]) for a, b in pieces if b - a >= 2]
    r = np.concatenate(returns) if returns else np.zeros(0)
    if len(r) < MIN_RETURNS:
        raise DataError(f"ekf: the train split has {len(r)} bar-to-bar returns inside its segments; estimating "
                        f"the filter's noise needs at least {MIN_RETURNS} (or set ekf.estimate=false)")
    centred = [x - r.mean() for x in returns]
    var = float(np.mean(np.concatenate(centred) ** 2))
    if not var > 0:
        raise DataError("ekf: the train split's closes never change; there is no noise to estimate "
                        "(or set ekf.estimate=false)")
    pairs = sum(len(x) - 1 for x in centred if len(x) > 1)
    cov1 = float(sum(np.dot(x[1:], x[:-1]) for x in centred if len(x) > 1) / max(pairs, 1))
    r_level = max(-cov1, NOISE_FLOOR * var)
    q_level = var - 2 * r_level
    if not q_level > 0:  # a lag-1 correlation below -0.5: not a random walk plus noise
        r_level, q_level = var / 4, var / 2
    scale = q_level / base["q_level"]
    return {**base, "q_level": q_level, "r_level": r_level, "q_velocity": base["q_velocity"] * scale,
            "q_acceleration": base["q_acceleration"] * scale,
            "mu": float(np.mean(np.log(r ** 2 + base["square_floor"]))) - LOG_CHI2_MEAN}


def _host(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor on the GPU
        return x.detach().cpu().numpy()
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def filter_features(close: np.ndarray, pieces: list[tuple[int, int]], params: dict[str, Any],
                    device: str = "cpu") -> np.ndarray:
    """``[n, 4]`` float64: gap, velocity, acceleration and log variance of the EKF restarted at
    each piece (rows outside every piece are 0)."""
    from himari.plugin.api import EKFParams, ekf

    ekf_params = EKFParams(**params)
    out = np.zeros((len(close), 4))
    pieces = [(a, b) for a, b in pieces if b > a]
    if not pieces:
        return out
    if device == "cuda":  # one batch, one GPU thread per piece, padded with its last close
        length = max(b - a for a, b in pieces)
        batch = np.empty((len(pieces), length))
        for i, (a, b) in enumerate(pieces):
            batch[i, :b - a] = close[a:b]
            batch[i, b - a:] = close[b - 1]
        states = _host(ekf(batch, ekf_params, device="cuda"))
        per_piece = [states[i, :b - a] for i, (a, b) in enumerate(pieces)]
    else:
        per_piece = [np.asarray(ekf(close[a:b], ekf_params)) for a, b in pieces]
    for (a, b), s in zip(pieces, per_piece):
        out[a:b, 0] = np.log(close[a:b]) - s[:, 0]
        out[a:b, 1:] = s[:, 1:]
    return out


class EKF:
    def __init__(self, config: EKFConfig) -> None:
        self.config = config
        self.params: dict[str, Any] | None = None
        self.n_features: int | None = None
        self.mean: Any = None
        self.std: Any = None

    def _check(self, data: Any) -> np.ndarray:
        """The closes of ``data``, refusing what the filter cannot read."""
        from himari.plugin.api import ConfigError, DataError, cuda_available, require_finite

        if self.config.device == "cuda" and not cuda_available():
            raise ConfigError("ekf.device: cuda asked for, but no CUDA device is available here (use cpu)")
        if self.config.mode == "append":
            require_finite("ekf", np.asarray(data.features), data, "input feature")
        close = np.asarray(data.bars.close, dtype=np.float64)
        require_finite("ekf", close, data, "the close")
        if (close <= 0).any():
            i = int(np.flatnonzero(close <= 0)[0])
            raise DataError(f"ekf: the close is {close[i]} at prepared row {int(data.rows[i])}; the filter "
                            f"reads log prices, which need closes > 0")
        return close

    def fit(self, data: Any) -> None:
        """Estimate the noise parameters (``estimate``) and the standardisation on the train rows."""
        from himari.plugin.api import filter_ranges

        close = self._check(data)
        pieces = filter_ranges(data)
        base = {n: getattr(self.config, n) for n in PARAM_FIELDS}
        self.params = estimate_params(np.log(close), pieces, base) if self.config.estimate else base
        self.n_features = int(data.features.shape[1])
        raw = filter_features(close, pieces, self.params, self.config.device)
        inside = np.concatenate([np.arange(a, b) for a, b in pieces]) if pieces else np.zeros(0, np.int64)
        if len(inside) == 0:
            from himari.plugin.api import DataError

            raise DataError("ekf: the train split has no rows to fit on")
        self.mean = raw[inside].mean(axis=0)
        std = raw[inside].std(axis=0)
        self.std = np.where(std > 1e-300, std, 1.0)

    def transform(self, data: Any) -> np.ndarray:
        from himari.plugin.api import filter_ranges, require_n_features

        require_n_features("ekf", self.n_features, data)
        close = self._check(data)
        raw = filter_features(close, filter_ranges(data), self.params or {}, self.config.device)
        if self.config.standardize:
            raw = (raw - self.mean) / self.std
            if self.config.clip > 0:
                raw = np.clip(raw, -self.config.clip, self.config.clip)
        new = raw.astype(np.float32)
        if self.config.mode == "replace":
            return new
        return np.concatenate([np.asarray(data.features, dtype=np.float32), new], axis=1)

    def output_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        return OUTPUT_NAMES if self.config.mode == "replace" else (*names, *OUTPUT_NAMES)

    def state_dict(self) -> dict[str, Any]:
        return {"params": dict(self.params or {}), "n_features": self.n_features, "mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        params = state["params"]
        if set(params) != set(PARAM_FIELDS):
            raise ValueError(f"ekf state: params must be {', '.join(PARAM_FIELDS)}")
        EKFConfig(**params)  # the same checks as a configured filter
        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        if mean.shape != (4,) or std.shape != (4,) or not (np.isfinite(mean).all() and (std > 0).all()):
            raise ValueError("ekf state: mean and std must be 4 finite values, std > 0")
        n = state["n_features"]
        if not (isinstance(n, int) and n >= 0):
            raise ValueError(f"ekf state: n_features must be a count, got {n!r}")
        self.params, self.n_features, self.mean, self.std = dict(params), n, mean, std


@hookimpl
def himari_register_preprocessors(registry: Any) -> None:
    registry.add(PreprocessorSpec(name="ekf", code="A1", config=EKFConfig, factory=EKF,
                                  summary="Extended Kalman filter state (price gap, trend, acceleration, "
                                          "log variance) as features"))


__all__ = ["EKF", "EKFConfig", "OUTPUT_NAMES", "estimate_params", "filter_features"]
