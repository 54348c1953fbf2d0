"""FLAG-TRADER (``flag-trader``): the conformance harness at a tiny config, parameter counts at the
default config against the target, what is trainable, what a PPO update touches, causality,
checkpoints with peft, the shared PPO loss, the windowed evaluation rollout, the warm start, the
CLI and a pretrained backbone from a local directory. Tiny networks on the CPU throughout (the
default 88M network is built once)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from himari_builtin.models import flag_trader  # noqa: E402
from himari_builtin.models.flag_trader import FlagTrader, FlagTraderConfig, parameter_count  # noqa: E402

from himari.plugin import ModelContext, hookimpl  # noqa: E402
from himari.training.loop import host_floats  # noqa: E402

from himari_tests_conformance import TINY_ONLINE, check_model, tiny_run  # type: ignore[import-not-found]  # noqa: E402

ENTRY_POINT = "himari_builtin.models.flag_trader"
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "context_length": 16, "lora_rank": 4, "head_hidden": 16}
TINY_SETS = [f"flag-trader.{k}={v}" for k, v in TINY.items()]
"""What the conformance harness needs for flag-trader on a CPU (see the final report)."""
TARGET_TOTAL, TARGET_TRAINABLE = 87_955_971, 2_938_371


@dataclass(frozen=True)
class TinyFlagTraderConfig(FlagTraderConfig):
    """The tiny network as defaults, so the unmodified conformance harness runs it."""

    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    context_length: int = 16
    lora_rank: int = 4
    head_hidden: int = 16


class _Register:
    """An in-memory plugin registering flag-trader with a given config class."""

    def __init__(self, config: type, recipe: dict[str, Any] | None) -> None:
        self.config, self.recipe = config, recipe

    @hookimpl
    def himari_register_models(self, registry: Any) -> None:
        registry.add(flag_trader.model_spec(self.config, recipe=self.recipe))


def _plugins(config: type = FlagTraderConfig, recipe: dict[str, Any] | None = None) -> Any:
    """The installed plugins with flag-trader registered from this module (its entry point, once
    declared, blocked so it does not register twice); no recipe unless asked."""
    from himari.plugin.manager import build_plugins

    plugins = build_plugins(disable=ENTRY_POINT)
    plugins.register(_Register(config, recipe), name="flag-trader-under-test")
    return plugins


def _model(n_features: int = 5, seed: int = 0, **changes: Any) -> FlagTrader:
    torch.manual_seed(seed)
    return FlagTrader(FlagTraderConfig(**{**TINY, **changes}), ModelContext(n_features=n_features))


def _batch(T: int = 3, B: int = 2, W: int = 16, D: int = 9, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(T, B, W, D, generator=g), "actions": torch.randint(0, 3, (T, B), generator=g),
            "logprobs": torch.log(torch.full((T, B), 1 / 3)) + 0.05 * torch.randn(T, B, generator=g),
            "values": torch.randn(T, B, generator=g), "advantages": torch.randn(T, B, generator=g),
            "returns": torch.randn(T, B, generator=g), "starts": torch.zeros(T, B), "state": ()}


# ----------------------------------------------------------------------- conformance, counts


def test_conformance_at_a_tiny_config(small_prepared, tmp_path) -> None:
    summary = check_model("flag-trader", small_prepared, tmp_path, plugins=_plugins(TinyFlagTraderConfig))
    assert summary["steps"] == 6


def test_parameter_counts_at_the_default_config() -> None:
    count = parameter_count(FlagTraderConfig(), 60)  # 60 features + the 4 account columns
    assert abs(count.total - TARGET_TOTAL) / TARGET_TOTAL < 0.05
    assert abs(count.trainable - TARGET_TRAINABLE) / TARGET_TRAINABLE < 0.05
    assert tuple(count) == (87_957_892, 2_940_292)
    net = FlagTrader(FlagTraderConfig(), ModelContext(n_features=60)).network  # the one full build
    assert sum(p.numel() for p in net.parameters()) == count.total
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == count.trainable
    lora = sum(p.numel() for n, p in net.named_parameters() if "lora_" in n)
    assert lora == 12 * 16 * ((768 + 3 * 768) + 2 * 768 + 2 * (768 + 3072))  # r x (in + out), 4 projections


def test_plugins_list_shows_total_and_trainable() -> None:
    from himari.plugin.listing import list_plugins

    rows = list_plugins(_plugins(), ("model",))["plugins"]
    row = next(r for r in rows if r["name"] == "flag-trader")
    assert row["parameters"] == {"total": 87_957_892, "trainable": 2_940_292}
    assert row["paradigm"] == "online-rl"


def test_only_lora_embedding_positions_norms_and_heads_train() -> None:
    net = _model().network
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    for name in trainable:
        assert ("lora_A" in name or "lora_B" in name or name.startswith(("embed.", "policy_head.", "value_head."))
                or ".wpe." in name or ".ln_" in name), name
    assert frozen and all("base_layer" in n or ".wte." in n for n in frozen)
    for target in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
        assert any(target in n and "lora_A" in n for n in trainable), target
        assert any(target in n and "base_layer.weight" in n for n in frozen), target


# ------------------------------------------------------------------------------- the update


def test_a_ppo_update_changes_only_trainable_parameters() -> None:
    model = _model()
    net = model.network
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)  # as the Trainer builds it
    loss, logs = model.loss(_batch(), None)
    assert set(logs) == {"policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"}
    opt.zero_grad()
    loss.backward()
    opt.step()
    for n, p in net.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[n]), f"{n} did not move"
        else:
            assert p.grad is None and torch.equal(p, before[n]), f"frozen {n} moved"


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    from himari_builtin.models.flag_trader import set_checkpointing

    model = _model()
    net = model.network.train()
    batch = _batch()

    def grads() -> list[torch.Tensor]:
        net.zero_grad()
        model.loss(batch, None)[0].backward()
        return [p.grad.clone() for p in net.parameters() if p.requires_grad]

    plain = grads()
    set_checkpointing(net.backbone.get_base_model(), True)
    assert net.backbone.get_base_model().h[0].gradient_checkpointing
    for g, ref in zip(grads(), plain):
        torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-7)


def test_loss_flattens_windows_exactly() -> None:
    """The [T, B] minibatch loss equals the loss of the same windows passed one by one."""
    from himari.training.ppo import ppo_loss

    model = _model()
    batch = _batch(T=3, B=2)
    loss, _ = model.loss(batch, None)
    with torch.no_grad():
        outs = [model.network(batch["obs"][t, b][None]) for t in range(3) for b in range(2)]
    logits = torch.cat([o[0] for o in outs]).reshape(3, 2, 3)
    values = torch.cat([o[1] for o in outs]).reshape(3, 2)
    ref, _ = ppo_loss(logits, values, batch, model.config)
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-5, atol=1e-6)


def test_shared_ppo_loss_equals_ppo_lstm_loss() -> None:
    """himari.training.ppo.ppo_loss reproduces PPO-LSTM's own loss and logs (so PPO-LSTM can be
    switched to it without a change in behaviour)."""
    from himari_builtin.models.ppo_lstm import PPOLSTM, PPOLSTMConfig

    from himari.training.ppo import PPOConfig, ppo_loss

    torch.manual_seed(0)
    T, B = 5, 4
    logits, values = torch.randn(T, B, 3), torch.randn(T, B)
    batch = {k: v for k, v in _batch(T, B).items() if k != "obs"}
    batch["obs"] = torch.zeros(T, B, 4)
    for clip_vf in (0.2, 0.0):
        lstm = PPOLSTM(PPOLSTMConfig(encoder_sizes=(4,), lstm_hidden=3, clip_range_vf=clip_vf),
                       ModelContext(n_features=0))
        lstm.network.forward_sequence = lambda o, s, st: (logits, values, None)  # type: ignore[method-assign]
        ref, ref_logs = lstm.loss(batch, None)
        got, logs = ppo_loss(logits, values, batch, PPOConfig(clip_range_vf=clip_vf))
        torch.testing.assert_close(got, ref)
        assert host_floats(logs) == pytest.approx(host_floats(ref_logs))
    flat = {k: v.reshape(-1) for k, v in batch.items() if k in ("actions", "logprobs", "values", "advantages",
                                                                 "returns")}
    torch.testing.assert_close(ppo_loss(logits.reshape(-1, 3), values.reshape(-1), flat, PPOConfig())[0],
                               ppo_loss(logits, values, batch, PPOConfig())[0])


# ------------------------------------------------------------------------------- causality


def test_backbone_attention_is_causal() -> None:
    """The hidden state at window position i ignores positions after i (so a longer window
    never leaks bars the decision could not have seen)."""
    net = _model().network
    x = torch.randn(2, 16, 9)
    y = x.clone()
    y[:, 10:] = torch.randn(2, 6, 9) * 3
    with torch.no_grad():
        hx = net.backbone(inputs_embeds=net.embed(x), use_cache=False).last_hidden_state
        hy = net.backbone(inputs_embeds=net.embed(y), use_cache=False).last_hidden_state
    torch.testing.assert_close(hx[:, :10], hy[:, :10])
    assert not torch.allclose(hx[:, 10:], hy[:, 10:])


def _market(n: int = 160, F: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]] * (1 + rng.normal(0, 0.001, n))
    return open_, close, rng.normal(size=(n, F)).astype(np.float32)


def test_no_look_ahead_in_act_sequence() -> None:
    from himari.plugin import EnvConfig

    model = _model(head_hidden=0)
    with torch.no_grad():  # a policy that trades: large, varied logits
        model.network.policy_head.weight.mul_(300)
    open_, close, feats = _market()
    env, ranges, t = EnvConfig(), [(30, 150)], 90
    base = model.act_sequence(feats, open_, close, ranges, env)
    assert len(set(base.tolist())) > 1
    moved_open, moved_close, moved = open_.copy(), close.copy(), feats.copy()
    scale = np.exp(np.random.default_rng(1).normal(0, 0.05, len(open_) - t - 1))
    moved_open[t + 1:] *= scale
    moved_close[t + 1:] *= scale
    moved[t + 1:] = np.random.default_rng(2).normal(size=moved[t + 1:].shape) * 5
    after = model.act_sequence(moved, moved_open, moved_close, ranges, env)
    np.testing.assert_array_equal(base[:t + 1 - 30], after[:t + 1 - 30])
    assert not np.array_equal(base, after)  # the change after t does reach later decisions


def test_windowed_evaluation_sees_what_a_training_env_sees() -> None:
    """sequential_actions(window=W): the window holds the W - 1 earlier rows' features (rows
    before the range too, zeros before row 0) with zero account columns before the range start,
    the newest row is exactly the window-1 observation, and decisions stay on the same rows."""
    from himari.plugin import EnvConfig
    from himari.training.rl import sequential_actions

    open_, close, feats = _market(n=120, F=3)
    W, env = 6, EnvConfig(mode="long_short")
    seen: dict[int, list[np.ndarray]] = {1: [], W: []}

    def policy(window: int) -> Any:
        def step(obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
            last = obs[0] if window == 1 else obs[0, -1]
            seen[window].append(obs[0].copy())
            return np.array([int(abs(last[0] * 7)) % 3])  # decides from the newest row only
        return step

    ranges = [(2, 50), (60, 120)]
    a1 = sequential_actions(policy(1), feats, open_, close, ranges, env)
    aw = sequential_actions(policy(W), feats, open_, close, ranges, env, window=W)
    np.testing.assert_array_equal(a1, aw)
    windows, lasts = np.array(seen[W]), np.array(seen[1])
    np.testing.assert_array_equal(windows[:, -1], lasts)
    first = windows[0]  # decision at row 2: rows -3..2, the first three before row 0
    np.testing.assert_array_equal(first[:3], 0)
    np.testing.assert_array_equal(first[3:, :3], feats[0:3])
    np.testing.assert_array_equal(first[:, 3:], 0)  # a flat account everywhere at the first decision
    second = windows[48 - 1]  # first decision of the second range: rows 55..60, account zero
    np.testing.assert_array_equal(second[:, :3], feats[55:61])
    np.testing.assert_array_equal(second[:-1, 3:], 0)
    later = windows[20]  # row 22: the account columns of the previous decisions, oldest first
    np.testing.assert_array_equal(later[:, 3:], lasts[20 - W + 1:21, 3:])


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_with_peft(tmp_path) -> None:
    trained = _model(seed=0)
    with torch.no_grad():
        for n, p in trained.network.named_parameters():
            if "lora_B" in n:
                p.normal_()  # LoRA B starts at zero: make the adapters matter
    path = tmp_path / "net.pt"
    torch.save(trained.network.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert any("lora_A" in k for k in state) and any("base_layer" in k for k in state)
    fresh = _model(seed=1)
    x = torch.randn(4, 16, 9)
    with torch.no_grad():
        assert not torch.allclose(fresh.network(x)[0], trained.network(x)[0])
        fresh.network.load_state_dict(state)
        torch.testing.assert_close(fresh.network(x), trained.network(x), rtol=0, atol=0)


def test_backbone_from_a_local_pretrained_directory(tmp_path) -> None:
    from transformers import GPT2Config, GPT2Model

    from himari.errors import ConfigError

    torch.manual_seed(3)
    saved = GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=24, vocab_size=11))
    saved.save_pretrained(tmp_path / "gpt2-tiny")
    cfg = FlagTraderConfig(backbone=str(tmp_path / "gpt2-tiny"), context_length=16, lora_rank=4, head_hidden=8,
                           n_embd=768, n_layer=12)  # the size settings are the checkpoint's
    net = FlagTrader(cfg, ModelContext(n_features=5)).network
    base = net.backbone.get_base_model()
    torch.testing.assert_close(base.h[1].mlp.c_fc.base_layer.weight, saved.h[1].mlp.c_fc.weight)
    torch.testing.assert_close(base.wpe.weight, saved.wpe.weight)
    assert base.wte.weight.numel() == 0 and base.config.resid_pdrop == 0.0
    assert base.config.activation_function == "gelu_pytorch_tanh"  # gelu_new, fused
    count = parameter_count(cfg, 5)
    assert count.total == sum(p.numel() for p in net.parameters())
    assert count.trainable == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert net(torch.randn(2, 16, 9))[0].shape == (2, 3)
    with pytest.raises(ConfigError, match="exceeds the backbone's 24 position"):
        parameter_count(FlagTraderConfig(backbone=str(tmp_path / "gpt2-tiny"), context_length=32), 5)
    with pytest.raises(ConfigError, match="no config.json"):
        parameter_count(FlagTraderConfig(backbone=str(tmp_path)), 5)


# --------------------------------------------------------------------- warm start and CLI


def test_warm_start_runs_once_at_the_first_rollout(small_prepared, tmp_path, monkeypatch) -> None:
    calls: list[int] = []
    original = FlagTrader.warm_start

    def counted(self: FlagTrader, ctx: Any, device: Any) -> dict[str, float]:
        calls.append(int(ctx.epoch))
        return original(self, ctx, device)

    monkeypatch.setattr(FlagTrader, "warm_start", counted)
    sets = [*TINY_ONLINE("flag-trader"), "flag-trader.warm_start_epochs=2", "flag-trader.warm_start_batch_size=256",
            "train.epochs=2", "train.max_steps_per_epoch=2", "train.log_every=1", "train.patience=0"]
    tiny_run("flag-trader", small_prepared, tmp_path / "run", plugins=_plugins(TinyFlagTraderConfig), sets=sets)
    assert calls == [0]
    report = json.loads((tmp_path / "run" / "warm_start.json").read_text())
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert report["epochs"][1]["loss"] < report["epochs"][0]["loss"]
    assert sum(report["validation_actions"].values()) == pytest.approx(1.0)
    assert isinstance(report["collapsed"], bool) and report["dominant_action"] in ("SELL", "HOLD", "BUY")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "rollout/warm_start_loss" in r]
    assert logged and logged[0]["rollout/warm_start_loss"] == pytest.approx(report["epochs"][1]["loss"])


def test_cli_train_and_plugins_list(small_prepared, tmp_path, monkeypatch) -> None:
    import yaml
    from typer.testing import CliRunner

    from himari.cli import app
    from himari.plugin import manager

    plugins = _plugins()
    monkeypatch.setattr(manager, "get_plugins", lambda: plugins)
    run_dir = tmp_path / "cli"
    args = ["train", "flag-trader", "--data", str(small_prepared), "--run-dir", str(run_dir), "--epochs", "1",
            "--env-episodes", "1", "--n-envs", "2", "--rollout-steps", "8", "--device", "cpu",
            *[x for s in TINY_SETS for x in ("--set", s)], "--set", "flag-trader.episode_length=16",
            "--set", "flag-trader.n_minibatches=2", "--set", "train.progress=false"]
    out = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "1 rollout of 2 envs x 8 steps (16 env steps)" in out.output
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())["plugins"]["flag-trader"]
    assert (cfg["context_length"], cfg["lora_rank"], cfg["n_layer"]) == (16, 4, 2)
    assert json.loads((run_dir / "summary.json").read_text())["test"]["model"]["actions"].keys() == {
        "SELL", "HOLD", "BUY"}
    listed = CliRunner().invoke(app, ["plugins", "list", "--kind", "model"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and "87,957,892 (2,940,292)" in listed.output
    shown = CliRunner().invoke(app, ["plugins", "show", "flag-trader"], env={"COLUMNS": "250"})
    assert "lora_rank" in shown.output and "context_length" in shown.output


def test_the_default_recipe_is_the_small_flag_trader(small_prepared, tmp_path, monkeypatch) -> None:
    """``himari train flag-trader`` with no model options trains the recipe: a GPT-2 of 2 blocks,
    64 wide, 4 heads, over 32-bar windows, LoRA rank 8, heads 64 wide, 32 episodes, 3 epochs, with
    vec-normalize; a user's own settings win over it, and ``--set recipe=none`` is the full-size
    model on the full budget with no method. The run's config records which."""
    import yaml
    from typer.testing import CliRunner

    from himari.cli import app
    from himari.plugin import manager
    from himari.training.config import merge_run_config

    plugins = _plugins(recipe=flag_trader.RECIPE)
    monkeypatch.setattr(manager, "get_plugins", lambda: plugins)
    run_dir = tmp_path / "run"
    args = ["train", "flag-trader", "--data", str(small_prepared), "--run-dir", str(run_dir), "--epochs", "1",
            "--env-episodes", "1", "--n-envs", "2", "--rollout-steps", "8", "--device", "cpu",
            "--set", "flag-trader.episode_length=16", "--set", "flag-trader.n_minibatches=2",
            "--set", "train.progress=false"]
    out = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    own = config["plugins"]["flag-trader"]
    shape = ("n_layer", "n_head", "n_embd", "context_length", "lora_rank", "head_hidden")
    assert tuple(own[k] for k in shape) == (2, 4, 64, 32, 8, 64)
    assert config["methods"] == ["vec-normalize"] and config["recipe"] == "default"
    assert own["env_episodes"] == 1 and config["train"]["epochs"] == 1  # the user's settings win
    steps = json.loads((run_dir / "summary.json").read_text())["methods"]["vec-normalize"]["env_steps"]
    assert steps == 8  # the filter saw the run's one rollout: 8 steps of its 2 envs

    recipe = merge_run_config(plugins=plugins, overrides={"model": "flag-trader", "data": str(small_prepared)})
    plain = merge_run_config(plugins=plugins, overrides={"model": "flag-trader", "data": str(small_prepared)},
                             sets=["recipe=none"])
    assert recipe.plugin_configs["flag-trader"].env_episodes == 32 and recipe.train.epochs == 3
    defaults = FlagTraderConfig()
    assert plain.plugin_configs["flag-trader"] == defaults and list(plain.methods) == []
    assert (defaults.n_layer, defaults.n_embd, defaults.context_length, defaults.env_episodes) == (12, 768, 256, 200)
    assert plain.train.epochs != 3


