"""Slow, obviously-correct float64 references for the native core (docs/semantics.md, docs/ekf.md).

Everything here is plain Python / NumPy, written for readability rather than speed: one account
step with ordinary if/else, the backtester metrics straight from the table in semantics.md, a
vector env that loops over envs one at a time, the replay of fixed actions, and the EKF with
explicit matrices. Nothing here imports himari, so the reference can never share a bug with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SELL, HOLD, BUY = 0, 1, 2
BANKRUPT_EQUITY = 1e-12
DSR_MIN_VARIANCE = 1e-18
MODES = ("long_flat", "long_short")

# --------------------------------------------------------------------------------------------
# Counter hash (cpp/include/himari/common/rng.h), ported with explicit uint64 wrap-around.
# --------------------------------------------------------------------------------------------

MASK64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """SplitMix64's finaliser on a Python int, every operation reduced mod 2**64."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def counter_hash(seed: int, stream: int, counter: int) -> int:
    """One 64-bit draw for (seed, stream, counter), identical to himari::counter_hash."""
    h = mix64(int(seed) & MASK64)
    h = mix64(h ^ ((int(stream) * 0xD1B54A32D192ED03) & MASK64))
    h = mix64(h ^ ((int(counter) * 0x8CB92BA72F3D8DD7) & MASK64))
    return h


def counter_hash_np(seed, stream, counter) -> np.ndarray:
    """The same hash in NumPy uint64 arithmetic (wraps natively); a cross-check of the port."""

    def _mix(x):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))

    with np.errstate(over="ignore"):
        seed = np.asarray(seed, dtype=np.uint64)
        stream = np.asarray(stream, dtype=np.uint64)
        counter = np.asarray(counter, dtype=np.uint64)
        h = _mix(seed)
        h = _mix(h ^ (stream * np.uint64(0xD1B54A32D192ED03)))
        h = _mix(h ^ (counter * np.uint64(0x8CB92BA72F3D8DD7)))
    return h


# --------------------------------------------------------------------------------------------
# One account step (semantics.md, "One account step"), with ordinary if/else.
# --------------------------------------------------------------------------------------------


@dataclass
class Account:
    cash: float = 1.0
    units: float = 0.0
    position: int = 0
    equity: float = 1.0
    peak: float = 1.0
    entry_equity: float = 1.0
    bars_in_position: int = 0
    trades: int = 0
    closed_trades: int = 0
    wins: int = 0
    turnover: int = 0
    bankrupt: bool = False


def target_position(action: int, position: int, mode: str) -> int:
    if mode not in MODES:
        raise ValueError(f"mode: unknown {mode!r}")
    if action == BUY:
        return 1
    if action == SELL:
        if mode == "long_short":
            return -1
        return 0
    if action == HOLD:
        return position
    raise ValueError(f"action: expected 0, 1 or 2, got {action!r}")


def account_step(acc: Account, action: int, o: float, c: float, fee: float, slip: float, mode: str):
    """Advance `acc` by one bar: fill at `o` (= open[t+1]) and mark at `c` (= close[t+1]).

    Returns (traded, bankrupt_now).
    """
    o = float(o)
    c = float(c)
    # 1. target (0 when bankrupt) and |change|.
    if acc.bankrupt:
        target = 0
    else:
        target = target_position(int(action), acc.position, mode)
    traded = abs(target - acc.position)

    # 2. fills.
    opened = False
    if target != acc.position:
        if acc.units != 0.0:  # close
            side = 1.0 if acc.units > 0 else -1.0
            px = o * (1.0 - slip * side)
            acc.cash = acc.cash + acc.units * px - fee * abs(acc.units) * px
            acc.units = 0.0
            acc.closed_trades += 1
            if acc.cash > acc.entry_equity:
                acc.wins += 1
        if target != 0:  # open
            px = o * (1.0 + slip * target)
            qty = acc.cash / (px * (1.0 + fee))
            acc.entry_equity = acc.cash
            acc.cash = acc.cash - (target * qty * px + fee * qty * px)
            acc.units = target * qty
            opened = True
        acc.position = target
        acc.trades += 1
        acc.turnover += traded

    # 3. bars in position.
    if acc.position == 0:
        acc.bars_in_position = 0
    elif opened:
        acc.bars_in_position = 1
    else:
        acc.bars_in_position += 1

    # 4. mark to the close; liquidate a wiped-out account.
    acc.equity = acc.cash + acc.units * c
    bankrupt_now = False
    if acc.equity <= BANKRUPT_EQUITY:
        if not acc.bankrupt:
            bankrupt_now = True
        acc.cash = BANKRUPT_EQUITY
        acc.equity = BANKRUPT_EQUITY
        acc.units = 0.0
        acc.position = 0
        acc.bars_in_position = 0
        acc.bankrupt = True

    # 5. running peak.
    if acc.equity > acc.peak:
        acc.peak = acc.equity
    return traded, bankrupt_now


