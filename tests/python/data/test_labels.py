"""Labelers: measured from the env's fill (open[t+1]), undefined at the end, pluggable."""

from __future__ import annotations

import numpy as np
import pytest

from himari.data.labels import (
    BUY,
    HOLD,
    LABELERS,
    SELL,
    UNDEFINED,
    forward_return,
    label_distribution,
    make_labels,
    register_labeler,
    risk_adjusted,
    triple_barrier,
)
from himari.errors import DataError


def _prices(opens):
    o = np.asarray(opens, dtype=np.float64)
    return o, o * 1.001, o * 0.999, o


def test_forward_return_enters_at_next_open():
    o = np.array([100, 100, 101, 100, 99, 99.5, 100, 100], dtype=np.float64)
    res = forward_return(o, o, o, o * 5, horizon=2, threshold=0.005)  # close is irrelevant
    # label t compares open[t+3] with open[t+1]: 0, -1.98%, -0.50%, +1.01%, +0.50%
    np.testing.assert_allclose(res.target[:5], np.log(o[3:8] / o[1:6]), rtol=1e-6)
    assert res.labels.tolist() == [HOLD, SELL, SELL, BUY, BUY, UNDEFINED, UNDEFINED, UNDEFINED]
    flat = forward_return(o, o, o, o, horizon=2, threshold=0.03)
    assert flat.labels.tolist()[:5] == [HOLD] * 5
    assert res.lookahead == 3 and res.params == {"horizon": 2, "threshold": 0.005}


def test_default_forward_return_parameters():
    spec = LABELERS["forward-return"]
    assert spec.defaults == {"horizon": 5, "threshold": 0.002}
    o = np.linspace(100, 110, 50)
    res = make_labels("forward-return", *_prices(o))
    assert (res.labels[:-6] == BUY).all() and (res.labels[-6:] == UNDEFINED).all()


def test_triple_barrier_first_touch_and_pessimistic_tie():
    n = 80
    rng = np.random.default_rng(0)
    c = np.empty(n)
    c[:60] = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, 60)))  # gives a volatility estimate
    c[60:] = c[59]  # then flat, so only the touches placed below decide
    o = c.copy()
    h, l = c * 1.00001, c * 0.99999
    res = triple_barrier(o, h, l, c, horizon=5, take_profit=1.0, stop_loss=1.0, vol_window=20)
    t = 59  # entry at o[60]; bars 60..64 decide
    width = np.std(np.diff(np.log(c[:t + 1]))[-20:]) * np.sqrt(5)
    assert res.labels[t] == HOLD  # nothing touched by the time limit
    h2, l2 = h.copy(), l.copy()
    h2[62] = o[60] * np.exp(2 * width)  # take-profit touched at bar 61
    assert triple_barrier(o, h2, l2, c, horizon=5, vol_window=20).labels[t] == BUY
    l2[62] = o[60] * np.exp(-2 * width)  # both touched in the same bar: stop-loss assumed first
    assert triple_barrier(o, h2, l2, c, horizon=5, vol_window=20).labels[t] == SELL
    l3 = l.copy()
    l3[61] = o[60] * np.exp(-2 * width)  # stop-loss one bar earlier than the take-profit
    assert triple_barrier(o, h2, l3, c, horizon=5, vol_window=20).labels[t] == SELL
    assert (res.labels[:20] == UNDEFINED).all()  # no volatility estimate yet
    assert (res.labels[-6:] == UNDEFINED).all()


