"""The generators: fitted on train rows only, deterministic under a seed on the CPU, saved and
reloaded, and Tab-DDPM's class mix and tail rules."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

POISON = 1.0e6


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory, small_prepared: Path) -> Path:
    """A copy of the small prepared set whose validation and test rows hold absurd features and
    prices: any of them read by a fit shows in the fitted state or in what is generated."""
    from himari.data import PreparedData

    out = tmp_path_factory.mktemp("poisoned") / "data"
    shutil.copytree(small_prepared, out)
    data = PreparedData(out)
    rows = np.concatenate([np.arange(a, b) for s in ("validation", "test") for a, b in data.split(s)])
    assert len(rows) > 500
    features = np.load(out / "features.npy")
    features[rows] = POISON
    np.save(out / "features.npy", features)
    close = np.load(out / "close.npy")
    close[rows] = close[rows] * 1e-6  # a 99.9999% crash in every validation and test bar
    np.save(out / "close.npy", close)
    return out


def train_rows(path: Path) -> np.ndarray:
    from himari.data import PreparedData

    data = PreparedData(path)
    return np.concatenate([np.arange(a, b) for a, b in data.split("train")])


@pytest.mark.parametrize("method", ["timegan", "tab-ddpm", "block-bootstrap"])
def test_fit_reads_train_rows_only(method: str, poisoned: Path, make: Any, tmp_path: Path) -> None:
    from himari.augment.run import load_generator
    from himari.data import PreparedData

    meta = make(poisoned, tmp_path / "set", method, n=20, features="all")
    windows = np.load(tmp_path / "set" / "windows.npy")
    assert np.abs(windows).max() < POISON / 10
    # the provenance names the train rows, and they are the train split's
    data = PreparedData(poisoned)
    assert meta["source"]["train_ranges"] == [list(r) for r in data.split("train")]
    gen = load_generator(tmp_path / "set")
    train = np.asarray(data.features)[train_rows(poisoned)]
    if method == "timegan":  # min-max scaling fitted on the train rows' range
        np.testing.assert_allclose(gen.scaler.max[:train.shape[1]], train.max(axis=0), rtol=1e-6)
        np.testing.assert_allclose(gen.scaler.min[:train.shape[1]], train.min(axis=0), rtol=1e-6)
    elif method == "tab-ddpm":  # the quantile table and the tail thresholds come from train rows
        assert np.abs(gen.quantiles.state_dict()["quantiles"]).max() < POISON / 10
        assert gen.thresholds[0] > -1.0 and gen.thresholds[1] > -1.0  # log(1e-6) = -13.8 in val/test
    else:  # the bootstrap keeps exactly the train rows
        np.testing.assert_array_equal(gen.features, train)


@pytest.mark.parametrize("method", ["timegan", "tab-ddpm", "block-bootstrap"])
def test_same_seed_same_set_other_seed_other_set(method: str, small_prepared: Path, make: Any, tmp_path: Path) -> None:
    make(small_prepared, tmp_path / "a", method, seed=3)
    make(small_prepared, tmp_path / "b", method, seed=3)
    make(small_prepared, tmp_path / "c", method, seed=4)
    a, b, c = (np.load(tmp_path / x / "windows.npy") for x in "abc")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "labels.npy"), np.load(tmp_path / "b" / "labels.npy"))
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("method", ["timegan", "tab-ddpm", "block-bootstrap"])
def test_reloaded_generator_samples_what_the_fitted_one_did(method: str, small_prepared: Path, make: Any,
                                                            tmp_path: Path) -> None:
    from himari.augment.run import load_generator

    meta = make(small_prepared, tmp_path / "s", method, n=25, seed=7)
    gen = load_generator(tmp_path / "s")
    again = gen.sample(25, seed=7)
    np.testing.assert_array_equal(again.windows, np.load(tmp_path / "s" / "windows.npy"))
    np.testing.assert_array_equal(again.labels, np.load(tmp_path / "s" / "labels.npy"))
    assert meta["generator"]["code"] == {"timegan": "A4", "tab-ddpm": "A5", "block-bootstrap": None}[method]


def test_damaged_generator_state_is_refused(small_prepared: Path, make: Any, tmp_path: Path) -> None:
    from himari.augment.run import load_generator
    from himari.errors import DataError

    make(small_prepared, tmp_path / "s", "timegan")
    npz = tmp_path / "s" / "generator.npz"
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="generator.npz: does not match its hash"):
        load_generator(tmp_path / "s")


def test_tab_ddpm_generates_exactly_the_asked_class_mix(small_prepared: Path, make: Any, tmp_path: Path) -> None:
    import json

    make(small_prepared, tmp_path / "bal", "tab-ddpm", n=30, mix="balanced")
    classes = np.load(tmp_path / "bal" / "classes.npy")
    assert np.bincount(classes, minlength=3).tolist() == [10, 10, 10]  # normal, crash, flash-crash
    make(small_prepared, tmp_path / "tail", "tab-ddpm", n=10, mix="crash=3,flash-crash=1")
    meta = json.loads((tmp_path / "tail" / "metadata.json").read_text())
    # 10 rows at 3:1 -> 7.5 and 2.5: largest remainders, ties to the first class
    assert meta["classes"]["counts"] == {"normal": 0, "crash": 8, "flash-crash": 2}
    assert meta["classes"]["asked"] == {"normal": 0.0, "crash": 0.75, "flash-crash": 0.25}


def test_tab_ddpm_conditioned_on_the_label_labels_the_last_row(small_prepared: Path, make: Any, tmp_path: Path) -> None:
    make(small_prepared, tmp_path / "lab", "tab-ddpm", n=9, condition="label", mix="SELL=1,BUY=2", window=2)
    labels = np.load(tmp_path / "lab" / "labels.npy")
    classes = np.load(tmp_path / "lab" / "classes.npy")
    assert labels.shape == (9, 2)
    assert (labels[:, 0] == -1).all()
    np.testing.assert_array_equal(labels[:, 1], classes)
    assert sorted(classes.tolist()) == [0, 0, 0, 2, 2, 2, 2, 2, 2]


def test_tail_rules_on_a_hand_worked_price_path() -> None:
    from himari_builtin.generators.tab_ddpm import tails

    close = np.exp(np.array([0.0, 0.0, -0.01, -0.03, -0.03, -0.03, -0.10, -0.10]))
    segments = [(0, 8)]
    r1 = tails.segment_returns(close, segments, 1)
    r3 = tails.segment_returns(close, segments, 3)
    np.testing.assert_allclose(r1[1:], [0, -0.01, -0.02, 0, 0, -0.07, 0], atol=1e-12)
    np.testing.assert_allclose(r3[3:], [-0.03, -0.03, -0.02, -0.07, -0.07], atol=1e-12)
    assert np.isnan(r3[:3]).all()
    # crash: 3-bar return <= -0.05; flash crash: 1-bar return <= -0.05 (wins over crash)
    out = tails.classify(r3, r1, -0.05, -0.05)
    assert out.tolist() == [0, 0, 0, 0, 0, 0, tails.FLASH, tails.CRASH]
    # a return exactly at a threshold meets the rule (<=)
    assert tails.classify(np.array([-0.03]), np.array([0.0]), -0.03, -0.05).tolist() == [tails.CRASH]
    # two runs of bars: no return reaches across the gap; a run of k + 1 bars has one k-bar return
    two = tails.segment_returns(close, [(0, 4), (4, 8)], 3)
    assert np.isnan(two[:3]).all() and np.isnan(two[4:7]).all()
    np.testing.assert_allclose(two[[3, 7]], [-0.03, -0.07], atol=1e-12)
    # thresholds: the crash quantile of the 3-bar returns, the flash quantile of the 1-bar returns
    crash_at, flash_at = tails.thresholds(close, segments, 3, 0.1, 1, 0.4)
    assert crash_at == pytest.approx(np.quantile([-0.03, -0.03, -0.02, -0.07, -0.07], 0.1))
    assert flash_at == pytest.approx(np.quantile([0, -0.01, -0.02, 0, 0, -0.07, 0], 0.4))


def test_window_longer_than_the_train_split_is_refused_naming_the_generator(small_prepared: Path, make: Any,
                                                                           tmp_path: Path) -> None:
    from himari.errors import DataError

    with pytest.raises(DataError, match="generator 'timegan': the train split has no 100000 consecutive bars"):
        make(small_prepared, tmp_path / "x", "timegan", window=100_000)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_tab_ddpm_reverse_process_with_the_exact_noise_predictor_recovers_gaussian_data(scale: float) -> None:
    """For data x_0 ~ N(0, scale^2) the best noise predictor is known in closed form:
    x_t ~ N(0, v) with v = abar scale^2 + 1 - abar, and E[eps | x_t] = sqrt(1 - abar) x_t / v.
    Driven by it, the 1,000 ancestral steps (schedule, posterior mean, fixed-large variance,
    x_0 clip) must return samples of the data's spread: a wrong coefficient, variance or
    timestep offset shows here. (The generator's own tails are the network's, not the sampler's.)"""
    import torch
    from himari_builtin.generators.tab_ddpm.network import Schedule, gaussian_p_sample

    s = Schedule(1000, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    n = 10_000
    x = torch.randn(n, 2, generator=g)
    for step in reversed(range(1000)):
        t = torch.full((n,), step, dtype=torch.long)
        abar = float(s.sqrt_ac[step]) ** 2
        eps_hat = float(s.sqrt_1m_ac[step]) * x / (abar * scale**2 + 1 - abar)
        x = gaussian_p_sample(s, x, t, eps_hat, torch.randn(x.shape, generator=g))
    assert float(x.mean().abs()) < 0.02 * scale
    assert x.std(0).numpy() == pytest.approx([scale, scale], rel=0.02)


def test_tab_ddpm_reverse_step_keeps_a_poor_noise_estimate_in_the_data_range() -> None:
    """At t = T - 1 the predicted x_0 divides the network's error by sqrt(abar) (~1e-3) and the
    posterior mean passes it on ~30-fold: an eps estimate off by 0.5 made the first step's samples
    ~15 standard deviations wide and every generated value land on a clip bound. With x_0 clipped
    to the quantile transform's range the step stays near unit scale, and the last step (t = 0)
    returns values inside that range."""
    import torch
    from himari_builtin.generators.tab_ddpm.network import X0_BOUND, Schedule, gaussian_p_sample

    assert X0_BOUND == pytest.approx(5.199337582, abs=1e-8)  # scikit-learn's 1e-7 tail clip
    s = Schedule(1000, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(20_000, 8, generator=g)
    eps_hat = x_t + 0.5 * torch.randn(x_t.shape, generator=g)  # the ideal estimate at t = T - 1 is x_t
    noise = torch.randn(x_t.shape, generator=g)
    first = gaussian_p_sample(s, x_t, torch.full((20_000,), 999), eps_hat, noise)
    assert torch.isfinite(first).all()
    assert 0.8 < float(first.std()) < 1.3
    last = gaussian_p_sample(s, 20 * x_t, torch.zeros(20_000, dtype=torch.long), eps_hat, noise)
    assert float(last.abs().max()) <= X0_BOUND + 1e-5


def test_timegan_discriminator_steps_only_while_its_loss_exceeds_the_threshold(small_prepared: Path, make: Any,
                                                                                tmp_path: Path) -> None:
    """The joint phase computes the discriminator's gradients every iteration but steps its
    optimiser only while the loss is above ``d_threshold``: with a threshold no loss reaches,
    two and four joint iterations leave the same (initial) discriminator while every other
    network moves; with threshold 0 the discriminator moves too."""
    from himari.augment.run import load_generator

    def networks(threshold: float, iterations: int) -> dict[str, Any]:
        out = tmp_path / f"s-{threshold}-{iterations}"
        make(small_prepared, out, "timegan", d_threshold=threshold, iterations=iterations)
        return load_generator(out).network.state_dict()

    never = {k: networks(1e9, k) for k in (2, 4)}
    always = {k: networks(0.0, k) for k in (2, 4)}
    for name, value in never[2].items():
        same = bool((value == never[4][name]).all())
        assert same == name.startswith("discriminator."), name
        if name.startswith("discriminator."):
            assert not (always[2][name] == always[4][name]).all(), name


def test_block_bootstrap_windows_by_hand() -> None:
    """Rows carry their own index (channel 0) and label (index mod 3): every synthetic window is
    blocks of consecutive train rows in order, no block crosses the gap between segments, labels
    travel with their rows, each block start is drawn on its own and every start can be drawn."""
    from types import SimpleNamespace

    from himari_builtin.generators.block_bootstrap import BlockBootstrap, BlockBootstrapConfig

    rows = np.arange(100)
    data = SimpleNamespace(features=np.stack([rows, -rows], axis=1).astype(np.float32), labels=rows % 3,
                           segments=[(0, 40), (40, 100)])
    gen = BlockBootstrap(BlockBootstrapConfig(window=10, block=4))
    gen.fit(data)
    out = gen.sample(4000, seed=1)
    idx = out.windows[:, :, 0].astype(np.int64)
    assert out.windows.shape == (4000, 10, 2) and np.array_equal(out.windows[:, :, 1], -idx)
    np.testing.assert_array_equal(out.labels, idx % 3)
    blocks = [idx[:, 0:4], idx[:, 4:8], idx[:, 8:10]]  # ceil(10 / 4) = 3 blocks, the last cut to 2 rows
    for b in blocks:
        assert (np.diff(b, axis=1) == 1).all()  # consecutive rows, in order
        assert ((b < 40).all(axis=1) | (b >= 40).all(axis=1)).all()  # never across the gap
    starts = np.concatenate([b[:, 0] for b in blocks])
    valid = set(range(37)) | set(range(40, 97))  # 4 rows fit from each of these
    assert set(starts.tolist()) == valid  # every start drawn (12,000 draws of 94), none other
    follows = (blocks[1][:, 0] == blocks[0][:, -1] + 1).mean()
    assert follows < 0.05  # blocks drawn independently (about 1 in 94 continue the previous one)
    assert abs(np.corrcoef(blocks[0][:, 0], blocks[1][:, 0])[0, 1]) < 0.1  # not one start for the window


def test_block_bootstrap_bad_config_and_state_are_refused() -> None:
    from himari_builtin.generators.block_bootstrap import BlockBootstrap, BlockBootstrapConfig

    with pytest.raises(ValueError, match="window and block must be >= 1, got 0 and 6"):
        BlockBootstrapConfig(window=0)
    gen = BlockBootstrap(BlockBootstrapConfig(window=10, block=4))
    good = {"features": np.zeros((20, 2)), "labels": np.zeros(20), "starts": np.arange(17)}
    gen.load_state_dict(good)
    for bad in ({**good, "starts": np.arange(18)}, {**good, "labels": np.zeros(19)}, {**good, "starts": np.array([-1])},
                {**good, "features": np.zeros(20)}):
        with pytest.raises(ValueError, match="do not fit together"):
            gen.load_state_dict(bad)



@pytest.mark.parametrize("method", ["timegan", "tab-ddpm"])
def test_a_label_aware_fit_refuses_train_rows_with_no_known_label(method: str, small_prepared: Path,
                                                                 _generators: Any) -> None:
    """With every train label unknown (-1), a generator that models labels has nothing to learn
    them from: TimeGAN would fit all-zero label channels and still decode a class by arg-max for
    every generated step. Both refuse with the same words; TimeGAN without labels still fits."""
    import dataclasses

    from himari.augment.source import generator_data, resolve_channels
    from himari.data import PreparedData
    from himari.errors import DataError
    from himari.plugin.config import build_config

    tiny = {"timegan": {"window": 8, "hidden": 4, "layers": 2, "iterations": 4, "batch_size": 16},
            "tab-ddpm": {"timesteps": 10, "layers": [16], "dim_t": 8, "steps": 4, "batch_size": 64,
                         "crash_bars": 24, "n_quantiles": 50}}
    spec = _generators.generators().entry(method).spec
    data = PreparedData(small_prepared)
    gd = generator_data(data, resolve_channels(None, spec.default_features, list(data.feature_names)))
    unknown = dataclasses.replace(gd, labels=np.full_like(np.asarray(gd.labels), -1))
    with pytest.raises(DataError, match=f"generator '{method}': no train window has known labels"):
        spec.factory(build_config(spec.config, tiny[method], method)).fit(unknown)
    if method == "timegan":
        plain = spec.factory(build_config(spec.config, {**tiny[method], "labels": False}, method))
        plain.fit(unknown)
        assert (plain.sample(4, seed=0).labels == -1).all()
