"""The plugin manager: loads plugins from the ``automl_bin`` entry-point group.

Built-in plugins are entry points of the ``automl-bin`` distribution, exactly like third-party
ones. Environment variables:

- ``AUTOML_BIN_PLUGINS``: comma-separated allow-list of entry-point or distribution names; when
  set, only those load (``automl-bin`` admits every built-in).
- ``AUTOML_BIN_DISABLE_PLUGINS``: comma-separated entry-point or distribution names to skip.
- ``AUTOML_BIN_TRACE_HOOKS=1``: print every hook call and its arguments to stderr.

A plugin that fails to import, has an invalid hook, raises in a registration hook or registers
something wrong is left out and recorded in `Registry.problems` (naming its distribution), so a
broken third-party package cannot take down commands that do not need it.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from automl_bin import hookspecs
from automl_bin.errors import PluginError, StopRun
from automl_bin.registry import KINDS, PluginProblem, Registry

__all__ = ["ENTRY_POINT_GROUP", "PluginSet", "load_plugins", "call_observers"]

ENTRY_POINT_GROUP = "automl_bin"


def _split_env(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


@attrs.define
class PluginSet:
    """A plugin manager, the registry it filled, and who provides each plugin."""

    pm: pluggy.PluginManager
    registry: Registry
    #: plugin name -> (distribution, version)
    sources: dict[str, tuple[str, str]] = attrs.field(factory=dict)

    def source(self, plugin: str) -> tuple[str, str]:
        return self.sources.get(plugin, ("unknown", ""))


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("automl_bin")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("AUTOML_BIN_TRACE_HOOKS"):
        def before(hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
            print(f"[hook] {hook_name}({', '.join(kwargs)}) -> {[i.plugin_name for i in impls]}",
                  file=sys.stderr)

        def after(outcome: Any, hook_name: str, impls: Any, kwargs: Any) -> None:
            if outcome.exception is not None:
                print(f"[hook] {hook_name} raised {outcome.exception!r}", file=sys.stderr)

        pm.add_hookcall_monitoring(before, after)
    return pm


def _selected(ep: metadata.EntryPoint, allow: set[str], deny: set[str]) -> bool:
    dist = ep.dist.name if ep.dist is not None else ""
    names = {ep.name, dist, dist.replace("-", "_")}
    if deny & names:
        return False
    if allow and not (allow & names):
        return False
    return True


def load_plugins(
    extra: Iterable[tuple[str, ModuleType | object]] = (),
    *,
    entry_points: bool = True,
    allow: set[str] | None = None,
    deny: set[str] | None = None,
) -> PluginSet:
    """Build a plugin manager and registry.

    :param extra: ``(name, plugin)`` pairs registered after the entry points (used by tests and
        `automl_bin.testing`); their distribution is reported as ``<local>``.
    :param entry_points: load the ``automl_bin`` entry-point group.
    :param allow: allow-list (default: ``AUTOML_BIN_PLUGINS``).
    :param deny: deny-list (default: ``AUTOML_BIN_DISABLE_PLUGINS``).
    """
    allow = _split_env("AUTOML_BIN_PLUGINS") if allow is None else allow
    deny = _split_env("AUTOML_BIN_DISABLE_PLUGINS") if deny is None else deny
    if allow:
        allow = allow | {"automl-bin", "automl_bin"}  # built-ins are always admitted
    pm = _new_manager()
    plugins = PluginSet(pm=pm, registry=Registry())
    problems = plugins.registry.problems

    candidates: list[tuple[str, Any, str, str]] = []
    if entry_points:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if not _selected(ep, allow, deny):
                continue
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else ""
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the others
                problems.append(PluginProblem(ep.name, dist, f"failed to import {ep.value}: {exc!r}"))
                continue
            candidates.append((ep.name, obj, dist, version))
    for name, obj in extra:
        candidates.append((name, obj, "<local>", ""))

    for name, obj, dist, version in candidates:
        if pm.has_plugin(name):
            problems.append(PluginProblem(name, dist, "a plugin of this name is already loaded"))
            continue
        try:
            pm.register(obj, name=name)
        except pluggy.PluginValidationError as exc:
            problems.append(PluginProblem(name, dist, f"invalid hook implementation: {exc}"))
            continue
        plugins.sources[name] = (dist, version)
    _check_unknown_hooks(plugins)
    _fill_registry(plugins)
    return plugins


def _check_unknown_hooks(plugins: PluginSet) -> None:
    """Unregister plugins whose hook names match no specification (a typo would go unnoticed)."""
    pm = plugins.pm
    try:
        pm.check_pending()
        return
    except pluggy.PluginValidationError:
        pass
    for name, plugin in list(pm.list_name_plugin()):
        bad = []
        for hook_name in dir(plugin):
            opts = pm.parse_hookimpl_opts(plugin, hook_name)
            if opts is not None and not hasattr(pm.hook, hook_name):
                bad.append(hook_name)
            elif opts is not None and not getattr(pm.hook, hook_name).has_spec():
                bad.append(hook_name)
        if bad:
            dist, _ = plugins.source(name)
            plugins.registry.problems.append(PluginProblem(
                name, dist, f"implements unknown hook(s) {', '.join(bad)}; see docs/plugins.md "
                "for the hook names"))
            pm.unregister(name=name)


def _fill_registry(plugins: PluginSet) -> None:
    """Call each registration hook through ``pm.hook``. Each implementation is guarded, so a
    failure is recorded naming its plugin and the others still register; registrations are
    then added in plugin load order (pluggy calls the last-loaded first), so on a duplicate
    name the first-loaded plugin (the built-in) keeps it and the other one is reported."""
    failed: set[str] = set()
    order = {name: i for i, name in enumerate(plugins.sources)}
    for kind, (_, hook_name, _) in KINDS.items():
        hook = getattr(plugins.pm.hook, hook_name)
        pending: list[tuple[str, Any, Any]] = []
        for impl in hook.get_hookimpls():
            if not (impl.wrapper or impl.hookwrapper):
                impl.function = _guarded_registration(plugins, impl, hook_name, failed, pending)
        hook(register=_unbound_register)
        pending.sort(key=lambda item: order.get(item[0], len(order)))
        for plugin, name, cls in pending:
            dist, version = plugins.source(plugin)
            try:
                plugins.registry.add(kind, name, cls, plugin, dist, version)
            except PluginError as exc:
                plugins.registry.problems.append(PluginProblem(plugin, dist, str(exc)))


def _unbound_register(name: Any, cls: Any) -> None:
    # Each guarded registration implementation passes its own ``register`` instead.
    raise PluginError(f"register({name!r}, {cls!r}) was called outside a registration hook")


def _guarded_registration(plugins: PluginSet, impl: Any, hook_name: str, failed: set[str],
                          pending: list[tuple[str, Any, Any]]) -> Any:
    function, plugin = impl.function, impl.plugin_name
    takes_register = bool(impl.argnames)  # pluggy allows an implementation to take no arguments

    def register(name: Any, cls: Any) -> None:
        pending.append((plugin, name, cls))

    def guarded(*_args: Any, **_kwargs: Any) -> None:
        if plugin in failed:
            return
        try:
            function(*([register] if takes_register else []))
        except PluginError as exc:
            plugins.registry.problems.append(PluginProblem(plugin, plugins.source(plugin)[0],
                                                           str(exc)))
        except Exception as exc:
            plugins.registry.problems.append(PluginProblem(
                plugin, plugins.source(plugin)[0], f"hook {hook_name} raised {exc!r}"))
            failed.add(plugin)

    return guarded


_GUARDED = "_automl_bin_guarded"


def _guard_observers(plugins: PluginSet, hook_name: str) -> None:
    """Wrap every plain implementation of a lifecycle hook so that an exception is reported
    (naming the plugin) and the other implementations still run. Wrappers (``wrapper=True``)
    are left as pluggy calls them. Done at call time: plugins may register after loading."""
    for impl in getattr(plugins.pm.hook, hook_name).get_hookimpls():
        if impl.wrapper or impl.hookwrapper or getattr(impl.function, _GUARDED, False):
            continue
        impl.function = _guarded_observer(plugins, impl.function, impl.plugin_name, hook_name)


def _guarded_observer(plugins: PluginSet, function: Any, plugin: str, hook_name: str) -> Any:
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except StopRun:
            raise  # the observer asks to stop the run (e.g. its tracking server went away)
        except Exception as exc:
            dist, _ = plugins.source(plugin)
            warnings.warn(
                f"plugin {plugin!r} (distribution {dist}) raised in {hook_name}: "
                f"{exc!r}; the run continues without it for this call.",
                RuntimeWarning,
                stacklevel=2,
            )

    setattr(guarded, _GUARDED, True)
    return guarded


def call_observers(plugins: PluginSet, hook_name: str, **kwargs: Any) -> None:
    """Call a lifecycle hook through ``pm.hook`` (so tracing, ``tryfirst``/``trylast`` and
    ``wrapper=True`` implementations work as pluggy documents); an exception raised by an
    implementation is reported, never propagated, except `StopRun`."""
    _guard_observers(plugins, hook_name)
    try:
        getattr(plugins.pm.hook, hook_name)(**kwargs)
    except StopRun:
        raise
    except Exception as exc:  # only a wrapper can get here: plain implementations are guarded
        warnings.warn(
            f"a hook wrapper raised in {hook_name}: {exc!r}; the run continues.",
            RuntimeWarning,
            stacklevel=2,
        )


def hook_signatures() -> dict[str, str]:
    """Every hook specification's name and signature (for docs and their meta-tests)."""
    out = {}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(fn, "automl_bin_spec"):
            out[name] = f"{name}{inspect.signature(fn)}"
    return out
