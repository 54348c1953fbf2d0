"""The cgdt model plugin: conformance at a tiny size, its parameter arithmetic, the critic phase,
the guidance gradient, causal acting with the key/value cache, return-to-go conditioning, the
target kept by checkpoints, and a tiny ``himari train cgdt`` run."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari.plugin import ModelSpec, hookimpl  # noqa: E402
from himari.plugin.api import EnvConfig, ModelContext, TrainContext  # noqa: E402

from himari_tests_conformance import check_model  # type: ignore[import-not-found]  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
MODULE = "himari_builtin.models.cgdt"


def _load_cgdt() -> Any:
    """The plugin package: by name once its entry point is installed, else from this checkout."""
    try:
        return importlib.import_module(MODULE)
    except ModuleNotFoundError:
        if MODULE not in sys.modules:
            package = REPO / "plugins/himari_builtin/models/cgdt"
            spec = importlib.util.spec_from_file_location(MODULE, package / "__init__.py",
                                                          submodule_search_locations=[str(package)])
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[MODULE] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        return sys.modules[MODULE]


cgdt = _load_cgdt()

TINY_FIELDS = dict(context_length=8, d_model=32, n_layers=2, n_heads=2, dropout=0.0, critic_dim=16,
                   critic_layers=1, critic_heads=2, critic_steps=30, critic_batch_size=16, guidance_warmup=4,
                   stride=2, target_quantiles=(0.5, 0.9))


@dataclass(frozen=True)
class TinyCGDTConfig(cgdt.CGDTConfig):
    """CGDTConfig with tiny defaults (the conformance harness runs a model at its defaults)."""

    context_length: int = 8
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.0
    critic_dim: int = 16
    critic_layers: int = 1
    critic_heads: int = 2
    critic_steps: int = 30
    critic_batch_size: int = 16
    guidance_warmup: int = 4
    stride: int = 2
    target_quantiles: tuple[float, ...] = (0.5, 0.9)


class _TinyPlugin:
    """``cgdt-tiny``: the real factory and arithmetic with TinyCGDTConfig's defaults."""

    @hookimpl
    def himari_register_models(self, registry: Any) -> None:
        registry.add(ModelSpec(name="cgdt-tiny", summary="cgdt at a tiny size (tests)", config=TinyCGDTConfig,
                               factory=cgdt.build, paradigm="offline-rl", parameter_count=cgdt.parameter_count,
                               default_preprocess=("zscore",)))


def _plugins() -> Any:
    """Installed plugins + cgdt (registered from this checkout until its entry point exists) +
    cgdt-tiny."""
    from himari.plugin.manager import build_plugins

    plugins = build_plugins()
    if "cgdt" not in plugins.models():
        plugins.register(cgdt, name=MODULE)
    plugins.register(_TinyPlugin(), name="cgdt-tiny-tests")
    return plugins


@pytest.fixture(scope="module")
def trained(small_prepared: Path, tmp_path_factory: pytest.TempPathFactory, gpu_hider: Any) -> dict[str, Any]:
    """One tiny run through the conformance harness, shared by the tests that need a trained model
    (on the CPU: this module's ``cuda`` tests keep the GPU visible to its fixtures)."""
    plugins = _plugins()
    tmp = tmp_path_factory.mktemp("cgdt")
    with pytest.MonkeyPatch.context() as mp:
        gpu_hider(mp)
        summary = check_model("cgdt-tiny", small_prepared, tmp, plugins)
    return {"summary": summary, "run_dir": tmp / "run-cgdt-tiny", "plugins": plugins, "data": small_prepared}


def _context(data_dir: Path, seed: int = 0) -> TrainContext:
    from himari.data import PreparedData

    data = PreparedData(data_dir)
    feats = np.nan_to_num(np.asarray(data.features, dtype=np.float32))
    splits = {s: data.split(s) for s in ("train", "validation", "test")}
    return TrainContext(data=data, features=feats, labels=np.asarray(data.labels), splits=splits, env=EnvConfig(),
                        model=ModelContext(n_features=feats.shape[1]), seed=seed)


def _tiny_model(**changes: Any) -> Any:
    return cgdt.CGDT(TinyCGDTConfig(**changes), ModelContext(n_features=60))


# ------------------------------------------------------------------------------ conformance

