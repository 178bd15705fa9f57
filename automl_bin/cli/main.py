"""The ``automl-bin`` click group and the error boundary.

Every expected error becomes one paragraph on stderr and an exit code: 2 for bad input (recipe,
arguments, missing data, plugin problems), 1 for a runtime failure, 130 for an interrupted run.
"""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

import click

from automl_bin import __version__
from automl_bin.errors import AutomlBinError, notes_of

__all__ = ["cli", "main"]

EPILOG = """\b
Examples:
  automl-bin run recipes/quickstart.toml
  automl-bin run recipes/quickstart.toml --set strategy.epochs=2 --set experiment.seed=3
  automl-bin check recipes/darts_cifar.toml
  automl-bin plugins
  automl-bin compare quickstart
  automl-bin summary RUN_ID
  automl-bin ui
  automl-bin new-plugin my_walk --kind strategy
"""


def _quiet_environment() -> None:
    """No network and little noise from MLflow unless the user asked otherwise."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DO_NOT_TRACK", "true")


class _CliError(click.ClickException):
    """An expected error shown as one paragraph, with the error's own exit code."""

    def __init__(self, message: str, exit_code: int, label: str = "Error") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.label = label

    def show(self, file: Any = None) -> None:
        click.echo(_paragraph(f"{self.label}: {self.message}"), err=True)


class AutomlBinGroup(click.Group):
    """Turns automl-bin's errors into one-paragraph messages and exit codes (2 input, 1 runtime)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AutomlBinError as exc:
            label = "Interrupted" if exc.exit_code == 130 else "Error"
            raise _CliError(str(exc), exc.exit_code, label) from exc
        except KeyboardInterrupt as exc:
            raise _CliError("stopped by the user.", 130, "Interrupted") from exc
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own control flow (--help exits through Exit)
        except BrokenPipeError:
            _closed_stdout()
        except Exception as exc:
            # a bug or a runtime failure: one paragraph by default, the traceback on request
            if os.environ.get("AUTOML_BIN_DEBUG"):
                raise
            raise _CliError(
                f"{type(exc).__name__}: {exc}.{notes_of(exc)} This is a runtime failure, not a "
                "recipe problem; "
                "the run (if one started) is marked FAILED. Set AUTOML_BIN_DEBUG=1 to see the "
                "traceback, and report it with the recipe if it looks like a bug.",
                1, "Failed") from exc


@click.group(cls=AutomlBinGroup, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="automl-bin")
def cli() -> None:
    """automl-bin: plugin-based AutoML for binary (1-bit) neural architecture search.

    A TOML recipe composes an experiment (data, search space, binarizer, strategy, retraining,
    tracking); `run` executes it and tracks it in MLflow.
    """


def _register_commands() -> None:
    from automl_bin.cli.check import check_command
    from automl_bin.cli.compare_cmd import compare_command
    from automl_bin.cli.export import export_command
    from automl_bin.cli.new_plugin import new_plugin_command
    from automl_bin.cli.plugins_cmd import plugins_command
    from automl_bin.cli.run import run_command
    from automl_bin.cli.summary import summary_command
    from automl_bin.cli.ui import ui_command

    for command in (run_command, check_command, compare_command, plugins_command, summary_command,
                    ui_command, new_plugin_command, export_command):
        cli.add_command(command)


_register_commands()


def _closed_stdout() -> None:
    """The reader of our output went away (``automl-bin check R | head``): stop quietly, as
    Unix tools do, with the status of a process ended by SIGPIPE. Later writes (the interpreter
    flushes stdout at exit) go to /dev/null so that they cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)


def _paragraph(message: str) -> str:
    return textwrap.fill(" ".join(message.split()), width=100)


def main(args: list[str] | None = None, prog_name: str = "automl-bin") -> None:
    """Entry point of ``automl-bin`` and ``python -m automl_bin``."""
    _quiet_environment()
    cli.main(args=args, prog_name=prog_name)
