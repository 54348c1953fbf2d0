"""conversational-ae (A2): the agreed reconstruction denoises, agreement regularises, the window is
exactly the trailing ``window`` rows of the row's piece, the reported scores are what they say,
and bad input is refused by name. (Fit on train rows only, causality and the state round trip
through a run directory: the conformance harness, test_other_plugins.py.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from himari.errors import ConfigError, DataError
from himari.plugin.api import Bars, PreprocessData

pytest.importorskip("torch")

from himari_builtin.preprocessing.conversational_ae import ConversationalAE, ConversationalAEConfig  # noqa: E402

NAMES = ("noisy", "ctx_a", "ctx_b")


def view(x: np.ndarray, rows: np.ndarray, splits: dict, segments: tuple | None = None,
         close: np.ndarray | None = None, names: tuple[str, ...] = NAMES, seed: int = 0) -> PreprocessData:
    """The rows ``rows`` of ``x`` as a preprocessor sees them (flat bars unless ``close`` is given)."""
    n = len(rows)
    flat = np.ones(n)
    c = flat if close is None else np.asarray(close, dtype=np.float64)[rows]
    bars = Bars(open=c, high=c * 1.01, low=c * 0.99, close=c, volume=flat, timestamps=np.arange(n, dtype=np.int64))
    return PreprocessData(features=np.ascontiguousarray(x[rows], dtype=np.float32), feature_names=names, bars=bars,
                          rows=rows.astype(np.int64), segments=segments or ((0, n),), splits=splits,
                          interval_seconds=300, seed=seed)


def synthetic(n: int = 4000, sigma: float = 0.7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A clean signal (two sines) and three noisy observations of it: the target and two contexts,
    each with its own independent noise of std ``sigma``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    clean = np.sin(2 * np.pi * t / 40) + 0.6 * np.sin(2 * np.pi * t / 17 + 1)
    return clean, np.stack([clean + rng.normal(0, sigma, n) for _ in NAMES], axis=1).astype(np.float32)


TRAIN, N = 3000, 4000
SPLITS = {"train": ((0, TRAIN),), "validation": ((TRAIN, N),)}


def fit_transform(x: np.ndarray, **config) -> tuple[ConversationalAE, np.ndarray]:
    pre = ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b"), **config))
    pre.fit(view(x, np.arange(TRAIN), {"train": ((0, TRAIN),)}))
    return pre, pre.transform(view(x, np.arange(len(x)), SPLITS))


def denoised(pre: ConversationalAE, out: np.ndarray) -> np.ndarray:
    """The agreed reconstruction back in the target's units (the column is standardised)."""
    state = pre.state_dict()
    return out[:, len(NAMES)] * state["std"][0] + state["mean"][0]


HELD_OUT = slice(TRAIN + 31, N)  # validation rows with a full window (the window restarts at the split)


def test_agreed_reconstruction_is_much_closer_to_the_clean_signal_than_the_noisy_target() -> None:
    clean, x = synthetic()
    pre, out = fit_transform(x)
    assert pre.output_names(NAMES) == (*NAMES, "cae_noisy", "cae_noisy_disagreement")
    assert out.shape == (N, len(NAMES) + 2)
    np.testing.assert_array_equal(out[:, :3], x)  # the inputs pass through
    noisy_error = np.mean((x[HELD_OUT, 0] - clean[HELD_OUT]) ** 2)  # ~0.49 = sigma^2
    denoised_error = np.mean((denoised(pre, out)[HELD_OUT] - clean[HELD_OUT]) ** 2)  # ~0.02 measured
    assert denoised_error < 0.2 * noisy_error, (denoised_error, noisy_error)


