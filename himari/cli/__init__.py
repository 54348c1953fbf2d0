"""The ``himari`` command line: a Typer app with one sub-app per command group.

Commands hold no logic: they parse options, call library functions and print. Errors are
handled once, here: a ``HimariError`` becomes one red line on stderr and exit code 2 when it is
bad input or usage (a ``ValueError`` subclass: ``DataError``, ``ConfigError``, ...) or 1 for
other runtime failures; any other exception is reported the same way with exit code 1. The
global ``--verbose`` flag adds the traceback.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from himari.errors import HimariError

_VERBOSE_KEY = "himari.verbose"


def exit_code_for(error: BaseException) -> int:
    """2 for bad input or usage (ValueError subclasses, asking for a GPU the machine lacks, a
    missing optional package), 1 for every other failure."""
    from himari.errors import CudaUnavailableError

    return 2 if isinstance(error, (ValueError, CudaUnavailableError)) else 1


def _as_user_error(error: Exception) -> Exception:
    """An optional package that is not installed, found only when a command imports it, becomes
    the same one-line usage error (exit 2) as when a run checks its extras up front."""
    from himari.plugin.extras import INSTALL_HINTS, MissingExtraError

    if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in INSTALL_HINTS:
        module = (error.name or "").split(".")[0]
        return MissingExtraError(f"this command needs {module}, which is not installed: {INSTALL_HINTS[module]}")
    return error


class _HimariGroup(TyperGroup):
    """Root group that turns exceptions from any command into a one-line error and exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors, exits: Typer's job
            raise
        except BrokenPipeError:  # `himari ... | head` closed the pipe: Click ends quietly, no "error:" line
            raise
        except Exception as e:  # noqa: BLE001 - this is the CLI's last line of defence
            e = _as_user_error(e)
            from rich.console import Console
            from rich.markup import escape

            console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)  # "cuda:x:" is no emoji
            if ctx.meta.get(_VERBOSE_KEY):
                console.print_exception()
            message = str(e) or type(e).__name__
            if not isinstance(e, HimariError):
                from himari.plugin.blame import plugin_blame

                where = plugin_blame(e.__traceback__)
                message = f"{type(e).__name__}: {message}" + (f" (raised in {where})" if where else "")
            hint = "" if ctx.meta.get(_VERBOSE_KEY) else " (--verbose shows the traceback)"
            if isinstance(e, HimariError) and exit_code_for(e) == 2:
                hint = ""
            console.print(f"[bold red]error:[/bold red] {escape(' '.join(message.split()))}{hint}")
            raise typer.Exit(exit_code_for(e)) from None


app = typer.Typer(
    cls=_HimariGroup,
    no_args_is_help=True,
    help="himari: trading research with a native core (data, training, backtests).",
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _print_version(value: bool) -> None:
    if value:
        import himari

        typer.echo(f"himari {himari.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """himari: trading research with a native core (data, training, backtests)."""
    ctx.meta[_VERBOSE_KEY] = verbose


def _add_groups() -> None:
    from himari.cli.backtest import backtest
    from himari.cli.bench import bench
    from himari.cli.data import app as data_app
    from himari.cli.demo import demo
    from himari.cli.evaluate import evaluate
    from himari.cli.info import info
    from himari.cli.plugins import app as plugins_app
    from himari.cli.report import report
    from himari.cli.robustness import robustness
    from himari.cli.sweep import sweep
    from himari.cli.train import train

    app.add_typer(data_app, name="data", help="Import, synthesise and prepare bar data.")
    app.add_typer(plugins_app, name="plugins", help="List installed plugins and show their settings.")
    # options `train` does not define are the model's settings (--context-length 64)
    app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(train)
    app.command("backtest")(backtest)
    # options `evaluate` does not define are the model's settings, as for `train`
    app.command("evaluate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(evaluate)
    app.command("bench")(bench)
    app.command("demo")(demo)
    app.command("info")(info)
    app.command("report")(report)
    # options `sweep` does not define are the model's settings, as for `train`
    app.command("sweep", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(sweep)
    app.command("robustness")(robustness)


_add_groups()

_plugin_commands_added = False


def add_plugin_commands() -> None:
    """Let plugins attach commands (``himari_register_commands``). Done by ``main`` rather than
    at import, so importing the CLI never loads plugins."""
    global _plugin_commands_added
    if _plugin_commands_added:
        return
    from himari.plugin.manager import get_plugins

    get_plugins().register_commands(app)
    _plugin_commands_added = True


def main() -> None:
    """Console-script entry point (``himari``)."""
    try:
        add_plugin_commands()
    except Exception as e:  # noqa: BLE001 - a broken plugin install: one line, exit 1
        import sys

        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(exit_code_for(e)) from None
    app(prog_name="himari")


__all__ = ["add_plugin_commands", "app", "exit_code_for", "main"]
