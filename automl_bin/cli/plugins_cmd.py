"""``automl-bin plugins``: every registered component and where it comes from."""

from __future__ import annotations

import json

import click

from automl_bin.plugins import load_plugins


@click.command("plugins", epilog="""\b
Examples:
  automl-bin plugins
  automl-bin plugins --json
  AUTOML_BIN_DISABLE_PLUGINS=my_plugin automl-bin plugins
""")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List registered search spaces, binarizers, strategies, estimators and data sets."""
    plugins = load_plugins()
    rows = [
        {"kind": e.kind, "name": e.name, "module": e.module, "plugin": e.plugin,
         "distribution": e.distribution, "version": e.version}
        for e in plugins.registry
    ]
    problems = [{"plugin": p.plugin, "distribution": p.distribution, "problem": p.message}
                for p in plugins.registry.problems]
    if as_json:
        click.echo(json.dumps({"components": rows, "problems": problems}, indent=2))
        return
    headers = ("kind", "name", "module", "distribution", "version")
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) if rows else len(h) for h in headers]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        click.echo("  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths)))
    for p in plugins.registry.problems:
        click.echo(f"Broken plugin: {p}", err=True)