def test_conformance_tiny(trained: dict[str, Any]) -> None:
    s = trained["summary"]
    assert s["steps"] == 6 and np.isfinite(s["validation"]["model"]["sharpe"])
    records = [json.loads(line) for line in (trained["run_dir"] / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/action_nll" in r]
    assert train and all(np.isfinite(r["train/critic_nll"]) for r in train)  # the critic was trained first
    assert [r["train/guidance_c"] for r in train] == pytest.approx([1 / 4, 3 / 4, 1.0])  # warm-up over 4 steps


def test_parameter_count_at_the_default_config() -> None:
    cfg = cgdt.CGDTConfig()
    count = cgdt.parameter_count(cfg, 60)
    assert abs(count.trainable / 4_822_276 - 1) < 0.05  # the Decision Transformer (the policy)
    assert abs(count.total / 4_822_276 - 1) < 0.05  # policy + critic
    with torch.device("meta"):
        net = cgdt.build_network(cfg, 60)
    assert sum(p.numel() for p in net.parameters()) == count.total
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == count.trainable
    assert sum(p.numel() for p in net.policy.parameters()) == count.trainable


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="multiples"):
        cgdt.CGDTConfig(d_model=30, n_heads=8)
    with pytest.raises(ValueError, match="action_relaxation"):
        cgdt.CGDTConfig(action_relaxation="argmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="benchmark_weight"):
        cgdt.CGDTConfig(benchmark_weight=-0.5)


# ------------------------------------------------------------------------------ the pieces

def test_expectile_nll_and_schedule_by_hand() -> None:
    u = torch.tensor([-2.0, 0.0, 3.0])
    assert cgdt.expectile_loss(u, 0.9).tolist() == pytest.approx([0.1 * 4, 0.0, 0.9 * 9])
    nll = cgdt.gaussian_nll(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([np.log(2.0)]))
    assert float(nll) == pytest.approx(0.5 * 0.25 + np.log(2.0))
    cfg = cgdt.CGDTConfig(guidance_weight=2.0, guidance_warmup=10)
    assert [cgdt.guidance_coefficient(s, cfg) for s in (0, 5, 10, 50)] == pytest.approx([0.0, 1.0, 2.0, 2.0])
    assert [cgdt.window_start(t, 8) for t in (0, 3, 4, 7, 8, 11, 12)] == [0, 0, 0, 0, 4, 4, 8]


def test_next_return_to_go_subtracts_the_realised_reward() -> None:
    got = cgdt.next_return_to_go(np.array([5.0, 1.0]), np.array([0.5, -0.5]), 1.0, -10.0, 10.0)
    assert got.tolist() == [4.5, 1.5]
    got = cgdt.next_return_to_go(np.array([1.0, 9.0]), np.array([0.01, 0.0]), 0.5, -10.0, 10.0)
    assert got.tolist() == pytest.approx([1.98, 10.0])  # discounted, then clipped to the train range


def test_critic_trains_first_then_stays_frozen(small_prepared: Path) -> None:
    model = _tiny_model()
    ctx = _context(small_prepared)
    windows = model.dataset(ctx, "train")
    net = model.network
    assert not any(p.requires_grad for p in net.critic.parameters())  # frozen outside its phase
    init = [p.detach().clone() for p in net.critic.parameters()]
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.1)  # what the Trainer builds
    net.train()
    batch = windows[torch.arange(16)]
    loss, logs = model.loss(batch, ctx)  # first training step: the critic phase runs first
    assert int(net.critic_ready) == 1 and np.isfinite(float(logs["critic_nll"]))
    trained = [p.detach().clone() for p in net.critic.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(init, trained))
    policy_before = [p.detach().clone() for p in net.policy.parameters()]
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        assert all(p.grad is None for p in net.critic.parameters())
        opt.step()
        loss, _ = model.loss(batch, ctx)
    assert all(torch.equal(a, b) for a, b in zip(trained, net.critic.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(policy_before, net.policy.parameters()))
    assert not any(p.requires_grad for p in net.critic.parameters())


def test_benchmark_weight_trains_on_excess_returns_to_go(small_prepared: Path) -> None:
    """The model's train windows carry the returns-to-go of the excess rewards: with gamma 1, the
    plain ones less the asset's log return from each step to the end of its range (scaled)."""
    ctx = _context(small_prepared)
    plain = _tiny_model(gamma=1.0).dataset(ctx, "train")
    excess = _tiny_model(gamma=1.0, benchmark_weight=1.0).dataset(ctx, "train")
    close = np.asarray(ctx.data.close, dtype=np.float64)
    rows = plain.rows.numpy()
    (_, b), = ctx.splits["train"]
    steps = rows < b - 1  # the range's last row takes no decision
    to_end = np.log(close[b - 1] / close[rows[steps]]) * 100.0  # reward_scale
    got = (plain.rtg.numpy().astype(np.float64) - excess.rtg.numpy())[steps]
    np.testing.assert_allclose(got, to_end, rtol=1e-4, atol=2e-3)
    assert np.abs(to_end).max() > 1.0  # the market moved: the two really differ


@pytest.mark.parametrize("relaxation", ["softmax", "gumbel-st"])
def test_guidance_gradient_reaches_the_policy_through_the_predicted_action(relaxation: str) -> None:
    model = _tiny_model(action_relaxation=relaxation)
    net = model.network
    g = torch.Generator().manual_seed(0)
    obs, rtg = torch.randn(4, 8, 64, generator=g), torch.randn(4, 8, generator=g)
    actions = torch.randint(0, 3, (4, 8), generator=g)
    logits = net.policy(rtg, net.states(obs), actions)
    guide, _ = model.guidance(obs, actions, rtg, logits)
    guide.backward()
    head = net.policy.head.weight.grad
    assert head is not None and torch.isfinite(head).all() and float(head.abs().sum()) > 0
    assert net.policy.embed_state.weight.grad is not None
    assert all(p.grad is None for p in net.critic.parameters())
    # the only path from the policy to the guidance is the predicted action
    net.zero_grad(set_to_none=True)
    guide, _ = model.guidance(obs, actions, rtg, net.policy(rtg, net.states(obs), actions).detach())
    assert not guide.requires_grad


def test_policy_loss_by_hand() -> None:
    """``(NLL + c G) / (1 + c)``: NLL the data actions' cross-entropy, G the mean expectile loss
    (tau 0.9) of ``u = (R / rtg_scale - mu) / sigma`` at the softmax of the predicted actions, c
    from the step clock (weight 1 over 4 steps: 0.5 after 2); a training step advances the clock,
    an evaluation does not."""
    import torch.nn.functional as F

    model = _tiny_model(guidance_weight=1.0, guidance_warmup=4, guidance_expectile=0.9)
    net = model.network
    net.set_critic_ready()
    g = torch.Generator().manual_seed(4)
    obs, rtg = torch.randn(3, 8, 64, generator=g), 3.0 * torch.randn(3, 8, generator=g)
    actions = torch.randint(0, 3, (3, 8), generator=g)
    with torch.no_grad():
        net.rtg_scale.fill_(2.5)
        net.policy_steps.fill_(2)
    net.eval()
    with torch.no_grad():
        loss, logs = model.loss((obs, actions, rtg), None)
        logits = net.policy(rtg / 2.5, net.states(obs), actions)
        nll = -F.log_softmax(logits, -1).gather(-1, actions[..., None]).mean()
        mu, log_sigma = net.critic(net.states(obs), actions, torch.softmax(logits, -1))
        u = (rtg / 2.5 - mu) / torch.exp(log_sigma)
        guide = torch.where(u < 0, 0.1, 0.9).mul(u * u).mean()
    assert float(logs["action_nll"]) == pytest.approx(float(nll), rel=1e-5)
    assert float(logs["guidance"]) == pytest.approx(float(guide), rel=1e-5)
    assert float(logs["guidance_c"]) == pytest.approx(0.5)
    assert float(loss) == pytest.approx(float((nll + 0.5 * guide) / 1.5), rel=1e-5)
    assert int(net.policy_steps) == 2  # evaluation: the clock stands
    net.train()
    model.loss((obs, actions, rtg), None)
    assert int(net.policy_steps) == 3


def test_critic_queries_see_the_data_history_and_the_predicted_action_only() -> None:
    """A query with the data action equals the critic at the data action token; changing the
    data at later steps or the predicted action at other steps leaves step t alone."""
    net = _tiny_model().network
    g = torch.Generator().manual_seed(1)
    obs, actions = torch.randn(2, 8, 64, generator=g), torch.randint(0, 3, (2, 8), generator=g)
    states = net.states(obs)
    with torch.no_grad():
        mu, ls = net.critic(states, actions)
        qmu, qls = net.critic(states, actions, torch.nn.functional.one_hot(actions, 3).float())
        assert torch.allclose(mu, qmu, atol=1e-5) and torch.allclose(ls, qls, atol=1e-5)
        query = torch.softmax(torch.randn(2, 8, 3, generator=g), -1)
        base, _ = net.critic(states, actions, query)
        t = 3
        s2, a2, q2 = states.clone(), actions.clone(), query.clone()
        s2[:, t + 1:] += 5.0
        a2[:, t:] = (a2[:, t:] + 1) % 3  # the data action at t itself is not seen by query t
        q2[:, :t] = q2[:, :t].flip(-1)
        q2[:, t + 1:] = q2[:, t + 1:].flip(-1)
        moved, _ = net.critic(s2, a2, q2)
    assert torch.allclose(base[:, t], moved[:, t], atol=1e-5)
    assert not torch.allclose(base[:, :t], moved[:, :t], atol=1e-3)  # their own queries changed


# ------------------------------------------------------------------------------ acting

def test_cached_decoder_equals_the_full_forward_on_each_window() -> None:
    model = _tiny_model(context_length=6)
    net = model.network.eval()
    g = torch.Generator().manual_seed(2)
    n, batch = 20, 3
    rtg, states = torch.randn(batch, n, generator=g), torch.randn(batch, n, 64, generator=g)
    actions = torch.randint(0, 3, (batch, n), generator=g)
    dec = cgdt.Decoder(net, 6, n, batch)
    with torch.no_grad():
        for t in range(n):
            got = dec.logits(rtg[:, t], states[:, t], actions[:, t - 1] if t else None)
            ws = cgdt.window_start(t, 6)
            want = net.policy(rtg[:, ws:t + 1], states[:, ws:t + 1], actions[:, ws:t + 1])[:, -1]
            assert torch.allclose(got, want, atol=1e-4), t
            assert 3 <= t - ws + 1 <= 6 or t < 3


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_replayed_acting_steps_equal_eager_ones_and_the_full_forward() -> None:
    """On a GPU the decoder's step is recorded once and replayed (its position read from the
    input row); logits of every step, across window restarts, equal the eager decoder's and
    the policy's full forward on the window, and a replay really ran."""
    model = _tiny_model(context_length=6)
    net = model.network.to("cuda").eval()
    g = torch.Generator().manual_seed(5)
    n, batch = 24, 3
    rtg, states = torch.randn(batch, n, generator=g), torch.randn(batch, n, 64, generator=g)
    actions = torch.randint(0, 3, (batch, n), generator=g)
    replayed, eager = cgdt.Decoder(net, 6, n, batch, graphs=True), cgdt.Decoder(net, 6, n, batch, graphs=False)
    with torch.no_grad():
        for t in range(n):
            prev = actions[:, t - 1] if t else None
            got, plain = replayed.logits(rtg[:, t], states[:, t], prev), eager.logits(rtg[:, t], states[:, t], prev)
            ws = cgdt.window_start(t, 6)
            want = net.policy(rtg[:, ws:t + 1].cuda(), states[:, ws:t + 1].cuda(), actions[:, ws:t + 1].cuda())[:, -1]
            assert torch.allclose(got, plain, atol=1e-5), t
            assert torch.allclose(got, want.cpu(), atol=1e-4), t
    assert replayed.step.replaying and not eager.step.replaying


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_acting_on_a_gpu_with_and_without_replay_takes_the_cpu_decisions(first_test_bars: Any) -> None:
    """rollout_targets on the GPU, replayed (the default) and eager (acting_cuda_graph=false),
    decides what it decides on the CPU, under rules too."""
    from himari.training.config import ExecutionConfig

    feats, open_, close = first_test_bars(300)
    env = EnvConfig(mode="long_short")
    targets = [30.0, -30.0, 0.0]
    rules = ExecutionConfig(decision_interval=2, min_hold=4, confidence=0.4)
    for execution in (None, rules):
        model = _tiny_model(context_length=8)
        net = model.network.eval()
        with torch.no_grad():
            net.rtg_scale.fill_(2.0)
            on_cpu = cgdt.rollout_targets(net, model.config, feats, open_, close, targets, env, execution=execution)
            net.to("cuda")
            replayed = cgdt.rollout_targets(net, model.config, feats, open_, close, targets, env, execution=execution)
            eager_cfg = TinyCGDTConfig(context_length=8, acting_cuda_graph=False)
            eager = cgdt.rollout_targets(net, eager_cfg, feats, open_, close, targets, env, execution=execution)
        np.testing.assert_array_equal(replayed, eager)
        assert (replayed != on_cpu).mean() < 0.01  # float rounding may flip a near tie, no more
        assert len(np.unique(on_cpu)) > 1


def test_no_look_ahead_in_act_sequence(trained: dict[str, Any]) -> None:
    """Rewriting features and prices after t leaves every action up to t unchanged (validation
    split here; the harness checked the test split)."""
    from himari.data import PreparedData
    from himari.training.assemble import load_trained

    policy = load_trained(trained["run_dir"], plugins=trained["plugins"])
    data = PreparedData(trained["data"])
    feats = policy_features(policy, data)
    a, b = data.split("validation")[0]
    t = a + (b - a) // 3
    open_, close = np.array(data.open, dtype=np.float64), np.array(data.close, dtype=np.float64)
    f2, o2, c2 = feats.copy(), open_.copy(), close.copy()
    f2[t + 1:] = np.random.default_rng(3).normal(size=f2[t + 1:].shape).astype(np.float32) * 3
    scale = np.exp(np.random.default_rng(4).normal(0, 0.05, size=len(o2) - t - 1))
    o2[t + 1:] *= scale
    c2[t + 1:] *= scale
    env = policy.context.env
    with torch.no_grad():
        before = policy.model.act_sequence(feats, open_, close, [(a, b)], env)
        after = policy.model.act_sequence(f2, o2, c2, [(a, b)], env)
    np.testing.assert_array_equal(before[:t + 1 - a], after[:t + 1 - a])
    assert not np.array_equal(before, after) or len(set(before.tolist())) == 1


def policy_features(policy: Any, data: Any) -> np.ndarray:
    return policy.features(data)


@pytest.mark.parametrize("benchmark_weight", [0.0, 1.0])
def test_rtg_tokens_are_the_target_minus_realised_rewards(first_test_bars: Any, monkeypatch,
                                                          benchmark_weight: float) -> None:
    """With gamma 1 the return-to-go token at t is the target minus the env rewards of the
    decisions before t (times reward_scale), the rewards the backtester's account earns; with
    ``benchmark_weight`` 1, minus the excess of each over holding the asset, as in training."""
    from himari.engine import replay_actions

    model = _tiny_model(gamma=1.0, benchmark_weight=benchmark_weight)
    net = model.network.eval()
    with torch.no_grad():
        net.rtg_scale.fill_(2.0)
        net.rtg_bounds.copy_(torch.tensor([-1e6, 1e6]))
    seen: list[np.ndarray] = []
    real = cgdt.Decoder.logits
    # BUY, HOLD and SELL spells steer the untrained policy, so that it trades on any torch: left to
    # itself, its choice depends on the numerics (on one GPU build it never left the flat account)
    spells = [2] * 7 + [1] * 3 + [0] * 5 + [1] * 2

    def spy(self: Any, rtg: Any, state: Any, prev: Any = None) -> Any:
        seen.append(rtg.cpu().numpy().copy())
        out = real(self, rtg, state, prev)
        steer = torch.zeros_like(out)
        steer[:, spells[(len(seen) - 1) % len(spells)]] = 100.0
        return out + steer

    monkeypatch.setattr(cgdt.Decoder, "logits", spy)
    feats, open_, close = first_test_bars(200)
    env = EnvConfig()
    with torch.no_grad():
        acts = cgdt.rollout_targets(net, model.config, feats, open_, close, [3.0, -1.0], env)
    rep = replay_actions(open_, close, acts.T.astype(np.int64), fee=env.fee, slippage=env.slippage, mode=env.mode)
    held = np.log(np.asarray(close[1:], dtype=np.float64) / np.asarray(close[:-1], dtype=np.float64))
    realised = (np.asarray(rep.reward).T - benchmark_weight * held) * model.config.reward_scale  # [G, n - 1]
    tokens = np.stack(seen, axis=1) * 2.0  # back from rtg / rtg_scale
    want = np.array([[3.0], [-1.0]]) - np.concatenate([np.zeros((2, 1)), np.cumsum(realised, axis=1)[:, :-1]], 1)
    np.testing.assert_allclose(tokens, want, rtol=1e-4, atol=1e-4)
    assert np.count_nonzero(np.diff(acts, axis=1)) > 10 and np.abs(realised).sum() > 0  # the tokens really moved


def test_checkpoint_restores_the_target_chosen_on_validation(trained: dict[str, Any]) -> None:
    from himari.data import PreparedData
    from himari.evaluation.policy import evaluate_actions
    from himari.training.assemble import load_trained
    from himari.training.checkpoint import load_checkpoint

    state = load_checkpoint(trained["run_dir"] / "checkpoints/best.pt", model="cgdt-tiny")["network"]
    grid = state["rtg_grid"].tolist()
    target = float(state["target_rtg"])
    assert target in grid and grid[0] < grid[-1]
    policy = load_trained(trained["run_dir"], plugins=trained["plugins"])
    assert float(policy.model.network.target_rtg) == target
    # the restored model (no tuning outside training) scores the validation split as the run did
    data = PreparedData(trained["data"])
    ranges = data.split("validation")
    env = policy.context.env
    with torch.no_grad():
        acts = policy.model.act_sequence(policy_features(policy, data), data.open, data.close, ranges, env)
    got = evaluate_actions(np.asarray(data.open), np.asarray(data.close), ranges, acts,
                           EnvConfig(fee=env.fee, slippage=env.slippage, mode=env.mode))
    assert got["sharpe"] == pytest.approx(trained["summary"]["validation"]["model"]["sharpe"], abs=1e-9)
    # and a fresh network given that state holds the same target
    fresh = cgdt.build_network(TinyCGDTConfig(), 60)
    fresh.load_state_dict(state)
    assert float(fresh.target_rtg) == target and int(fresh.critic_ready) == 1


def test_himari_train_cgdt_cli(small_prepared: Path, tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import himari.plugin.manager as manager
    from himari.cli import app

    plugins = _plugins()
    monkeypatch.setattr(manager, "get_plugins", lambda: plugins)
    tiny = [x for k, v in TINY_FIELDS.items() if k != "target_quantiles"
            for x in ("--set", f"cgdt.{k}={v}")]
    out = CliRunner().invoke(app, ["train", "cgdt", "--data", str(small_prepared), "--epochs", "1",
                                   "--batch-size", "16", "--run-dir", str(tmp_path / "run"),
                                   "--set", "max_steps_per_epoch=2", "--set", "progress=false", *tiny],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"] == "cgdt" and summary["steps"] == 2
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "context_length: 8" in config


def test_the_critic_flag_kept_on_the_host_follows_the_buffer() -> None:
    """The loss asks whether the critic phase ran from a host copy (a CUDA buffer read would wait
    for the GPU each step); it must stay what the buffer says: after the phase, and after a
    checkpoint's buffers are loaded into a network that has already read its own."""
    net = cgdt.build_network(TinyCGDTConfig(), 6)
    assert net.critic_is_ready() is False
    net.set_critic_ready()
    assert net.critic_is_ready() is True and int(net.critic_ready) == 1
    for _ in range(3):
        net.count_policy_step()
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    other = cgdt.build_network(TinyCGDTConfig(), 6)
    assert other.critic_is_ready() is False  # read, then overwritten by a load
    other.load_state_dict(saved)
    assert other.critic_is_ready() is True and int(other.policy_steps) == 3


def test_the_guidance_clock_is_read_on_the_device() -> None:
    """c from the step buffer equals the schedule's (hand values: weight 2 over 10 steps), in
    float32 on the buffer's device, and with no warm-up it is the weight from the first step."""
    cfg = TinyCGDTConfig(guidance_weight=2.0, guidance_warmup=10)
    got = [cgdt.guidance_coefficient_at(torch.tensor(s), cfg) for s in (0, 5, 10, 50)]
    assert [float(c) for c in got] == pytest.approx([0.0, 1.0, 2.0, 2.0], abs=0)
    assert all(c.dtype == torch.float32 and c.shape == () for c in got)
    assert float(cgdt.guidance_coefficient_at(torch.tensor(7), TinyCGDTConfig(guidance_weight=0.5, guidance_warmup=0))) == 0.5
    third = cgdt.guidance_coefficient_at(torch.tensor(1), TinyCGDTConfig(guidance_weight=1.0, guidance_warmup=3))
    assert float(third) == float(torch.tensor(1 / 3, dtype=torch.float32))


def test_the_default_recipe_is_the_small_cgdt(small_prepared: Path, tmp_path: Path, monkeypatch) -> None:
    """``himari train cgdt`` with no model options trains the recipe's small CGDT (64 wide, 2
    blocks, 16-step windows, a 400-step critic, 3 epochs) deciding every bar with the default
    target quantiles; a user's own setting wins over the recipe, and ``--set recipe=none`` is the
    full-size model. The run's config records which."""
    import yaml
    from typer.testing import CliRunner

    from himari.cli import app
    from himari.plugin import manager
    from himari.training.config import merge_run_config

    plugins = _plugins()
    monkeypatch.setattr(manager, "get_plugins", lambda: plugins)
    out = CliRunner().invoke(app, ["train", "cgdt", "--data", str(small_prepared), "--epochs", "1",
                                   "--run-dir", str(tmp_path / "run"), "--set", "cgdt.critic_steps=2",
                                   "--set", "max_steps_per_epoch=2", "--set", "progress=false"],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    own = config["plugins"]["cgdt"]
    assert (own["d_model"], own["n_layers"], own["n_heads"], own["context_length"]) == (64, 2, 4, 16)
    assert list(own["target_quantiles"]) == list(cgdt.CGDTConfig().target_quantiles) == [0.5, 0.75, 0.9, 0.95, 0.99]
    assert own["critic_steps"] == 2 and config["train"]["epochs"] == 1  # the user's settings win
    assert (config["execution"]["decision_interval"], config["execution"]["min_hold"]) == (1, 0)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2

    recipe = merge_run_config(plugins=plugins, overrides={"model": "cgdt", "data": str(small_prepared)})
    plain = merge_run_config(plugins=plugins, overrides={"model": "cgdt", "data": str(small_prepared)},
                             sets=["recipe=none"])
    assert recipe.train.epochs == 3 and recipe.plugin_configs["cgdt"].critic_steps == 400
    defaults = cgdt.CGDTConfig()
    assert plain.plugin_configs["cgdt"] == defaults and defaults.d_model != 64 and defaults.context_length == 64
    assert plain.train.epochs != 3 and defaults.critic_steps != 400
    assert (plain.execution.decision_interval, plain.execution.min_hold) == (1, 0)


def test_choosing_the_target_counts_only_the_kept_targets_decisions(small_prepared: Path) -> None:
    """Under execution rules the validation rollout of every candidate target passed through one
    filter, which counted all of their decisions: the run's summary judged collapse on the blend
    of five policies (HOLD 0.82, not collapsed) where its backtest, acting with the kept target,
    found HOLD 0.98 (collapsed)."""
    import torch

    from himari.evaluation.execution import model_actions
    from himari.plugin.api import ExecutionConfig

    ctx = _context(small_prepared)
    model = _tiny_model()
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.network.parameters():
            p.normal_(0, 0.5)  # random weights that trade, so the candidates decide differently
    ranges = [(int(a), int(b)) for a, b in ctx.splits["validation"]]
    rules = ExecutionConfig(decision_interval=2, min_hold=3, confidence=0.0)
    env = EnvConfig()
    data = ctx.data
    model._tune_ranges = ranges
    chosen = np.zeros(3, dtype=np.int64)
    tuned = model_actions(model, ctx.features, data.open, data.close, ranges, env, rules, "cgdt", decision_counts=chosen)
    model._tune_ranges = None  # now acting with the stored target, as a backtest does
    again = np.zeros(3, dtype=np.int64)
    acted = model_actions(model, ctx.features, data.open, data.close, ranges, env, rules, "cgdt", decision_counts=again)
    np.testing.assert_array_equal(tuned, acted)
    np.testing.assert_array_equal(chosen, again)
    assert chosen.sum() == sum(b - a - 1 for a, b in ranges)  # one decision per bar but the last, one target
