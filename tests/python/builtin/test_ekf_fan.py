"""The ekf (A1) and fan (A3) preprocessors: values pinned against direct computations (the
native EKF called on each run of bars; a per-window FFT written out), hand cases, causality by
truncation, what is fitted on the train split, and refused input. The conformance harness
(test_other_plugins.py) runs both through fit / transform / state files / tiny runs too."""

from __future__ import annotations

import numpy as np
import pytest

from himari.errors import ConfigError, DataError
from himari.plugin.api import Bars, EKFParams, PreprocessData, cuda_available, ekf
from himari.plugin.manager import get_plugins

P = get_plugins()
LOG_CHI2_MEAN = -1.2703628454614782  # E[log z^2], z ~ N(0, 1), written out: -0.5772156649 - log 2


def make_data(close: np.ndarray, features: np.ndarray | None = None, segments=None, train=None,
              names=None) -> PreprocessData:
    """Every row of a hand-made series, as ``transform`` sees them."""
    n = len(close)
    close = np.asarray(close, dtype=np.float64)
    features = np.zeros((n, 2), np.float32) if features is None else np.asarray(features, dtype=np.float32)
    segments = ((0, n),) if segments is None else tuple(segments)
    train = ((0, n),) if train is None else tuple(train)
    names = tuple(names or (f"x{j}" for j in range(features.shape[1])))
    bars = Bars(open=close, high=close, low=close, close=close, volume=np.ones(n), timestamps=np.arange(n) * 300)
    return PreprocessData(features=features, feature_names=names, bars=bars, rows=np.arange(n, dtype=np.int64),
                          segments=segments, splits={"train": train}, interval_seconds=300)


def prefix(data: PreprocessData, t: int) -> PreprocessData:
    """Rows 0..t of ``data`` only: what a live run has at bar t."""
    cut = lambda ranges: tuple((a, min(b, t + 1)) for a, b in ranges if a <= t)  # noqa: E731
    b = data.bars
    bars = Bars(*(np.asarray(getattr(b, k))[:t + 1] for k in ("open", "high", "low", "close", "volume", "timestamps")))
    return PreprocessData(features=data.features[:t + 1], feature_names=data.feature_names, bars=bars,
                          rows=data.rows[:t + 1], segments=cut(data.segments),
                          splits={k: cut(v) for k, v in data.splits.items()}, interval_seconds=300)


