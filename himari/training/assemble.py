"""A trained policy restored from a run directory (what ``himari backtest RUN_DIR`` scores), and
the model context a checkpoint keeps.

``TrainedPolicy`` acts on any prepared data set with the raw features the run was trained on:
it transforms them with the run's saved preprocessing (the states fitted on the run's train
split, never refitted) and lets the model decide, sequentially from a flat account for a model
that reads the account state or carries recurrent state (``act_sequence``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from himari.errors import DataError, HimariError
from himari.plugin.api import EnvConfig, ModelContext


def class_counts(labels: np.ndarray, rows: np.ndarray, n_actions: int = 3) -> tuple[int, ...]:
    y = np.asarray(labels)[rows]
    y = y[y >= 0]
    return tuple(int(c) for c in np.bincount(y.astype(np.int64), minlength=n_actions)[:n_actions])


def model_context_to_dict(ctx: ModelContext) -> dict[str, Any]:
    return {"n_features": ctx.n_features, "n_actions": ctx.n_actions, "class_counts": list(ctx.class_counts),
            "env": dataclasses.asdict(ctx.env), "feature_names": list(ctx.feature_names)}


def model_context_from_dict(d: dict[str, Any]) -> ModelContext:
    """The saved context; checkpoints written before the feature names were kept have none."""
    names = d.get("feature_names") or []
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ValueError("feature_names must be a list of strings")
    return ModelContext(n_features=int(d["n_features"]), n_actions=int(d["n_actions"]),
                        class_counts=tuple(int(c) for c in d["class_counts"]), env=EnvConfig(**d["env"]),
                        feature_names=tuple(names))


def _first(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def check_feature_set(context: ModelContext, data: Any, run_dir: Path, preprocessed: bool) -> None:
    """Refuse data whose raw features are not the ones the run was trained on, before any is
    transformed: a model fed other columns (or the same ones in another order) would score
    noise without an error. The message names the counts and the first missing and extra names.
    Runs saved before the names were kept: the count is compared where it is known (a run
    without preprocessing takes the raw features as they are)."""
    have = list(data.feature_names)
    want = list(context.feature_names)
    if not want:
        if not preprocessed and len(have) != context.n_features:
            raise DataError(f"{data.path} has {len(have)} features, the run {run_dir} was trained on "
                            f"{context.n_features}; score it on data prepared with the features it was trained on")
        return
    if have == want:
        return
    missing = [n for n in want if n not in set(have)]
    extra = [n for n in have if n not in set(want)]
    parts = [f"{data.path} has {len(have)} features, the run {run_dir} was trained on {len(want)}"]
    if missing:
        parts.append(f"missing: {_first(missing)}")
    if extra:
        parts.append(f"not in the run: {_first(extra)}")
    if not missing and not extra:
        parts.append("the same names in another order" if len(have) == len(want) else "some names repeated")
    raise DataError("; ".join(parts) + "; score it on data prepared with the features it was trained on")


@dataclass
class TrainedPolicy:
    """A trained model with its run's preprocessing, ready to act on any prepared data set with
    the same raw features."""

    run_dir: Path
    name: str
    model: Any
    run: Any
    preprocessing: list[dict[str, Any]]
    """The saved states of the run's preprocessors (``preprocessing.json``)."""
    checkpoint: str
    plugins: Any
    context: ModelContext
    method_modules: Any = None
    """The modules the run's training methods built (``model_built``), with their trained weights."""
    execution: Any = None
    """The execution rules the model acts under: those chosen on validation (the run's
    ``execution.json``) when the run chose them, else its config's; None: its config's."""
    observation_filter: Any = None
    """The run's ``ObservationFilter`` (one of ``method_modules``, with the statistics saved in
    the checkpoint), applied frozen to every observation in ``actions``; None without one."""
    _features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def stateful(self) -> bool:
        """True when the model decides sequentially (``act_sequence``: it sees the account state
        or carries recurrent state), so acting needs the prices."""
        return callable(getattr(self.model, "act_sequence", None))

    def features(self, data: Any) -> np.ndarray:
        """The model's input features for every row of the prepared ``data``: its raw features
        through the run's preprocessors with their saved states."""
        from himari.training.preprocess import run_preprocessors

        key = str(Path(data.path).resolve())
        if key not in self._features:
            check_feature_set(self.context, data, self.run_dir, bool(self.run.preprocess))
            splits = self.splits_of(data)
            try:
                features, _ = run_preprocessors(data, np.asarray(data.features), self.run.preprocess,
                                                self.run.plugin_configs, self.plugins, splits,
                                                seed=self.run.train.seed, states=self.preprocessing,
                                                source=self.run_dir / "preprocessing.json")
            except ValueError as e:
                if isinstance(e, HimariError) or self.context.feature_names:
                    raise
                # a run saved before the feature names were kept: a preprocessor fitted on other
                # columns fails on these (zscore: "fitted on 60 columns")
                raise DataError(f"{self.run_dir}: its saved preprocessing cannot transform the "
                                f"{len(data.feature_names)} features of {data.path} ({e}); score it on data "
                                "prepared with the features it was trained on") from None
            if features.shape[1] != self.context.n_features:
                raise DataError(f"{self.run_dir}: the model takes {self.context.n_features} features after "
                                f"preprocessing, {data.path} gives {features.shape[1]}")
            self._features[key] = features
        return self._features[key]

    def splits_of(self, data: Any) -> dict[str, list[tuple[int, int]]]:
        """The run's own splits on the data it was trained on (a walk-forward fold's, when the
        run set them), else the data set's."""
        own = self.run.splits is not None and self.run.data is not None and \
            Path(self.run.data).resolve() == Path(data.path).resolve()
        return dict(self.run.splits) if own else {name: data.split(name) for name in ("train", "validation", "test")}

    @property
    def rules(self) -> Any:
        """The execution rules in effect (``execution``, else the run config's)."""
        return self.execution if self.execution is not None else self.run.execution

    def actions(self, data: Any, ranges: list[tuple[int, int]], features: np.ndarray | None = None,
                decision_counts: np.ndarray | None = None) -> np.ndarray:
        """One executed action per row of the concatenated ``ranges`` of ``data``, under the
        run's execution rules (``rules``); a stateful model decides along each range from a flat
        account (the last row of a range takes no decision), through the run's observation
        filter when it has one (frozen: acting never changes its statistics). ``features``: the
        model's input features of every row of ``data`` when they are not its own prepared
        features through the run's preprocessing (a counterfactual view's, say).
        ``decision_counts``: increased by the model's own SELL/HOLD/BUY decisions before the
        rules (``himari.evaluation.execution.model_actions``)."""
        import torch

        from himari.evaluation.execution import model_actions
        from himari.training.rl import observation_filter

        features = self.features(data) if features is None else features
        self.model.network.eval()
        with torch.no_grad(), observation_filter(self.observation_filter):
            return model_actions(self.model, features, data.open, data.close, ranges, self.context.env, self.rules,
                                 self.name, decision_counts=decision_counts)


