"""The types a plugin author works with: spec dataclasses, the contexts the Trainer hands over,
and the protocols of models, preprocessors, training methods and trackers.

Specs are plain data (name, summary, config class, factory) so that listing plugins never builds
anything heavy; factories are called only when a run needs the plugin. Every spec names a
``<Name>Config`` dataclass whose fields (with defaults and one docstring line each) are the
plugin's configuration: the CLI shows them (``himari plugins show``) and run configs are checked
against them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, is_dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:  # only for annotations: nothing here imports numpy or torch at run time
    import numpy as np

KINDS = ("model", "preprocessor", "training-method", "tracker")
"""Plugin kinds, as the CLI spells them (``himari plugins list --kind ...``)."""

PARADIGMS = ("supervised", "sequence", "offline-rl", "online-rl")
"""How a model learns; the model owns its loss for its paradigm."""

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_CODE = re.compile(r"^[A-K][1-8]$")


class ParamCount(NamedTuple):
    total: int
    trainable: int


@dataclass(frozen=True)
class EnvConfig:
    """Execution costs and mode shared by training (online RL envs, offline rewards) and the
    evaluation backtests. Training methods may change it through their ``env_config`` hook."""

    fee: float = 1e-3
    """Fraction of traded notional paid on every fill."""
    slippage: float = 5e-4
    """Fraction of price each fill is moved against the trader."""
    mode: str = "long_flat"
    """long_flat (SELL goes flat) or long_short (SELL goes short)."""
    drawdown_penalty: float = 0.0
    """Reward shaping (RL): penalty per unit of drawdown increase (docs/semantics.md)."""
    turnover_penalty: float = 0.0
    """Reward shaping (RL): penalty per unit of position traded."""
    dsr_weight: float = 0.0
    """Reward shaping (RL): weight of the differential Sharpe ratio term."""
    dsr_decay: float = 0.01
    """Decay (eta) of the differential Sharpe ratio's moving moments, in (0, 1]."""

    def __post_init__(self) -> None:
        for name in ("drawdown_penalty", "turnover_penalty", "dsr_weight"):
            v = getattr(self, name)
            if not (v >= 0 and v < float("inf")):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if not 0 < self.dsr_decay <= 1:
            raise ValueError(f"dsr_decay must be in (0, 1], got {self.dsr_decay}")


@dataclass(frozen=True)
class ModelContext:
    """What a model factory knows about the data it will see."""

    n_features: int = 60
    n_actions: int = 3
    class_counts: tuple[int, ...] = (1, 1, 1)
    """Labelled train rows per action (SELL, HOLD, BUY): class weights are built from them."""
    env: EnvConfig = field(default_factory=EnvConfig)


@dataclass
class TrainContext:
    """The state of a run that the Trainer shares with the model and the training methods.

    ``features`` are the preprocessed features of every prepared row (float32 ``[N, F]``);
    ``splits`` maps ``train``/``validation``/``test`` to row ranges. Labels are only for
    building training data: evaluation never reads them.
    """

    data: Any
    """The ``himari.data.PreparedData``."""
    features: np.ndarray
    labels: np.ndarray
    splits: dict[str, list[tuple[int, int]]]
    env: EnvConfig
    model: ModelContext
    device: str = "cpu"
    seed: int = 0
    epoch: int = 0
    step: int = 0
    run_dir: Any = None
    rank: int = 0
    """This process's rank in a data-parallel run (0 alone); online-RL models seed their env shard with it."""
    world_size: int = 1
    """Processes of a data-parallel run (1 alone); write files only where ``rank == 0``."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Free space for methods to leave state for each other (e.g. a curriculum stage)."""


def _check_common(kind: str, name: str, summary: str, config: Any, code: str | None) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r}: expected kebab-case like 'baseline-mlp'")
    if not summary or "\n" in summary:
        raise ValueError(f"{kind} {name!r}: summary must be one non-empty line")
    if not (isinstance(config, type) and is_dataclass(config)):
        raise ValueError(f"{kind} {name!r}: config must be a dataclass type, got {config!r}")
    if code is not None and not _CODE.match(code):
        raise ValueError(f"{kind} {name!r}: code {code!r} must be A1..K8")


