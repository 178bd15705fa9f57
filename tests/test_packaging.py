"""pyproject.toml lists its packages explicitly (plugins/ imports as automl_bin_plugins), so a new
package folder that is not listed would be missing from a wheel: every folder with an
``__init__.py`` must be listed, and every listed package must exist."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for name, folder in setuptools["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join((name, *rel.parts)) if rel.parts else name)
    assert found - listed == set(), "package folders missing from pyproject.toml [packages]"
    assert listed - found == set(), "pyproject.toml lists packages that do not exist"
