"""The ``automl-bin`` command line (click). Heavy libraries are imported inside commands."""

from automl_bin.cli.main import cli, main

__all__ = ["cli", "main"]
