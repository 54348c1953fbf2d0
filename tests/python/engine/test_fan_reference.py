"""The native FAN residuals (``himari.engine.fan_residuals``: a sliding DFT) against numpy's FFT of
every window, written out independently here, and against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from himari.engine import fan_residuals
from himari.errors import InvalidArgumentError, ShapeError


def reference_residual(windows: np.ndarray, k: int) -> np.ndarray:
    """``windows [..., m]``: the last value minus the inverse FFT, at the last position, of the K
    components of largest amplitude (stable order: of equal amplitudes the lower frequency)."""
    spectrum = np.fft.rfft(windows, axis=-1)
    order = np.argsort(-np.abs(spectrum), axis=-1, kind="stable")[..., :k]
    kept = np.zeros_like(spectrum)
    np.put_along_axis(kept, order, np.take_along_axis(spectrum, order, axis=-1), axis=-1)
    return windows[..., -1] - np.fft.irfft(kept, n=windows.shape[-1], axis=-1)[..., -1]


def reference(x: np.ndarray, pieces: list[tuple[int, int]], window: int, k: int) -> np.ndarray:
    out = np.zeros_like(x)
    for a, b in pieces:
        for t in range(a, min(b, a + window - 1)):  # windows cut at the piece start
            out[t] = reference_residual(x[a:t + 1].T, k)
        if b - a >= window:
            out[a + window - 1:b] = reference_residual(sliding_window_view(x[a:b], window, axis=0), k)
    return out


@pytest.mark.parametrize("window,k", [(96, 3), (31, 1), (40, 20), (8, 4)])
def test_every_row_matches_an_fft_of_its_window(window: int, k: int) -> None:
    """2,600 rows in two pieces: rows far past the spectrum's periodic recomputation (every 1,024
    rows) as well as the truncated first rows of each piece; columns at very different scales
    (a price-like level near 30,000 too: the recurrence's rounding must stay relative)."""
    rng = np.random.default_rng(window * 10 + k)
    n = 2600
    x = np.column_stack([np.cumsum(rng.normal(size=n)), rng.normal(size=n) * 1e-3,
                         30_000 + np.cumsum(rng.normal(size=n)) * 50, np.sin(np.arange(n) / 7.0)])
    pieces = [(0, 1900), (1900, n)]
    got = fan_residuals(x, pieces, window, k)
    want = reference(x, pieces, window, k)
    scale = np.abs(x).max(axis=0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-11 * scale.max())
    for j in range(x.shape[1]):  # and per column, relative to that column's own scale
        np.testing.assert_allclose(got[:, j], want[:, j], rtol=0, atol=1e-10 * scale[j])


def test_hand_worked_window_of_four() -> None:
    """x = 1, 2, 3, 4 and window 4. Full window: X = (10, -2+2i, -2), powers 100, 8, 4; the last
    value of the mean is 2.5 and of bin 1 (2/4) Re((-2+2i) e^{i 3 pi / 2}) = 1, so K=1 leaves 1.5
    and K=2 leaves 0.5 (the Nyquist part: (1/4)(-2)(-1)). Row 1 (window [1, 2]): X = (3, -1), K=1
    removes the mean 1.5: 0.5. Row 2 ([1, 2, 3]): X0 = 6 beats |X1|^2 = 3: 3 - 2 = 1. Row 0: 0."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    np.testing.assert_allclose(fan_residuals(x, [(0, 4)], 4, 1)[:, 0], [0.0, 0.5, 1.0, 1.5], atol=1e-12)
    assert fan_residuals(x, [(0, 4)], 4, 2)[3, 0] == pytest.approx(0.5, abs=1e-12)
    # K=2 at row 1 removes both components of a two-row window: nothing is left.
    assert fan_residuals(x, [(0, 4)], 4, 2)[1, 0] == pytest.approx(0.0, abs=1e-12)


def test_rows_outside_every_piece_are_zero_and_pieces_do_not_see_each_other() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    got = fan_residuals(x, [(10, 120), (150, 300)], 16, 2)
    assert not got[:10].any() and not got[120:150].any()
    alone = fan_residuals(x[150:], [(0, 150)], 16, 2)
    np.testing.assert_array_equal(got[150:], alone)


def test_a_row_does_not_depend_on_rows_after_it() -> None:
    """Bit for bit: the recurrence and its recomputation points count from the piece start."""
    x = np.random.default_rng(4).normal(size=(2200, 3))
    full = fan_residuals(x, [(0, 2200)], 24, 2)
    for t in (23, 1046, 1047, 1048, 2199):
        np.testing.assert_array_equal(fan_residuals(x[:t + 1], [(0, t + 1)], 24, 2)[t], full[t])


@pytest.mark.parametrize("args,error,message", [
    (dict(x=np.zeros((10, 2), np.float32)), ShapeError, "float64"),
    (dict(x=np.zeros(10)), ShapeError, "shape [T, F]"),
    (dict(pieces=[(0, 11)]), InvalidArgumentError, "pieces[0]"),
    (dict(pieces=[(5, 5)]), InvalidArgumentError, "pieces[0]"),
    (dict(window=1), InvalidArgumentError, "window"),
    (dict(top_k=3), InvalidArgumentError, "top_k"),
    (dict(top_k=0), InvalidArgumentError, "top_k"),
])
def test_bad_arguments_are_refused(args: dict, error: type, message: str) -> None:
    from himari.engine._native import _core

    call = dict(x=np.zeros((10, 2)), pieces=np.array([(0, 10)], np.int64), window=4, top_k=2)
    for key, value in args.items():
        call[key] = np.asarray(value, np.int64) if key == "pieces" else value
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        _core.fan_residuals(call["x"], call["pieces"], call["window"], call["top_k"])


def test_nan_is_refused_with_its_row_and_column() -> None:
    x = np.zeros((10, 3))
    x[7, 2] = np.nan
    with pytest.raises(InvalidArgumentError, match="row 7, column 2"):
        fan_residuals(x, [(0, 10)], 4, 1)
