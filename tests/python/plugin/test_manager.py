"""The plugin manager: entry points, in-memory plugins, HIMARI_DISABLE_PLUGINS, caching."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from himari.plugin import ModelSpec, PluginConflictError, UnknownPluginError, hookimpl
from himari.plugin.manager import build_plugins, get_plugins, reset_plugins


@dataclass(frozen=True)
class EchoConfig:
    n: int = 1
    """How many."""


def _model_plugin(name: str):
    class Plugin:
        @hookimpl
        def himari_register_models(self, registry):
            registry.add(ModelSpec(name=name, summary="echo", config=EchoConfig, factory=lambda c, x: None))

    return Plugin()


def test_builtins_come_from_entry_points() -> None:
    plugins = build_plugins()
    entry = plugins.models().entry("baseline-mlp")
    assert entry.origin.plugin == "himari_builtin.models.baseline_mlp"
    assert entry.origin.distribution == "himari"
    assert {"jsonl", "tensorboard", "wandb"} <= set(plugins.trackers().names())
    assert "zscore" in plugins.preprocessors()


def test_in_memory_plugins_register() -> None:
    plugins = build_plugins(autoload=False)
    assert plugins.models().names() == []
    plugins.register(_model_plugin("echo"), name="echo-plugin")
    assert plugins.models().entry("echo").origin.plugin == "echo-plugin"


def test_conflict_between_two_plugins_names_both() -> None:
    plugins = build_plugins()
    plugins.register(_model_plugin("baseline-mlp"), name="impostor")
    with pytest.raises(PluginConflictError, match="himari_builtin.models.baseline_mlp .*impostor"):
        plugins.models()


@pytest.mark.parametrize("token", ["himari_builtin.models.baseline_mlp", "baseline-mlp"])
def test_disable_blocks_by_module_or_name(token) -> None:
    plugins = build_plugins(disable=f" {token} ,other")
    assert "baseline-mlp" not in plugins.models()
    assert "zscore" in plugins.preprocessors()
    with pytest.raises(UnknownPluginError, match="baseline-mlp"):
        plugins.models().get("baseline-mlp")
    assert any("baseline" in b.plugin for b in plugins.blocked())


def test_a_name_missing_because_its_module_is_blocked_says_so() -> None:
    """Blocking the module keeps its names from ever registering, so the registry cannot know
    them: the error names the blocked module instead of calling the name merely unknown."""
    from himari.plugin.listing import show_plugin

    plugins = build_plugins(disable="himari_builtin.preprocessing.zscore")
    with pytest.raises(UnknownPluginError, match=r"unknown preprocessor 'zscore'.*HIMARI_DISABLE_PLUGINS blocks "
                                                 r"himari_builtin\.preprocessing\.zscore, which may provide it"):
        plugins.preprocessors().get("zscore")
    with pytest.raises(UnknownPluginError, match=r"HIMARI_DISABLE_PLUGINS blocks himari_builtin\.preprocessing"):
        show_plugin(plugins, "zscore")
    with pytest.raises(UnknownPluginError) as plain:  # nothing blocked: no such note
        build_plugins().preprocessors().get("zscor")
    assert "HIMARI_DISABLE_PLUGINS" not in str(plain.value)


def test_show_names_a_plugin_blocked_by_name_as_blocked() -> None:
    from himari.plugin.listing import show_plugin

    with pytest.raises(UnknownPluginError, match=r"^preprocessor 'zscore' is blocked by HIMARI_DISABLE_PLUGINS$"):
        show_plugin(build_plugins(disable="zscore"), "zscore")


def test_disable_by_distribution_blocks_all_its_plugins() -> None:
    plugins = build_plugins(disable="himari")
    assert len(plugins.entries()) == 0
    assert len(plugins.blocked()) >= 7


def test_get_plugins_is_cached_per_environment(monkeypatch) -> None:
    reset_plugins()
    monkeypatch.delenv("HIMARI_DISABLE_PLUGINS", raising=False)
    a = get_plugins()
    assert get_plugins() is a
    monkeypatch.setenv("HIMARI_DISABLE_PLUGINS", "baseline-mlp")
    b = get_plugins()
    assert b is not a and "baseline-mlp" not in b.models()
    monkeypatch.setenv("HIMARI_PLUGIN_AUTOLOAD", "0")
    assert get_plugins().entries() == []


def test_register_commands_hook() -> None:
    import typer
    from typer.testing import CliRunner

    class Plugin:
        @hookimpl
        def himari_register_commands(self, app):
            @app.command("hello")
            def hello() -> None:
                print("hello from a plugin")

    app = typer.Typer()

    @app.command("noop")
    def noop() -> None:
        pass

    plugins = build_plugins(autoload=False)
    plugins.register(Plugin(), name="cmd-plugin")
    plugins.register_commands(app)
    assert "hello from a plugin" in CliRunner().invoke(app, ["hello"]).output


def test_a_plugin_command_cannot_take_over_a_name_and_a_failing_hook_is_named() -> None:
    """Typer let a later command of the same name silently replace `train`; a hook that raised
    stopped every command with "error: command hook failed", naming no plugin."""
    import typer

    from himari.plugin.manager import PluginLoadError
    from himari.plugin.registry import PluginConflictError

    class Hijack:
        @hookimpl
        def himari_register_commands(self, app):
            @app.command("train")
            def train() -> None:
                """Hijacked train."""

    class Broken:
        @hookimpl
        def himari_register_commands(self, app):
            raise RuntimeError("command hook failed")

    for plugin, error, words in ((Hijack(), PluginConflictError, "adds the command 'train', which himari"),
                                 (Broken(), PluginLoadError, "failed to add its commands: RuntimeError: command hook "
                                                             "failed; uninstall it or set HIMARI_DISABLE_PLUGINS=bad")):
        app = typer.Typer()

        @app.command("train")
        def train() -> None:
            """The real one."""

        plugins = build_plugins(autoload=False)
        plugins.register(plugin, name="bad")
        with pytest.raises(error, match=words.replace("(", r"\(")):
            plugins.register_commands(app)
        assert [c.callback.__doc__ for c in app.registered_commands] == ["The real one."]  # left as it was


def test_show_says_a_setting_without_a_default_is_required() -> None:
    """It printed ``<dataclasses._MISSING_TYPE object at 0x...>`` as the default."""
    from dataclasses import dataclass

    from himari.plugin.api import PreprocessorSpec
    from himari.plugin.listing import show_plugin

    @dataclass(frozen=True)
    class NeedsSpan:
        span: int
        """Bars per window."""

    class Plugin:
        @hookimpl
        def himari_register_preprocessors(self, registry):
            registry.add(PreprocessorSpec(name="needs-span", summary="s", config=NeedsSpan,
                                          factory=lambda config: None))

    plugins = build_plugins(autoload=False)
    plugins.register(Plugin(), name="needs-span-plugin")
    row, = show_plugin(plugins, "needs-span")
    assert row["config"] == [{"name": "span", "type": "int", "required": True, "default": None,
                              "doc": "Bars per window."}]