def test_agreement_regularises_autoencoders_with_too_wide_a_bottleneck() -> None:
    """With a bottleneck as wide as the window (room to pass noise through) and no early stop,
    pulling each listener towards the speaker makes the partners agree and the agreed
    reconstruction closer to the clean signal than the same pair trained without agreement
    (measured on this seed: 0.147 against 0.079, spread 0.046 against 0.006)."""
    clean, x = synthetic()
    runs = {}
    for weight in (0.0, 3.0):
        pre, out = fit_transform(x, latent=32, epochs=40, patience=0, agreement_weight=weight)
        runs[weight] = (np.mean((denoised(pre, out)[HELD_OUT] - clean[HELD_OUT]) ** 2),
                        np.mean(out[HELD_OUT, 4] ** 2), pre.state_dict()["metrics"]["holdout"]["disagreement"])
    (err0, spread0, dis0), (err3, spread3, dis3) = runs[0.0], runs[3.0]
    assert err3 < 0.75 * err0, runs
    assert spread3 < 0.5 * spread0 and dis3 < 0.5 * dis0, runs


def test_row_t_reads_exactly_its_trailing_window_of_its_run() -> None:
    """Rewriting every row after t, or every row up to t - window, leaves row t's output as it
    was; rewriting row t - window + 1, the oldest row of its window, changes it. Validation
    continues from the train rows before it, as it would live; a train range's start is a restart;
    and a shorter data set, whose split boundaries fall elsewhere, gives the same rows."""
    clean, x = synthetic(n=1200)
    splits = {"train": ((0, 900),), "validation": ((900, 1200),)}
    pre = ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b"), window=16, epochs=2))
    pre.fit(view(x, np.arange(900), {"train": ((0, 900),)}))
    rows = np.arange(1200)
    base = pre.transform(view(x, rows, splits))[:, 3:]
    t, w = 1000, 16
    rng = np.random.default_rng(1)

    def moved(which: np.ndarray) -> np.ndarray:
        y = x.copy()
        y[which] = rng.normal(0, 3, size=(len(which), 3)).astype(np.float32)
        return pre.transform(view(y, rows, splits))[:, 3:]

    np.testing.assert_array_equal(moved(np.arange(t + 1, 1200))[t], base[t])
    np.testing.assert_array_equal(moved(np.arange(0, t - w + 1))[t], base[t])
    assert not np.array_equal(moved(np.array([t - w + 1]))[t], base[t])
    after = moved(np.arange(0, 900))  # reaches the first w - 1 validation rows, no later one
    assert not np.array_equal(after[900], base[900])
    np.testing.assert_array_equal(after[900 + w - 1:], base[900 + w - 1:])
    late = {"train": ((100, 900),), "validation": ((900, 1200),)}
    np.testing.assert_array_equal(pre.transform(view(x, rows, late))[100:, 3:],
                                  moved_with(x, np.arange(0, 100), late, pre, rng)[100:, 3:])
    full = pre.transform(view(x, rows, {"train": ((0, 840),), "validation": ((840, 1020),), "test": ((1020, 1200),)}))
    short = pre.transform(view(x[:1100], rows[:1100],
                               {"train": ((0, 770),), "validation": ((770, 935),), "test": ((935, 1100),)}))
    np.testing.assert_array_equal(short, full[:1100])


def moved_with(x: np.ndarray, which: np.ndarray, splits: dict, pre: ConversationalAE,
               rng: np.random.Generator) -> np.ndarray:
    y = x.copy()
    y[which] = rng.normal(0, 3, size=(len(which), 3)).astype(np.float32)
    return pre.transform(view(y, np.arange(len(y)), splits))


def test_reported_endpoint_error_is_the_error_of_the_output_column_on_the_held_out_windows() -> None:
    """``metrics.holdout.endpoint_mse`` recomputed from the transform's column: the held-out
    windows are the latest 10% of the full train windows, errors in standardised units."""
    clean, x = synthetic(n=TRAIN)
    pre = ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b"), epochs=3))
    pre.fit(view(x, np.arange(TRAIN), {"train": ((0, TRAIN),)}))
    out = pre.transform(view(x, np.arange(TRAIN), {"train": ((0, TRAIN),)}))
    state = pre.state_dict()
    full_rows = np.arange(31, TRAIN)
    held = full_rows[-round(0.1 * len(full_rows)):]
    z = np.clip((x[held, 0].astype(np.float64) - state["mean"][0]) / state["std"][0], -10, 10)
    expected = np.mean((out[held, 3] - z) ** 2)
    assert state["metrics"]["holdout_windows"] == len(held)
    assert state["metrics"]["holdout"]["endpoint_mse"] == pytest.approx(expected, rel=1e-4)


