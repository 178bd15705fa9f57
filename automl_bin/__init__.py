"""automl-bin: plugin-based AutoML for binary (1-bit) neural architecture search.

Plugins implement the hooks in `automl_bin.hookspecs` with the `hookimpl` marker and register
components that subclass the interfaces in `automl_bin.interfaces`.
"""

import pluggy

__version__ = "0.1.0"

#: decorate plugin functions with ``@automl_bin.hookimpl``
hookimpl = pluggy.HookimplMarker("automl_bin")

__all__ = ["__version__", "hookimpl"]
