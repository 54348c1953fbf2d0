#!/usr/bin/env python
"""By-hand benchmark: PPO-LSTM training throughput (env steps/s, rollouts and updates included)
of himari's ``ppo-lstm`` against sb3-contrib's ``RecurrentPPO`` on the same env.

NOT a test: run it by hand, on an otherwise idle machine, and read the table.

    pip install stable-baselines3 sb3-contrib      # the peer (skipped when missing)
    python benchmarks/bench_ppo.py                 # about 3 minutes
    python benchmarks/bench_ppo.py --quick         # smoke run
    python benchmarks/bench_ppo.py --json out.json --repeats 5 --n-envs 8

Both sides, in one process pinned to one core with one torch thread:

- the same env: ``himari.engine.VecTradingEnv`` over a prepared synthetic market (60 features,
  normalised with train statistics; fee 0.001, slippage 0.0005, long_flat, episodes of 2048
  steps). himari steps one ``VecTradingEnv`` of N envs; RecurrentPPO steps N gymnasium wrappers
  of a 1-env ``VecTradingEnv`` through sb3's ``DummyVecEnv`` (its standard path);
- the same network: 64 inputs -> Linear 128 + ReLU -> Linear 128 + ReLU -> LSTM(128, 200) ->
  policy Linear(200, 3) and value Linear(200, 1) (289,636 parameters on both sides; RecurrentPPO
  with a custom features extractor, a shared LSTM and empty net_arch);
- the same PPO hyper-parameters: N envs x rollout steps, update epochs, minibatch of
  N / 4 env sequences (= N x steps / 4 steps for sb3's ``batch_size``), lr 3e-4, gamma 0.99,
  lambda 0.95, clip 0.2, value clip 0.2, entropy 0.01, value 0.5, gradient norm 0.5.

himari's number times the Trainer's online loop body (``model.rollout`` + ``update_epochs`` x
``n_minibatches`` of ``model.loss``, backward, gradient clipping, AdamW) without the per-epoch
evaluation; sb3's times ``RecurrentPPO.learn``. Each is warmed up by one rollout + update first,
then timed over ``--iterations`` rollouts; contenders alternate (himari, sb3, himari, ...) and
the median of ``--repeats`` is reported.
"""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
try:
    os.sched_setaffinity(0, {0})
    _PINNED: object = sorted(os.sched_getaffinity(0))
except (AttributeError, OSError) as _exc:
    _PINNED = f"not pinned ({_exc})"

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EPISODE_LENGTH = 2048


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except Exception:
        commit = None
    import torch

    return {"hostname": socket.gethostname(), "cpu_model": cpu, "logical_cores": os.cpu_count(),
            "pinned_to_cpus": _PINNED, "loadavg_at_start": os.getloadavg(), "os": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "git_commit": commit}


def market_data(bars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from himari.data import PreparedData
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    out = Path(tempfile.mkdtemp(prefix="bench-ppo-")) / "prepared"
    prepare(load_synthetic(SynthConfig(bars=bars, seed=0)), out, PrepareConfig())
    data = PreparedData(out)
    a, b = data.split("train")[0]
    mean, std = data.normalization()
    feats = ((np.asarray(data.features[a:b]) - mean) / std).astype(np.float32)
    return (np.ascontiguousarray(data.open[a:b], dtype=np.float64),
            np.ascontiguousarray(data.close[a:b], dtype=np.float64), np.ascontiguousarray(feats))


# ------------------------------------------------------------------ himari


def himari_setup(data, n_envs: int, steps: int, epochs: int):
    import torch

    from himari.plugin import EnvConfig, ModelContext
    from himari_builtin.models.ppo_lstm import PPOLSTM, PPOLSTMConfig

    open_, close, feats = data
    cfg = PPOLSTMConfig(n_envs=n_envs, rollout_steps=steps, update_epochs=epochs, n_minibatches=4,
                        episode_length=EPISODE_LENGTH, cpu_threads=1)
    model = PPOLSTM(cfg, ModelContext(n_features=feats.shape[1]))
    ctx = SimpleNamespace(seed=0, epoch=0, splits={"train": [(0, len(close))]},
                          data=SimpleNamespace(open=open_, close=close), features=feats, env=EnvConfig())
    opt = torch.optim.AdamW(model.network.parameters(), lr=3e-4, weight_decay=1e-4)
    state = {"first": True}

    def iterate(n: int) -> None:
        for _ in range(n):
            buf = model.rollout(ctx, state["first"])
            state["first"] = False
            model.network.train()
            mb = len(buf) // cfg.n_minibatches
            for ue in range(cfg.update_epochs):
                order = torch.randperm(len(buf))
                for k in range(cfg.n_minibatches):
                    loss, _ = model.loss(buf[order[k * mb:(k + 1) * mb]], ctx)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.network.parameters(), 0.5)
                    opt.step()

    return iterate, sum(p.numel() for p in model.network.parameters())


# --------------------------------------------------------------------- sb3


