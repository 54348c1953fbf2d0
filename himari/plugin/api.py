"""The one door for plugin authors: spec dataclasses, the contexts the Trainer hands over, the
protocols of models, preprocessors, training methods and trackers, and (re-exported, imported
on first use) every helper a plugin may build on.

A plugin imports from ``himari.plugin.api`` (or ``himari.plugin``) only; the built-in plugins
do too, and a test fails if one of them reaches into another himari module.

Specs are plain data (name, summary, config class, factory) so that listing plugins never builds
anything heavy; factories are called only when a run needs the plugin. Every spec names a
``<Name>Config`` dataclass whose fields (with defaults and one docstring line each) are the
plugin's configuration: the CLI shows them (``himari plugins show``) and run configs are checked
against them.

Helpers re-exported here (docs/plugins.md lists them with what each is for): the native core
(``Market``, ``VecTradingEnv``, ``RewardConfig``, ``replay_actions``, ``backtest_signals``, ``ekf``,
``EKFParams``, ``fan_residuals``), data (``rows_of``, the datasets, ``FEATURE_NAMES``), preprocessors over time
(``filter_ranges``, ``require_finite``, ``require_n_features``, ``contiguous_segments``), ``to_device``, online RL (``OnlineRLConfig``,
``PPOConfig``, ``ppo_loss``, ``gae``, ``RolloutBuffer``, ``EnvRollout``, ``train_env``,
``sequential_actions``, ``sequential_trunk``, ``observation_filter``, ``active_observation_filter``), initialisation
(``init_orthogonal``, ``orthogonal_tensor_``, ``is_orthogonal_layer``), evaluation
(``evaluate_actions``, ``collapse``), input attacks (``linf_attack``: FGSM and PGD, ``random_corner``),
counterfactual price paths (``counterfactual_data``, ``counterfactual_context``,
``counterfactual_env_source``, ``CounterfactualMethod``, ``bar_offsets``, ``bars_from_offsets``),
execution rules (``ExecutionConfig``, ``ExecutionFilter``),
progress reporting (``phase``), synthetic data (``window_starts``, ``take_windows``, ``MinMaxScaler``,
``QuantileNormal``), a step replayed as a CUDA graph (``GraphReplay``) and the errors (``HimariError``,
``ConfigError``, ``DataError``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import pluggy

from himari.trading import EnvConfig, RewardConfig

if TYPE_CHECKING:  # only for annotations: nothing here imports numpy or torch at run time
    import numpy as np

hookimpl = pluggy.HookimplMarker("himari")
"""Marks a plugin's implementation of a ``himari_*`` hook (also ``himari.plugin.hookimpl``)."""

KINDS = ("model", "preprocessor", "training-method", "tracker", "generator")
"""Plugin kinds, as the CLI spells them (``himari plugins list --kind ...``)."""

PARADIGMS = ("supervised", "sequence", "offline-rl", "online-rl")
"""How a model learns; the model owns its loss for its paradigm."""

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_CODE = re.compile(r"^[A-K][1-8]$")


class ParamCount(NamedTuple):
    total: int
    trainable: int


@dataclass(frozen=True)
class ModelContext:
    """What a model factory knows about the data it will see."""

    n_features: int = 60
    n_actions: int = 3
    class_counts: tuple[int, ...] = (1, 1, 1)
    """Labelled train rows per action (SELL, HOLD, BUY): class weights are built from them."""
    env: EnvConfig = field(default_factory=EnvConfig)
    feature_names: tuple[str, ...] = ()
    """Names of the prepared data's features the model was trained on, before preprocessing
    (``n_features`` counts its inputs after preprocessing); empty when unknown. Scoring a
    trained model on other data checks that data has these features."""


# ------------------------------------------------------------------------ preprocessing