def test_missing_rows_for_windows_is_a_clear_error(small_prepared, tmp_path) -> None:
    from himari.errors import DataError

    with pytest.raises(DataError, match="too short for windows"):
        tiny_run("flag-trader", small_prepared, tmp_path / "run", plugins=_plugins(TinyFlagTraderConfig),
                 sets=[*TINY_ONLINE("flag-trader"), "flag-trader.context_length=100000"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_missing_rows_for_windows_is_a_clear_error_before_any_graph_capture(small_prepared, tmp_path) -> None:
    """On the GPU the rollout's policy is a captured graph; capturing it for a 100,000-bar context
    tried to allocate 37 GiB for the attention mask before the envs' length check could run."""
    from himari.errors import DataError
    from himari.plugin.api import cuda_available

    if not cuda_available():
        pytest.skip("this himari build has no CUDA kernels (rollouts are not graph-captured)")
    with pytest.raises(DataError, match="too short for windows"):
        tiny_run("flag-trader", small_prepared, tmp_path / "run", plugins=_plugins(TinyFlagTraderConfig),
                 sets=[*TINY_ONLINE("flag-trader"), "flag-trader.context_length=100000", "train.device=cuda"])
    assert not (tmp_path / "run").exists()


def test_module_is_import_light() -> None:
    """Listing plugins must not import torch: neither the module nor its parameter arithmetic does."""
    import subprocess
    import sys

    code = ("import sys; import himari_builtin.models.flag_trader as m; "
            "m.parameter_count(m.FlagTraderConfig(), 60); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------- graph-captured rollouts
def _rollout_ctx(model: FlagTrader, n: int = 400, seed: int = 0) -> Any:
    from types import SimpleNamespace

    from himari.plugin import EnvConfig
    from himari.plugin.api import EnvSource

    open_, close, feats = _market(n, F=model.obs_dim - 4, seed=seed)
    source = EnvSource(open=open_, close=close, features=feats, config=EnvConfig(), rows=np.arange(n))
    return SimpleNamespace(seed=seed, epoch=1, rank=0, env_source=source, observation_filter=None,
                           rollout_observations=None, run_dir=None)


def test_cpu_rollouts_call_the_network_policy() -> None:
    model = _model()
    ctx = _rollout_ctx(model)
    assert model._rollout_policy(ctx, torch.device("cpu")) == model.network.policy
    assert model._graphed_policy is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graph_captured_rollout_equals_the_eager_one() -> None:
    """Two rollouts from the same weights and seeds, one replaying the captured policy graph and
    one launching it eagerly, sample the same actions from the same logits; after an optimiser
    step (in-place parameter updates) the graph follows the new weights without a re-capture."""
    from himari.plugin.api import cuda_available

    if not cuda_available():
        pytest.skip("this himari build has no CUDA kernels (the env runs on the CPU)")
    buffers = {}
    for graphed in (True, False):
        model = _model(n_features=5, n_envs=4, rollout_steps=12, episode_length=64, rollout_cuda_graph=graphed)
        model.network.cuda()
        ctx = _rollout_ctx(model)
        torch.manual_seed(3)
        # A rollout refills the same buffer: copy what each one collected before the next.
        first = _rollout_copy(model.rollout(ctx, True))
        with torch.no_grad():
            for p in model.network.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn_like(p))
        second = _rollout_copy(model.rollout(ctx, False))
        assert (model._graphed_policy is not None) == graphed
        buffers[graphed] = (first, second)
    for a, b in zip(buffers[True], buffers[False]):
        torch.testing.assert_close(a["values"], b["values"], rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(a["logprobs"], b["logprobs"], rtol=1e-3, atol=1e-3)
        assert torch.equal(a["actions"], b["actions"])
    assert not torch.equal(buffers[True][0]["values"], buffers[True][1]["values"])  # the weights did change


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_policy_that_cannot_be_recorded_is_refused_and_random_draws_still_work() -> None:
    """A policy that reads a value on the host cannot be captured: the refusal names the switch,
    and the GPU's random generator is as it was and out of capture mode (a rollout's
    torch.multinomial would otherwise raise "Offset increment outside graph capture")."""
    from himari_builtin.models.flag_trader.model import GraphedPolicy

    from himari.errors import TrainingError

    class HostReading(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(3, 3)

        def policy(self, x: Any, starts: Any, state: tuple) -> tuple[Any, Any, tuple]:
            logits = self.head(x)
            if float(logits.sum()) > -1e30:  # a host read: cannot be recorded
                logits = logits * 2
            return logits, logits.sum(-1), state

    net = HostReading().cuda()
    before = torch.cuda.get_rng_state()
    with pytest.raises(TrainingError, match="recording the policy as a CUDA graph failed.*rollout_cuda_graph=false"):
        GraphedPolicy(net, (2, 3), torch.device("cuda"))
    assert torch.equal(torch.cuda.get_rng_state(), before)
    assert torch.multinomial(torch.ones(2, 3, device="cuda"), 1).shape == (2, 1)


def _rollout_copy(buf) -> dict:
    return {name: getattr(buf, name).clone() for name in ("values", "logprobs", "actions")}