def random_walk(n: int, seed: int, sigma: float = 0.0015, noise: float = 0.0, start: float = 30_000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    log_price = np.log(start) + np.cumsum(rng.normal(0, sigma, n)) + rng.normal(0, noise, n)
    return np.exp(log_price)


def build(name: str, **config):
    spec = P.preprocessors().get(name)
    return spec.factory(spec.config(**config))


def test_filter_ranges_cut_segments_at_each_train_start() -> None:
    """Segments [0, 100) and [100, 250); train ranges start at 20 and 160 (a later fold): the
    filter restarts at 0, 20, 100 and 160, and runs on through the rows after each train range."""
    from himari.plugin.api import filter_ranges

    data = make_data(np.ones(250), segments=[(0, 100), (100, 250)], train=[(20, 80), (160, 200)])
    assert filter_ranges(data) == [(0, 20), (20, 100), (100, 160), (160, 250)]
    assert filter_ranges(make_data(np.ones(50), train=[(0, 50)])) == [(0, 50)]


def test_filter_ranges_edge_cases() -> None:
    """A train start on a segment start or outside every segment adds no cut (no empty piece);
    a repeated start cuts once; an empty segment gives nothing."""
    from himari.plugin.api import filter_ranges

    data = make_data(np.ones(100), segments=[(0, 40), (40, 40), (40, 100)], train=[(40, 60), (40, 50), (100, 100)])
    assert filter_ranges(data) == [(0, 40), (40, 100)]
    data = make_data(np.ones(100), segments=[(10, 40), (50, 100)], train=[(0, 5), (45, 70), (75, 90)])
    assert filter_ranges(data) == [(10, 40), (50, 75), (75, 100)]


def test_filter_ranges_agree_between_fit_and_transform_on_the_train_rows() -> None:
    """The promise behind "fitted on the train split only": a filter restarted where
    ``filter_ranges`` says covers the train rows with the same pieces in ``fit`` (train rows
    only, cut at gaps) and in ``transform`` (every row). Prepared rows 0..300 with a missing bar
    after row 119 and a second symbol from row 200; train ranges [50, 150) (across the gap) and
    [220, 260) (a later fold inside the second symbol)."""
    from types import SimpleNamespace

    from himari.plugin.api import filter_ranges
    from himari.training.preprocess import fit_view, transform_view

    n, step = 300, 300
    ts = np.arange(n, dtype=np.int64) * step
    ts[120:] += step  # one bar missing between rows 119 and 120
    prices = np.linspace(100.0, 130.0, n)
    data = SimpleNamespace(timestamps=ts * 1_000_000_000, metadata={"interval_seconds": step},
                           segments=[SimpleNamespace(start=0, stop=200), SimpleNamespace(start=200, stop=n)],
                           open=prices, high=prices, low=prices, close=prices, volume=np.ones(n))
    features = np.zeros((n, 1), np.float32)
    splits = {"train": [(50, 150), (220, 260)], "validation": [(150, 200)], "test": [(260, 300)]}
    fit = fit_view(data, features, ("x",), {"train": splits["train"]}, seed=0)
    every = transform_view(data, features, ("x",), splits, seed=0)
    pieces = filter_ranges(every)
    assert pieces == [(0, 50), (50, 120), (120, 200), (200, 220), (220, 300)]
    fit_pieces = [(int(fit.rows[a]), int(fit.rows[b - 1]) + 1) for a, b in filter_ranges(fit)]
    assert fit_pieces == [(50, 120), (120, 150), (220, 260)]
    train = [(a, b) for a, b in fit_pieces]
    on_train = sorted({(max(a, s), min(b, e)) for a, b in pieces for s, e in train if min(b, e) > max(a, s)})
    assert on_train == fit_pieces
    # each fit piece starts where a transform piece starts: the train rows' filter starts fresh there
    assert all(a in {p for p, _ in pieces} for a, _ in fit_pieces)


# ------------------------------------------------------------------------------------ ekf


def test_ekf_is_registered_with_its_seed_code() -> None:
    assert P.preprocessors().get("ekf").code == "A1"
    assert P.preprocessors().get("fan").code == "A3"


def test_ekf_config_defaults_are_the_filters_defaults() -> None:
    """The plugin's noise fields start where EKFParams does (docs/ekf.md's 5-minute defaults)."""
    from dataclasses import fields

    config = P.preprocessors().get("ekf").config()
    for f in fields(EKFParams):
        assert getattr(config, f.name) == f.default, f.name


def test_ekf_columns_are_the_native_filter_on_each_segment() -> None:
    """With the configured parameters and no standardising, the four columns are (log close -
    level, velocity, acceleration, log variance) of ``ekf`` called on each segment's closes
    alone: the filter restarts at the second segment, and the input columns come first."""
    close = np.concatenate([random_walk(300, 1), random_walk(200, 2, start=25_000.0)])
    x = np.random.default_rng(3).normal(size=(500, 2)).astype(np.float32)
    data = make_data(close, x, segments=[(0, 300), (300, 500)], train=[(0, 300)])
    pre = build("ekf", estimate=False, standardize=False, q_level=2e-6, r_level=5e-7, mu=-12.5)
    pre.fit(make_data(close[:300], x[:300]))
    out = pre.transform(data)
    assert out.shape == (500, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :2], x)
    params = EKFParams(q_level=2e-6, r_level=5e-7, mu=-12.5)
    for a, b in ((0, 300), (300, 500)):
        s = ekf(close[a:b], params)
        expected = np.column_stack([np.log(close[a:b]) - s[:, 0], s[:, 1], s[:, 2], s[:, 3]])
        np.testing.assert_allclose(out[a:b, 2:], expected.astype(np.float32), rtol=1e-6, atol=1e-12)
    # the level is gone from the features: a filter carried over the segment break would not match
    carried = ekf(close, params)[300:, 3]
    assert np.abs(out[300:310, 5] - carried[:10]).max() > 1e-3
    assert pre.output_names(("x0", "x1")) == ("x0", "x1", "ekf_fit_gap", "ekf_fit_velocity", "ekf_fit_acceleration",
                                              "ekf_fit_log_variance")


