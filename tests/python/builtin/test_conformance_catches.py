"""The conformance harness itself: a model that looks ahead is caught. A model whose ``act`` sets
its thresholds from the scores of every row it is handed reads rows after t *within one call*,
and the Trainer and ``himari backtest`` call ``act`` with a whole split; the harness used to probe
only rows up to t and let it pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from himari_tests_tiny_models import LinearSupervised, plugins_with_model  # type: ignore[import-not-found]

torch = pytest.importorskip("torch")


@dataclass(frozen=True)
class BatchConfig:
    pass


class BatchQuantiles(LinearSupervised):
    """A linear score, and BUY/SELL at the 80%/20% quantiles of the scores of the rows given."""

    def act(self, features, rows):
        with torch.no_grad():
            score = self.network(torch.from_numpy(features[rows]))[:, 2].numpy()
        lo, hi = np.quantile(score, [0.2, 0.8])  # every row handed in, the later ones too
        return np.where(score > hi, 2, np.where(score < lo, 0, 1)).astype(np.int64)


def test_a_model_whose_act_reads_later_rows_of_its_call_fails_the_harness(small_prepared, tmp_path) -> None:
    from himari_tests_conformance import check_model  # type: ignore[import-not-found]

    plugins = plugins_with_model("batch-quantiles", BatchQuantiles, BatchConfig, "thresholds from the whole batch")
    with pytest.raises(AssertionError, match="act at row t reads rows after t"):
        check_model("batch-quantiles", small_prepared, tmp_path, plugins)