def drawdown_fraction(acc: Account) -> float:
    """1 - equity / peak (>= 0), the info / reward convention."""
    return 1.0 - acc.equity / acc.peak


def account_columns(acc: Account) -> list[float]:
    """The 4 account columns of the observation (semantics.md, "Observation"), as float64."""
    if acc.position != 0:
        upnl = acc.equity / acc.entry_equity - 1.0
    else:
        upnl = 0.0
    return [float(acc.position), upnl, acc.equity / acc.peak - 1.0, math.log1p(acc.bars_in_position)]


# --------------------------------------------------------------------------------------------
# Reward shaping (semantics.md, "Reward").
# --------------------------------------------------------------------------------------------


@dataclass
class RewardParams:
    drawdown_penalty: float = 0.0
    turnover_penalty: float = 0.0
    dsr_weight: float = 0.0
    dsr_decay: float = 0.01

    @classmethod
    def from_any(cls, cfg: Any) -> "RewardParams":
        if cfg is None:
            return cls()
        if isinstance(cfg, dict):
            return cls(**cfg)
        return cls(
            float(cfg.drawdown_penalty), float(cfg.turnover_penalty), float(cfg.dsr_weight), float(cfg.dsr_decay)
        )


@dataclass
class DsrMoments:
    a: float = 0.0
    b: float = 0.0


def dsr_step(m: DsrMoments, r: float, eta: float) -> float:
    da = r - m.a
    db = r * r - m.b
    var = m.b - m.a * m.a
    if var > DSR_MIN_VARIANCE:
        d = (m.b * da - m.a * db / 2.0) / var**1.5
    else:
        d = 0.0
    m.a = m.a + eta * da
    m.b = m.b + eta * db
    return d


def reward_terms(prev_equity, prev_dd, acc: Account, traded, moments: DsrMoments, cfg: RewardParams) -> dict:
    r = math.log(acc.equity / prev_equity)
    dd = drawdown_fraction(acc)
    ddp = cfg.drawdown_penalty * max(0.0, dd - prev_dd)
    tp = cfg.turnover_penalty * traded
    if cfg.dsr_weight != 0.0:
        d = dsr_step(moments, r, cfg.dsr_decay)
    else:
        d = 0.0
    total = r - ddp - tp + cfg.dsr_weight * d
    return {"log_return": r, "drawdown_penalty": ddp, "turnover_penalty": tp, "dsr": d, "reward": total}


# --------------------------------------------------------------------------------------------
# Backtester (semantics.md, "Backtester").
# --------------------------------------------------------------------------------------------

METRICS = (
    "total_return",
    "annual_return",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "turnover",
    "n_trades",
    "win_rate",
    "exposure",
)


def _as_prices(open_, close):
    o = np.asarray(open_).astype(np.float64)
    c = np.asarray(close).astype(np.float64)
    assert o.ndim == 1 and o.shape == c.shape and o.size >= 2
    return o, c