def test_ekf_column_names_stay_apart_from_the_prepared_features() -> None:
    """Appended after the 60 prepared features (which hold the filter's own ekf_velocity and
    ekf_acceleration), every column name stays unique."""
    from himari.plugin.api import FEATURE_NAMES

    names = build("ekf").output_names(tuple(FEATURE_NAMES))
    assert len(names) == len(FEATURE_NAMES) + 4 and len(set(names)) == len(names)


def test_ekf_features_do_not_depend_on_the_price_level() -> None:
    """Scale-free: the same returns at a price 1000 times lower give the same features (the gap
    is a log difference), so BTC and a cheap coin are on one scale."""
    close = random_walk(400, 4, noise=0.0005)
    a, b = build("ekf"), build("ekf")
    a.fit(make_data(close[:250], train=[(0, 250)]))
    b.fit(make_data(close[:250] / 1000, train=[(0, 250)]))
    out_a = a.transform(make_data(close, train=[(0, 250)]))
    out_b = b.transform(make_data(close / 1000, train=[(0, 250)]))
    np.testing.assert_allclose(out_a, out_b, atol=2e-4)
    assert np.abs(out_a[:, 2]).max() > 0.5  # not all zero: the gap column moves


def test_ekf_estimates_its_noise_from_the_train_returns() -> None:
    """mu, r_level and q_level from the train returns by moments, computed here by hand; the
    velocity and acceleration variances keep their configured ratios to q_level."""
    close = random_walk(20_000, 5, sigma=0.001, noise=0.001)
    pre = build("ekf")
    pre.fit(make_data(close))
    r = np.diff(np.log(close))
    d = r - r.mean()
    var, cov1 = np.mean(d * d), np.mean(d[1:] * d[:-1])
    assert cov1 < 0  # the noise shows as negative autocovariance
    p = pre.state_dict()["params"]
    assert p["r_level"] == pytest.approx(-cov1, rel=1e-9)
    assert p["q_level"] == pytest.approx(var - 2 * -cov1, rel=1e-9)
    assert p["mu"] == pytest.approx(np.mean(np.log(r ** 2 + 1e-10)) - LOG_CHI2_MEAN, rel=1e-12)
    assert p["q_velocity"] / p["q_level"] == pytest.approx(1e-10 / 1e-6)
    assert p["q_acceleration"] / p["q_level"] == pytest.approx(1e-14 / 1e-6)
    # about the truth: noise and step sd 0.001 (variances 1e-6)
    assert p["r_level"] == pytest.approx(1e-6, rel=0.1)
    assert p["q_level"] == pytest.approx(1e-6, rel=0.2)
    # a calmer asset gets a lower long-run variance
    calm = build("ekf")
    calm.fit(make_data(random_walk(2000, 5, sigma=0.0005), train=[(0, 2000)]))
    assert calm.state_dict()["params"]["mu"] < p["mu"] - 2


def _returns_close(r: np.ndarray) -> np.ndarray:
    return 30_000.0 * np.exp(np.r_[0.0, np.cumsum(r)])


