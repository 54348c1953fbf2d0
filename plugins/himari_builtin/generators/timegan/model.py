"""TimeGAN, the generator instance: the three-phase training and sampling (torch imported lazily).

The schedule follows the paper and its reference implementation:

1. **autoencoder**: embedder and recovery learn to reconstruct windows
   (loss ``10 * sqrt(MSE(x, x~))``);
2. **supervised**: the supervisor (with the generator's parameters in the same optimiser)
   learns the step ``h[t] -> h[t+1]`` of real latent sequences (``MSE``);
3. **joint**: per iteration two generator/supervisor steps on
   ``BCE(D(h^), real) + gamma * BCE(D(e^), real) + 100 * sqrt(supervised) + 100 * moments`` and
   two embedder/recovery steps on ``10 * sqrt(reconstruction) + 0.1 * supervised``, then one
   discriminator step on ``BCE(D(h), real) + BCE(D(h^), fake) + gamma * BCE(D(e^), fake)``, taken
   only while that loss exceeds ``d_threshold`` (0.15).

Noise is uniform on [0, 1) (the reference implementation's), one vector per step. Windows are
min-max scaled with the train rows' range and scaled back when sampled; with ``labels`` on, the
label of each step rides along as three one-hot channels and is decoded by arg-max.

On a GPU each phase's step runs as a CUDA graph (``GraphReplay``; ``cuda_graphs``): five GRUs this
small leave the GPU waiting on Python's kernel launches (eager on an H200: 80 ms for one
iteration of each phase; replayed: 21 ms). The joint phase's step ends with the discriminator's loss and
gradients; its optimiser step is a second graph, replayed only when the loss (the iteration's one
read on the host) exceeds the threshold.
"""

from __future__ import annotations

from typing import Any

from himari_builtin.generators.timegan.config import TimeGANConfig

LABEL_CHANNELS = 3