def metrics_from_equity(eq: np.ndarray, positions_after: list[int], acc: Account, bars_per_year: float) -> dict:
    """Metrics of one strategy from its equity curve eq[0..T-1] (eq[0] = 1)."""
    n = len(eq) - 1
    bpy = float(bars_per_year)
    R = np.array([eq[t + 1] / eq[t] - 1.0 for t in range(n)], dtype=np.float64)
    out = {}
    out["total_return"] = eq[-1] - 1.0
    out["annual_return"] = eq[-1] ** (bpy / n) - 1.0
    if n < 2:
        out["sharpe"] = 0.0
    else:
        sd = float(np.std(R, ddof=1))
        out["sharpe"] = 0.0 if sd == 0.0 else float(np.mean(R)) / sd * math.sqrt(bpy)
    if not np.any(R < 0.0):
        out["sortino"] = 0.0
    else:
        down = np.minimum(R, 0.0)
        out["sortino"] = float(np.mean(R)) / math.sqrt(float(np.mean(down * down))) * math.sqrt(bpy)
    running = -np.inf
    mdd = 0.0
    for t in range(len(eq)):
        running = max(running, eq[t])
        mdd = max(mdd, 1.0 - eq[t] / running)
    out["max_drawdown"] = mdd
    out["calmar"] = 0.0 if mdd == 0.0 else out["annual_return"] / mdd
    out["turnover"] = float(acc.turnover)
    out["n_trades"] = float(acc.trades)
    out["win_rate"] = 0.0 if acc.closed_trades == 0 else acc.wins / acc.closed_trades
    out["exposure"] = sum(1 for p in positions_after if p != 0) / n
    return out


def reference_backtest(open_, close, signals, fee=1e-3, slippage=5e-4, mode="long_flat", bars_per_year=105_120):
    """Returns a dict: each metric as float64 [M], `equity` [T, M], and the per-step account
    trace `position` [T, M] (after decision t-1, row 0 = 0), `trades` [T, M]."""
    o, c = _as_prices(open_, close)
    sig = np.asarray(signals)
    if sig.ndim == 1:
        sig = sig[:, None]
    T, M = sig.shape
    assert T == o.size
    out = {k: np.zeros(M) for k in METRICS}
    equity = np.ones((T, M))
    position = np.zeros((T, M))
    trades = np.zeros((T, M))
    for m in range(M):
        acc = Account()
        eq = [1.0]
        pos_after = []
        for t in range(T - 1):
            account_step(acc, int(sig[t, m]), o[t + 1], c[t + 1], fee, slippage, mode)
            eq.append(acc.equity)
            pos_after.append(acc.position)
            position[t + 1, m] = acc.position
            trades[t + 1, m] = acc.trades
        equity[:, m] = eq
        for k, v in metrics_from_equity(np.array(eq), pos_after, acc, bars_per_year).items():
            out[k][m] = v
    out["equity"] = equity
    out["position"] = position
    out["trades"] = trades
    return out


# --------------------------------------------------------------------------------------------
# replay_actions (engine-api.md).
# --------------------------------------------------------------------------------------------


def reference_replay(open_, close, actions, fee=1e-3, slippage=5e-4, mode="long_flat", reward=None):
    """The env's reward over fixed actions, one account per column, never reset.

    Returns reward [T-1, M], equity [T, M], position [T, M], account [T, M, 4] (float32), plus the
    float64 reward terms; 1-D actions give arrays without the M axis.
    """
    o, c = _as_prices(open_, close)
    cfg = RewardParams.from_any(reward)
    act = np.asarray(actions)
    one_d = act.ndim == 1
    if one_d:
        act = act[:, None]
    T, M = act.shape
    out = {
        "reward": np.zeros((T - 1, M)),
        "equity": np.ones((T, M)),
        "position": np.zeros((T, M)),
        "account": np.zeros((T, M, 4), dtype=np.float32),
        "log_return": np.zeros((T - 1, M)),
        "drawdown_penalty": np.zeros((T - 1, M)),
        "turnover_penalty": np.zeros((T - 1, M)),
        "dsr": np.zeros((T - 1, M)),
    }
    for m in range(M):
        acc = Account()
        mom = DsrMoments()
        for t in range(T - 1):
            prev_eq = acc.equity
            prev_dd = drawdown_fraction(acc)
            traded, _ = account_step(acc, int(act[t, m]), o[t + 1], c[t + 1], fee, slippage, mode)
            terms = reward_terms(prev_eq, prev_dd, acc, traded, mom, cfg)
            out["reward"][t, m] = terms["reward"]
            for k in ("log_return", "drawdown_penalty", "turnover_penalty", "dsr"):
                out[k][t, m] = terms[k]
            out["equity"][t + 1, m] = acc.equity
            out["position"][t + 1, m] = acc.position
            out["account"][t + 1, m] = np.array(account_columns(acc), dtype=np.float64).astype(np.float32)
    if one_d:
        out = {k: v[:, 0] for k, v in out.items()}
    return out


