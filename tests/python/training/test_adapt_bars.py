"""``himari backtest RUN --adapt-bars N`` through a third-party-style training method's ``adapt`` hook:
the hook gets exactly the rows whose labels are known by the N-th bar, only the bars after the first
N of each range are scored (the unadapted run and the baselines too), the trained weights come back
after each range, and bad values or a run that cannot adapt are refused in one line."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from himari.errors import ConfigError  # noqa: E402
from himari.plugin.api import TrainingMethodSpec, hookimpl  # noqa: E402
from himari.plugin.manager import build_plugins  # noqa: E402
from himari.training.config import merge_run_config  # noqa: E402
from himari.training.trainer import Trainer  # noqa: E402

TINY = ["train.epochs=1", "train.batch_size=64", "train.max_steps_per_epoch=3", "train.progress=false", "recipe=none",
        "train.patience=0"]


@dataclass(frozen=True)
class NoSettings:
    pass


class BuyAfterAdapting:
    """Adapting makes the model buy everywhere (the last layer's weights 0, its BUY bias 10), and
    records what it was given."""

    seen: list = []

    def adapt(self, model, ctx):
        head = model.network[-1]
        BuyAfterAdapting.seen.append((list(ctx.splits["adapt"]), float(head.bias[2].detach()),
                                      len(model.dataset(ctx, "adapt"))))
        with torch.no_grad():
            head.weight.zero_()
            head.bias.copy_(torch.tensor([0.0, 0.0, 10.0]))


class NoAdapt:
    pass


def plugins_with(name, factory):
    class Plugin:
        @hookimpl
        def himari_register_training_methods(self, registry):
            registry.add(TrainingMethodSpec(name=name, summary="a test method", config=NoSettings,
                                            factory=lambda c: factory()))

    plugins = build_plugins()
    plugins.register(Plugin(), name=f"{name}-plugin")
    return plugins


@pytest.fixture(scope="module")
def runs(small_prepared, tmp_path_factory):
    out = {}
    for name, factory in (("buy-after-adapting", BuyAfterAdapting), ("no-adapt", NoAdapt)):
        plugins = plugins_with(name, factory)
        run_dir = tmp_path_factory.mktemp("runs") / name
        run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                                           "methods": name}, sets=TINY)
        Trainer(run, plugins=plugins, run_dir=run_dir, console=Console(file=io.StringIO())).fit()
        out[name] = (run_dir, plugins)
    return out


@pytest.fixture
def use(monkeypatch):
    def install(plugins):
        monkeypatch.setattr("himari.plugin.manager.get_plugins", lambda *a, **k: plugins)
    return install


def test_adapts_on_known_labels_and_scores_only_the_bars_after(runs, use, small_prepared) -> None:
    from himari.data import PreparedData
    from himari.training.leaderboard import backtest

    run_dir, plugins = runs["buy-after-adapting"]
    use(plugins)
    data = PreparedData(small_prepared)
    (a, b), = data.split("test")
    n, look = 200, data.lookahead
    plain, _ = backtest([str(run_dir)], split="test")
    BuyAfterAdapting.seen = []
    entries, context = backtest([str(run_dir), "buy-and-hold"], split="test", adapt_bars=n)
    by_name = {e.name: e for e in entries}
    # the hook saw the rows [a, a + n - lookahead): their labels read bars up to a + n - 1 only
    (splits, bias_before, examples), = BuyAfterAdapting.seen
    assert splits == [(a, a + n - look)]
    assert examples == int((np.asarray(data.labels)[a:a + n - look] >= 0).sum())
    assert context["ranges"] == [[a + n, b]] and context["bars"] == b - a - n
    assert context["adapt_bars"] == n and context["adapt_label_rows"] == [[a, a + n - look]]
    # the unadapted run is the same model on the bars after the first n
    np.testing.assert_array_equal(by_name[str(run_dir)].actions, plain[0].actions[n:])
    # the adapted one buys everywhere: what buy-and-hold earns on the same bars
    adapted = by_name[f"{run_dir} adapted"]
    assert set(adapted.actions.tolist()) == {2}
    assert adapted.metrics["total_return"] == pytest.approx(by_name["buy-and-hold"].metrics["total_return"])
    assert bias_before != 10.0  # it started from the trained weights


def test_each_range_starts_again_from_the_trained_weights(runs, use, small_prepared) -> None:
    from himari.data import PreparedData
    from himari.training.adaptation import adapted_actions
    from himari.training.assemble import load_trained

    run_dir, plugins = runs["buy-after-adapting"]
    use(plugins)
    data = PreparedData(small_prepared)
    policy = load_trained(run_dir, plugins=plugins)
    before = {k: v.clone() for k, v in policy.model.network.state_dict().items()}
    (a, b), = data.split("test")
    BuyAfterAdapting.seen = []
    acts = adapted_actions(policy, data, [(a, a + 300), (a + 300, b)], 100)
    assert len(acts) == b - a - 200
    first, second = BuyAfterAdapting.seen
    last = f"{len(policy.model.network) - 1}.bias"
    # the second range's adaptation started from the trained bias again, not from the first's 10
    assert first[1] == second[1] == float(before[last][2]) != 10.0
    assert first[0] == [(a, a + 100 - data.lookahead)] and second[0] == [(a + 300, a + 400 - data.lookahead)]
    after = policy.model.network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("n, text", [(10_000, "--adapt-bars 10000: a scored range has only"),
                                     (6, "--adapt-bars 6: must exceed the labels' lookahead of 6 bars"),
                                     (0, "--adapt-bars 0: expected a number of bars >= 1")])
def test_bad_adapt_bars_are_refused_in_one_line(n, text, runs, use, tmp_path) -> None:
    from himari.cli import app

    run_dir, plugins = runs["buy-after-adapting"]
    use(plugins)
    out = CliRunner().invoke(app, ["backtest", str(run_dir), "--adapt-bars", str(n), "--out",
                                   str(tmp_path / "bt.json")], env={"COLUMNS": "300"})
    assert out.exit_code == 2, out.output
    assert text in out.output and "Traceback" not in out.output
    assert not (tmp_path / "bt.json").exists()


@pytest.mark.parametrize("n, refused", [(533, True), (534, True), (532, False)])
def test_adapt_bars_leave_at_least_two_bars_to_score(n: int, refused: bool) -> None:
    """The backtest of the bars after the adaptation needs 2 of them: with 1 left the engine itself
    refused the range, where the option should have been named."""
    from himari.training.adaptation import check_adapt_bars

    if refused:
        with pytest.raises(ConfigError, match=f"--adapt-bars {n}: a scored range has only 534 bars; adapt on at "
                                              "most 532"):
            check_adapt_bars(n, [(0, 534), (1000, 2000)], lookahead=6)
    else:
        check_adapt_bars(n, [(0, 534), (1000, 2000)], lookahead=6)


def test_a_run_without_an_adapting_method_is_refused(runs, use) -> None:
    from himari.training.leaderboard import backtest

    run_dir, plugins = runs["no-adapt"]
    use(plugins)
    with pytest.raises(ConfigError, match="without a training method that adapts"):
        backtest([str(run_dir)], split="test", adapt_bars=100)


def test_adapting_runs_on_the_cpu_wherever_the_run_trained(runs, use, monkeypatch) -> None:
    """A run is loaded where its evaluation would score it (``scoring_device``), except when it
    adapts: the adaptation context is a CPU one, so the network must be there too."""
    from himari.training import assemble, device
    from himari.training.leaderboard import backtest

    run_dir, plugins = runs["buy-after-adapting"]
    use(plugins)
    loaded = []
    real_load = assemble.load_trained
    monkeypatch.setattr(device, "scoring_device", lambda d: "cuda:7")  # as if it trained on a GPU that is here
    monkeypatch.setattr(assemble, "load_trained",
                        lambda d, **kw: loaded.append(kw.get("device")) or real_load(d, **{**kw, "device": "cpu"}))
    backtest([str(run_dir)], split="test")
    backtest([str(run_dir)], split="test", adapt_bars=200)
    assert loaded == ["cuda:7", "cpu"]