def test_triple_barrier_width_is_the_causal_volatility_at_t_and_bar_t_itself_never_decides():
    """The barriers sit at +/- sigma_t * sqrt(horizon) from the entry, sigma_t the population std
    (ddof 0) of the ``vol_window`` log returns up to close[t]: a touch 0.5% beyond the barrier
    decides, 0.5% short of it does not. Bar t's own range (before the entry at open[t+1]) never
    decides."""
    n = 80
    rng = np.random.default_rng(3)
    c = np.empty(n)
    c[:60] = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, 60)))
    c[60:] = c[59] * 1.01  # a jump at close[t+1]: a volatility that read it would be far wider
    o = c.copy()
    h, l = c * 1.0000001, c * 0.9999999
    t = 59
    r = np.diff(np.log(c[:t + 1]))[-20:]
    width = np.sqrt(np.mean((r - r.mean()) ** 2)) * np.sqrt(5)  # by hand, ddof 0
    for factor, label in ((1.005, BUY), (0.995, HOLD)):
        h2 = h.copy()
        h2[62] = o[60] * np.exp(factor * width)
        assert triple_barrier(o, h2, l, c, horizon=5, vol_window=20).labels[t] == label, factor
        l2 = l.copy()
        l2[62] = o[60] * np.exp(-factor * width)
        assert triple_barrier(o, h, l2, c, horizon=5, vol_window=20).labels[t] == (SELL if label == BUY else HOLD)
    h3, l3 = h.copy(), l.copy()
    h3[t], l3[t] = o[60] * np.exp(3 * width), o[60] * np.exp(-3 * width)  # bar t touches both: not counted
    assert triple_barrier(o, h3, l3, c, horizon=5, vol_window=20).labels[t] == HOLD


def test_a_return_exactly_at_the_threshold_is_hold():
    """BUY above +threshold and SELL below -threshold, strictly: a forward return equal to the
    threshold (the same float) is HOLD."""
    o = np.array([100.0, 100.0, 103.0, 100.0, 97.0, 97.0])
    up = float(np.log(o[2]) - np.log(o[1]))  # t = 0: open[2] against open[1]
    res = forward_return(o, o, o, o, horizon=1, threshold=up)
    assert res.target[0] == up and res.labels[0] == HOLD
    down = float(np.log(o[4]) - np.log(o[3]))  # t = 2: open[4] against open[3]
    res = forward_return(o, o, o, o, horizon=1, threshold=-down)
    assert res.target[2] == down and res.labels[2] == HOLD
    assert forward_return(o, o, o, o, horizon=1, threshold=up * 0.999).labels[0] == BUY


def test_risk_adjusted_scales_by_volatility():
    rng = np.random.default_rng(1)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 400)))
    o = np.r_[100, c[:-1]]
    res = risk_adjusted(o, c * 1.001, c * 0.999, c, horizon=5, z=0.5, vol_window=48)
    valid = res.labels >= 0
    y = res.target[valid]
    assert ((y > 0.5) == (res.labels[valid] == BUY)).all()
    assert ((y < -0.5) == (res.labels[valid] == SELL)).all()
    assert 0.5 < np.std(y) < 2.0  # in volatility units
    # by hand at a few rows: forward log return over sigma_t * sqrt(5), sigma_t the ddof-0 std of
    # the 48 close-to-close log returns up to close[t]
    r = np.diff(np.log(c))
    for t in (60, 200, 390):
        sigma = np.std(r[t - 48:t], ddof=0)
        want = np.log(o[t + 6] / o[t + 1]) / (sigma * np.sqrt(5))
        assert res.target[t] == pytest.approx(want, rel=1e-5)


def test_errors_and_registry():
    o = np.linspace(100, 101, 30)
    with pytest.raises(DataError, match="unknown"):
        make_labels("nope", *_prices(o))
    with pytest.raises(DataError, match="unknown parameter"):
        make_labels("triple-barrier", *_prices(o), threshold=0.1)
    with pytest.raises(DataError, match="horizon"):
        make_labels("forward-return", *_prices(o), horizon=0)
    with pytest.raises(DataError, match="already registered"):
        register_labeler("forward-return", "dup", {})(forward_return)


