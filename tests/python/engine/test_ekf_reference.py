"""himari.engine.ekf against a float64 reference EKF and a hand-written linear KF (docs/ekf.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


import engine_reference as ref  # noqa: E402  (conftest.py puts this folder on sys.path)

import himari.engine as engine  # noqa: E402


def _prices(seed, B, T, vol=0.002, dtype=np.float64):
    rng = np.random.default_rng(seed)
    # Volatility that changes over time, so the log-variance state has something to track.
    sig = vol * np.exp(np.cumsum(rng.normal(0.0, 0.05, size=(B, T)), axis=1))
    logp = math.log(100.0) + np.cumsum(rng.normal(0.0, 1.0, size=(B, T)) * sig, axis=1)
    return np.exp(logp).astype(dtype)


def assert_states_close(got, want, rtol=1e-9, what="states"):
    """rtol on each state component, with an atol of rtol times that component's scale (velocity
    and acceleration cross zero, where a pure relative test is meaningless)."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    for k in range(want.shape[-1]):
        scale = float(np.max(np.abs(want[..., k]))) if want.size else 0.0
        np.testing.assert_allclose(got[..., k], want[..., k], rtol=rtol, atol=rtol * scale + 1e-300,
                                   err_msg=f"{what}[..., {k}]")


# ------------------------------------------------------------------------------------------
# A closed-form linear Kalman filter (constant-acceleration level, scalar observation)
# ------------------------------------------------------------------------------------------