# --------------------------------------------------------------------------------------------
# Vector env (semantics.md, "Episodes" and "Observation"; engine-api.md, VecTradingEnv).
# --------------------------------------------------------------------------------------------

INFO_FLOAT_KEYS = (
    "equity",
    "drawdown",
    "turnover",
    "log_return",
    "drawdown_penalty",
    "turnover_penalty",
    "dsr",
)
INFO_EXACT_KEYS = ("position", "trades", "bar")


@dataclass
class _EnvSlot:
    start: int = 0
    n_steps: int = 0  # n = min(L, T - 1 - s)
    steps_done: int = 0
    bar: int = 0
    account: Account = field(default_factory=Account)
    moments: DsrMoments = field(default_factory=DsrMoments)
    history: list = field(default_factory=list)  # account columns at decision s, s+1, ...
    episode_index: int = 0


class ReferenceVecEnv:
    """A slow VecTradingEnv: loops over envs and steps one account at a time.

    `info` after `step` reports, for each env, the account that the returned observation shows
    (after an autoreset: the new episode's fresh account, equity 1, flat), the terms of the reward
    just returned (of the finished step), and `bar` = the bar the returned observation ends at.
    The finished episode is reported by `episode_return` / `episode_length`, and its final
    observation (the one the step would have returned had the episode gone on: the window ending
    at the bar it reached, the account after the step as the newest history row) by
    `final_obs[i]` where `_final_obs[i]` (rows of other envs are zeros here; the native buffer
    leaves them undefined). An episode that ends in bankruptcy on its last step is `terminated`
    and not `truncated`.
    """

    def __init__(
        self,
        open_,
        close,
        features=None,
        *,
        n_envs=1,
        episode_length=2048,
        mode="long_flat",
        fee=1e-3,
        slippage=5e-4,
        reward=None,
        window=1,
        seed=0,
        random_start=True,
        warmup=0,
    ):
        self.open, self.close = _as_prices(open_, close)
        T = self.open.size
        if features is None:
            self.features = np.zeros((T, 0), dtype=np.float32)
        else:
            self.features = np.asarray(features).astype(np.float32)
            assert self.features.shape[0] == T
        self.T = T
        self.F = self.features.shape[1]
        self.n_envs = int(n_envs)
        self.L = int(episode_length)
        self.mode = mode
        self.fee = float(fee)
        self.slip = float(slippage)
        self.cfg = RewardParams.from_any(reward)
        self.W = int(window)
        self.seed = int(seed)
        self.random_start = bool(random_start)
        self.start_min = max(int(warmup), self.W - 1)
        self.start_max = max(self.start_min, T - 1 - self.L)
        assert self.start_min < T - 1, "no step possible"
        self.slots = [_EnvSlot() for _ in range(self.n_envs)]
        self.last_episode_return = np.zeros(self.n_envs)
        self.last_episode_length = np.zeros(self.n_envs, dtype=np.int64)

    # -- episodes ------------------------------------------------------------------------
    def episode_start(self, env_index: int, episode_index: int) -> int:
        if not self.random_start:
            return self.start_min
        h = counter_hash(self.seed, env_index, episode_index)
        return self.start_min + h % (self.start_max - self.start_min + 1)

    def _begin_episode(self, i: int) -> None:
        slot = self.slots[i]
        s = self.episode_start(i, slot.episode_index)
        slot.episode_index += 1  # every started episode consumes one counter value
        slot.start = s
        slot.n_steps = min(self.L, self.T - 1 - s)
        slot.steps_done = 0
        slot.bar = s
        slot.account = Account()
        slot.moments = DsrMoments()
        slot.history = [account_columns(slot.account)]

    # -- observation ---------------------------------------------------------------------
    def _obs_one(self, i: int) -> np.ndarray:
        slot = self.slots[i]
        t = slot.bar
        rows = np.zeros((self.W, self.F + 4), dtype=np.float32)
        for w in range(self.W):
            b = t - self.W + 1 + w
            rows[w, : self.F] = self.features[b]
            if b >= slot.start:
                acct = slot.history[b - slot.start]
            else:
                acct = [0.0, 0.0, 0.0, 0.0]
            rows[w, self.F :] = np.array(acct, dtype=np.float64).astype(np.float32)
        return rows

    def _obs(self) -> np.ndarray:
        return np.stack([self._obs_one(i) for i in range(self.n_envs)])

    # -- API -----------------------------------------------------------------------------
    def reset(self, seed=None):
        """`reset(seed=s)` restarts every counter at 0; `reset()` starts each env's next episode
        with its current counter (the number of episodes it started since the last reseed; a
        freshly built env has started none, so its first `reset()` equals `reset(seed=seed)`)."""
        if seed is not None:
            self.seed = int(seed)
            for slot in self.slots:
                slot.episode_index = 0
        for i in range(self.n_envs):
            self._begin_episode(i)
        info = {"bar": np.array([s.bar for s in self.slots], dtype=np.int64)}
        return self._obs(), info

    def step(self, actions):
        actions = np.asarray(actions)
        assert actions.shape == (self.n_envs,)
        n = self.n_envs
        reward = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        info = {k: np.zeros(n) for k in INFO_FLOAT_KEYS}
        info.update({k: np.zeros(n, dtype=np.int64) for k in INFO_EXACT_KEYS})
        info["episode_done"] = np.zeros(n, dtype=bool)
        info["episode_return"] = np.zeros(n)
        info["episode_length"] = np.zeros(n, dtype=np.int64)
        info["final_obs"] = np.zeros((n, self.W, self.F + 4), dtype=np.float32)
        info["_final_obs"] = np.zeros(n, dtype=bool)
        for i in range(n):
            slot = self.slots[i]
            acc = slot.account
            t = slot.bar
            prev_eq = acc.equity
            prev_dd = drawdown_fraction(acc)
            traded, bankrupt_now = account_step(
                acc, int(actions[i]), self.open[t + 1], self.close[t + 1], self.fee, self.slip, self.mode
            )
            terms = reward_terms(prev_eq, prev_dd, acc, traded, slot.moments, self.cfg)
            reward[i] = terms["reward"]
            slot.bar = t + 1
            slot.steps_done += 1
            slot.history.append(account_columns(acc))
            terminated[i] = bankrupt_now
            truncated[i] = (not bankrupt_now) and slot.steps_done == slot.n_steps
            for k in ("log_return", "drawdown_penalty", "turnover_penalty", "dsr"):
                info[k][i] = terms[k]
            if terminated[i] or truncated[i]:
                self.last_episode_return[i] = math.log(acc.equity)
                self.last_episode_length[i] = slot.steps_done
                info["episode_done"][i] = True
                info["final_obs"][i] = self._obs_one(i)  # the ended episode, before the restart
                info["_final_obs"][i] = True
                self._begin_episode(i)
            acc = slot.account  # the new episode's account after an autoreset
            info["equity"][i] = acc.equity
            info["drawdown"][i] = drawdown_fraction(acc)
            info["turnover"][i] = acc.turnover
            info["position"][i] = acc.position
            info["trades"][i] = acc.trades
            info["bar"][i] = slot.bar
        info["episode_return"][:] = self.last_episode_return
        info["episode_length"][:] = self.last_episode_length
        return self._obs(), reward, terminated, truncated, info