def test_ekf_estimate_without_noise_or_with_more_than_a_random_walk_allows() -> None:
    """By hand: trending returns (lag-1 autocovariance > 0: no sign of noise) give r_level at its
    floor, 1e-4 of the return variance, and q_level the rest; returns that flip sign bar to bar
    (lag-1 correlation below -0.5, more than a random walk plus noise can make) fall back to
    r_level = var / 4 and q_level = var / 2."""
    rng = np.random.default_rng(12)
    e = rng.normal(0, 0.001, 5000)
    trend = np.empty(5000)
    trend[0] = e[0]
    for t in range(1, 5000):
        trend[t] = 0.6 * trend[t - 1] + e[t]
    flip = 0.002 * (-1.0) ** np.arange(5000) + rng.normal(0, 0.0002, 5000)
    for r, expect in ((trend, "floor"), (flip, "fallback")):
        pre = build("ekf")
        pre.fit(make_data(_returns_close(r)))
        got = pre.state_dict()["params"]
        rr = np.diff(np.log(_returns_close(r)))
        d = rr - rr.mean()
        var = np.mean(d * d)
        if expect == "floor":
            assert np.mean(d[1:] * d[:-1]) > 0
            assert got["r_level"] == pytest.approx(1e-4 * var, rel=1e-9)
            assert got["q_level"] == pytest.approx(var - 2e-4 * var, rel=1e-9)
        else:
            assert np.mean(d[1:] * d[:-1]) / var < -0.5
            assert got["r_level"] == pytest.approx(var / 4, rel=1e-9)
            assert got["q_level"] == pytest.approx(var / 2, rel=1e-9)


def test_ekf_estimate_pairs_returns_within_a_segment_only() -> None:
    """Two segments (a gap between them): the lag-1 autocovariance pairs returns inside each
    segment, never the last return of one with the first of the next."""
    close = random_walk(6000, 13, sigma=0.001, noise=0.001)
    close[3000:] *= 1.3  # the gap: the second segment opens elsewhere
    pre = build("ekf")
    pre.fit(make_data(close, segments=[(0, 3000), (3000, 6000)]))
    pieces = [np.diff(np.log(close[a:b])) for a, b in ((0, 3000), (3000, 6000))]
    mean = np.concatenate(pieces).mean()
    d = [x - mean for x in pieces]
    cov1 = sum(np.dot(x[1:], x[:-1]) for x in d) / sum(len(x) - 1 for x in d)
    assert pre.state_dict()["params"]["r_level"] == pytest.approx(-cov1, rel=1e-9)


