"""tab-ddpm (A5): Tab-DDPM synthetic rows for the tails (Kotelnikov, Baranchuk, Rubachev and
Babenko, "TabDDPM: Modelling Tabular Data with Diffusion Models", ICML 2023).

Gaussian diffusion on the quantile-transformed numerical columns (T = 1000, cosine schedule,
epsilon prediction) and multinomial diffusion on the categorical ones, with an MLP denoiser that
sees the timestep and the class. Rows of the train split are classed crash / flash crash /
normal by documented rules (``tails``) and carry their SELL/HOLD/BUY label; sampling draws the
class mix the user asks for (``mix``), so the rare tail rows can be oversampled. It generates
feature rows (or flattened short windows) without time order. Package: ``config``, ``tails``
(the rules), ``network`` (denoiser and diffusions), ``model`` (tables, training, sampling).
"""

from __future__ import annotations

from typing import Any

from himari.plugin.api import GeneratorSpec, hookimpl
from himari_builtin.generators.tab_ddpm.config import TabDDPMConfig

__all__ = ["TabDDPMConfig", "build", "himari_register_generators"]


def build(config: TabDDPMConfig) -> Any:
    """The factory the spec registers: imports the model (and torch) only when a set is made."""
    from himari_builtin.generators.tab_ddpm.model import TabDDPM

    return TabDDPM(config)


@hookimpl
def himari_register_generators(registry: Any) -> None:
    registry.add(GeneratorSpec(name="tab-ddpm", code="A5",
                               summary="Tab-DDPM: diffusion on feature rows, class-conditional to oversample tails",
                               config=TabDDPMConfig, factory=build, extras=("torch", "sklearn"), output="rows",
                               default_features=()))