class TimeGAN:
    """The generator instance (``himari.plugin.api.Generator``)."""

    def __init__(self, config: TimeGANConfig) -> None:
        self.config = config
        self.window = config.window
        self.network: Any = None
        self.scaler: Any = None
        self.n_features = 0
        self.fit_log: dict[str, float] = {}
        """Last value of each loss of the joint phase (recorded with the set's provenance)."""

    # ------------------------------------------------------------------ fitting

    def _channels(self, data: Any) -> Any:
        """The train rows as model channels: the features, then the one-hot label when enabled."""
        import numpy as np

        x = np.asarray(data.features, dtype=np.float32)
        if not self.config.labels:
            return x
        labels = np.asarray(data.labels)
        onehot = np.zeros((len(labels), LABEL_CHANNELS), dtype=np.float32)
        known = labels >= 0
        onehot[np.flatnonzero(known), labels[known].astype(np.int64)] = 1.0
        return np.concatenate([x, onehot], axis=1)

    def fit(self, data: Any) -> None:
        import numpy as np
        import torch
        import torch.nn.functional as F

        from himari.plugin.api import (
            DataError,
            GraphReplay,
            MinMaxScaler,
            check_finite,
            phase,
            require_windows,
            take_windows,
            torch_generator,
        )
        from himari_builtin.generators.timegan.network import (
            TimeGANNetworks,
            autoencoder_loss,
            discriminator_loss,
            embedder_loss,
            generator_loss,
            moment_loss,
        )

        cfg, L = self.config, self.config.window
        check_finite("timegan", np.asarray(data.features), "the train features")
        starts_np = require_windows("timegan", data.segments, L)
        if cfg.labels and not (take_windows(np.asarray(data.labels), starts_np, L) >= 0).all(axis=1).any():
            # a label channel that is all zero on every step would teach the generator nothing
            # about labels, and arg-max would still decode one for every generated step
            raise DataError("generator 'timegan': no train window has known labels (set labels=false to generate "
                            "features only)")
        x = self._channels(data)
        self.n_features = int(np.asarray(data.features).shape[1])
        self.scaler = MinMaxScaler().fit(x)
        device = torch.device(data.device)
        series = torch.from_numpy(self.scaler.transform(x)).to(device)
        starts = torch.from_numpy(starts_np).to(device)
        offsets = torch.arange(L, device=device)
        c = series.shape[1]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(data.seed)
            net = TimeGANNetworks(c, cfg.hidden, cfg.layers, cfg.cell).to(device)
        g = torch_generator(data.seed + 1, str(device))

        def batch() -> Any:
            pick = starts[torch.randint(len(starts), (cfg.batch_size,), generator=g, device=device)]
            return series[pick[:, None] + offsets[None, :]]

        def noise() -> Any:
            return torch.rand(cfg.batch_size, L, c, generator=g, device=device)

        def params(*modules: Any) -> list[Any]:
            return [p for m in modules for p in m.parameters()]

        def step(opt: Any, loss: Any) -> None:
            GraphReplay.zero_grad(net.parameters())
            loss.backward()
            opt.step()

        # capturable: the step count lives on the device, so the optimiser step can be replayed
        capturable = device.type == "cuda"
        adam = lambda ps: torch.optim.Adam(ps, lr=cfg.lr, capturable=capturable)  # noqa: E731 - one per solver
        e0_opt = adam(params(net.embedder, net.recovery))
        e_opt = adam(params(net.embedder, net.recovery))
        gs_opt = adam(params(net.generator, net.supervisor))
        g_opt = adam(params(net.generator, net.supervisor))
        d_opt = adam(params(net.discriminator))

        def supervised(h: Any) -> Any:
            return F.mse_loss(net.supervisor(h)[:, :-1], h[:, 1:])

        def autoencoder_step(xb: Any) -> Any:
            step(e0_opt, autoencoder_loss(F.mse_loss(net.recovery(net.embedder(xb)), xb)))

        def supervised_step(xb: Any) -> Any:
            with torch.no_grad():
                h = net.embedder(xb)
            step(gs_opt, supervised(h))

        def joint_step(*batches: Any) -> tuple[Any, ...]:
            """Two generator and embedder steps, then the discriminator's loss and gradients (its
            optimiser step follows only while the loss exceeds the threshold, decided on the host)."""
            for xb, z in (batches[0:2], batches[2:4]):
                with torch.no_grad():
                    h = net.embedder(xb)
                e_hat = net.generator(z)
                h_hat = net.supervisor(e_hat)
                x_hat = net.recovery(h_hat)
                y_fake, y_fake_e = net.discriminator(h_hat), net.discriminator(e_hat)
                g_s = supervised(h)
                g_v = moment_loss(x_hat, xb)
                g_loss, g_u = generator_loss(y_fake, y_fake_e, g_s, g_v, cfg.gamma)
                step(g_opt, g_loss)
                h = net.embedder(xb)
                rec = F.mse_loss(net.recovery(h), xb)
                step(e_opt, embedder_loss(rec, supervised(h)))
            xb, z = batches[4:6]
            with torch.no_grad():
                h = net.embedder(xb)
                e_hat = net.generator(z)
                h_hat = net.supervisor(e_hat)
            y_real, y_fake, y_fake_e = net.discriminator(h), net.discriminator(h_hat), net.discriminator(e_hat)
            d_loss = discriminator_loss(y_real, y_fake, y_fake_e, cfg.gamma)
            GraphReplay.zero_grad(net.parameters())
            d_loss.backward()
            return tuple(t.detach() for t in (d_loss, g_u, g_s, g_v, rec))

        def replayed(fn: Any, name: str) -> Any:
            return GraphReplay(fn, device=device, name=f"timegan {name} step", off="set cuda_graphs=false",
                               enabled=cfg.cuda_graphs)

        autoencoder = replayed(autoencoder_step, "autoencoder")
        supervisor_step = replayed(supervised_step, "supervised")
        joint, discriminator_step = replayed(joint_step, "joint"), replayed(d_opt.step, "discriminator")
        with phase("TimeGAN autoencoder", total=cfg.iterations) as advance:
            for _ in range(cfg.iterations):
                autoencoder(batch())
                advance()
        with phase("TimeGAN supervised", total=cfg.iterations) as advance:
            for _ in range(cfg.iterations):
                supervisor_step(batch())
                advance()
        last: tuple[Any, ...] = ()
        with phase("TimeGAN joint", total=cfg.iterations) as advance:
            for _ in range(cfg.iterations):
                # drawn in the order the steps use them: the same random stream replayed or not
                inputs = [draw() for _k in range(3) for draw in (batch, noise)]
                last = joint(*inputs)
                if last[0].item() > cfg.d_threshold:  # the iteration's one wait for the GPU
                    discriminator_step()
                advance()
        names = ("d_loss", "g_loss_u", "g_loss_s", "g_loss_v", "e_loss_t0")
        log = {k: float(v) for k, v in zip(names, last)}
        self.network = net.eval()
        self.fit_log = log

    # ------------------------------------------------------------------ sampling

    def sample(self, n: int, *, seed: int = 0) -> Any:
        import numpy as np
        import torch

        from himari.plugin.api import SyntheticSample, torch_generator

        if self.network is None:
            raise RuntimeError("timegan: sample before fit")
        net, L = self.network, self.window
        device = next(net.parameters()).device
        c = net.embedder.rnn.input_size
        g = torch_generator(seed, str(device))
        out = np.empty((n, L, c), dtype=np.float32)
        with torch.no_grad():
            for a in range(0, n, self.config.sample_batch):
                m = min(self.config.sample_batch, n - a)
                z = torch.rand(m, L, c, generator=g, device=device)
                out[a:a + m] = net.recovery(net.supervisor(net.generator(z))).float().cpu().numpy()
        windows = self.scaler.inverse(out.reshape(-1, c)).reshape(n, L, c)
        k = self.n_features
        if self.config.labels:
            labels = out[:, :, k:].argmax(-1).astype(np.int8)
        else:
            labels = np.full((n, L), -1, dtype=np.int8)
        return SyntheticSample(windows=np.ascontiguousarray(windows[:, :, :k]), labels=labels)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        if self.network is None:
            raise RuntimeError("timegan: state before fit")
        return {"n_features": self.n_features, "channels": int(self.network.embedder.rnn.input_size),
                "scaler": self.scaler.state_dict(),
                "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from himari.plugin.api import MinMaxScaler
        from himari_builtin.generators.timegan.network import TimeGANNetworks

        cfg = self.config
        channels = int(state["channels"])
        n_features = int(state["n_features"])
        if channels != n_features + (LABEL_CHANNELS if cfg.labels else 0):
            raise ValueError(f"timegan state: {channels} channels do not match {n_features} features "
                             f"(labels {'on' if cfg.labels else 'off'})")
        net = TimeGANNetworks(channels, cfg.hidden, cfg.layers, cfg.cell)
        net.load_state_dict(state["network"])
        scaler = MinMaxScaler()
        scaler.load_state_dict(state["scaler"])
        if scaler.min is None or len(scaler.min) != channels:
            raise ValueError("timegan state: the scaler does not match the network's channels")
        self.network, self.scaler, self.n_features = net.eval(), scaler, n_features