@dataclass(frozen=True)
class Bars:
    """Prepared bars of some rows: float64 prices and volume, int64 open times (ns, UTC)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timestamps: np.ndarray


@dataclass(frozen=True)
class PreprocessData:
    """The rows one preprocessor call covers, and what they are.

    ``fit`` gets the train split's rows only (its ``segments`` are the train ranges, cut at
    gaps); ``transform`` gets every prepared row. Positions in ``features``, ``bars``, ``rows``,
    ``segments`` and ``splits`` all index this call's rows.
    """

    features: np.ndarray
    """float32 ``[n, F]``: the input features (the previous preprocessor's output)."""
    feature_names: tuple[str, ...]
    bars: Bars
    rows: np.ndarray
    """int64 ``[n]``: the prepared row of each row (for joining with other prepared arrays)."""
    segments: tuple[tuple[int, int], ...]
    """``[a, b)`` runs of consecutive bars of one symbol without a missing bar: a filter must not
    carry its state from one segment into the next."""
    splits: dict[str, tuple[tuple[int, int], ...]]
    """Row ranges of each split among these rows (``fit``: only ``train``)."""
    interval_seconds: int
    seed: int = 0


# ------------------------------------------------------------------------ training


@dataclass(frozen=True)
class EnvSource:
    """The market the online-RL training envs run on in an epoch: one contiguous series of bars
    (by default the longest range of the train split) and the env config of the training envs.
    A training method's ``env_source`` hook may return another (a curriculum stage's block, a
    synthetic path, costs ramping up); evaluation always uses the run's own ``EnvConfig``."""

    open: np.ndarray
    """float64 ``[n]``."""
    close: np.ndarray
    """float64 ``[n]``."""
    features: np.ndarray
    """float32 ``[n, F]``: preprocessed features, as the model sees them."""
    config: EnvConfig
    rows: np.ndarray | None = None
    """int64 ``[n]``: the prepared row of each bar, or None for bars that are not prepared rows."""
    warmup: int = 0
    """First bar an episode may start at."""


@dataclass
class TrainContext:
    """The state of a run that the Trainer shares with the model and the training methods.

    ``features`` are the preprocessed features of every prepared row (float32 ``[N, F]``);
    ``splits`` maps ``train``/``validation``/``test`` to row ranges. Labels are only for
    building training data: evaluation never reads them.
    """

    data: Any
    """The prepared data set (``open``, ``close``, ``timestamps``, ``labels`` ... arrays, ``metadata``);
    its ``split(name)`` gives the run's ``splits`` (a walk-forward fold's when the run has its own)."""
    features: np.ndarray
    labels: np.ndarray
    splits: dict[str, list[tuple[int, int]]]
    env: EnvConfig
    """The run's costs, mode and shaping (training and evaluation)."""
    model: ModelContext | None = None
    device: str = "cpu"
    seed: int = 0
    epoch: int = 0
    step: int = 0
    run_dir: Any = None
    rank: int = 0
    """This process's rank in a data-parallel run (0 alone); online-RL models seed their env shard with it."""
    world_size: int = 1
    """Processes of a data-parallel run (1 alone); write files only where ``rank == 0``."""
    env_source: EnvSource | None = None
    """Online RL: the market and env config of this epoch's training envs (``train_env`` builds them)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Free space for methods to leave state for each other (e.g. a curriculum stage)."""
    observation_filter: Any = None
    """Online RL: the run's ``ObservationFilter`` (a training method's ``model_built`` returned
    it), applied by ``EnvRollout`` to every observation and reward; None without one."""
    rollout_observations: Callable[..., Any] | None = None
    """Online RL: ``f(obs, starts, state, policy) -> obs``, the methods' ``rollout_observations``
    hooks in ``--method`` order (None without one); ``EnvRollout`` passes every observation
    through it before the policy sees it, and stores what the policy saw."""
    rollout_execution: Any = None
    """Online RL: the run's execution rules when ``execution.in_rollouts`` is on (``EnvRollout``
    sends each sampled action through them to the env), else None."""
    preprocess: Callable[[Any, np.ndarray], np.ndarray] | None = None
    """``preprocess(data, raw_features) -> features``: the run's preprocessors with their fitted
    states (never refitted) over a prepared data set shaped like ``data`` (a counterfactual view
    of it, say): what the model would see for those rows. Global RNG states are left unchanged."""
    build_dataset: Callable[[TrainContext, str], Any] | None = None
    """``build_dataset(other_ctx, split) -> dataset``: a split's training data built as the Trainer
    builds it (the model's ``dataset``, then every method's ``dataset`` hook) from another
    context, such as a copy with counterfactual features and labels. None where nothing trains."""
    synthetic: SyntheticRows | None = None
    """``himari train --augment SET``: the synthetic set's rows, preprocessed like the real ones,
    for a model whose spec sets ``augment=True`` to add to its train split (never to validation
    or test). None without ``--augment``."""


@dataclass(frozen=True)
class SyntheticRows:
    """Synthetic training rows of a run (``TrainContext.synthetic``)."""

    features: np.ndarray
    """float32 ``[m, F]``: the run's preprocessed features (same columns as ``ctx.features``)."""
    labels: np.ndarray
    """int64 ``[m]``: SELL/HOLD/BUY of each row (rows without a label are already dropped)."""
    source: str
    """The synthetic set's directory."""
    generator: str
    """The generator plugin that made it."""


# ------------------------------------------------------------------------ synthetic data


@dataclass(frozen=True)
class GeneratorData:
    """What a generator is fitted on: the train split's rows only, cut at gaps and symbols.

    Like ``PreprocessData`` for ``fit``: positions index these rows; ``segments`` are the runs
    of consecutive bars (a window must not cross one's end). ``features`` holds only the
    channels the user chose (``feature_names``), in the prepared data's own units.
    """

    features: np.ndarray
    """float32 ``[n, k]``: the chosen channels of each train row."""
    feature_names: tuple[str, ...]
    labels: np.ndarray
    """int8 ``[n]``: SELL/HOLD/BUY of each row, -1 where the label is undefined."""
    bars: Bars
    rows: np.ndarray
    """int64 ``[n]``: the prepared row of each row."""
    segments: tuple[tuple[int, int], ...]
    interval_seconds: int
    seed: int = 0
    device: str = "cpu"
    """Where to fit (``cpu``, ``cuda``, ``cuda:N``); sampling uses the same device."""


@dataclass(frozen=True)
class SyntheticSample:
    """What ``Generator.sample`` returns: ``n`` windows of ``window`` steps of the fitted channels."""

    windows: np.ndarray
    """float32 ``[n, L, k]`` in the channels' own units (a row generator: ``L = 1``)."""
    labels: np.ndarray
    """int8 ``[n, L]``: SELL/HOLD/BUY of each step, -1 where unknown."""
    classes: np.ndarray | None = None
    """int8 ``[n]``: the condition class each window was generated for (conditional generators)."""
    class_names: tuple[str, ...] = ()
    """Names of ``classes``' values (``classes == i`` is ``class_names[i]``)."""
    requested: dict[str, float] | None = None
    """The class mix that was asked for (shares summing to 1), for the quality report."""


def _check_common(kind: str, name: str, summary: str, config: Any, code: str | None) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r}: expected kebab-case like 'baseline-mlp'")
    if not summary or "\n" in summary:
        raise ValueError(f"{kind} {name!r}: summary must be one non-empty line")
    if not (isinstance(config, type) and is_dataclass(config)):
        raise ValueError(f"{kind} {name!r}: config must be a dataclass type, got {config!r}")
    if code is not None and not _CODE.match(code):
        raise ValueError(f"{kind} {name!r}: code {code!r} must be A1..K8")