def test_ekf_standardises_with_the_train_rows_statistics() -> None:
    close = random_walk(1200, 6, noise=0.0003)
    data = make_data(close, train=[(0, 800)])
    raw = build("ekf", standardize=False, mode="replace")
    raw.fit(make_data(close[:800]))
    unscaled = raw.transform(data).astype(np.float64)
    pre = build("ekf", mode="replace", clip=0.0)
    pre.fit(make_data(close[:800]))
    state = pre.state_dict()
    np.testing.assert_allclose(state["mean"], unscaled[:800].mean(axis=0), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(state["std"], unscaled[:800].std(axis=0), rtol=1e-5)
    out = pre.transform(data)
    np.testing.assert_allclose(out[800:], (unscaled[800:] - state["mean"]) / state["std"], rtol=1e-4, atol=1e-4)
    assert abs(out[:800].mean(axis=0)).max() < 1e-4 and abs(out[:800].std(axis=0) - 1).max() < 1e-3
    # clipped on both sides: a crash and a spike after the train rows push the gap past +-3
    shocked = close.copy()
    shocked[900:] *= 0.9
    shocked[1000:] *= 1.25
    clipped = build("ekf", mode="replace", clip=3.0)
    clipped.fit(make_data(close[:800]))
    free = build("ekf", mode="replace", clip=0.0)
    free.load_state_dict(clipped.state_dict())
    wide = free.transform(make_data(shocked, train=[(0, 800)])).astype(np.float64)
    assert wide[:, 0].min() < -3 and wide[:, 0].max() > 3
    np.testing.assert_allclose(clipped.transform(make_data(shocked, train=[(0, 800)])), np.clip(wide, -3, 3),
                               rtol=1e-6)


def test_ekf_train_rows_come_from_train_bars_only() -> None:
    """The filter restarts at the train split's first row: the bars before it (the prepared
    data's warm-up) change neither the fitted state nor the train rows, while the rows after the
    train split continue from it (a restart there would change them)."""
    close = random_walk(900, 7, noise=0.0004)
    moved = close.copy()
    moved[:100] *= np.exp(np.random.default_rng(8).normal(0, 0.05, 100))
    outs, states = [], []
    for c in (close, moved):
        pre = build("ekf")
        pre.fit(make_data(c[100:600]))
        states.append(pre.state_dict())
        outs.append(pre.transform(make_data(c, train=[(100, 600)])))
    assert states[0]["params"] == states[1]["params"]
    np.testing.assert_array_equal(outs[0][100:], outs[1][100:])
    cold = build("ekf")
    cold.load_state_dict(states[0])
    restarted = cold.transform(make_data(close, segments=[(0, 100), (100, 600), (600, 900)], train=[(100, 600)]))
    assert np.abs(restarted[600:610, -1] - outs[0][600:610, -1]).max() > 1e-3


def test_ekf_row_t_is_the_same_without_the_rows_after_it() -> None:
    close = random_walk(700, 9, noise=0.0004)
    x = np.random.default_rng(10).normal(size=(700, 3)).astype(np.float32)
    data = make_data(close, x, segments=[(0, 400), (400, 700)], train=[(0, 300)])
    pre = build("ekf")
    pre.fit(make_data(close[:300], x[:300]))
    full = pre.transform(data)
    for t in (0, 150, 299, 350, 400, 401, 650):
        np.testing.assert_array_equal(pre.transform(prefix(data, t))[t], full[t])


def test_ekf_refuses_what_it_cannot_filter() -> None:
    close = random_walk(300, 11)
    x = np.zeros((300, 2), np.float32)
    pre = build("ekf")
    bad = close.copy()
    bad[123] = np.nan
    with pytest.raises(DataError, match=r"ekf: the close is nan at prepared row 123"):
        pre.fit(make_data(bad))
    bad[123] = 0.0
    with pytest.raises(DataError, match=r"ekf: the close is 0.0 at prepared row 123.*closes > 0"):
        pre.fit(make_data(bad))
    xbad = x.copy()
    xbad[7, 1] = np.inf
    with pytest.raises(DataError, match=r"ekf: input feature 'x1' is inf at prepared row 7"):
        pre.fit(make_data(close, xbad))
    build("ekf", mode="replace").fit(make_data(close, xbad))  # replace reads no feature
    with pytest.raises(DataError, match=r"ekf: the train split has 4 bar-to-bar returns.*at least 10"):
        pre.fit(make_data(close[:5]))
    with pytest.raises(DataError, match="never change"):
        pre.fit(make_data(np.full(50, 100.0)))
    pre.fit(make_data(close, x))
    with pytest.raises(ConfigError, match=r"ekf: its state was fitted on 2 input features, the data has 3"):
        pre.transform(make_data(close, np.zeros((300, 3), np.float32)))
    with pytest.raises(ValueError, match="mean and std"):
        build("ekf").load_state_dict({**pre.state_dict(), "std": np.zeros(4)})
    with pytest.raises(ValueError, match="phi"):
        build("ekf").load_state_dict({**pre.state_dict(), "params": {**pre.state_dict()["params"], "phi": 1.5}})


@pytest.mark.parametrize("setting, message", [("mode=sideways", "expected one of 'append', 'replace'"),
                                              ("phi=1.0", "phi must be in"), ("r_level=0", "r_level must be > 0"),
                                              ("device=tpu", "expected one of 'cpu', 'cuda'")])
def test_ekf_config_errors_name_the_setting(setting, message, small_prepared, tmp_path) -> None:
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match=message):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                               "preprocess": "zscore,ekf"}, sets=[f"ekf.{setting}"])


