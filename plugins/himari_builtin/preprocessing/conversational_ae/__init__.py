"""conversational-ae: denoise a series with autoencoders that must agree (experimental).

Feiler (2024), "Strong denoising of financial time-series" (arXiv 2408.05690): pairs of
autoencoders reconstruct the same target series combined with different context variables, and
are trained as a conversation, taking turns at speaking (producing a reconstruction) and
listening (reconciling their own with the speaker's), so each must find the common ground the
other's view supports. The agreed reconstruction is a denoised version of the target.

Here: the target (by default the log close against its trailing mean over the window: the
price path, which a narrow bottleneck can compress; log returns are nearly white noise and come
out nearly constant) and each context (by default relative volume for one partner and the bar's
log range for the other) are standardised with train-split statistics and read through a
trailing window of ``window`` rows; each partner is an MLP
autoencoder with a narrow bottleneck (``network.py`` has the conversation). Two columns are
appended: the partners' mean reconstruction of the target at row t (``cae_<target>``, in
standardised units) and their spread there (``cae_<target>_disagreement``), a confidence signal.
Row t's output reads rows ``<= t`` of its run only (a segment cut again at each train range's
start, as ``filter_ranges`` cuts it: validation and test continue from the rows before them), and
the fit sees train windows only; its held-out errors are kept in the state (``metrics``).
"""

from __future__ import annotations

from typing import Any

from himari.plugin.api import PreprocessorSpec, hookimpl
from himari_builtin.preprocessing.conversational_ae.config import ConversationalAEConfig
from himari_builtin.preprocessing.conversational_ae.preprocessor import ConversationalAE

__all__ = ["ConversationalAE", "ConversationalAEConfig", "build", "himari_register_preprocessors"]


def build(config: ConversationalAEConfig) -> ConversationalAE:
    """The factory the spec registers."""
    return ConversationalAE(config)


@hookimpl
def himari_register_preprocessors(registry: Any) -> None:
    registry.add(PreprocessorSpec(
        name="conversational-ae",
        summary="append a series denoised by autoencoders trained to agree (experimental)",
        config=ConversationalAEConfig,
        factory=build,
        code="A2",
        extras=("torch",),
    ))