def built_modules(methods: list[tuple[str, Any]], model: Any, ctx: Any) -> Any:
    """Call the methods' ``model_built`` hooks; the modules a hook returns (a multi-task head,
    say) are collected in one ``ModuleDict`` (``method.key``), which the Trainer trains with the
    network and saves in the checkpoints beside it."""
    from torch import nn

    modules = nn.ModuleDict()
    for name, method in methods:
        returned = method.model_built(model, ctx)
        if returned is None:
            continue
        if not (isinstance(returned, dict) and all(isinstance(m, nn.Module) for m in returned.values())):
            from himari.errors import TrainingError

            raise TrainingError(f"training method {name!r}: model_built must return None or a dict of nn.Module")
        for key, module in returned.items():
            modules[f"{name}.{key}".replace(".", "__")] = module
    return modules


def observation_filter_of(modules: Any) -> Any:
    """The ``ObservationFilter`` among the training methods' modules (``built_modules``), or
    None; two are refused: each would normalise what the other already normalised."""
    from himari.errors import TrainingError
    from himari.plugin.api import ObservationFilter

    found = [(key, m) for key, m in modules.items() if isinstance(m, ObservationFilter)]
    if len(found) > 1:
        names = " and ".join(repr(key.split("__", 1)[0]) for key, _ in found)
        raise TrainingError(f"training methods {names} each install an observation filter; a run takes one")
    return found[0][1] if found else None