def sb3_setup(data, n_envs: int, steps: int, epochs: int):
    import gymnasium as gym
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from himari.engine import Market, VecTradingEnv

    open_, close, feats = data
    market = Market(open_, close, feats, warmup=0)

    class GymTradingEnv(gym.Env):
        """One VecTradingEnv env as a gymnasium.Env (its same-step autoreset kept: reset() after
        an episode end returns the next episode's first observation)."""

        def __init__(self, seed: int) -> None:
            self.venv = VecTradingEnv(market, n_envs=1, episode_length=EPISODE_LENGTH, seed=seed)
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.venv.obs_dim,), np.float32)
            self.action_space = gym.spaces.Discrete(3)
            self._pending = None

        def reset(self, *, seed=None, options=None):
            if self._pending is not None:
                obs, self._pending = self._pending, None
                return obs, {}
            obs, _ = self.venv.reset()
            return obs[0, -1].copy(), {}

        def step(self, action):
            obs, r, te, tr, _ = self.venv.step(np.array([int(action)], dtype=np.int64))
            o = obs[0, -1].copy()
            if te[0] or tr[0]:
                self._pending = o
            return o, float(r[0]), bool(te[0]), bool(tr[0]), {}

    class Encoder(BaseFeaturesExtractor):
        def __init__(self, space, features_dim: int = 128) -> None:
            super().__init__(space, features_dim)
            self.net = torch.nn.Sequential(torch.nn.Linear(space.shape[0], 128), torch.nn.ReLU(),
                                           torch.nn.Linear(128, 128), torch.nn.ReLU())

        def forward(self, x):
            return self.net(x)

    venv = DummyVecEnv([(lambda i=i: GymTradingEnv(i)) for i in range(n_envs)])
    model = RecurrentPPO(
        "MlpLstmPolicy", venv, n_steps=steps, batch_size=n_envs * steps // 4, n_epochs=epochs, learning_rate=3e-4,
        gamma=0.99, gae_lambda=0.95, clip_range=0.2, clip_range_vf=0.2, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, device="cpu", seed=0, verbose=0,
        policy_kwargs=dict(features_extractor_class=Encoder, lstm_hidden_size=200, n_lstm_layers=1,
                           shared_lstm=True, enable_critic_lstm=False, net_arch=dict(pi=[], vf=[]),
                           activation_fn=torch.nn.ReLU))

    def iterate(n: int) -> None:
        model.learn(total_timesteps=n * n_envs * steps, reset_num_timesteps=False)

    return iterate, sum(p.numel() for p in model.policy.parameters())


# -------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer iterations and repeats")
    ap.add_argument("--n-envs", type=int, default=8)
    ap.add_argument("--rollout-steps", type=int, default=128)
    ap.add_argument("--update-epochs", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=None, help="timed rollouts per repeat (default 6 himari, 3 sb3)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bars", type=int, default=30_000)
    ap.add_argument("--json", metavar="PATH", help="default benchmarks/results/ppo-<host>.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    n, steps, epochs = args.n_envs, args.rollout_steps, args.update_epochs
    it_h = args.iterations or (2 if args.quick else 6)
    it_s = args.iterations or (1 if args.quick else 3)
    repeats = 1 if args.quick else args.repeats
    info = machine_info()
    data = market_data(args.bars)

    contenders = {}
    himari_iter, himari_params = himari_setup(data, n, steps, epochs)
    contenders["himari ppo-lstm"] = (himari_iter, it_h, himari_params)
    skipped = []
    try:
        sb3_iter, sb3_params = sb3_setup(data, n, steps, epochs)
        contenders["sb3-contrib RecurrentPPO"] = (sb3_iter, it_s, sb3_params)
    except ImportError as e:
        skipped.append(f"sb3-contrib RecurrentPPO: {e}")
    for name, (fn, _, _) in contenders.items():
        fn(1)  # warm-up: one rollout + update
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, (fn, iters, _) in contenders.items():
            t = time.perf_counter()
            fn(iters)
            rates[name].append(iters * n * steps / (time.perf_counter() - t))

    results = [{"name": name, "env_steps_per_s": statistics.median(r), "repeats": r,
                "parameters": contenders[name][2], "timed_env_steps": contenders[name][1] * n * steps}
               for name, r in rates.items()]
    ours = results[0]["env_steps_per_s"]
    peer = results[1]["env_steps_per_s"] if len(results) > 1 else None
    ratio = ours / peer if peer else None
    config = {"n_envs": n, "rollout_steps": steps, "update_epochs": epochs, "minibatches": 4,
              "minibatch_steps": n * steps // 4, "network": "64-128-128-LSTM200-(3,1)", "episode_length": EPISODE_LENGTH,
              "bars": args.bars, "torch_threads": 1, "quick": args.quick}

    print(f"\nPPO-LSTM training throughput, one core ({info['cpu_model']}), {n} envs x {steps} steps, "
          f"{epochs} update epochs, 4 minibatches")
    print(f"{'contender':28s} {'params':>9s} {'env steps/s':>12s}   repeats")
    for r in results:
        print(f"{r['name']:28s} {r['parameters']:9,d} {r['env_steps_per_s']:12,.0f}   "
              + " ".join(f"{x:,.0f}" for x in r["repeats"]))
    if ratio:
        print(f"ratio himari / RecurrentPPO: {ratio:.1f}x (goal >= 10x)")
    for s in skipped:
        print(f"skipped: {s}")
    doc = {"machine": info, "config": config, "results": results, "ratio": ratio, "goal_ratio": 10.0,
           "skipped": skipped}
    path = Path(args.json) if args.json else REPO / "benchmarks" / "results" / (
        f"ppo-{info['hostname']}{'.quick' if args.quick else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    sys.exit(main())
