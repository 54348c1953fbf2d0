"""timegan (A4): TimeGAN synthetic windows (Yoon, Jarrett and van der Schaar, "Time-series
Generative Adversarial Networks", NeurIPS 2019).

Embedder, recovery, generator, supervisor and discriminator are recurrent networks; a
supervised loss on the latent step ``h[t] -> h[t+1]`` teaches the generator the series' temporal
dynamics next to the adversarial loss, and moment matching keeps its first two moments on the
data's. Fitted on train windows only (min-max scaled with the train rows' range), it samples
windows of the chosen channels, with the label of each step when ``labels`` is on.
Package: ``config`` (settings), ``network`` (the torch modules), ``model`` (training, sampling).
"""

from __future__ import annotations

from typing import Any

from himari.plugin.api import GeneratorSpec, hookimpl
from himari_builtin.generators.timegan.config import TimeGANConfig

__all__ = ["TimeGANConfig", "build", "himari_register_generators"]


def build(config: TimeGANConfig) -> Any:
    """The factory the spec registers: imports the model (and torch) only when a set is made."""
    from himari_builtin.generators.timegan.model import TimeGAN

    return TimeGAN(config)


@hookimpl
def himari_register_generators(registry: Any) -> None:
    registry.add(GeneratorSpec(name="timegan", code="A4",
                               summary="TimeGAN: recurrent GAN with a supervised latent loss, synthetic windows",
                               config=TimeGANConfig, factory=build, extras=("torch",)))