@dataclass(frozen=True)
class ModelSpec:
    """A model plugin. ``factory(config, ModelContext) -> Model``."""

    name: str
    summary: str
    config: type
    factory: Callable[[Any, ModelContext], Model]
    code: str | None = None
    """The seed's method code (A1..A8, K1..K8) where the model implements one."""
    paradigm: str = "supervised"
    parameter_count: Callable[[Any, int], ParamCount] | None = None
    """Parameters at ``(config, n_features)`` by arithmetic, so listing never imports torch.
    Without it, ``plugins list`` builds the model on torch's meta device. The conformance
    harness checks the arithmetic against the built network."""
    default_preprocess: tuple[str, ...] = ()
    """Preprocessors used when the run does not name any (``--preprocess``)."""
    extras: tuple[str, ...] = ("torch",)
    devices: tuple[str, ...] = ("cpu", "cuda")
    kind: str = field(default="model", init=False)

    def __post_init__(self) -> None:
        _check_common("model", self.name, self.summary, self.config, self.code)
        if self.paradigm not in PARADIGMS:
            raise ValueError(f"model {self.name!r}: paradigm {self.paradigm!r} is not one of {PARADIGMS}")


@dataclass(frozen=True)
class PreprocessorSpec:
    """A preprocessor plugin. ``factory(config) -> Preprocessor``."""

    name: str
    summary: str
    config: type
    factory: Callable[[Any], Preprocessor]
    code: str | None = None
    extras: tuple[str, ...] = ()
    kind: str = field(default="preprocessor", init=False)

    def __post_init__(self) -> None:
        _check_common("preprocessor", self.name, self.summary, self.config, self.code)


@dataclass(frozen=True)
class TrainingMethodSpec:
    """A training-method plugin. ``factory(config) -> TrainingMethod``."""

    name: str
    summary: str
    config: type
    factory: Callable[[Any], TrainingMethod]
    code: str | None = None
    extras: tuple[str, ...] = ()
    kind: str = field(default="training-method", init=False)

    def __post_init__(self) -> None:
        _check_common("training-method", self.name, self.summary, self.config, self.code)


@dataclass(frozen=True)
class TrackerSpec:
    """An experiment tracker plugin. ``factory(config) -> Tracker``."""

    name: str
    summary: str
    config: type
    factory: Callable[[Any], Tracker]
    extras: tuple[str, ...] = ()
    code: str | None = None
    kind: str = field(default="tracker", init=False)

    def __post_init__(self) -> None:
        _check_common("tracker", self.name, self.summary, self.config, self.code)


AnySpec = ModelSpec | PreprocessorSpec | TrainingMethodSpec | TrackerSpec