def test_fit_is_seeded_by_its_config_and_leaves_torch_as_it_was() -> None:
    import torch

    _, x = synthetic(n=600)
    rng_before, threads = torch.get_rng_state(), torch.get_num_threads()

    def fit(run_seed: int, seed: int) -> np.ndarray:
        pre = ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b"), epochs=2,
                                                      seed=seed))
        pre.fit(view(x, np.arange(600), {"train": ((0, 600),)}, seed=run_seed))
        return pre.transform(view(x, np.arange(600), {"train": ((0, 600),)}))

    a = fit(0, 0)
    np.testing.assert_array_equal(fit(7, 0), a)  # the run's seed does not move the column
    assert not np.array_equal(fit(0, 1), a)
    assert torch.equal(torch.get_rng_state(), rng_before) and torch.get_num_threads() == threads


def test_series_from_the_bars_restart_at_each_segment() -> None:
    """log-return: log close-to-close return, 0 at a segment's first row (its previous bar is
    across a gap); log-price (the default target): log close minus its mean over the last
    ``window`` rows of the segment (fewer at its start), by a loop over rows; fitting and
    transforming the default config on two segments works end to end."""
    from himari_builtin.preprocessing.conversational_ae.series import raw_series

    close = np.exp(np.cumsum(np.random.default_rng(2).normal(0, 0.01, 200)))
    segments = ((0, 120), (120, 200))
    d = view(np.zeros((200, 3), np.float32), np.arange(200), {"train": ((0, 200),)}, segments=segments, close=close)
    r = raw_series("log-return", d, list(segments), 8)
    expected = np.diff(np.log(close), prepend=np.log(close[0]))
    expected[[0, 120]] = 0.0
    np.testing.assert_allclose(r, expected, rtol=0, atol=1e-15)
    gap = raw_series("log-price", d, list(segments), 8)
    lc = np.log(close)
    for t in range(200):
        start = 0 if t < 120 else 120
        window = lc[max(start, t - 7):t + 1]
        assert gap[t] == pytest.approx(lc[t] - window.mean(), abs=1e-12), t
    pre = ConversationalAE(ConversationalAEConfig(window=8, epochs=2))
    pre.fit(d)
    assert pre.output_names(("a",)) == ("a", "cae_log_price", "cae_log_price_disagreement")
    assert np.isfinite(pre.transform(d)).all()


# ------------------------------------------------------------------------------ bad input


def test_nan_in_a_train_row_is_refused_naming_the_series_and_row() -> None:
    _, x = synthetic(n=600)
    x[123, 1] = np.nan
    pre = ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b")))
    with pytest.raises(DataError, match=r"conversational-ae: series 'ctx_a' has 1 NaN .* train rows .* row 123"):
        pre.fit(view(x, np.arange(600), {"train": ((0, 600),)}))


def test_nan_when_transforming_is_refused() -> None:
    _, x = synthetic(n=600)
    pre = ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b"), epochs=1))
    pre.fit(view(x, np.arange(400), {"train": ((0, 400),)}))
    x[500, 0] = np.inf
    with pytest.raises(DataError, match=r"series 'noisy' has 1 NaN or infinite .* rows to transform .* row 500"):
        pre.transform(view(x, np.arange(600), {"train": ((0, 400),), "validation": ((400, 600),)}))


