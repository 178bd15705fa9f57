"""``automl-bin new-plugin NAME --kind KIND``: start a plugin package from a template.

The templates ship inside automl-bin (``automl_bin/templates/<kind>-plugin``): a pyproject with
the ``automl_bin`` entry point, a package with the component and its registration hook, a
recipe that uses it on synthetic data and a first test (installed? conforming? does the recipe
run?). Files end in ``.tmpl``; ``{{name}}``-style placeholders are filled in.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click

import automl_bin
from automl_bin.errors import UsageError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["KINDS", "new_plugin_command", "render_plugin", "template_values"]

#: plugin kinds with a template, and how their classes and docs name them
KINDS: dict[str, tuple[str, str]] = {
    "strategy": ("Strategy", "strategy"),
    "binarizer": ("Binarizer", "binarizer"),
    "search_space": ("Space", "search space"),
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SUFFIX = ".tmpl"


def template_values(name: str, kind: str) -> dict[str, str]:
    """The placeholder values of a plugin called ``name`` of ``kind``."""
    suffix, label = KINDS[kind]
    camel = "".join(part.capitalize() for part in name.split("_") if part)
    return {
        "name": name,
        "kind": kind,
        "kind_label": label,
        "dist": "automl-bin-" + name.replace("_", "-"),
        "package": f"automl_bin_{name}",
        "class_name": camel + suffix,
        "automl_bin_version": automl_bin.__version__,
    }


def _render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _walk(node: Traversable, parts: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            yield from _walk(child, (*parts, child.name))
        elif child.name.endswith(_SUFFIX):
            yield (*parts, child.name), child


def render_plugin(name: str, kind: str, target: Path) -> list[Path]:
    """Write the ``kind`` template for ``name`` into the new folder ``target``; returns files."""
    template = resources.files("automl_bin") / "templates" / f"{kind}-plugin"
    if not template.is_dir():
        raise UsageError(f"automl-bin has no {kind} template (looked in {template}); reinstall "
                         "automl-bin.")
    values = template_values(name, kind)
    written = []
    for parts, source in _walk(template):
        rel = [_render(p, values) for p in parts]
        rel[-1] = rel[-1][: -len(_SUFFIX)]
        path = target.joinpath(*rel)
        text = _render(source.read_text(encoding="utf-8"), values)
        leftover = re.search(r"\{\{\w+\}\}", text)
        if leftover:  # a template bug, not the user's
            raise RuntimeError(f"template {'/'.join(parts)} has an unknown placeholder "
                               f"{leftover.group(0)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _check_name(name: str, kind: str) -> None:
    if not _NAME.match(name):
        raise UsageError(f"Plugin name {name!r} is not valid: use lowercase letters, digits and "
                         "underscores, starting with a letter (e.g. my_walk). Recipes write it "
                         f"as [{kind}] name = \"...\".")
    if name == "plugins":
        raise UsageError("Plugin name 'plugins' would make the package automl_bin_plugins, "
                         "which is automl-bin's own; choose another name.")
    from automl_bin.plugins import load_plugins

    registry = load_plugins(allow={"automl-bin"}, deny=set()).registry
    if name in registry.names(kind):
        raise UsageError(f"automl-bin already has a built-in {kind.replace('_', ' ')} called "
                         f"{name!r}; choose another name (see 'automl-bin plugins').")


@click.command("new-plugin", epilog="""\b
Examples:
  automl-bin new-plugin my_walk --kind strategy
  automl-bin new-plugin my_sign --kind binarizer --dir plugins/my-sign
  automl-bin new-plugin my_chain --kind search_space
""")
@click.argument("name")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default="strategy", show_default=True,
              help="What the plugin provides.")
@click.option("--dir", "directory", type=click.Path(file_okay=True, dir_okay=True), default=None,
              help="The folder to create (default: ./automl-bin-NAME with - for _); it must not "
              "exist.")
def new_plugin_command(name: str, kind: str, directory: str | None) -> None:
    """Create a plugin package NAME of KIND from automl-bin's template.

    It contains a pyproject with the automl_bin entry point, the component and its registration
    hook, a recipe using it on synthetic data, and a first test that checks the installation,
    runs the conformance suite and the recipe.
    """
    _check_name(name, kind)
    target = Path(directory) if directory else Path(template_values(name, kind)["dist"])
    if target.exists():
        raise UsageError(f"{str(target)!r} already exists; new-plugin never overwrites files. "
                         "Choose another folder with --dir, or remove it.")
    values = template_values(name, kind)
    render_plugin(name, kind, target)
    folder = shlex.quote(str(target))
    recipe = shlex.quote(str(target / "recipes" / f"{name}_synthetic.toml"))
    click.echo(f"Created the {KINDS[kind][1]} plugin {name!r} in {target}/ (distribution "
               f"{values['dist']}, package {values['package']}).")
    click.echo(f"\nNext steps:\n"
               f"  pip install -e {folder}\n"
               f"  automl-bin plugins            # lists {name} with {values['dist']}\n"
               f"  pytest {shlex.quote(str(target / 'tests'))}\n"
               f"  automl-bin run {recipe}\n"
               f"\nEdit {target / values['package'] / 'plugin.py'}; docs/plugins.md of automl-bin "
               "describes the hooks and the test kit.")