@pytest.mark.skipif(cuda_available(), reason="a CUDA device is present")
def test_ekf_on_cuda_without_a_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="ekf.device: cuda asked for, but no CUDA device"):
        build("ekf", device="cuda").fit(make_data(random_walk(100, 12)))


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA build of himari and a CUDA device")
def test_ekf_on_cuda_matches_the_cpu() -> None:
    """The CUDA EKF, all segments in one padded batch, gives the CPU's features."""
    pytest.importorskip("torch")
    close = np.concatenate([random_walk(900, 13, noise=0.0004), random_walk(350, 14), random_walk(40, 15)])
    data = make_data(close, segments=[(0, 900), (900, 1250), (1250, 1290)], train=[(0, 600)])
    cpu, gpu = build("ekf"), build("ekf", device="cuda")
    cpu.fit(make_data(close[:600]))
    gpu.fit(make_data(close[:600]))
    assert cpu.state_dict()["params"] == gpu.state_dict()["params"]
    np.testing.assert_allclose(gpu.transform(data), cpu.transform(data), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------ fan


def direct_residual(window: np.ndarray, k: int) -> float:
    """FAN's normalised value written out as the paper's code does it: rFFT, keep the K largest
    amplitudes, inverse FFT, subtract; the last row's value."""
    spectrum = np.fft.rfft(window)
    keep = np.argsort(-np.abs(spectrum), kind="stable")[:k]
    main = np.zeros_like(spectrum)
    main[keep] = spectrum[keep]
    return float(window[-1] - np.fft.irfft(main, n=len(window))[-1])


def test_fan_matches_a_per_window_fft() -> None:
    """Full windows, windows truncated at a segment start, and the second segment restarting."""
    rng = np.random.default_rng(20)
    x = np.cumsum(rng.normal(size=(400, 3)), axis=0).astype(np.float32)
    data = make_data(np.ones(400), x, segments=[(0, 250), (250, 400)], train=[(0, 250)])
    pre = build("fan", window=32, top_k=3)
    pre.fit(make_data(np.ones(250), x[:250]))
    out = pre.transform(data)
    x64 = x.astype(np.float64)
    for t in (0, 1, 2, 5, 31, 32, 100, 249, 250, 251, 260, 281, 282, 399):
        start = 0 if t < 250 else 250
        lo = max(start, t - 31)
        for j in range(3):
            assert out[t, j] == pytest.approx(direct_residual(x64[lo:t + 1, j], 3), abs=2e-5), (t, j)
    assert out[0].tolist() == [0.0, 0.0, 0.0]  # one row: its mean is all there is


def test_fan_removes_a_pure_sinusoid() -> None:
    """A sinusoid on one bin of the window is one component: K=1 leaves ~0. With a constant
    added, the mean is the largest component: K=1 leaves the sinusoid's value, K=2 ~0."""
    t = np.arange(300)
    wave = np.sin(2 * np.pi * 4 * t / 48)[:, None]
    for x, k, expected in ((wave, 1, 0 * wave), (5 + wave, 1, wave), (5 + wave, 2, 0 * wave)):
        pre = build("fan", window=48, top_k=k)
        data = make_data(np.ones(300), x)
        pre.fit(data)
        np.testing.assert_allclose(pre.transform(data)[47:], expected[47:], atol=1e-5)


def test_fan_row_t_is_the_same_without_the_rows_after_it() -> None:
    x = np.random.default_rng(21).normal(size=(3000, 4)).astype(np.float32)
    data = make_data(np.ones(3000), x, segments=[(0, 1700), (1700, 3000)], train=[(0, 1000)])
    pre = build("fan", window=40, top_k=2)
    pre.fit(make_data(np.ones(1000), x[:1000]))
    full = pre.transform(data)
    for t in (10, 39, 999, 1000, 1699, 1700, 1720, 2999):
        np.testing.assert_array_equal(pre.transform(prefix(data, t))[t], full[t])


def test_fan_restarts_at_the_train_start() -> None:
    """Train rows' windows never reach back before the train split (the warm-up rows)."""
    rng = np.random.default_rng(22)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    moved = x.copy()
    moved[:100] = rng.normal(size=(100, 2)) * 9
    pre = build("fan", window=24, top_k=2)
    pre.fit(make_data(np.ones(200), x[100:]))
    a = pre.transform(make_data(np.ones(300), x, train=[(100, 300)]))
    b = pre.transform(make_data(np.ones(300), moved, train=[(100, 300)]))
    np.testing.assert_array_equal(a[100:], b[100:])
    assert a[100].tolist() == [0.0, 0.0]


def test_fan_append_mode_and_names() -> None:
    x = np.random.default_rng(23).normal(size=(100, 2)).astype(np.float32)
    data = make_data(np.ones(100), x)
    rep, app = build("fan", window=16, top_k=2), build("fan", window=16, top_k=2, mode="append")
    rep.fit(data)
    app.fit(data)
    np.testing.assert_array_equal(app.transform(data), np.concatenate([x, rep.transform(data)], axis=1))
    assert app.output_names(("a", "b")) == ("a", "b", "a_fan", "b_fan")
    assert rep.output_names(("a", "b")) == ("a", "b")


def test_fan_refuses_what_it_cannot_normalise() -> None:
    x = np.random.default_rng(24).normal(size=(200, 2)).astype(np.float32)
    pre = build("fan", window=96)
    with pytest.raises(DataError, match=r"fan: the train split's longest run of consecutive bars has 90 rows, "
                                        r"fewer than fan.window=96"):
        pre.fit(make_data(np.ones(180), x[:180], segments=[(0, 90), (90, 180)]))
    bad = x.copy()
    bad[150, 0] = np.nan
    with pytest.raises(DataError, match=r"fan: input feature 'x0' is nan at prepared row 150"):
        pre.fit(make_data(np.ones(200), bad))
    pre.fit(make_data(np.ones(200), x))
    with pytest.raises(DataError, match=r"fan: input feature 'x0' is nan at prepared row 150"):
        pre.transform(make_data(np.ones(200), bad))
    with pytest.raises(ConfigError, match=r"fan: its state was fitted on 2 input features, the data has 5"):
        pre.transform(make_data(np.ones(200), np.zeros((200, 5), np.float32)))
    with pytest.raises(ValueError, match="n_features"):
        build("fan").load_state_dict({"n_features": "sixty"})
    # a segment shorter than the window outside the train split: truncated windows, as documented
    short = make_data(np.ones(230), np.concatenate([x, x[:30]]), segments=[(0, 200), (200, 230)],
                      train=[(0, 200)])
    out = pre.transform(short)
    assert out[229, 1] == pytest.approx(direct_residual(x[:30, 1].astype(np.float64), 3), abs=2e-5)


@pytest.mark.parametrize("setting, message", [("top_k=0", "top_k must be in 1"), ("top_k=49", "top_k must be in 1"),
                                              ("window=1", "window must be >= 2")])
def test_fan_config_errors_name_the_setting(setting, message, small_prepared) -> None:
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match=message):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                               "preprocess": "fan,zscore"}, sets=[f"fan.{setting}"])


def test_fan_on_a_prepared_run_refuses_a_window_longer_than_the_train_split(small_prepared, tmp_path) -> None:
    """Through the Trainer: a clear error naming the method, and no run directory left."""
    from himari_tests_conformance import tiny_run  # type: ignore[import-not-found]

    run_dir = tmp_path / "run"
    with pytest.raises(DataError, match="fan.window=5000"):
        tiny_run("baseline-mlp", small_prepared, run_dir, P, sets=["fan.window=5000", "fan.top_k=2"],
                 preprocess="fan,zscore")
    assert not run_dir.exists()
