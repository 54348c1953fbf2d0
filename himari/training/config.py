"""Run configuration: the YAML file, command-line options and ``--set key=value`` overrides,
merged in that order and checked against the Trainer's own settings and each plugin's
``<Name>Config``. Unknown keys and wrong types are ``ConfigError``s naming the dotted key.

A run config (also what ``config.yaml`` in a run directory holds, with every default filled)::

    model: baseline-mlp
    data: null                    # prepared dir or bars file; null = the synthetic market
    train: {epochs: 10, batch_size: 512, lr: 0.001, seed: 0, device: auto, ...}
    env: {fee: 0.001, slippage: 0.0005, mode: long_flat}
    execution: {decision_interval: 1, min_hold: 0, confidence: 0.0, select: false, ...}
    preprocess: [zscore]          # null = the model's default
    methods: []
    augment: null                 # a synthetic set (himari data augment) added to the train split
    labels: null                  # the run's own labeler, e.g. {name: forward-return, horizon: 48}
    recipe: default               # default: the model's recipe under these settings; none: without
    trackers: [jsonl]
    plugins:                      # per-plugin settings, by plugin name
      baseline-mlp: {loss: focal}
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from himari.errors import ConfigError
from himari.plugin.api import EnvConfig
from himari.plugin.config import build_config, config_to_dict, unknown_key_error
from himari.training.device import DEVICE_NAMES, is_device_name


@dataclass(frozen=True)
class TrainConfig:
    """The Trainer's own settings (the ``train:`` section)."""

    epochs: int = 10
    """Passes over the training data (early stopping may end sooner)."""
    batch_size: int = 512
    """Training examples per optimiser step."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    seed: int = 0
    """Seeds python, numpy, torch and the data order; same seed on CPU gives the same run."""
    device: str = "auto"
    """auto (cuda when available), cpu, cuda or cuda:N."""
    amp: bool = True
    """Mixed precision (bf16, or fp16 with loss scaling) of the training steps on CUDA; ignored on
    the CPU. The model's actions for validation and test scores are computed in float32."""
    cuda_graph: bool = False
    """Replay each optimiser step as CUDA graphs (recorded after two eager steps of each batch
    shape): for small networks, whose steps on a GPU are bound by launching kernels, not by
    computing. For models that declare their loss graph-safe (baseline-mlp, cql), without
    training methods that add loss terms or act before the optimiser step, one device, no
    gradient accumulation; another run with it is refused. Ignored on the CPU."""
    compile: bool = False
    """Compile the loss and its backward with torch.compile before the first step, fusing its
    small elementwise operations into fewer kernels; with cuda_graph the compiled step is what is
    recorded, AdamW's update compiled too. Costs seconds of compilation at the start of each
    run; float rounding away from an uncompiled run. For the same models and runs as cuda_graph
    (another run is refused; cgdt's loss, which takes a gradient inside itself, stops at its
    first step), on the GPU or the CPU (which needs a C++ compiler)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables."""
    grad_accum_steps: int = 1
    """Micro-batches per optimiser step: each batch (online RL: each minibatch of env sequences) is
    split into this many parts, each run forward and backward on its own with its share of the
    loss, then one clipped optimiser step: the same update with about 1/k of the activation
    memory (statistics taken per batch, such as PPO's advantage normalisation, are then per part)."""
    patience: int = 3
    """Stop after this many epochs without a better validation Sharpe; 0 disables."""
    checkpoint_every: int = 200
    """Write checkpoints/last.pt every N optimiser steps (and at each epoch end)."""
    log_every: int = 50
    """Log the running training loss every N steps."""
    max_steps_per_epoch: int = 0
    """Cap on optimiser steps per epoch (smoke runs); 0 means the whole epoch."""
    drop_last: bool = True
    """Drop the last incomplete batch of each epoch (BatchNorm needs more than one row)."""
    deterministic: bool = True
    """Ask torch for deterministic kernels."""
    progress: bool = True
    """Rich progress bars when the console is a terminal."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ValueError(f"grad_clip must be a finite number >= 0 (0 disables clipping), got {self.grad_clip}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed}")
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.patience < 0 or self.max_steps_per_epoch < 0:
            raise ValueError("patience and max_steps_per_epoch must be >= 0")
        if not is_device_name(self.device):
            raise ValueError(f"device must be {DEVICE_NAMES}, got {self.device!r}")


@dataclass(frozen=True)
class ExecutionConfig:
    """Execution rules (the ``execution:`` section): trade less than the model would, for every
    model (``himari.evaluation.execution``). The defaults change nothing."""

    decision_interval: int = 1
    """Decide only every k bars of a range (HOLD in between); 1 decides at every bar."""
    min_hold: int = 0
    """Keep a position at least this many bars after a change (an earlier change becomes HOLD); 0 or 1: off."""
    confidence: float = 0.0
    """Act only when the top action's probability exceeds this (softmax of the model's action logits, or of
    its Q values for a Q-learning model such as cql), else HOLD; 0: off."""
    in_rollouts: bool = False
    """Online models (ppo-lstm, flag-trader): collect their training experience under these rules too, so the
    policy learns in the market it is evaluated in (its sampled action is what it learns from; the env executes
    the filtered one). Needs rules that change something, and not select (rules chosen after training)."""
    select: bool = False
    """After training, choose the three from the grids below by the best validation Sharpe after costs
    (ties: fewer trades, then smaller values); the test split and himari backtest then use the choice."""
    grid_decision_interval: tuple[int, ...] = (1, 3, 6, 12)
    """Decision intervals tried when select is on."""
    grid_min_hold: tuple[int, ...] = (0, 6, 24)
    """Minimum holding periods tried when select is on."""
    grid_confidence: tuple[float, ...] = (0.0, 0.5, 0.6)
    """Confidence thresholds tried when select is on."""

    def __post_init__(self) -> None:
        _check_interval(self.decision_interval, "decision_interval")
        _check_hold(self.min_hold, "min_hold")
        _check_confidence(self.confidence, "confidence")
        if self.in_rollouts not in (True, False):
            raise ValueError(f"in_rollouts must be true or false, got {self.in_rollouts!r}")
        if self.in_rollouts and self.select:
            raise ValueError("in_rollouts: the rules must be fixed before training, and select chooses them after it; "
                             "set decision_interval, min_hold or confidence and turn select off")
        if self.in_rollouts and not self.active:
            raise ValueError("in_rollouts: the rules change nothing (decision_interval 1, min_hold 0, confidence 0); "
                             "set at least one of them")
        for name, check in (("grid_decision_interval", _check_interval), ("grid_min_hold", _check_hold),
                            ("grid_confidence", _check_confidence)):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must list at least one value")
            for i, v in enumerate(values):
                check(v, f"{name}[{i}]")

    @property
    def active(self) -> bool:
        """Whether the rules (not the grids) can change any action."""
        from himari.evaluation.execution import active

        return active(self)

    def grid(self) -> list[ExecutionConfig]:
        """The rules of every combination of the grids (select off), in order."""
        from himari.evaluation.execution import grid

        return [ExecutionConfig(decision_interval=k, min_hold=m, confidence=c)
                for k, m, c in grid(self.grid_decision_interval, self.grid_min_hold, self.grid_confidence)]

    def rules(self, decision_interval: int, min_hold: int, confidence: float) -> ExecutionConfig:
        """These values with select off (a choice of the grid)."""
        return ExecutionConfig(decision_interval=decision_interval, min_hold=min_hold, confidence=confidence)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_interval(v: Any, name: str) -> None:
    if not (_int(v) and v >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def _check_hold(v: Any, name: str) -> None:
    if not (_int(v) and v >= 0):
        raise ValueError(f"{name} must be an integer >= 0, got {v!r}")


def _check_confidence(v: Any, name: str) -> None:
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1):
        raise ValueError(f"{name} must be a number in [0, 1), got {v!r}")


TOP_LEVEL = ("model", "data", "splits", "train", "env", "execution", "preprocess", "methods", "augment",
             "labels", "recipe", "trackers", "plugins")
RECIPES = ("default", "none")
"""``recipe: default`` lays the model's recipe (``ModelSpec.recipe``) under the run's own settings;
``none`` runs the model with the plain settings alone."""
SPLIT_NAMES = ("train", "validation", "test")


@dataclass
class RunConfig:
    """A validated run: names of the plugins it uses and their built config instances."""

    model: str
    data: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    """Execution rules applied to the model's actions when it is evaluated."""
    preprocess: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    trackers: list[str] = field(default_factory=lambda: ["jsonl"])
    plugin_configs: dict[str, Any] = field(default_factory=dict)
    """Config instance per plugin name used by the run."""
    splits: dict[str, list[tuple[int, int]]] | None = None
    """Row ranges of train/validation/test instead of the prepared data's own (a walk-forward
    fold of ``himari evaluate``); None: the data's splits."""
    augment: str | None = None
    """A synthetic set (``himari data augment``) whose rows the model adds to its train split."""
    labels: dict[str, Any] | None = None
    """The run's own labeler and its parameters (``himari.training.relabel``); None: the data's labels."""
    recipe: str = "default"
    """Whether the model's recipe was laid under the settings (``default``) or not (``none``)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data with every default filled: written as the run's config.yaml."""
        return {
            "model": self.model,
            "data": self.data,
            "splits": None if self.splits is None else {k: [list(r) for r in v] for k, v in self.splits.items()},
            "train": config_to_dict(self.train),
            "env": config_to_dict(self.env),
            "execution": config_to_dict(self.execution),
            "preprocess": list(self.preprocess),
            "methods": list(self.methods),
            "augment": self.augment,
            "labels": None if self.labels is None else dict(self.labels),
            "recipe": self.recipe,
            "trackers": list(self.trackers),
            "plugins": {name: config_to_dict(c) for name, c in self.plugin_configs.items()},
        }


def _names(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{key}: expected a list of plugin names, got {value!r}")


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a config file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the config file ({' '.join(str(e).split())})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({' '.join(str(e).split())})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def refuse_fixed_sets(sets: Sequence[str], fixed: dict[str, str], who: str, option: str = "--set") -> None:
    """Refuse a ``--set`` of a setting that ``who`` (an evaluation, a sweep) sets for every run
    itself: ``fixed`` maps each such key (``data``, ``train.seed``) to the option that sets it.
    The run would otherwise train on what the assignment says while the results are scored and
    labelled as the option says (``--set data=B`` trained every run on another data set)."""
    train_keys = set(TrainConfig.__dataclass_fields__)
    for assignment in sets:
        key = assignment.partition("=")[0].strip()
        parts = key.split(".")
        if len(parts) == 1 and parts[0] not in TOP_LEVEL and parts[0].replace("-", "_") in train_keys:
            parts = ["train", parts[0].replace("-", "_")]
        for taken, how in fixed.items():
            if ".".join(parts[:len(taken.split("."))]) == taken:
                raise ConfigError(f"{option} {key}: {who} sets {taken} for every run; use {how}")


def apply_set(raw: dict[str, Any], assignment: str, plugin_names: set[str]) -> None:
    """Apply one ``--set key.sub=value`` (value parsed as YAML) to the raw config in place.

    Shorthands: a first key naming a ``train`` setting means ``train.<key>``; one naming a plugin
    means ``plugins.<name>``.
    """
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    key, _, text = assignment.partition("=")
    key = key.strip()
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    if not key or not all(parts):
        raise ConfigError(f"--set {assignment!r}: empty key")
    train_keys = set(TrainConfig.__dataclass_fields__)
    if parts[0] not in TOP_LEVEL:
        if len(parts) == 1 and parts[0].replace("-", "_") in train_keys:
            parts = ["train", parts[0]]
        elif parts[0] in plugin_names:
            parts = ["plugins", *parts]
        else:
            raise unknown_key_error(key, [*TOP_LEVEL, *sorted(train_keys)], "the run config")
    node = raw
    for i, p in enumerate(parts[:-1]):
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: is not a section, cannot set {key}")
        node = child
    if value is None and isinstance(node.get(parts[-1]), dict) and node[parts[-1]]:
        # a section of settings set to null would silently drop every one given before it
        # (--epochs 1 --set train=null trained for the default epochs)
        raise ConfigError(f"--set {assignment!r}: would drop the {key} settings given before it; set its keys "
                          f"({key}.NAME=VALUE)")
    node[parts[-1]] = value


def resolve_run_config(raw: dict[str, Any], plugins: Any, add_methods: Sequence[str] = ()) -> RunConfig:
    """Validate ``raw`` against the Trainer settings and the plugins' configs; ``add_methods``
    are appended to its training methods (the recipe's included) where they are not listed."""
    for key in raw:
        if key not in TOP_LEVEL:
            raise unknown_key_error(str(key), list(TOP_LEVEL), "the run config")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError("model: expected a model name (see himari plugins list --kind model)")
    model_spec = plugins.models().get(model)
    recipe = raw.get("recipe", "default")
    if recipe not in RECIPES:
        raise ConfigError(f"recipe: expected one of {', '.join(RECIPES)}, got {recipe!r}")
    if recipe == "default" and getattr(model_spec, "recipe", None):
        own = model_spec.recipe
        if raw.get("augment") is not None and "labels" not in raw:
            # a synthetic set carries the labels it was generated with: the recipe's step aside
            own = {k: v for k, v in own.items() if k != "labels"}
        raw = with_recipe(raw, own)
    for name in add_methods:  # after the recipe: an option turning a method on keeps the recipe's methods
        methods = _names(raw.get("methods"), "methods")
        if name not in methods:
            raw = {**raw, "methods": [*methods, name]}
    from himari.training.relabel import check_labels_section

    labels = check_labels_section(raw.get("labels"))
    data = raw.get("data")
    if data is not None and not isinstance(data, (str, os.PathLike)):
        raise ConfigError(f"data: expected a path, got {data!r}")
    splits = parse_splits(raw.get("splits"))
    augment = raw.get("augment")
    if augment is not None:
        if not isinstance(augment, (str, os.PathLike)) or not str(augment):
            raise ConfigError(f"augment: expected the path of a synthetic set, got {augment!r}")
        from himari.training.augment import check_model_augments

        check_model_augments(model, model_spec, plugins)
    train = build_config(TrainConfig, raw.get("train"), "train")
    env = build_config(EnvConfig, raw.get("env"), "env")
    execution = build_config(ExecutionConfig, raw.get("execution"), "execution")
    preprocess = (_names(raw["preprocess"], "preprocess") if raw.get("preprocess") is not None
                  else list(model_spec.default_preprocess))
    methods = _names(raw.get("methods"), "methods")
    trackers = _names(raw.get("trackers"), "trackers")
    if "jsonl" not in trackers:
        trackers.insert(0, "jsonl")
    used: dict[str, Any] = {model: model_spec}
    for names, reg in ((preprocess, plugins.preprocessors()), (methods, plugins.training_methods()),
                       (trackers, plugins.trackers())):
        seen = set()
        for name in names:
            if name in seen:
                raise ConfigError(f"{reg.kind} {name!r} is listed twice")
            seen.add(name)
            spec = reg.get(name)
            if name in used and used[name] is not spec:
                raise ConfigError(f"{name!r} names two plugins of this run ({used[name].kind} and "
                                  f"{spec.kind}); their settings would be ambiguous")
            used[name] = spec
    check_compatible(model, model_spec.paradigm, [plugins.preprocessors().get(n) for n in preprocess]
                     + [plugins.training_methods().get(n) for n in methods])
    sections = raw.get("plugins") or {}
    if not isinstance(sections, dict):
        raise ConfigError(f"plugins: expected a mapping of plugin name to settings, got {sections!r}")
    for name in sections:
        if name not in used:
            raise unknown_key_error(f"plugins.{name}", sorted(used), "the plugins this run uses")
    configs = {name: build_config(spec.config, sections.get(name), f"plugins.{name}")
               for name, spec in used.items()}
    return RunConfig(model=model, data=None if data is None else str(data), train=train, env=env,
                     execution=execution, preprocess=preprocess, methods=methods, trackers=trackers, plugin_configs=configs, splits=splits,
                     augment=None if augment is None else str(augment), labels=labels, recipe=recipe)


def with_recipe(raw: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """``raw`` laid over a model's ``recipe``: a setting ``raw`` gives wins; sections (mappings)
    merge key by key; a list (``methods``, ``preprocess``) given in ``raw`` replaces the recipe's,
    and so do ``labels`` that name a labeler (its parameters are not the recipe labeler's)."""
    def merge(base: Any, top: Any) -> Any:
        if isinstance(base, dict) and isinstance(top, dict):
            out = dict(base)
            for k, v in top.items():
                out[k] = merge(base.get(k), v) if k in base else v
            return out
        return top

    user_labels = raw.get("labels")
    if isinstance(user_labels, dict) and "name" in user_labels:  # another labeler: its own parameters only
        recipe = {k: v for k, v in recipe.items() if k != "labels"}
    out = merge(recipe, raw)
    for key in ("preprocess", "methods"):  # an explicit null in raw is "not given", as without a recipe
        if key in raw and raw[key] is None and key in recipe:
            out[key] = recipe[key]
    return out


def resolve_data_path(data: str | None, run_dir: str | os.PathLike[str] | None = None) -> str | None:
    """An absolute data path. Runs record their data absolutely, so they can be resumed and
    backtested from any directory; a relative path (a run written by an older himari, or a
    config file) is taken from the working directory, else from the run directory."""
    if data is None:
        return None
    p = Path(data).expanduser()
    if p.is_absolute():
        return str(p)
    if not p.exists() and run_dir is not None and (Path(run_dir) / p).exists():
        return str((Path(run_dir) / p).resolve())
    return str(p.resolve())


def load_run_config(run_dir: str | os.PathLike[str], plugins: Any) -> RunConfig:
    """The validated config of an existing run directory; a damaged ``config.yaml`` is a
    ``ConfigError`` naming the file."""
    path = Path(run_dir) / "config.yaml"
    raw = load_yaml(path)
    try:
        run = resolve_run_config(raw, plugins)
    except ConfigError as e:
        raise type(e)(f"{path}: {e}") from None
    run.data = resolve_data_path(run.data, run_dir)
    run.augment = resolve_data_path(run.augment, run_dir)
    return run


def require_run_extras(run: RunConfig, plugins: Any) -> None:
    """Refuse a run whose model, preprocessors, methods or trackers need a package that is not
    installed (torch first: every model needs it), before anything is created."""
    from himari.plugin.extras import require_modules, require_spec

    require_modules(["torch"], "training")
    require_spec(plugins.models().get(run.model))
    for names, registry in ((run.preprocess, plugins.preprocessors()), (run.methods, plugins.training_methods()),
                            (run.trackers, plugins.trackers())):
        for name in names:
            require_spec(registry.get(name))


def parse_splits(value: Any) -> dict[str, list[tuple[int, int]]] | None:
    """``splits:`` of a run config: train, validation and test, each a list of ``[start, stop)``
    row ranges, sorted, non-empty and not overlapping one another. Whether they fit the data is
    checked when the data is opened (``check_splits``)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != set(SPLIT_NAMES):
        raise ConfigError(f"splits: expected a mapping with train, validation and test, got {value!r}")
    out: dict[str, list[tuple[int, int]]] = {}
    for name in SPLIT_NAMES:
        ranges = value[name]
        if not isinstance(ranges, list) or not ranges:
            raise ConfigError(f"splits.{name}: expected a non-empty list of [start, stop) row ranges")
        parsed = []
        for r in ranges:
            if (not isinstance(r, (list, tuple)) or len(r) != 2 or not all(isinstance(x, int) and not isinstance(x, bool)
                                                                            for x in r) or not 0 <= r[0] < r[1]):
                raise ConfigError(f"splits.{name}: {r!r} is not a [start, stop) range of row numbers with start < stop")
            parsed.append((int(r[0]), int(r[1])))
        if any(b[0] < a[1] for a, b in zip(parsed, parsed[1:])):
            raise ConfigError(f"splits.{name}: ranges must be sorted and must not overlap")
        out[name] = parsed
    rows = sorted((a, b, name) for name, rs in out.items() for a, b in rs)
    for (a1, b1, n1), (a2, b2, n2) in zip(rows, rows[1:]):
        if a2 < b1:
            raise ConfigError(f"splits: {n1} range [{a1}, {b1}) overlaps {n2} range [{a2}, {b2})")
    return out


def check_splits(splits: dict[str, list[tuple[int, int]]], n_rows: int, where: str) -> None:
    """Every range of ``splits`` lies inside the data's ``n_rows`` rows."""
    for name, ranges in splits.items():
        for a, b in ranges:
            if b > n_rows:
                raise ConfigError(f"splits.{name}: range [{a}, {b}) goes past the {n_rows} rows of {where}")


def check_compatible(model: str, paradigm: str, specs: list[Any]) -> None:
    """Refuse a preprocessor or training method that does not declare it works with the model
    (its spec's ``paradigms`` and ``models``), before anything runs, naming both."""
    from himari.plugin.api import applies_to, scope_text

    for spec in specs:
        if not applies_to(spec, model, paradigm):
            raise ConfigError(f"{spec.kind.replace('-', ' ')} {spec.name!r} does not apply to model {model!r} ({paradigm}): "
                              f"it works with {scope_text(spec)}")


def merge_run_config(*, plugins: Any, config_file: str | None = None, overrides: dict[str, Any] | None = None,
                     sets: list[str] | None = None, add_methods: list[str] | None = None) -> RunConfig:
    """YAML file, then command-line options (``overrides``: dotted key -> value, None skipped),
    then ``--set`` assignments; validated. ``add_methods`` are appended to the run's training
    methods where it does not list them yet (an option that sets a method's field turns the
    method on). The data path is made absolute (from the working directory) so the run can be
    used from anywhere."""
    raw: dict[str, Any] = load_yaml(config_file) if config_file else {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{p}: is not a section")
        node[last] = value
    names = {n for k in ("model", "preprocessor", "training-method", "tracker") for n in plugins.registry(k).names()}
    for s in sets or []:
        apply_set(raw, s, names)
    run = resolve_run_config(raw, plugins, add_methods or ())
    run.data = resolve_data_path(run.data)
    run.augment = resolve_data_path(run.augment)
    return run
