"""An unexpected exception from a plugin's code names the plugin in the CLI's one-line error
(it read ``error: RuntimeError: boom``, with nothing pointing at the third-party plugin)."""

from __future__ import annotations

import json
import types

import pytest
from typer.testing import CliRunner

from himari.cli import app
from himari.plugin import blame


def _raised(fn) -> BaseException:
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e
    raise AssertionError("did not raise")


def test_the_innermost_frame_in_a_plugin_package_is_named() -> None:
    error = _raised(lambda: json.loads("{"))  # raised inside json.decoder, called from this module
    assert blame.plugin_blame(error.__traceback__, {"json": "fake-dist 1.0"}) == "plugin module json.decoder (fake-dist 1.0)"
    assert blame.plugin_blame(error.__traceback__, {"yaml": "other 2.0"}) is None
    assert blame.plugin_blame(None, {"json": "fake-dist 1.0"}) is None


def test_the_cli_error_names_the_plugin_that_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import himari.evaluation.bench

    module = types.ModuleType("fake_plugin_pkg.hooks")
    exec("def hook(*args, **kwargs):\n    raise RuntimeError('boom in epoch_start')\n", module.__dict__)  # noqa: S102 - a module of its own name
    monkeypatch.setattr(blame, "_plugin_packages", lambda: {"fake_plugin_pkg": "fake-plugin 0.3.0"})
    monkeypatch.setattr(himari.evaluation.bench, "run_bench", module.hook)
    res = CliRunner().invoke(app, ["bench", "ekf", "--quick"])
    assert res.exit_code == 1
    assert ("error: RuntimeError: boom in epoch_start (raised in plugin module fake_plugin_pkg.hooks "
            "(fake-plugin 0.3.0))") in " ".join(res.output.split())
    monkeypatch.setattr(blame, "_plugin_packages", dict)
    res = CliRunner().invoke(app, ["bench", "ekf", "--quick"])
    assert "error: RuntimeError: boom in epoch_start (--verbose" in " ".join(res.output.split())
