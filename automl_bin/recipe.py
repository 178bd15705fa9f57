"""Recipes: one TOML file that composes a whole experiment.

Loading is two steps, both free of torch:

1. `load_recipe` parses TOML, applies ``--set`` overrides and validates the core sections into
   frozen attrs classes (unknown sections and keys get a did-you-mean).
2. `resolve` looks the named components up in the registry and validates each one's own keys
   with that plugin's ``Config`` class.

Recipes are data: nothing in them is ever evaluated as code.
"""

from __future__ import annotations

import copy
import hashlib
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from automl_bin.config import structure
from automl_bin.errors import UsageError, suggest
from automl_bin.registry import Registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Recipe",
    "ExperimentConfig",
    "DataConfig",
    "ComponentConfig",
    "RetrainConfig",
    "TrackingConfig",
    "ResolvedRecipe",
    "load_recipe",
    "parse_recipe",
    "parse_toml",
    "MAX_NESTING",
    "MAX_NAME_LENGTH",
    "read_recipe_text",
    "recipe_from_data",
    "recipe_sections",
    "resolve",
    "flatten",
]


def _positive(_inst: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise ValueError(f"'{attribute.name}' must be >= 1, got {value}")


def _portion(_inst: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"'{attribute.name}' must be between 0 and 1 (exclusive), got {value}")


#: the longest experiment name: it is a folder name and an MLflow experiment name
MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def _experiment_name(_inst: Any, _attribute: attrs.Attribute, value: str) -> None:
    # the name becomes a folder under output_dir: a separator, "..", a control character or an
    # over-long name would write elsewhere or fail only when the run starts
    if _NAME.fullmatch(value) and len(value) <= MAX_NAME_LENGTH:
        return
    shown = repr(value) if len(value) <= 40 else f"{value[:37]!r}... ({len(value)} characters)"
    raise ValueError(
        f"'name' is {shown}, but an experiment name is a folder under output_dir and an MLflow "
        f"experiment, so it must be 1 to {MAX_NAME_LENGTH} characters of letters, digits, '-', "
        "'_' and '.', not starting with '.' (e.g. name = \"darts-fmnist\"); put folders in "
        "output_dir instead")


@attrs.frozen(kw_only=True)
class ExperimentConfig:
    #: MLflow experiment name and the folder name under output_dir: letters, digits, ``-``,
    #: ``_`` and ``.`` (not first), at most 100 characters
    name: str = attrs.field(default="automl-bin", validator=_experiment_name)
    #: seeds python, numpy and torch; the DARTS search default is 2
    seed: int = 2
    #: every run writes a new folder output_dir/<name>/<timestamp>-<id>; nothing is overwritten
    output_dir: str = "runs"
    #: "auto" picks CUDA when available, else the CPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: ask torch for deterministic algorithms (slower on GPU)
    deterministic: bool = False
    #: torch intra-op threads; 0 keeps torch's default
    threads: int = 0


@attrs.frozen(kw_only=True)
class DataConfig:
    name: str = "synthetic"
    batch_size: int = attrs.field(default=64, validator=_positive)
    #: batch size for evaluation passes (no gradients, so larger is fine)
    eval_batch_size: int = attrs.field(default=256, validator=_positive)
    #: fraction of the training set used to train weights during search; the rest is validation
    train_portion: float = attrs.field(default=0.5, validator=_portion)
    #: the search uses only this many training images (seeded shuffle, then split); None = all.
    #: Retraining always uses the whole training set.
    subset: int | None = attrs.field(default=None)
    #: the data set plugin's own keys (root, download, ...)
    params: dict[str, Any] = attrs.field(factory=dict)

    @subset.validator
    def _check_subset(self, attribute: attrs.Attribute, value: int | None) -> None:
        if value is not None and value < 4:
            raise ValueError(f"'subset' must be at least 4 images, got {value}")


@attrs.frozen(kw_only=True)
class ComponentConfig:
    """A section that names a plugin; every other key belongs to that plugin's Config."""

    name: str
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RetrainConfig:
    #: retrain the derived genotype from scratch after the search
    enabled: bool = True
    estimator: str = "retrain"
    #: size of the discrete network (validated by the search space's NetworkConfig)
    network: dict[str, Any] = attrs.field(factory=dict)
    #: the estimator's own keys (epochs, lr, ...)
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class TrackingConfig:
    enabled: bool = True
    #: MLflow tracking URI; None = MLFLOW_TRACKING_URI, else MLflow's default (./mlflow.db)
    uri: str | None = None
    #: when a tracking *server* (http/https URI) cannot be reached: "stop" the run at once with
    #: its checkpoint kept (resume it with --resume once the server is back: nothing is lost),
    #: or "continue" untracked with a warning (the metrics stay only in the run folder)
    on_error: Literal["stop", "continue"] = "stop"


@attrs.frozen(kw_only=True)
class Recipe:
    experiment: ExperimentConfig
    data: DataConfig
    search_space: ComponentConfig
    binarizer: ComponentConfig
    strategy: ComponentConfig
    retrain: RetrainConfig
    tracking: TrackingConfig
    #: the recipe as run (after --set overrides), as plain TOML data
    raw: dict[str, Any] = attrs.field(eq=False, repr=False)
    source: str = "<string>"

    @property
    def sha256(self) -> str:
        import json

        return hashlib.sha256(json.dumps(self.raw, sort_keys=True).encode()).hexdigest()


_SECTIONS = ("experiment", "data", "search_space", "binarizer", "strategy", "retrain", "tracking")
_DEFAULT_NAMES = {"search_space": "darts", "binarizer": "none"}


#: the deepest nesting of tables and arrays a recipe may have; real recipes use 3 or 4
MAX_NESTING = 32


def _depth(value: Any) -> int:
    """Nesting depth of tables and arrays in ``value`` (0 for a scalar); iterative, so a
    hostile document cannot exhaust the stack."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children = list(node.values())
        elif isinstance(node, (list, tuple)):
            children = list(node)
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep(source: str) -> UsageError:
    return UsageError(
        f"{source} nests tables or arrays more than {MAX_NESTING} levels deep; a recipe needs "
        "only a few levels ([section], a key's table, a list). Flatten the recipe (or the --set "
        "key) to a few levels.")


_STRING_OR_COMMENT = re.compile(
    r'"""(?:\\.|[^\\])*?"""' r"|'''.*?'''" r'|"(?:\\.|[^"\\\n])*"' r"|'[^'\n]*'" r"|#[^\n]*",
    re.DOTALL)
_FLOAT = re.compile(r"(?<![\w.])[+-]?\d[\d_]*\.\d[\d_]*(?:[eE][+-]?\d+)?(?![\w.])")


def _dotted_too_deep(text: str) -> bool:
    """Whether a line has a dotted key of more than `MAX_NESTING` parts. Checked before parsing
    because tomllib's time and memory grow with the square of a key's parts (10k parts: 5 s)."""
    bare = _FLOAT.sub("0", _STRING_OR_COMMENT.sub("", text))
    return any(line.count(".") > MAX_NESTING for line in bare.splitlines())


def parse_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse recipe TOML ``text``: a UsageError for invalid TOML or nesting beyond `MAX_NESTING`."""
    if _dotted_too_deep(text):
        raise _too_deep(source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source} is not valid TOML: {exc}. Check the line it names.") from exc
    except RecursionError:
        raise _too_deep(source) from None
    if _depth(raw) > MAX_NESTING:
        raise _too_deep(source)
    return raw


def _parse_value(text: str) -> Any:
    """Parse an override value as TOML (``3``, ``0.1``, ``true``, ``"x"``, ``[1, 2]``), else a string."""
    try:
        return parse_toml(f"v = {text}", "--set value")["v"]
    except UsageError as exc:
        if isinstance(exc.__cause__, tomllib.TOMLDecodeError):
            return text
        raise


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (nested keys allowed) to a copy of ``raw``."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise UsageError(
                f"--set {item!r} is not of the form section.key=value (e.g. --set strategy.epochs=3)."
            )
        key, value = item.split("=", 1)
        parts = [p.strip() for p in key.strip().split(".")]
        if len(parts) < 2 or not all(parts):
            raise UsageError(
                f"--set {item!r}: the key must name a section and a key, e.g. strategy.epochs=3."
            )
        if len(parts) > MAX_NESTING:
            raise _too_deep(f"--set {key[:40]!r}...")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"--set {item!r}: '{part}' is a value, not a table.")
            node = child
        node[parts[-1]] = _parse_value(value.strip())
    return out