# --------------------------------------------------------------------------------------------
# EKF (docs/ekf.md), float64 with explicit matrices.
# --------------------------------------------------------------------------------------------

EKF_DEFAULTS = {
    "q_level": 1e-6,
    "q_velocity": 1e-10,
    "q_acceleration": 1e-14,
    "q_log_variance": 0.05,
    "r_level": 2.5e-7,
    "r_log_square": math.pi**2 / 2.0,
    "square_floor": 1e-10,
    "phi": 0.99,
    "mu": -13.0,
    "p0_level": 1e-4,
    "p0_velocity": 1e-8,
    "p0_acceleration": 1e-12,
    "p0_log_variance": 1.0,
    "use_volatility_obs": True,
}

MEAN_LOG_CHI2_1 = -0.5772156649015329 - math.log(2.0)  # E[log z^2], z ~ N(0, 1)


def _ekf_params(params) -> dict:
    p = dict(EKF_DEFAULTS)
    if params is None:
        return p
    if isinstance(params, dict):
        p.update(params)
        return p
    for k in p:
        p[k] = getattr(params, k)
    return p


def reference_ekf_series(prices, params=None):
    """One series: returns (states [T, 4], innovations [T, 2]), float64."""
    p = _ekf_params(params)
    y = np.log(np.asarray(prices).astype(np.float64))
    T = y.size
    phi, mu = p["phi"], p["mu"]
    F = np.array([[1.0, 1.0, 0.5, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, phi]])
    Q = np.diag([p["q_level"], p["q_velocity"], p["q_acceleration"], p["q_log_variance"]])
    I4 = np.eye(4)
    states = np.zeros((T, 4))
    innov = np.zeros((T, 2))
    x = np.array([y[0], 0.0, 0.0, mu])
    P = np.diag([p["p0_level"], p["p0_velocity"], p["p0_acceleration"], p["p0_log_variance"]])
    for t in range(T):
        if t > 0:
            # predict
            x = np.array(
                [
                    x[0] + x[1] + x[2] / 2.0,
                    x[1] + x[2],
                    x[2],
                    mu + phi * (x[3] - mu),
                ]
            )
            P = F @ P @ F.T + Q
        use_vol = bool(p["use_volatility_obs"]) and t >= 1
        if use_vol:
            c = p["square_floor"]
            e = math.exp(x[3] + MEAN_LOG_CHI2_1)
            r = y[t] - y[t - 1]
            z = np.array([y[t], math.log(r * r + c)])
            hx = np.array([x[0], math.log(e + c)])
            H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, e / (e + c)]])
            R = np.diag([p["r_level"], p["r_log_square"]])
        else:
            z = np.array([y[t]])
            hx = np.array([x[0]])
            H = np.array([[1.0, 0.0, 0.0, 0.0]])
            R = np.array([[p["r_level"]]])
        nu = z - hx
        S = H @ P @ H.T + R
        K = P @ H.T @ np.linalg.inv(S)
        x = x + K @ nu
        A = I4 - K @ H
        P = A @ P @ A.T + K @ R @ K.T
        states[t] = x
        innov[t, : nu.size] = nu
    return states, innov