@runtime_checkable
class Model(Protocol):
    """A model plugin instance.

    Lifecycle, driven by ``himari.training.Trainer``:

    1. ``factory(config, ModelContext)`` builds it on the CPU; the Trainer moves ``network``
       to the run's device and optimises ``network.parameters()``.
    2. ``dataset(ctx, split)`` gives the training (and validation) data for the model's
       paradigm: an object with ``__len__`` whose ``__getitem__`` takes a ``LongTensor`` of
       indices and returns a batch (``torch.utils.data.TensorDataset`` does). An online-RL
       model fills it from ``himari.engine.VecTradingEnv`` built with ``ctx.env``.
    3. ``loss(batch, ctx)`` returns ``(loss tensor, {name: float})`` for a batch already on
       the device; the model owns its loss (cross-entropy, TD error, policy gradient, ...).
    4. ``act(features, rows)`` returns the action (0 SELL, 1 HOLD, 2 BUY, int8/int64) decided
       at each of ``rows`` of the preprocessed ``features [N, F]``, using rows ``<= t`` only;
       the Trainer calls it in eval mode under ``torch.no_grad()``. The action at row t fills
       at ``open[t+1]``. The conformance harness checks causality.
    5. The Trainer saves ``network.state_dict()``; to restore, it calls the factory with the
       saved config and context and loads the state.

    Optional, for models that need them (the Trainer checks with ``hasattr``):

    - ``act_sequence(features, open, close, ranges, env) -> actions``: for policies whose
      decision depends on the account state or on recurrent state. The policy decides along each
      ``(a, b)`` range in order, from a flat account and a fresh state, and returns one action
      per row of the concatenated ranges (the last row of a range takes no decision: HOLD).
      ``env`` is the run's ``EnvConfig`` (costs and mode of the account).
      ``himari.training.rl.sequential_actions`` does the stepping through a 1-env
      ``VecTradingEnv``. When defined, the Trainer and ``himari backtest`` score these actions
      instead of ``act``'s (``act`` may then raise).
    - ``rollout(ctx, reset) -> dataset`` (paradigm ``online-rl``, config derived from
      ``himari.training.rl.OnlineRLConfig``): collect fresh experience with the current policy
      (``reset`` is True at the first rollout of each epoch: rebuild the envs from
      ``(ctx.seed, ctx.epoch)`` and zero any recurrent state, so runs resume exactly) and return
      it as a dataset indexed like ``dataset``'s; the Trainer then runs ``update_epochs`` passes
      of ``n_minibatches`` minibatches through ``loss`` (``himari.training.rl.RolloutBuffer``
      gives whole env sequences). ``dataset`` is not called for such a model.
    """

    network: Any
    paradigm: str

    def dataset(self, ctx: TrainContext, split: str) -> Any: ...

    def loss(self, batch: Any, ctx: TrainContext) -> tuple[Any, dict[str, float]]: ...

    def act(self, features: np.ndarray, rows: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Preprocessor(Protocol):
    """Lifecycle: ``fit(train_features)`` once on the train split's rows only, then
    ``transform(features)`` on every row of every split (causal: row t's output uses rows
    ``<= t``); ``state_dict()`` (JSON-ready: lists, numbers, strings) is saved in the run's
    ``preprocessing.json`` and given back through ``load_state_dict`` when a run is restored."""

    def fit(self, features: np.ndarray) -> None: ...

    def transform(self, features: np.ndarray) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainingMethod(Protocol):
    """A training method hooks into named points of the Trainer's loop (``HOOK_POINTS``). Every
    hook is optional; the Trainer calls those a method defines, in ``--method`` order:

    - ``env_config(env, ctx) -> EnvConfig``: costs and mode for training and evaluation.
    - ``dataset(dataset, ctx, split) -> dataset``: wrap or replace a split's training data.
    - ``epoch_start(epoch, ctx) -> None``: before each epoch (curricula, schedules).
    - ``loss_terms(model, batch, ctx) -> {name: tensor}``: added to the model's loss.
    - ``outer_loop(fit, ctx) -> None``: wraps the whole epoch loop; must call ``fit()``.
    - ``state_dict()``/``load_state_dict(state)``: JSON-ready state kept in checkpoints.
    """


HOOK_POINTS = ("env_config", "dataset", "epoch_start", "loss_terms", "outer_loop")


class Tracker(Protocol):
    """Lifecycle: ``start(run_dir, config, resume)`` once (``resume`` is None for a new run,
    else ``{"records": n, "step": s}``: keep the first n records, drop anything logged after
    step s), ``log(step, metrics)`` any number of times (``metrics`` maps names like
    ``train/loss`` or ``validation/sharpe`` to floats), ``finish(summary)`` once at the end."""

    def start(self, run_dir: Any, config: dict[str, Any], resume: dict[str, Any] | None) -> None: ...

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...


def spec_kind(spec: Any) -> str:
    kind = getattr(spec, "kind", None)
    if kind not in KINDS:
        raise TypeError(f"not a himari plugin spec: {spec!r}")
    return str(kind)


def names(specs: Iterable[Any]) -> Sequence[str]:
    return [s.name for s in specs]