def _component(raw: Mapping[str, Any], section: str, reserved: Sequence[str] = ()) -> dict[str, Any]:
    """Split a component section into its core keys and the plugin's params."""
    table = dict(raw.get(section, {}))
    core = {k: table.pop(k) for k in ("name", *reserved) if k in table}
    core.setdefault("name", _DEFAULT_NAMES.get(section, ""))
    if not core["name"]:
        raise UsageError(f"Recipe section [{section}] needs a 'name' key naming the {section} plugin.")
    core["params"] = table
    return core


def parse_recipe(text: str, overrides: Sequence[str] = (), source: str = "<string>") -> Recipe:
    """Parse recipe TOML ``text``; see `load_recipe`."""
    return recipe_from_data(apply_overrides(parse_toml(text, source), overrides), source)


def recipe_sections() -> tuple[str, ...]:
    """The sections a single-run recipe may have."""
    return _SECTIONS


def recipe_from_data(raw: dict[str, Any], source: str = "<string>") -> Recipe:
    """Validate parsed recipe data (a TOML document as dicts) into a `Recipe`."""
    if _depth(raw) > MAX_NESTING:
        raise _too_deep(source)
    experiment = raw.get("experiment")
    if "suite" in raw or "sweep" in raw or "reference" in raw or (
            isinstance(experiment, dict) and "seeds" in experiment):
        raise UsageError(
            f"{source} is a suite (it has [[suite]], [sweep], [reference] or [experiment] seeds) "
            "and expands "
            "into several runs; `automl-bin run` and `check` expand it, commands that take one "
            "run's recipe do not. Use the recipe.toml of one of its runs instead.")
    for section, value in raw.items():
        if section not in _SECTIONS:
            raise UsageError(
                f"Unknown recipe section [{section}] in {source}.{suggest(section, _SECTIONS)} "
                f"Valid sections: {', '.join(_SECTIONS)}."
            )
        if not isinstance(value, dict):
            raise UsageError(f"Recipe section [{section}] must be a table, not {value!r}.")
    if "strategy" not in raw or "name" not in raw["strategy"]:
        raise UsageError(f"{source} has no [strategy] name; add e.g. [strategy] name = \"darts\".")
    if "data" not in raw or "name" not in raw["data"]:
        raise UsageError(f"{source} has no [data] name; add e.g. [data] name = \"fashion_mnist\".")

    data = dict(raw.get("data", {}))
    data_core = {k: data.pop(k) for k in ("name", "batch_size", "eval_batch_size", "train_portion",
                                          "subset") if k in data}
    retrain = dict(raw.get("retrain", {}))
    retrain_core = {k: retrain.pop(k) for k in ("enabled", "estimator", "network") if k in retrain}
    return Recipe(
        experiment=structure(ExperimentConfig, raw.get("experiment", {}), "experiment"),
        data=structure(DataConfig, {**data_core, "params": data}, "data"),
        search_space=structure(ComponentConfig, _component(raw, "search_space"), "search_space"),
        binarizer=structure(ComponentConfig, _component(raw, "binarizer"), "binarizer"),
        strategy=structure(ComponentConfig, _component(raw, "strategy"), "strategy"),
        retrain=structure(RetrainConfig, {**retrain_core, "params": retrain}, "retrain"),
        tracking=structure(TrackingConfig, raw.get("tracking", {}), "tracking"),
        raw=raw,
        source=source,
    )


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read and validate the core sections of the recipe at ``path``."""
    return parse_recipe(read_recipe_text(path), overrides, source=str(path))


def read_recipe_text(path: str | Path) -> str:
    """The text of the recipe file ``path``, or a UsageError saying why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        hint = " Shipped recipes are in the recipes/ folder of the project." if not path.exists() else ""
        raise UsageError(f"Recipe file {str(path)!r} does not exist or is not a file.{hint}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read recipe {str(path)!r}: {exc}.") from exc