def test_a_non_positive_price_is_refused_for_the_log_return_target() -> None:
    close = np.full(300, 100.0)
    close[50] = 0.0
    d = view(np.zeros((300, 3), np.float32), np.arange(300), {"train": ((0, 300),)}, close=close)
    with pytest.raises(DataError, match="series 'log-return'"):
        ConversationalAE(ConversationalAEConfig(target="log-return")).fit(d)


@pytest.mark.parametrize("n, segments", [(40, None), (60, ((0, 30), (30, 60)))])
def test_too_few_train_rows_for_the_window_is_refused(n, segments) -> None:
    """40 rows give 9 windows of 32; two segments of 30 rows give none (a window never spans a gap)."""
    _, x = synthetic(n=n)
    d = view(x, np.arange(n), {"train": ((0, n),)}, segments=segments)
    with pytest.raises(DataError, match=r"conversational-ae: the train split gives \d+ full window\(s\) of 32 .*"
                                        r"lower conversational-ae.window"):
        ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b"))).fit(d)


def test_too_few_windows_left_once_the_held_out_ones_are_purged_is_refused() -> None:
    """75 rows give 44 windows of 32: 4 held out and the 31 overlapping them leave 9 to train on,
    fewer than 10; 63 rows give 32: 3 held out and the other 29 all overlap them. Training on
    the overlapping ones instead would score the fit on windows it learnt."""
    _, x = synthetic(n=75)
    d = view(x, np.arange(75), {"train": ((0, 75),)})
    with pytest.raises(DataError, match=r"of the train split's 44 full windows, 4 are held out and 31 more overlap "
                                        r"them, which leaves 9 to train on; at least 10"):
        ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b"), epochs=1)).fit(d)
    _, x = synthetic(n=63)
    d = view(x, np.arange(63), {"train": ((0, 63),)})
    with pytest.raises(DataError, match=r"of the train split's 32 full windows, 3 are held out and 29 more overlap "
                                        r"them, which leaves 0 to train on; at least 10"):
        ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b"), epochs=1)).fit(d)


def test_an_unknown_series_is_refused_with_the_choices() -> None:
    _, x = synthetic(n=200)
    pre = ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "volume_z")))
    with pytest.raises(ConfigError, match="no series 'volume_z': use one of log-return, log-price, volume, range or an input"):
        pre.fit(view(x, np.arange(200), {"train": ((0, 200),)}))


def test_a_state_fitted_on_other_features_is_refused() -> None:
    _, x = synthetic(n=300)
    pre = ConversationalAE(ConversationalAEConfig(target="noisy", contexts=("ctx_a", "ctx_b"), epochs=1))
    pre.fit(view(x, np.arange(300), {"train": ((0, 300),)}))
    other = ConversationalAE(pre.config)
    other.load_state_dict(pre.state_dict())
    wider = np.concatenate([x, x[:, :1]], axis=1)
    with pytest.raises(ConfigError, match="fitted on 3 input features .* this data has 4"):
        other.transform(view(wider, np.arange(300), {"train": ((0, 300),)}, names=(*NAMES, "extra")))
    with pytest.raises(ValueError, match="window/hidden/latent"):
        ConversationalAE(dataclasses.replace(pre.config, window=16)).load_state_dict(pre.state_dict())


@pytest.mark.parametrize("key, value, message", [
    ("contexts", ["volume"], "at least two different series"),
    ("contexts", ["log-price", "volume"], "must differ from the target"),
    ("window", 1, "window must be >= 2"),
    ("latent", 64, r"latent in \[1, 2 x window\)"),
    ("holdout", 0.0, r"holdout must be in \(0, 0.5\)"),
    ("agreement_weight", -1.0, "agreement_weight must be >= 0"),
])
def test_bad_settings_are_refused_naming_them(key, value, message) -> None:
    from himari.plugin.config import build_config

    with pytest.raises(ConfigError, match=f"plugins.conversational-ae: .*{message}"):
        build_config(ConversationalAEConfig, {key: value}, "plugins.conversational-ae")