def test_plugin_labeler_registers():
    @register_labeler("always-buy", "test labeler", {"horizon": 1})
    def always_buy(open, high, low, close, *, horizon=1):
        from himari.data.labels import LabelResult

        lab = np.full(len(open), BUY, dtype=np.int8)
        lab[-2:] = UNDEFINED
        return LabelResult(lab, np.zeros(len(open), np.float32), horizon + 1, "always-buy", {"horizon": horizon})

    try:
        res = make_labels("always-buy", *_prices(np.ones(10)))
        assert label_distribution(res.labels) == {"SELL": 0, "HOLD": 0, "BUY": 8}
    finally:
        LABELERS.pop("always-buy", None)


BAD_PARAMS = [
    ("forward-return", "threshold", float("nan")),
    ("forward-return", "threshold", float("inf")),
    ("forward-return", "threshold", -0.001),
    ("forward-return", "horizon", 0),
    ("forward-return", "horizon", -3),
    ("forward-return", "horizon", 2.5),
    ("forward-return", "horizon", float("nan")),
    ("forward-return", "horizon", True),
    ("triple-barrier", "take_profit", float("nan")),
    ("triple-barrier", "take_profit", 0.0),
    ("triple-barrier", "stop_loss", float("-inf")),
    ("triple-barrier", "stop_loss", -1.0),
    ("triple-barrier", "vol_window", 1),
    ("triple-barrier", "vol_window", 0),
    ("risk-adjusted", "z", float("nan")),
    ("risk-adjusted", "z", -0.5),
    ("risk-adjusted", "vol_window", 1),
]


@pytest.mark.parametrize(("labeler", "name", "value"), BAD_PARAMS)
def test_out_of_domain_label_parameters_are_refused(labeler, name, value):
    """Before, a NaN threshold compared False everywhere and labelled every bar HOLD; a NaN
    barrier or z did the same; a negative z or a 1-bar volatility window gave nonsense."""
    o = np.linspace(100, 110, 200)
    with pytest.raises(DataError, match=rf"{name} \(--{name.replace('_', '-')}\)"):
        make_labels(labeler, *_prices(o), **{name: value})
    func = {"forward-return": forward_return, "triple-barrier": triple_barrier, "risk-adjusted": risk_adjusted}[labeler]
    with pytest.raises(DataError, match=name):  # the functions themselves refuse too
        func(*_prices(o), **{name: value})


def test_boundary_label_parameters_are_accepted():
    o = np.linspace(100, 110, 200)
    res = make_labels("forward-return", *_prices(o), horizon=1, threshold=0.0)
    assert res.params == {"horizon": 1, "threshold": 0.0}
    assert make_labels("risk-adjusted", *_prices(o), z=0, vol_window=2).params["vol_window"] == 2
    assert make_labels("forward-return", *_prices(o), horizon=np.int64(3)).lookahead == 4
    assert make_labels("forward-return", *_prices(o), horizon=3.0).params["horizon"] == 3


@pytest.mark.parametrize(("args", "option"), [
    (["--threshold", "nan"], "--threshold"),
    (["--threshold", "-0.1"], "--threshold"),
    (["--horizon", "0"], "--horizon"),
    (["--labels", "triple-barrier", "--take-profit", "inf"], "--take-profit"),
    (["--labels", "triple-barrier", "--stop-loss", "nan"], "--stop-loss"),
    (["--labels", "risk-adjusted", "--z", "nan"], "--z"),
    (["--labels", "risk-adjusted", "--vol-window", "1"], "--vol-window"),
])
def test_prepare_cli_refuses_bad_label_parameters_before_any_work(tmp_path, monkeypatch, args, option):
    from typer.testing import CliRunner

    from himari.cli import app

    def boom(*a, **k):
        raise AssertionError("the synthetic market was generated before the parameters were checked")

    monkeypatch.setattr("himari.data.synthetic.load_synthetic", boom)
    res = CliRunner().invoke(app, ["data", "prepare", "--out", str(tmp_path / "p"), "--synth-bars", "3000", *args])
    assert res.exit_code == 2, res.output
    assert option in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []
