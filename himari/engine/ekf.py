"""The batched Extended Kalman filter of the native core (model: docs/ekf.md)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from himari.engine import args
from himari.engine._native import _core
from himari.engine.arrays import as_host_array, is_device_array
from himari.errors import InvalidArgumentError

STATE_NAMES = ("level", "velocity", "acceleration", "log_variance")


@dataclass(frozen=True)
class EKFParams:
    """Noise and dynamics of the EKF; defaults suit 5-minute crypto bars (docs/ekf.md)."""

    q_level: float = 1e-6
    """Process variance of the log-price level per bar."""
    q_velocity: float = 1e-10
    """Process variance of the velocity (drift per bar)."""
    q_acceleration: float = 1e-14
    """Process variance of the acceleration."""
    q_log_variance: float = 0.05
    """Process variance of the log variance of returns."""
    r_level: float = 2.5e-7
    """Variance of the microstructure noise on the log price."""
    r_log_square: float = 4.934802200544679
    """Variance of the log-squared-return observation (pi^2 / 2, that of log chi^2_1)."""
    square_floor: float = 1e-10
    """c in log(r^2 + c): keeps flat bars (r = 0) finite; about a 0.001% move squared."""
    phi: float = 0.99
    """Per-bar persistence of the log variance (AR(1) coefficient)."""
    mu: float = -13.0
    """Long-run log variance of one bar's log return (exp(-13/2) ~ 0.15%)."""
    p0_level: float = 1e-4
    p0_velocity: float = 1e-8
    p0_acceleration: float = 1e-12
    p0_log_variance: float = 1.0
    use_volatility_obs: bool = True
    """Use the log-squared-return observation; False reduces the filter to a linear KF."""

    def to_native(self) -> _core.EkfParams:
        native = _core.EkfParams()
        for f in fields(self):
            value = getattr(self, f.name)
            name = f"EKFParams.{f.name}"
            checked = args.flag(name, value) if f.name == "use_volatility_obs" else args.real(name, value)
            setattr(native, f.name, checked)
        return native


def ekf(
    prices: Any,
    params: EKFParams | None = None,
    *,
    return_innovations: bool = False,
    device: str = "cpu",
) -> Any:
    """Filter price series ``[B, T]`` (or ``[T]``) into states ``[B, T, 4]`` (or ``[T, 4]``).

    States are (level, velocity, acceleration, log_variance) of the log price, each using
    prices up to its bar only. With ``return_innovations`` also returns ``[B, T, 2]``
    innovations (log-price and log-squared-return observation).

    ``device="cuda"`` runs one GPU thread per series (worth it for thousands of series);
    ``prices`` may be a CUDA array (read in place) or a host array (copied once); the results are
    torch tensors on the GPU (``DeviceArray`` objects without torch).
    """
    from himari.engine.device import as_framework_array, check_device, current_stream, device_index

    device = check_device(device)
    on_gpu = device != "cpu"
    p = prices if on_gpu and is_device_array(prices) else as_host_array(prices)
    squeeze = p.ndim == 1 if isinstance(p, np.ndarray) else on_gpu and len(getattr(p, "shape", ())) == 1
    if squeeze:
        p = p.reshape(1, -1)
    if params is not None and not isinstance(params, EKFParams):
        raise InvalidArgumentError(f"params: expected an EKFParams, got {type(params).__name__} {params!r}; "
                                   "build one with EKFParams(q_level=...)")
    native = (params if params is not None else EKFParams()).to_native()
    if on_gpu:
        index = device_index(device)
        states, innovations = _core.ekf_cuda(p, native, args.flag("return_innovations", return_innovations), index, current_stream(index))
        states = as_framework_array(states)
        innovations = None if innovations is None else as_framework_array(innovations)
    else:
        states, innovations = _core.ekf(p, native, args.flag("return_innovations", return_innovations), device)
    if squeeze:
        states = states[0]
        innovations = None if innovations is None else innovations[0]
    return (states, innovations) if return_innovations else states