@attrs.frozen(kw_only=True)
class ResolvedRecipe:
    """A recipe whose components exist and whose plugin keys are validated."""

    recipe: Recipe
    dataset: Any
    search_space: Any
    binarizer: Any
    strategy: Any
    retrain_estimator: Any | None
    network: Any
    #: the estimator the strategy asked for (its ``estimator`` key), or None
    search_estimator: Any | None = None

    @property
    def components(self) -> tuple[Any, ...]:
        """The plugin instances of the run (for naming the one whose code fails)."""
        return tuple(c for c in (self.dataset, self.search_space, self.binarizer, self.strategy,
                                 self.retrain_estimator, self.search_estimator) if c is not None)


def _plugin_config(registry: Registry, kind: str, name: str, params: Mapping[str, Any],
                   section: str) -> tuple[type, Any]:
    entry = registry.get(kind, name)
    return entry.cls, structure(entry.cls.Config, params, section)


def resolve(recipe: Recipe, registry: Registry) -> ResolvedRecipe:
    """Check every named component exists and validate its keys; build (unstarted) instances."""
    ds_cls, ds_cfg = _plugin_config(registry, "dataset", recipe.data.name, recipe.data.params, "data")
    sp_cls, sp_cfg = _plugin_config(registry, "search_space", recipe.search_space.name,
                                    recipe.search_space.params, "search_space")
    bz_cls, bz_cfg = _plugin_config(registry, "binarizer", recipe.binarizer.name,
                                    recipe.binarizer.params, "binarizer")
    st_cls, st_cfg = _plugin_config(registry, "strategy", recipe.strategy.name,
                                    recipe.strategy.params, "strategy")
    network = structure(sp_cls.NetworkConfig, recipe.retrain.network, "retrain.network")
    retrain_est = None
    if recipe.retrain.enabled:
        es_cls, es_cfg = _plugin_config(registry, "estimator", recipe.retrain.estimator,
                                        recipe.retrain.params, "retrain")
        retrain_est = es_cls(es_cfg)
    elif recipe.retrain.params:
        key = sorted(recipe.retrain.params)[0]
        raise UsageError(
            f"Recipe key 'retrain.{key}' is set but [retrain] enabled = false; remove it or "
            "enable retraining."
        )
    search_est = None
    est_name = getattr(st_cfg, "estimator", None)
    if isinstance(est_name, str):
        es_cls, es_cfg = _plugin_config(registry, "estimator", est_name,
                                        getattr(st_cfg, "estimator_params", {}) or {},
                                        "strategy.estimator_params")
        search_est = es_cls(es_cfg)
    space = sp_cls(sp_cfg)
    binarizer = bz_cls(bz_cfg)
    strategy = st_cls(st_cfg)
    problem = strategy.check_compatible(space, binarizer)
    if problem:
        raise UsageError(f"Strategy {recipe.strategy.name!r} cannot run this recipe: {problem}")
    return ResolvedRecipe(
        recipe=recipe,
        dataset=ds_cls(ds_cfg),
        search_space=space,
        binarizer=binarizer,
        strategy=strategy,
        retrain_estimator=retrain_est,
        network=network,
        search_estimator=search_est,
    )


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}`` (for tracked params)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)
    return out