def reference_ekf(prices, params=None):
    """prices [T] or [B, T] -> (states [..., T, 4], innovations [..., T, 2])."""
    arr = np.asarray(prices)
    if arr.ndim == 1:
        return reference_ekf_series(arr, params)
    outs = [reference_ekf_series(row, params) for row in arr]
    return np.stack([s for s, _ in outs]), np.stack([i for _, i in outs])


# --------------------------------------------------------------------------------------------
# Random data for the tests.
# --------------------------------------------------------------------------------------------


def random_walk_prices(rng: np.random.Generator, T: int, vol: float = 0.01, start: float = 100.0):
    """Positive open/close from a geometric random walk; open[t] is near close[t-1]."""
    log_close = math.log(start) + np.cumsum(rng.normal(0.0, vol, size=T))
    close = np.exp(log_close)
    gap = rng.normal(0.0, vol / 4.0, size=T)
    open_ = np.empty(T)
    open_[0] = start * math.exp(gap[0])
    open_[1:] = close[:-1] * np.exp(gap[1:])
    return open_, close


def random_actions(rng: np.random.Generator, shape, p_hold: float = 0.6) -> np.ndarray:
    """Actions in {0, 1, 2} with HOLD most likely, so positions last a few bars."""
    p_other = (1.0 - p_hold) / 2.0
    return rng.choice(np.array([SELL, HOLD, BUY], dtype=np.int64), size=shape, p=[p_other, p_hold, p_other])