def linear_kf(prices, q=(1e-6, 1e-10, 1e-14), r=2.5e-7, p0=(1e-4, 1e-8, 1e-12)):
    """Textbook KF written independently of the reference EKF: 3 states, scalar updates with the
    gain written out element by element, standard (non-Joseph) covariance update."""
    y = np.log(np.asarray(prices, dtype=np.float64))
    F = np.array([[1.0, 1.0, 0.5], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    Q = np.diag(q)
    x = np.array([y[0], 0.0, 0.0])
    P = np.diag(p0).astype(np.float64)
    out = np.zeros((y.size, 3))
    for t in range(y.size):
        if t > 0:
            x = F @ x
            P = F @ P @ F.T + Q
        s = P[0, 0] + r
        k = P[:, 0] / s
        x = x + k * (y[t] - x[0])
        P = P - np.outer(k, P[0, :])
        P = (P + P.T) / 2.0
        out[t] = x
    return out


def test_reference_linear_mode_equals_linear_kf():
    p = _prices(0, 1, 300)[0]
    states, innov = ref.reference_ekf(p, {"use_volatility_obs": False})
    kf = linear_kf(p)
    assert_states_close(states[:, :3], kf, rtol=1e-8, what="reference vs linear KF")
    np.testing.assert_array_equal(states[:, 3], -13.0)


def test_reference_first_bar():
    p = _prices(1, 1, 5)[0]
    states, innov = ref.reference_ekf(p)
    np.testing.assert_allclose(states[0], [math.log(p[0]), 0.0, 0.0, -13.0], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(innov[0], 0.0)


# ------------------------------------------------------------------------------------------
# Native vs reference
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B,T", [(1, 50), (3, 400), (5, 1000)])
def test_ekf_matches_reference(dtype, B, T):
    prices = _prices(B * 1000 + T, B, T, dtype=dtype)
    params = engine.EKFParams()
    states, innov = engine.ekf(prices, params, return_innovations=True)
    states = np.asarray(states)
    innov = np.asarray(innov)
    assert states.dtype == np.float64 and states.shape == (B, T, 4)
    assert innov.dtype == np.float64 and innov.shape == (B, T, 2)
    want_s, want_i = ref.reference_ekf(prices.astype(np.float64), params)
    assert_states_close(states, want_s)
    assert_states_close(innov, want_i, what="innovations")
    np.testing.assert_array_equal(innov[:, 0, 1], 0.0)


def test_ekf_1d_input():
    p = _prices(7, 1, 200)[0]
    states = np.asarray(engine.ekf(p))
    assert states.shape == (200, 4)
    want, _ = ref.reference_ekf(p)
    assert_states_close(states, want)
    s2, i2 = engine.ekf(p, engine.EKFParams(), return_innovations=True)
    assert np.asarray(s2).shape == (200, 4) and np.asarray(i2).shape == (200, 2)


def test_ekf_default_params_match_docs():
    p = engine.EKFParams()
    for k, v in ref.EKF_DEFAULTS.items():
        assert getattr(p, k) == v, k


@given(
    seed=st.integers(0, 2**32 - 1),
    B=st.integers(1, 3),
    T=st.integers(2, 150),
    vol=st.sampled_from([1e-4, 2e-3, 3e-2]),
    q_level=st.floats(1e-8, 1e-4),
    q_log_variance=st.floats(1e-3, 0.5),
    r_level=st.floats(1e-9, 1e-5),
    phi=st.floats(0.5, 0.999),
    mu=st.floats(-18.0, -6.0),
    use_vol=st.booleans(),
)
@settings(max_examples=30, deadline=None)
def test_ekf_matches_reference_random_params(seed, B, T, vol, q_level, q_log_variance, r_level, phi, mu, use_vol):
    prices = _prices(seed, B, T, vol=vol)
    params = engine.EKFParams(q_level=q_level, q_log_variance=q_log_variance, r_level=r_level, phi=phi, mu=mu,
                              use_volatility_obs=use_vol)
    states, innov = engine.ekf(prices, params, return_innovations=True)
    want_s, want_i = ref.reference_ekf(prices, params)
    assert_states_close(states, want_s)
    np.testing.assert_allclose(np.asarray(innov)[..., 0], want_i[..., 0], rtol=1e-9,
                               atol=1e-9 * float(np.max(np.abs(want_i[..., 0]))) + 1e-300)
    if use_vol:
        np.testing.assert_allclose(np.asarray(innov)[..., 1], want_i[..., 1], rtol=1e-9,
                                   atol=1e-9 * float(np.max(np.abs(want_i[..., 1]))) + 1e-300)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ekf_linear_mode_vs_linear_kf(dtype):
    prices = _prices(3, 2, 500, dtype=dtype)
    params = engine.EKFParams(use_volatility_obs=False)
    states = np.asarray(engine.ekf(prices, params))
    for b in range(2):
        kf = linear_kf(prices[b].astype(np.float64))
        assert_states_close(states[b, :, :3], kf, rtol=1e-8, what=f"series {b} vs linear KF")
        np.testing.assert_allclose(states[b, :, 3], -13.0, rtol=1e-15)
    want, _ = ref.reference_ekf(prices.astype(np.float64), params)
    assert_states_close(states, want)


def test_ekf_linear_mode_custom_params_vs_linear_kf():
    prices = _prices(4, 1, 300, vol=0.01)
    q = (3e-5, 1e-8, 1e-12)
    p0 = (1e-3, 1e-6, 1e-10)
    params = engine.EKFParams(q_level=q[0], q_velocity=q[1], q_acceleration=q[2], r_level=1e-5,
                              p0_level=p0[0], p0_velocity=p0[1], p0_acceleration=p0[2], use_volatility_obs=False)
    states = np.asarray(engine.ekf(prices, params))
    kf = linear_kf(prices[0], q=q, r=1e-5, p0=p0)
    assert_states_close(states[0, :, :3], kf, rtol=1e-8, what="linear KF (custom params)")


# ------------------------------------------------------------------------------------------
# Causality and batch independence
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_vol", [True, False])
def test_ekf_is_causal(use_vol):
    B, T = 3, 300
    prices = _prices(9, B, T)
    params = engine.EKFParams(use_volatility_obs=use_vol)
    full = np.asarray(engine.ekf(prices, params))
    rng = np.random.default_rng(0)
    for cut in (1, 2, 17, 150, T - 1):
        part = np.asarray(engine.ekf(np.ascontiguousarray(prices[:, :cut]), params))
        np.testing.assert_array_equal(part, full[:, :cut], err_msg=f"truncated at {cut}")
        changed = prices.copy()
        changed[:, cut:] *= np.exp(rng.normal(0.0, 0.05, size=(B, T - cut)))
        alt = np.asarray(engine.ekf(changed, params))
        np.testing.assert_array_equal(alt[:, :cut], full[:, :cut], err_msg=f"future changed after {cut}")
        if cut < T:
            assert not np.array_equal(alt[:, cut:], full[:, cut:])


def test_ekf_batch_is_independent():
    prices = _prices(10, 4, 250)
    params = engine.EKFParams()
    full, inn = engine.ekf(prices, params, return_innovations=True)
    for b in range(4):
        one, one_inn = engine.ekf(np.ascontiguousarray(prices[b : b + 1]), params, return_innovations=True)
        assert_states_close(np.asarray(one)[0], np.asarray(full)[b], rtol=1e-12, what=f"series {b}")
        assert_states_close(np.asarray(one_inn)[0], np.asarray(inn)[b], rtol=1e-12, what=f"innovations {b}")
    # Reordering the batch reorders the output.
    perm = np.array([2, 0, 3, 1])
    shuffled = np.asarray(engine.ekf(np.ascontiguousarray(prices[perm]), params))
    assert_states_close(shuffled, np.asarray(full)[perm], rtol=1e-12, what="permuted batch")
