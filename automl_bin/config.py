"""Structure plain TOML data into frozen attrs config classes, with path-qualified errors.

Every plugin validates its own recipe keys with an attrs class (its ``Config``). This module
turns a TOML table into an instance of that class and explains any mismatch in one sentence:
an unknown key with the close matches, a wrong type naming the key, value and expected type,
or an out-of-range value with the validator's reason.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import attrs

from automl_bin.errors import UsageError, suggest

__all__ = ["structure", "describe_type", "config_fields"]


def describe_type(tp: Any) -> str:
    """A readable name of a field type: ``int``, ``list of float``, ``one of 'a', 'b'``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        parts = [describe_type(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return text + (" (or omitted)" if type(None) in args else "")
    if origin in (list, tuple):
        inner = args[0] if args else Any
        return f"a list of {describe_type(inner)}"
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return "a table"
    if attrs.has(tp):
        return "a table"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is str:
        return "a string"
    return getattr(tp, "__name__", str(tp))


def _fail(path: str, value: Any, tp: Any) -> UsageError:
    return UsageError(
        f"Recipe key '{path}' has the value {value!r} ({type(value).__name__}), but it must be "
        f"{describe_type(tp)}. Fix the value in the recipe or with --set {path}=..."
    )


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in args and type(value) is type(args[list(args).index(value)]):
            return value
        raise UsageError(
            f"Recipe key '{path}' is {value!r}, but it must be one of "
            f"{', '.join(repr(a) for a in args)}.{suggest(str(value), [str(a) for a in args])}"
        )
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except UsageError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise _fail(path, value, tp)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(path, value, tp)
        inner = args[0] if args else Any
        items = [_convert(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _fail(path, value, tp)
        return dict(value)
    if attrs.has(tp):
        if not isinstance(value, Mapping):
            raise _fail(path, value, tp)
        return structure(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(path, value, tp)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(path, value, tp)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _fail(path, value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _fail(path, value, tp)
    return value


def config_fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of an attrs config class."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in attrs.fields(cls)}


def structure(cls: type, data: Mapping[str, Any], path: str) -> Any:
    """Build ``cls`` from ``data``; ``path`` (e.g. ``strategy``) prefixes every key in errors."""
    if not isinstance(data, Mapping):
        raise UsageError(f"Recipe section '{path}' must be a table, not {data!r}.")
    fields = config_fields(cls)
    for key in data:
        if key not in fields:
            known = sorted(fields)
            raise UsageError(
                f"Unknown recipe key '{path}.{key}'.{suggest(key, known)} "
                f"Valid keys in [{path}]: {', '.join(known) if known else '(none)'}."
            )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(fields[key], value, f"{path}.{key}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"Invalid value in [{path}]: {exc}. Fix the recipe or use --set.") from exc