def _check_scope(kind: str, name: str, paradigms: tuple[str, ...], models: tuple[str, ...] | None) -> None:
    bad = [p for p in paradigms if p not in PARADIGMS]
    if bad or not paradigms:
        raise ValueError(f"{kind} {name!r}: paradigms {paradigms!r} must be some of {PARADIGMS}")
    if models is not None and not all(isinstance(m, str) and _NAME.match(m) for m in models):
        raise ValueError(f"{kind} {name!r}: models must be model names, got {models!r}")


RECIPE_SECTIONS = ("labels", "execution", "env", "methods", "preprocess", "train", "plugins")
"""What a model's recipe may set; never the data, the splits or the costs, which are the user's."""


def _check_recipe(name: str, recipe: Mapping[str, Any]) -> None:
    if not isinstance(recipe, Mapping):
        raise ValueError(f"model {name!r}: recipe must be a mapping of run-config sections, got {recipe!r}")
    for key in recipe:
        if key not in RECIPE_SECTIONS:
            raise ValueError(f"model {name!r}: a recipe may set {', '.join(RECIPE_SECTIONS)}, not {key!r}")
    env = recipe.get("env") or {}
    for key in ("fee", "slippage"):
        if key in env:
            raise ValueError(f"model {name!r}: a recipe may not set env.{key} (costs belong to the user's market)")


def applies_to(spec: Any, model: str, paradigm: str) -> bool:
    """Whether a preprocessor or training method declares it works with this model."""
    return paradigm in spec.paradigms and (spec.models is None or model in spec.models)


def scope_text(spec: Any) -> str:
    """What a preprocessor or training method applies to, in words."""
    if spec.models is not None:
        return "models " + ", ".join(spec.models)
    return ", ".join(spec.paradigms) + " models"


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
    recipe: Mapping[str, Any] | None = None
    """The model's default recipe: run-config settings (``labels``, ``execution``, ``methods``,
    ``preprocess``, ``train``, ``plugins`` ...) laid under a run's own, so ``himari train MODEL`` with
    no options trains the recipe, and any option or ``--set`` overrides its part of it
    (``recipe: none`` drops it). It is checked like a run config when the run is built."""
    extras: tuple[str, ...] = ("torch",)
    """Importable modules the plugin needs (a run without them is refused with the pip command)."""
    devices: tuple[str, ...] = ("cpu", "cuda")
    augment: bool = False
    """Whether ``dataset(ctx, "train")`` adds ``ctx.synthetic``'s rows (``himari train --augment``);
    a run with ``--augment`` and a model without it is refused before anything runs."""
    kind: str = field(default="model", init=False)

    def __post_init__(self) -> None:
        _check_common("model", self.name, self.summary, self.config, self.code)
        if self.paradigm not in PARADIGMS:
            raise ValueError(f"model {self.name!r}: paradigm {self.paradigm!r} is not one of {PARADIGMS}")
        if self.recipe is not None:
            _check_recipe(self.name, self.recipe)


