"""The runnable examples of docs/plugins.md, loaded as modules by the tests that check them.

An example is the first ```python block after a ``<!-- example: NAME -->`` marker.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def load_docs_example(name: str, module_name: str, text: str | None = None) -> types.ModuleType:
    """Execute the example ``name`` of ``text`` (default: docs/plugins.md) as a new module."""
    text = DOCS.read_text(encoding="utf-8") if text is None else text
    match = re.search(rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"docs/plugins.md lost its {name} example"
    module = types.ModuleType(module_name)
    exec(compile(match.group(1), f"docs/plugins.md:{name}", "exec"), module.__dict__)
    return module
