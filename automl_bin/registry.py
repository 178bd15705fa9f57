"""The component registry: name -> class per kind, filled by the registration hooks.

The core owns it; plugins only call ``register(name, cls)``. Lookups of unknown names raise a
`UsageError` that lists the known names, suggests the closest one and names the command that
shows more (``automl-bin plugins``).
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from automl_bin.errors import PluginError, UsageError, add_note, suggest
from automl_bin.interfaces import Binarizer, Dataset, Estimator, SearchSpace, Strategy

__all__ = ["KINDS", "Entry", "PluginProblem", "Registry"]

#: kind -> (base class, registration hook, the recipe key that names it)
KINDS: dict[str, tuple[type, str, str]] = {
    "search_space": (SearchSpace, "register_search_spaces", "[search_space] name"),
    "binarizer": (Binarizer, "register_binarizers", "[binarizer] name"),
    "strategy": (Strategy, "register_strategies", "[strategy] name"),
    "estimator": (Estimator, "register_estimators", "an estimator key"),
    "dataset": (Dataset, "register_datasets", "[data] name"),
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@attrs.frozen
class Entry:
    """One registered component and where it came from."""

    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str
    version: str

    @property
    def module(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    def describe(self) -> str:
        """``strategy 'darts' (plugin 'darts_strategy', distribution automl-bin 0.1.0)``."""
        return (f"{self.kind.replace('_', ' ')} {self.name!r} (plugin {self.plugin!r}, "
                f"distribution {self.distribution} {self.version})".replace(" )", ")"))

    def owns(self, module: str) -> bool:
        """Whether code in ``module`` is this component's: its class's module or a module of
        the same package (a plugin's helpers), unless that package is the core's."""
        home = self.cls.__module__
        package = home.rpartition(".")[0] or home
        if module == home:
            return True
        return package.split(".")[0] != "automl_bin" and (
            module == package or module.startswith(package + "."))


@attrs.frozen
class PluginProblem:
    """A plugin that could not be loaded or misbehaved; it is left out, the rest works."""

    plugin: str
    distribution: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} (distribution {self.distribution}): {self.message}"


@attrs.define
class Registry:
    """Registered components by kind and name, plus the problems met while loading plugins."""

    _entries: dict[str, dict[str, Entry]] = attrs.field(
        factory=lambda: {kind: {} for kind in KINDS}
    )
    problems: list[PluginProblem] = attrs.field(factory=list)

    def add(self, kind: str, name: Any, cls: Any, plugin: str, distribution: str, version: str) -> None:
        """Add a component; raise `PluginError` for a bad name, a wrong type or a duplicate."""
        base = KINDS[kind][0]
        who = f"plugin {plugin!r} (distribution {distribution})"
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginError(
                f"{who} registered the {kind} name {name!r}; names must match [a-z][a-z0-9_]*."
            )
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"{who} registered {kind} {name!r} as {cls!r}, which is not a subclass of "
                f"automl_bin.interfaces.{base.__name__}."
            )
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"{kind} name {name!r} is registered twice: by plugin {existing.plugin!r} "
                f"(distribution {existing.distribution}) and by {who}. Uninstall one of them or "
                f"disable it with AUTOML_BIN_DISABLE_PLUGINS={plugin}."
            )
        self._entries[kind][name] = Entry(kind, name, cls, plugin, distribution, version)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def get(self, kind: str, name: str) -> Entry:
        """The entry of ``name``; an unknown name raises a `UsageError` listing the known ones."""
        try:
            return self._entries[kind][name]
        except KeyError:
            pass
        known = self.names(kind)
        label = kind.replace("_", " ")
        message = (
            f"Unknown {label} {name!r} in {KINDS[kind][2]}.{suggest(str(name), known)} "
            f"Known {label}s: {', '.join(known) if known else '(none registered)'}. "
            f"Run 'automl-bin plugins' to see every component and the plugin providing it."
        )
        broken = [p for p in self.problems]
        if broken:
            message += " Some plugins failed to load: " + "; ".join(str(p) for p in broken) + "."
        raise UsageError(message)

    def blame(self, exc: BaseException, components: Iterable[Any]) -> Entry | None:
        """The registered component among ``components`` (a run's plugin instances) whose code
        raised ``exc``: the one owning the innermost traceback frame that is one of its methods
        or in its plugin's modules. None when only core or library code is on the stack."""
        used = [entry for entry in self if any(type(c) is entry.cls for c in components)]
        frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
        for frame in reversed(frames):
            owner = frame.f_locals.get("self")
            module = str(frame.f_globals.get("__name__", ""))
            for entry in used:
                if (owner is not None and isinstance(owner, entry.cls)) or entry.owns(module):
                    return entry
        return None

    def failure_message(self, exc: BaseException, components: Iterable[Any]) -> str:
        """``ValueError: ...`` of a run's failure, naming the plugin and distribution whose
        code raised it (also added to ``exc`` as a note, which the CLI shows)."""
        entry = self.blame(exc, components)
        text = f"{type(exc).__name__}: {exc}"
        if entry is None:
            return text
        note = f"Raised by {entry.describe()}."
        add_note(exc, note)
        return f"{text} ({note})"

    def create(self, kind: str, name: str, config: Any = None) -> Any:
        """Instantiate ``name`` with an already validated ``config`` (default config when None)."""
        return self.get(kind, name).cls(config)

    def __iter__(self) -> Iterator[Entry]:
        for kind in KINDS:
            yield from (self._entries[kind][n] for n in sorted(self._entries[kind]))
