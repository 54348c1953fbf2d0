"""Tab-DDPM, the generator instance: tables from the train rows, training, class-conditional
sampling (torch imported lazily).

A sample is ``window`` consecutive train rows flattened: ``window x k`` numerical columns
(quantile-transformed to a standard normal with the train columns' quantiles) and ``window``
categorical columns of three classes (the label of each row when conditioning on the tail
class; the tail class of each row when conditioning on the label). The condition is the class
of the sample's last row; sampling draws exactly the asked mix of conditions.
"""

from __future__ import annotations

import math
from typing import Any

from himari_builtin.generators.tab_ddpm import tails
from himari_builtin.generators.tab_ddpm.config import TabDDPMConfig, class_names, parse_mix

K = 3


class TabDDPM:
    """The generator instance (``himari.plugin.api.Generator``)."""

    def __init__(self, config: TabDDPMConfig) -> None:
        self.config = config
        self.window = config.window
        self.names = class_names(config.condition)
        self.network: Any = None
        self.quantiles: Any = None
        self.channels: tuple[str, ...] = ()
        self.thresholds: tuple[float, float] | None = None
        self.train_shares: dict[str, float] = {}
        self.fit_log: dict[str, float] = {}

    # ------------------------------------------------------------------ tables

    def _table(self, data: Any) -> tuple[Any, Any, Any, Any]:
        """(numerical [m, w*k], categorical [m, w], condition [m], row labels [m, w]) of every
        window of train rows with a known label."""
        import numpy as np

        from himari.plugin.api import DataError, require_windows, take_windows

        cfg, w = self.config, self.config.window
        close = np.asarray(data.bars.close)
        try:
            self.thresholds = tails.thresholds(close, data.segments, cfg.crash_bars, cfg.crash_quantile,
                                               cfg.flash_bars, cfg.flash_quantile)
        except ValueError as e:
            raise DataError(f"generator 'tab-ddpm': {e} (the tail rules need more consecutive train bars)") from None
        tail = tails.classify(tails.segment_returns(close, data.segments, cfg.crash_bars),
                              tails.segment_returns(close, data.segments, cfg.flash_bars), *self.thresholds)
        starts = require_windows("tab-ddpm", data.segments, w)
        x = take_windows(np.asarray(data.features, np.float32), starts, w).reshape(len(starts), -1)
        labels = take_windows(np.asarray(data.labels), starts, w)
        tail_w = take_windows(tail, starts, w)
        keep = (labels >= 0).all(axis=1)
        if not keep.any():
            raise DataError("generator 'tab-ddpm': no train window has known labels")
        x, labels, tail_w = x[keep], labels[keep], tail_w[keep]
        if self.config.condition == "tail":
            return x, labels, tail_w[:, -1], labels
        return x, tail_w, labels[:, -1], labels

    # ------------------------------------------------------------------ fitting

    def fit(self, data: Any) -> None:
        import numpy as np
        import torch

        from himari.plugin.api import DataError, GraphReplay, QuantileNormal, check_finite, phase, torch_generator
        from himari_builtin.generators.tab_ddpm.network import MLPDiffusion, Multinomial, Schedule, \
            gaussian_q_sample

        cfg = self.config
        check_finite("tab-ddpm", np.asarray(data.features), "the train features")
        self.channels = tuple(data.feature_names)
        x, cat, y, _ = self._table(data)
        counts = np.bincount(y.astype(np.int64), minlength=K)
        self.train_shares = {n: float(c / counts.sum()) for n, c in zip(self.names, counts)}
        mix = parse_mix(cfg.mix, self.names) or self.train_shares
        empty = [n for n, c in zip(self.names, counts) if c == 0 and mix[n] > 0]
        if empty:
            raise DataError(f"generator 'tab-ddpm': no train row is of class {', '.join(empty)}, which the mix "
                            f"{cfg.mix!r} asks for; change the mix or the tail rules")
        self.quantiles = QuantileNormal(cfg.n_quantiles, data.seed).fit(x)
        device = torch.device(data.device)
        xn = torch.from_numpy(self.quantiles.transform(x)).to(device)
        xc = torch.from_numpy(cat.astype(np.int64)).to(device)
        yc = torch.from_numpy(y.astype(np.int64)).to(device)
        d_num, n_cat = xn.shape[1], xc.shape[1]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(data.seed)
            net = MLPDiffusion(d_num + n_cat * K, K, cfg.layers, cfg.dropout, cfg.dim_t).to(device)
        sched = Schedule(cfg.timesteps, device)
        multi = Multinomial(sched, n_cat, K)
        g = torch_generator(data.seed + 1, str(device))
        # capturable: the step count lives on the device, so the optimiser step can be replayed
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                capturable=device.type == "cuda")
        b = min(cfg.batch_size, len(xn))
        net.train()

        def train_step(idx: Any, t: Any, eps: Any, u: Any) -> Any:
            """One optimiser step on the rows ``idx`` at diffusion steps ``t`` with the drawn noise;
            the two losses come back as one tensor."""
            x0, c0, yb = xn[idx], xc[idx], yc[idx]
            x_t = gaussian_q_sample(sched, x0, t, eps)
            log_c0 = multi.log_onehot(c0)
            log_c_t = multi.sample_with(multi.q_pred(log_c0, t), u)
            out = net(torch.cat([x_t, log_c_t.exp()], dim=1), t, yb)
            loss_gauss = ((out[:, :d_num] - eps) ** 2).mean()
            loss_multi = multi.loss(log_c0, log_c_t, out[:, d_num:], t).mean()
            GraphReplay.zero_grad(net.parameters())
            (loss_gauss + loss_multi).backward()
            opt.step()
            return torch.stack([loss_gauss.detach(), loss_multi.detach()])

        step = GraphReplay(train_step, device=device, name="tab-ddpm training step", off="set cuda_graphs=false",
                           enabled=cfg.cuda_graphs)
        losses: list[float] = []
        with phase("Tab-DDPM training", total=cfg.steps) as advance:
            for _ in range(cfg.steps):
                # drawn in the order the step uses them: the same random stream replayed or not
                idx = torch.randint(len(xn), (b,), generator=g, device=device)
                t = torch.randint(cfg.timesteps, (b,), generator=g, device=device)
                eps = torch.randn((b, d_num), generator=g, device=device)
                u = torch.rand((b, n_cat * K), generator=g, device=device)
                losses = step(idx, t, eps, u).tolist()  # the step's one wait for the GPU
                if not all(math.isfinite(v) for v in losses):
                    raise DataError("generator 'tab-ddpm': the loss is not finite; lower lr")
                advance()
        log = {"loss_gauss": losses[0], "loss_multi": losses[1]}
        self.network = net.eval()
        self.fit_log = log

    # ------------------------------------------------------------------ sampling

    def _counts(self, n: int) -> tuple[dict[str, float], list[int]]:
        """The asked mix and exact rows per class (largest remainders)."""
        import numpy as np

        mix = parse_mix(self.config.mix, self.names) or self.train_shares
        raw = np.array([mix[c] * n for c in self.names])
        counts = np.floor(raw).astype(int)
        for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
            counts[i] += 1
        return dict(mix), [int(c) for c in counts]

    def sample(self, n: int, *, seed: int = 0) -> Any:
        import numpy as np
        import torch

        from himari.plugin.api import SyntheticSample, torch_generator
        from himari_builtin.generators.tab_ddpm.network import Multinomial, Schedule, gaussian_p_sample

        if self.network is None:
            raise RuntimeError("tab-ddpm: sample before fit")
        cfg, net, w = self.config, self.network, self.window
        device = next(net.parameters()).device
        k = len(self.channels)
        d_num = w * k
        sched = Schedule(cfg.timesteps, device)
        multi = Multinomial(sched, w, K)
        asked, counts = self._counts(n)
        rng = np.random.default_rng(seed)
        y_all = rng.permutation(np.repeat(np.arange(K), counts)).astype(np.int64)
        g = torch_generator(seed, str(device))
        num = np.empty((n, d_num), dtype=np.float32)
        cat = np.empty((n, w), dtype=np.int64)
        with torch.no_grad():
            for a in range(0, n, cfg.sample_batch):
                m = min(cfg.sample_batch, n - a)
                y = torch.from_numpy(y_all[a:a + m]).to(device)
                x = torch.randn(m, d_num, generator=g, device=device)
                uniform = torch.full((m, w * K), -np.log(K), device=device)
                log_c = multi.sample(uniform, g)
                for step in reversed(range(cfg.timesteps)):
                    t = torch.full((m,), step, dtype=torch.long, device=device)
                    out = net(torch.cat([x, log_c.exp()], dim=1), t, y)
                    noise = torch.randn(x.shape, generator=g, device=device)
                    x = gaussian_p_sample(sched, x, t, out[:, :d_num], noise)
                    log_c = multi.sample(multi.q_posterior(multi.log_softmax(out[:, d_num:]), log_c, t), g)
                num[a:a + m] = x.float().cpu().numpy()
                cat[a:a + m] = log_c.view(m, w, K).argmax(-1).cpu().numpy()
        windows = self.quantiles.inverse(num).reshape(n, w, k)
        if cfg.condition == "tail":
            labels = cat.astype(np.int8)
        else:
            labels = np.full((n, w), -1, dtype=np.int8)
            labels[:, -1] = y_all
        return SyntheticSample(windows=np.ascontiguousarray(windows, dtype=np.float32), labels=labels,
                               classes=y_all.astype(np.int8), class_names=self.names, requested=asked)

    def classify(self, windows: Any) -> Any:
        """The tail class of each window's last row by the fitted thresholds, from its
        ``ret_<crash_bars>`` and ``ret_<flash_bars>`` channels (-1 without them, or when
        conditioning on the label: a label cannot be read from the features)."""
        import numpy as np

        windows = np.asarray(windows)
        rc, rf = f"ret_{self.config.crash_bars}", f"ret_{self.config.flash_bars}"
        if self.config.condition != "tail" or self.thresholds is None or rc not in self.channels \
                or rf not in self.channels:
            return np.full(len(windows), -1, dtype=np.int8)
        last = windows[:, -1, :]
        return tails.classify(last[:, self.channels.index(rc)], last[:, self.channels.index(rf)], *self.thresholds)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        if self.network is None:
            raise RuntimeError("tab-ddpm: state before fit")
        return {"channels": list(self.channels), "thresholds": list(self.thresholds or ()),
                "train_shares": dict(self.train_shares), "quantiles": self.quantiles.state_dict(),
                "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from himari.plugin.api import QuantileNormal
        from himari_builtin.generators.tab_ddpm.network import MLPDiffusion

        cfg = self.config
        channels = tuple(str(c) for c in state["channels"])
        d_in = cfg.window * len(channels) + cfg.window * K
        net = MLPDiffusion(d_in, K, cfg.layers, cfg.dropout, cfg.dim_t)
        net.load_state_dict(state["network"])
        q = QuantileNormal(cfg.n_quantiles)
        q.load_state_dict(state["quantiles"])
        thr = [float(v) for v in state["thresholds"]]
        if len(thr) != 2:
            raise ValueError("tab-ddpm state: expected two tail thresholds")
        self.network, self.quantiles, self.channels = net.eval(), q, channels
        self.thresholds = (thr[0], thr[1])
        self.train_shares = {str(k): float(v) for k, v in state["train_shares"].items()}