def rebuild_method_modules(model: Any, run: Any, plugins: Any, context: ModelContext) -> Any:
    """The run's training methods' ``model_built`` hooks on a restored model (before its weights
    are loaded), so what they built during training exists again. The context has no data."""
    from himari.plugin.api import TrainContext
    from himari.plugin.extras import require_spec

    ctx = TrainContext(data=None, features=None, labels=None, splits={}, env=context.env, model=context,
                       seed=run.train.seed)
    methods = []
    for name in run.methods:
        spec = plugins.training_methods().get(name)
        require_spec(spec)
        method = spec.factory(run.plugin_configs[name])
        if callable(getattr(method, "model_built", None)):
            methods.append((name, method))
    return built_modules(methods, model, ctx)


def load_trained(run_dir: str | Path, *, which: str = "best", plugins: Any = None,
                 device: str = "cpu") -> TrainedPolicy:
    """Restore ``checkpoints/<which>.pt`` of a run (falls back to last.pt when no best.pt), its
    network and the training methods' modules on ``device``: the CPU by default, so a run acts
    the same on any machine; ``scoring_device(run_dir)`` names the device it trained on when that
    device is here."""
    from himari.plugin.extras import require_modules, require_spec
    from himari.plugin.manager import get_plugins
    from himari.training import rundir
    from himari.training.checkpoint import CheckpointError, load_checkpoint, load_network_state
    from himari.training.config import load_run_config
    from himari.training.preprocess import load_states

    run_dir = Path(run_dir)
    if not rundir.is_run_dir(run_dir):
        raise DataError(f"{run_dir}: not a himari run directory (no {rundir.CONFIG})")
    plugins = plugins or get_plugins()
    run = load_run_config(run_dir, plugins)
    spec = plugins.models().get(run.model)
    require_modules(["torch"], f"loading the run {run_dir}")
    require_spec(spec)
    path = run_dir / "checkpoints" / f"{which}.pt"
    if which == "best" and not path.exists():
        path = run_dir / rundir.LAST
    payload = load_checkpoint(path, model=run.model)
    states = load_states(run_dir) or []
    try:
        context = model_context_from_dict(payload["model_context"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged model context ({type(e).__name__}: {e})") from None
    model = spec.factory(run.plugin_configs[run.model], context)
    modules = rebuild_method_modules(model, run, plugins, context)
    load_network_state(model.network, payload, path, modules)
    model.network.to(device)
    modules = modules.to(device)
    return TrainedPolicy(run_dir, run.model, model, run, states, path.name, plugins, context, modules,
                         execution=load_execution(run_dir, run.execution),
                         observation_filter=observation_filter_of(modules))


def load_execution(run_dir: Path, config: Any) -> Any:
    """The rules a run chose on validation (its ``execution.json``, written when
    ``execution.select`` was on), else ``config`` (the run config's section). A damaged file is
    a ``ConfigError`` naming it."""
    from himari.errors import ConfigError
    from himari.training import rundir

    path = run_dir / rundir.EXECUTION
    if not path.exists():
        return config
    record = rundir.read_json(path, "execution choice")
    try:
        return config.rules(record["decision_interval"], record["min_hold"], record["confidence"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: damaged execution choice ({type(e).__name__}: {e})") from None