@dataclass(frozen=True)
class PreprocessorSpec:
    """A preprocessor plugin. ``factory(config) -> Preprocessor``."""

    name: str
    summary: str
    config: type
    factory: Callable[[Any], Preprocessor]
    code: str | None = None
    extras: tuple[str, ...] = ()
    paradigms: tuple[str, ...] = PARADIGMS
    """Paradigms of the models it may feed (a run pairing it with another is refused up front)."""
    models: tuple[str, ...] | None = None
    """Only these models (None: every model of ``paradigms``)."""
    kind: str = field(default="preprocessor", init=False)

    def __post_init__(self) -> None:
        _check_common("preprocessor", self.name, self.summary, self.config, self.code)
        _check_scope("preprocessor", self.name, self.paradigms, self.models)


@dataclass(frozen=True)
class TrainingMethodSpec:
    """A training-method plugin. ``factory(config) -> TrainingMethod``."""

    name: str
    summary: str
    config: type
    factory: Callable[[Any], TrainingMethod]
    code: str | None = None
    extras: tuple[str, ...] = ()
    paradigms: tuple[str, ...] = PARADIGMS
    """Paradigms of the models it can train (a run pairing it with another is refused up front,
    naming both, instead of failing on a shape inside the loss)."""
    models: tuple[str, ...] | None = None
    """Only these models (None: every model of ``paradigms``)."""
    kind: str = field(default="training-method", init=False)

    def __post_init__(self) -> None:
        _check_common("training-method", self.name, self.summary, self.config, self.code)
        _check_scope("training-method", self.name, self.paradigms, self.models)


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


@dataclass(frozen=True)
class GeneratorSpec:
    """A synthetic-data generator plugin (``himari data augment --method NAME``).
    ``factory(config) -> Generator``."""

    name: str
    summary: str
    config: type
    factory: Callable[[Any], Generator]
    code: str | None = None
    extras: tuple[str, ...] = ()
    output: str = "windows"
    """``windows`` (time-ordered sequences: stylised facts over lags are measured) or ``rows``
    (feature rows without time order)."""
    default_features: tuple[str, ...] = ("ret_1", "hl_range", "vol_rel_1", "rv_48")
    """Channels fitted when the user names none (``--features``); empty: every prepared feature."""
    kind: str = field(default="generator", init=False)

    def __post_init__(self) -> None:
        _check_common("generator", self.name, self.summary, self.config, self.code)
        if self.output not in ("windows", "rows"):
            raise ValueError(f"generator {self.name!r}: output {self.output!r} must be 'windows' or 'rows'")


AnySpec = ModelSpec | PreprocessorSpec | TrainingMethodSpec | TrackerSpec | GeneratorSpec


