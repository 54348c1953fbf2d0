"""The generators' shared windows and min-max scaler, by hand: window starts inside each segment
(with a stride), the windows taken, the scaler's round trip and its refused states."""

from __future__ import annotations

import numpy as np
import pytest

from himari.data.windows import MinMaxScaler, take_windows, window_starts


def test_window_starts_stay_inside_each_segment_every_stride_rows() -> None:
    # segments [0, 7) and [10, 13), window 3: starts 0..4 and 10; stride 2: 0, 2, 4 and 10
    assert window_starts([(0, 7), (10, 13), (20, 22)], 3).tolist() == [0, 1, 2, 3, 4, 10]
    assert window_starts([(0, 7), (10, 13)], 3, stride=2).tolist() == [0, 2, 4, 10]
    assert window_starts([(0, 2)], 3).tolist() == []
    with pytest.raises(ValueError, match="window and stride must be >= 1"):
        window_starts([(0, 7)], 3, stride=0)
    rows = np.arange(20)[:, None] * 10
    np.testing.assert_array_equal(take_windows(rows, np.array([0, 10]), 3)[:, :, 0], [[0, 10, 20], [100, 110, 120]])


def test_min_max_scaler_maps_the_train_range_to_zero_one_and_back() -> None:
    x = np.array([[1.0, -5.0], [3.0, 5.0], [2.0, 0.0]])
    s = MinMaxScaler(eps=1e-7).fit(x)
    z = s.transform(x)
    np.testing.assert_allclose(z, [[0.0, 0.0], [2 / (2 + 1e-7), 10 / (10 + 1e-7)], [1 / (2 + 1e-7), 0.5 / (1 + 1e-8)]],
                               rtol=1e-6)
    np.testing.assert_allclose(s.inverse(z), x, rtol=0, atol=1e-6)
    wide = MinMaxScaler(eps=0.5).fit(x)  # an eps large enough to see: the inverse must undo it too
    np.testing.assert_allclose(wide.transform(x)[:, 0], [0.0, 2 / 2.5, 1 / 2.5], rtol=1e-6)
    np.testing.assert_allclose(wide.inverse(wide.transform(x)), x, atol=1e-6)
    for bad in ({"min": [0.0], "max": [1.0, 2.0]}, {"min": [[0.0]], "max": [[1.0]]}, {"min": [np.nan], "max": [1.0]}):
        with pytest.raises(ValueError, match="min and max must be finite vectors of one length"):
            MinMaxScaler().load_state_dict(bad)