@runtime_checkable
class Model(Protocol):
    """A model plugin instance.

    Lifecycle, driven by the Trainer (docs/training.md has the loop):

    1. ``factory(config, ModelContext)`` builds it on the CPU; the Trainer moves ``network``
       to the run's device and optimises ``network.parameters()``.
    2. ``dataset(ctx, split)`` gives the training (and validation) data for the model's
       paradigm: an object with ``__len__`` whose ``__getitem__`` takes a ``LongTensor`` of
       indices and returns a batch (``torch.utils.data.TensorDataset`` does). Build it from
       ``ctx.features`` (the preprocessed features), never from the raw prepared features.
       Optionally give it ``example_rows`` (int64 ``[len]``: the prepared row each example
       decides at), so training methods can select examples by row (``curriculum``).
    3. ``loss(batch, ctx)`` returns ``(loss tensor, {name: value})`` for a batch already on
       the device; the model owns its loss (cross-entropy, TD error, policy gradient, ...). A
       value is a float or a one-element tensor (detached): the Trainer brings a step's tensors
       to the host in one copy, where a ``float()`` of each would wait for the GPU each time.
    4. ``act(features, rows)`` returns the action (0 SELL, 1 HOLD, 2 BUY, int8/int64) decided
       at each of ``rows`` of the preprocessed ``features [N, F]``, using rows ``<= t`` only;
       the Trainer calls it in eval mode under ``torch.no_grad()``. The action at row t fills
       at ``open[t+1]``. The conformance harness checks causality.
    5. The Trainer saves ``network.state_dict()``; to restore, it calls the factory with the
       saved config and context and loads the state.

    Optional, for models that need them (the Trainer checks with ``hasattr``):

    - ``cuda_graph_safe = True`` (a class attribute): ``loss`` may be recorded once and replayed
      as a CUDA graph (``train.cuda_graph``): it reads no tensor value on the host (no
      ``float()``, ``.item()``, ``if tensor``), its Python control flow and any Python-number log
      depend only on the config and the batch's shapes, and it changes no Python state between
      steps (in-place updates of tensors, such as a target network's Polyak average, are fine).
    - ``before_training(ctx) -> None``: one-off work before the first training step, called
      by the Trainer each time its training loop starts (so again when a run resumes, after its
      checkpoint is loaded), outside the loss that ``train.compile`` compiles and
      ``train.cuda_graph`` records, with its progress phases shown in the loop's display: a
      phase that trains with an optimiser of its own or toggles ``requires_grad`` (cgdt
      pre-trains its critic here). Skip what the network's state says is done, so a resumed run
      does not redo it.
    - ``act_sequence(features, open, close, ranges, env, execution=None) -> actions``: for
      policies whose decision depends on the account state or on recurrent state. The policy
      decides along each ``(a, b)`` range in order, from a flat account and a fresh state, and
      returns one action per row of the concatenated ranges (the last row of a range takes no
      decision: HOLD). ``env`` is the run's ``EnvConfig``; ``sequential_actions`` does the
      stepping through a 1-env ``VecTradingEnv``. When defined, the Trainer and ``himari
      backtest`` score these actions instead of ``act``'s (``act`` may then raise).
      ``execution`` (keyword, optional to accept): the run's execution rules
      (``ExecutionConfig``: decision interval, minimum holding period, confidence threshold),
      passed only when they can change an action. The policy must then run its decisions
      through an ``ExecutionFilter`` (one per range; ``sequential_actions(..., execution=)``
      does it) before they reach its env, so the account it sees follows the executed
      actions, and return those; for the confidence threshold, give the filter the softmax of
      the policy's action logits (of its Q values for a Q-learning model). A model whose
      ``act_sequence`` lacks the keyword is refused (``ConfigError``) by a run with rules.
    - ``action_probabilities(features, rows) -> [n, 3]``: a stateless model's probabilities
      of SELL, HOLD and BUY at each of ``rows`` (the softmax of its action logits), for the
      execution rules' confidence threshold; a run with a threshold and a stateless model
      without it is refused (``ConfigError``) before training starts.
    - ``rollout(ctx, reset) -> dataset`` (paradigm ``online-rl``, config derived from
      ``OnlineRLConfig``): collect fresh experience with the current policy in envs built from
      ``ctx.env_source`` (``train_env`` does it); ``reset`` is True at the first rollout of each
      epoch: rebuild the envs from ``(ctx.seed, ctx.epoch)`` and zero any recurrent state, so
      runs resume exactly. Return it as a dataset indexed like ``dataset``'s (a
      ``RolloutBuffer``); the Trainer then runs ``update_epochs`` passes of ``n_minibatches``
      minibatches through ``loss``. ``dataset`` is not called for such a model.
    - ``task_rollout(ctx) -> dataset`` (online RL): one rollout like ``rollout``'s with the
      current weights, in fresh envs built from ``ctx.env_source`` and seeded by ``(ctx.seed,
      ctx.epoch)`` from a zero recurrent state, leaving the training rollouts' envs and state as
      they are (and no warm start or other first-rollout work): the task rollouts of
      meta-learning (``maml``), which builds an ``EnvSource`` per task window.
    - ``action_logits(batch) -> tensor [B, A]``: the policy's action logits on a training batch,
      for training methods that regularise the policy (``confidence-penalty``).
    - ``init_roles() -> {name: role}``: which layers of ``network`` are the policy head, the
      value head, hidden, plain biases, or to be left alone, for training methods that
      re-initialise the network (``orthogonal-init``; docs/plugins.md, "Layer roles").
    - ``reinitialised() -> None``: called after such a method changed the weights (a model
      keeping copies of them, such as target networks, refreshes them).
    - ``trunk_size() -> int`` and ``trunk(batch) -> (features [..., H], rows [...])``: the
      shared representation the action head reads (width ``H``), for training methods that put
      heads of their own on it (``multi-task``). ``trunk`` takes a training batch (as ``loss``
      does) and returns one float vector per decision in it, with its leading shape matching
      ``rows``, an int64 tensor of the prepared row each decision was taken at (``-1`` where the
      decision is not at a prepared row: a synthetic bar, padding). It runs the network again,
      with gradients, and must change no state of the network (running statistics, counters).
    - ``trunk_sequence(features, open, close, ranges, env) -> [n, H]``: for a model with
      ``act_sequence``, the trunk's representation at each row of the concatenated ranges as
      the policy acts through them (arg-max, from a flat account), NaN at rows without a decision
      (the last row of each range); ``sequential_trunk`` does the stepping. Used to score such
      heads on the validation split.
    - ``step_logits(obs, starts, state) -> (logits [n, A], next_state)``: for a model with
      ``act_sequence``, one step of its policy exactly as ``act_sequence`` takes it (its
      arg-max is the decision): ``obs`` a float tensor ``[n, D]`` on the network's device (the
      env observation: the ``F`` market features, then the account columns), ``starts`` a bool
      array ``[n]`` marking episode starts (reset the recurrent state there), ``state`` what the
      previous step returned (None: a fresh state). Differentiable in ``obs``: ``himari
      robustness`` attacks a stateful policy along its path through it. It must change no state
      of the network.
    """

    network: Any
    paradigm: str

    def dataset(self, ctx: TrainContext, split: str) -> Any: ...

    def loss(self, batch: Any, ctx: TrainContext) -> tuple[Any, dict[str, Any]]: ...

    def act(self, features: np.ndarray, rows: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Preprocessor(Protocol):
    """Lifecycle: ``fit(data)`` once on the train split's rows only, then ``transform(data)`` on
    every prepared row, causally (row t's output uses rows ``<= t``; a filter restarts at each
    of ``data.segments``). ``state_dict()`` is saved with the run and given back through
    ``load_state_dict`` when the run is resumed or backtested: plain JSON values, and NumPy
    arrays or torch tensors anywhere inside (saved beside the JSON, verified by a hash).

    Optional: ``output_names(input_names) -> names`` when ``transform`` changes the columns
    (appended filter states, say); otherwise the input names carry over.
    """

    def fit(self, data: PreprocessData) -> None: ...

    def transform(self, data: PreprocessData) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainingMethod(Protocol):
    """A training method hooks into named points of the Trainer's loop (``HOOK_POINTS``; the
    order of calls is in docs/plugins.md). Every hook is optional; the Trainer calls those a
    method defines, in ``--method`` order:

    - ``env_config(env, ctx) -> EnvConfig``: the run's costs, mode and shaping (training and
      evaluation), once at set-up, after preprocessing (``ctx.features`` and ``ctx.splits`` are
      set; ``ctx.model`` is not: the model is built with the costs returned here).
    - ``model_built(model, ctx) -> {name: nn.Module} | None``: the model is built and on its
      device, before the optimiser exists. Change ``model.network`` in place (re-initialise its
      weights) and/or return modules of your own (a multi-task head): the Trainer moves them to
      the device, trains them with the network, and saves and restores them in the checkpoints.
      Also called when a run is restored (``himari backtest``) before its weights are loaded, with
      ``ctx.data`` None, so it must build the same modules; ``policy.method_modules`` holds them.
    - ``dataset(dataset, ctx, split) -> dataset``: wrap or replace a split's training data, once.
    - ``epoch_start(epoch, ctx) -> None``: before each epoch (curricula, schedules).
    - ``epoch_dataset(dataset, ctx) -> dataset``: the train data of this epoch (a curriculum
      stage); its length sets the epoch's number of batches.
    - ``env_source(source, ctx) -> EnvSource``: online RL, at each epoch start: the market and
      env config the training envs are rebuilt on.
    - ``rollout_observations(obs, starts, state, policy, ctx) -> obs``: online RL (models that
      collect through ``EnvRollout``), every step of every rollout, before the policy acts: the
      observations ``[n_envs, ...]`` the policy sees instead of ``obs`` (the rollout stores
      them). ``policy(obs, starts, state) -> (logits, values, state)`` is the model's step,
      differentiable in ``obs`` (the call runs under ``torch.no_grad()``: enable gradients to
      take them); ``starts`` (or None) and ``state`` are the step's. Return a new tensor; never
      change ``obs`` in place.
    - ``on_rollout(rollout, ctx) -> None``: online RL, each collected rollout before the updates
      (change ``rollout.rewards`` and the advantages are recomputed).
    - ``loss_terms(model, batch, ctx) -> {name: tensor}``: added to the model's loss.
    - ``before_optimizer_step(model, optimizer, ctx) -> {name: float} | None``: after backward
      (gradients unscaled), before gradient clipping and the step (gradient surgery,
      meta-learning updates).
    - ``outer_loop(fit, ctx) -> None``: wraps the whole epoch loop; must call ``fit()``.
    - ``epoch_end(epoch, ctx) -> {name: float} | None``: after each epoch's validation scoring,
      before its checkpoints (rank 0 only; the network is in eval mode); the values are logged
      in that epoch's record as ``validation/<method>/<name>``.
    - ``after_training(policy, ctx) -> dict | None``: after the final evaluation, with the best
      model (``policy.actions(data, ranges)``, ``policy.features(data)``, ``policy.model``) and
      ``ctx.splits``; a returned dict is saved in ``summary.json`` under ``methods.<name>``.
    - ``state_dict()``/``load_state_dict(state)``: JSON-ready state kept in checkpoints.

    Outside training, ``himari backtest RUN --adapt-bars N`` calls (for a run trained with the method):

    - ``adapt(model, ctx) -> dict | None``: fine-tune the restored ``model`` in place on the
      examples ``model.dataset`` builds from ``ctx.splits["adapt"]`` (the first bars of an
      evaluation range whose labels are known by its N-th bar); the model then acts on the bars
      after them. ``ctx.features`` are the run's preprocessed features of ``ctx.data``; ``ctx.labels``
      its labels. ``ctx.splits["adapt_bars"]`` holds the N bars themselves ``[(a, a + N)]`` (an
      online-RL model adapts on rollouts over them: rewards read prices, not labels), and
      ``ctx.observation_filter`` the run's filter. The backtest restores the trained weights
      before the next range.
    """


@runtime_checkable
class ObservationFilter(Protocol):
    """What an online-RL policy sees, normalised: observations (and the rewards it learns from)
    through running statistics, as stable-baselines3's ``VecNormalize`` does.

    A training method installs one by returning it among its ``model_built`` modules: an
    ``nn.Module`` with these three methods, whose buffers are its state. The Trainer then moves
    it to the run's device, keeps it in every checkpoint (``best.pt`` holds the statistics the
    best weights were trained with), gives it back on ``--resume`` and in ``himari backtest``,
    and sets ``ctx.observation_filter``. At most one filter per run; a run of a model without
    ``rollout`` is refused.

    - ``reset(n_envs)``: the training envs were (re)built (each epoch start): clear per-env
      state such as a discounted-return accumulator.
    - ``observations(obs, update)``: ``obs`` is ``[N, D]`` (window 1) or ``[N, W, D]`` (the
      last W bars, oldest first), a torch tensor on the policy's device during training or a
      NumPy float32 array at evaluation; return the same kind, shape and dtype. ``EnvRollout``
      calls it with ``update=True`` on every observation the envs return (the first after a
      reset included) before the policy sees it and the rollout stores it, and with
      ``update=False`` on the final observation of a truncated episode (its bootstrap value).
      Every evaluation (validation, test, ``himari backtest``: ``sequential_actions`` inside
      ``observation_filter(f)``) calls it with ``update=False``: evaluation data never changes
      the statistics.
    - ``rewards(rewards, dones, update)``: ``rewards [N]`` (float32) and ``dones [N]`` (bool,
      the episodes that ended at this step) as torch tensors, each training step before the
      rewards enter the ``RolloutBuffer``; returns the rewards the policy learns from.
    """

    def reset(self, n_envs: int) -> None: ...

    def observations(self, obs: Any, update: bool) -> Any: ...

    def rewards(self, rewards: Any, dones: Any, update: bool) -> Any: ...


HOOK_POINTS = ("env_config", "model_built", "dataset", "epoch_start", "epoch_dataset", "env_source",
               "on_rollout", "rollout_observations", "loss_terms", "before_optimizer_step", "outer_loop", "epoch_end", "after_training")


class Tracker(Protocol):
    """Lifecycle: ``start(run_dir, config, resume)`` once (``resume`` is None for a new run,
    else ``{"records": n, "step": s}``: keep the first n records, drop anything logged after
    step s), ``log(step, metrics)`` any number of times (``metrics`` maps names like
    ``train/loss`` or ``validation/sharpe`` to floats), ``finish(summary)`` once at the end."""

    def start(self, run_dir: Any, config: dict[str, Any], resume: dict[str, Any] | None) -> None: ...

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...


@runtime_checkable
class Generator(Protocol):
    """A synthetic-data generator (``himari data augment``; docs/plugins.md, "Generators").

    Lifecycle: ``fit(data)`` once on a ``GeneratorData`` holding the train split's rows only
    (the caller never hands it a validation or test row); ``sample(n, seed=...)`` any number of
    times, returning a ``SyntheticSample`` of ``n`` windows, the same for the same seed and
    state on the CPU; ``state_dict()`` (plain JSON values and NumPy arrays or torch tensors
    anywhere inside) is saved beside the set and given back through ``load_state_dict``, after
    which ``sample`` gives what the fitted generator gave. ``window`` is the length of the
    windows it samples (1 for a row generator).

    A conditional generator takes the class mix to generate from its config and returns the
    class of each window (``SyntheticSample.classes``) with the mix asked for. Optional:
    ``classify(windows) -> int array [n]`` (-1 where it cannot tell): the class each window
    actually falls in by the generator's own rules, so the quality report can show whether the
    generated set holds what was asked.
    """

    window: int

    def fit(self, data: GeneratorData) -> None: ...

    def sample(self, n: int, *, seed: int = 0) -> SyntheticSample: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def spec_kind(spec: Any) -> str:
    kind = getattr(spec, "kind", None)
    if kind not in KINDS:
        raise TypeError(f"not a himari plugin spec: {spec!r}")
    return str(kind)


def names(specs: Iterable[Any]) -> Sequence[str]:
    return [s.name for s in specs]


# ------------------------------------------------------------- helpers, imported on first use

_HELPERS = {
    # the native core
    "Market": "himari.engine", "VecTradingEnv": "himari.engine", "replay_actions": "himari.engine",
    "backtest_signals": "himari.engine", "ekf": "himari.engine", "EKFParams": "himari.engine",
    "fan_residuals": "himari.engine",
    "ACTION_NAMES": "himari.engine", "cuda_available": "himari.engine",
    # data
    "rows_of": "himari.data.splits", "FEATURE_NAMES": "himari.data.features",
    "TabularDataset": "himari.data.datasets", "TransitionDataset": "himari.data.datasets",
    "TrajectoryDataset": "himari.data.datasets", "SequenceDataset": "himari.data.datasets",
    "discounted_returns": "himari.data.datasets", "holding_log_returns": "himari.data.datasets",
    "fit_zscore": "himari.data.normalize",
    "apply_zscore": "himari.data.normalize",
    # preprocessors over time: where a filter restarts, refused input
    "filter_ranges": "himari.training.preprocess", "require_finite": "himari.training.preprocess",
    "contiguous_segments": "himari.training.preprocess", "to_device": "himari.training.device",
    "require_n_features": "himari.training.preprocess",
    # online RL
    "OnlineRLConfig": "himari.training.rl", "RolloutBuffer": "himari.training.rl", "gae": "himari.training.rl",
    "train_env": "himari.training.rl", "sequential_actions": "himari.training.rl",
    "sequential_trunk": "himari.training.rl",
    "observation_filter": "himari.training.rl", "active_observation_filter": "himari.training.rl",
    "EnvRollout": "himari.training.rollout", "PPOConfig": "himari.training.ppo", "ppo_loss": "himari.training.ppo",
    "value_loss": "himari.training.ppo",
    # initialisation
    "init_orthogonal": "himari.training.orthogonal", "orthogonal_tensor_": "himari.training.orthogonal",
    "is_orthogonal_layer": "himari.training.orthogonal",
    # evaluation
    "evaluate_actions": "himari.evaluation.policy", "collapse": "himari.evaluation.policy",
    "action_distribution": "himari.evaluation.policy",
    "linf_attack": "himari.evaluation.attacks", "random_corner": "himari.evaluation.attacks",
    # counterfactual price paths: features and labels recomputed from modified bars
    "counterfactual_data": "himari.training.counterfactual", "counterfactual_context": "himari.training.counterfactual",
    "counterfactual_env_source": "himari.training.counterfactual",
    "CounterfactualMethod": "himari.training.counterfactual", "bar_offsets": "himari.training.counterfactual",
    "bars_from_offsets": "himari.training.counterfactual",
    # execution rules
    "ExecutionConfig": "himari.training.config", "ExecutionFilter": "himari.evaluation.execution",
    "record_decisions": "himari.evaluation.execution",
    # progress of long phases, files
    "phase": "himari.progress", "write_text_atomic": "himari.data.atomic",
    # synthetic data (generators)
    "window_starts": "himari.data.windows", "take_windows": "himari.data.windows",
    "require_windows": "himari.data.windows", "check_finite": "himari.data.windows",
    "MinMaxScaler": "himari.data.windows", "QuantileNormal": "himari.data.windows",
    "torch_generator": "himari.data.windows",
    # a fixed-shape step replayed as a CUDA graph
    "GraphReplay": "himari.training.graph_replay", "graph_recording": "himari.training.graph_replay",
    # errors
    "HimariError": "himari.errors", "ConfigError": "himari.errors", "DataError": "himari.errors",
    "TrainingError": "himari.errors",
}


def __getattr__(name: str) -> Any:
    module = _HELPERS.get(name)
    if module is None:
        raise AttributeError(f"module 'himari.plugin.api' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HELPERS])


__all__ = [
    "AnySpec", "Bars", "EnvConfig", "EnvSource", "Generator", "GeneratorData", "GeneratorSpec", "HOOK_POINTS",
    "KINDS", "Model", "ModelContext", "ModelSpec", "ObservationFilter", "PARADIGMS", "ParamCount",
    "PreprocessData", "Preprocessor", "PreprocessorSpec", "RewardConfig", "SyntheticRows", "SyntheticSample",
    "Tracker", "TrackerSpec", "TrainContext", "TrainingMethod", "TrainingMethodSpec", "applies_to", "hookimpl",
    "scope_text",
    *_HELPERS,
]
