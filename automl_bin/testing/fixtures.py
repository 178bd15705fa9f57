"""Tiny components for plugin tests: plugin sets, a search space, data, environments, recipes.

Every helper builds something that runs in well under a second on a CPU: a 2-cell DARTS space
with 4 channels and 2 nodes, 96 + 48 synthetic 1x8x8 images of 3 classes, and recipes that
search 2 epochs of 2 steps and retrain 1 epoch of 2 steps. Torch is imported inside the
functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from automl_bin import hookimpl
from automl_bin.interfaces import Estimate, EstimationEnv, Estimator, Genotype, SearchEnv
from automl_bin.plugins import PluginSet, load_plugins
from automl_bin.registry import KINDS, Registry
from automl_bin.tracking.names import PARENT_TAG

if TYPE_CHECKING:
    from automl_bin.interfaces import DataSplits
    from automl_bin.runner import RunResult

__all__ = [
    "FakeEstimator",
    "FakeEstimatorConfig",
    "RecipeRun",
    "RecordingReporter",
    "STRATEGY_SHRINK",
    "SearchEnvFactory",
    "SPACE_SHRINK",
    "NETWORK_SHRINK",
    "RETRAIN_SHRINK",
    "TINY_DATA",
    "make_plugins",
    "run_recipe",
    "shrink_config",
    "tiny_data",
    "tiny_estimation_env",
    "tiny_network",
    "tiny_recipe_text",
    "tiny_search_env",
    "tiny_space",
    "tiny_splits",
]

T = TypeVar("T")


def _cap(limit: int) -> Callable[[int], int]:
    """At most ``limit``; 0 (the usual "no limit") becomes ``limit``."""
    return lambda value: value if 0 < value <= limit else limit


#: how a strategy's config is shrunk for tests (applied to the int fields that exist)
STRATEGY_SHRINK: dict[str, Callable[[int], int]] = {
    "epochs": _cap(2),
    "max_steps": _cap(2),
    "steps_per_epoch": _cap(2),
    "samples_per_epoch": _cap(2),
    "warmup_epochs": lambda value: 0,
}
#: how a search space's config is shrunk (the DARTS space becomes 2 cells x 4 channels x 2 nodes)
SPACE_SHRINK: dict[str, Callable[[int], int]] = {
    "layers": _cap(2),
    "init_channels": _cap(4),
    "nodes": _cap(2),
    "stem_multiplier": _cap(1),
    "channels": _cap(8),
}
#: how a search space's NetworkConfig (the ``[retrain] network`` table) is shrunk
NETWORK_SHRINK: dict[str, Callable[[int], int]] = {
    "layers": _cap(2),
    "init_channels": _cap(4),
    "stem_multiplier": _cap(1),
    "channels": _cap(8),
}
#: how the retrain estimator's keys are shrunk (1 epoch of 2 steps)
RETRAIN_SHRINK: dict[str, Callable[[int], int]] = {
    "epochs": _cap(1),
    "max_steps": _cap(2),
    "step1_epochs": _cap(1),
    "teacher_epochs": _cap(1),
}
#: the ``[data]`` keys of the tiny synthetic data set
TINY_DATA: dict[str, Any] = {"num_classes": 3, "channels": 1, "image_size": 8,
                             "train_size": 96, "test_size": 48}


# --------------------------------------------------------------------------------------------
# plugin sets
# --------------------------------------------------------------------------------------------


def _component_plugin(name: str, cls: type) -> types.ModuleType:
    """A plugin module registering the component class ``cls`` under ``name``."""
    for kind, (base, hook_name, _) in KINDS.items():
        if issubclass(cls, base):
            module = types.ModuleType(f"automl_bin_testing_{kind}_{name}")

            def register_hook(register: Any, _name: str = name, _cls: type = cls) -> None:
                register(_name, _cls)

            register_hook.__name__ = hook_name
            setattr(module, hook_name, hookimpl(register_hook))
            return module
    bases = ", ".join(b.__name__ for b, _, _ in KINDS.values())
    raise TypeError(f"{cls!r} is not a subclass of any component interface ({bases})")


def _plugin_entry(item: Any) -> tuple[str, Any]:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        name, obj = item
        if isinstance(obj, type):
            return name, _component_plugin(name, obj)
        return name, obj
    if isinstance(item, type):
        raise TypeError(
            f"make_plugins({item.__name__}): pass a component class with the name recipes use, "
            f"e.g. make_plugins(('my_name', {item.__name__}))")
    if isinstance(item, types.ModuleType):
        return item.__name__, item
    return getattr(item, "__name__", type(item).__name__), item


def make_plugins(*plugins: Any, installed: bool = False) -> PluginSet:
    """A fresh plugin set: the built-ins plus ``plugins``, ignoring the environment.

    Each item of ``plugins`` is one of

    - a plugin module (or object) with ``@hookimpl`` functions, e.g. ``my_package.plugin``;
    - a ``(name, module_or_object)`` pair, to choose the plugin name;
    - a ``(name, ComponentClass)`` pair: a Strategy, Binarizer, SearchSpace, Estimator or
      Dataset subclass registered under ``name`` (no hook module needed);
    - a ``str``: an installed entry-point or distribution name to load from the entry points,
      with its real distribution name (e.g. ``"automl-bin-my-walk"``).

    With ``installed=True`` every installed plugin loads too. ``AUTOML_BIN_PLUGINS`` and
    ``AUTOML_BIN_DISABLE_PLUGINS`` are ignored, so tests do not depend on the shell.
    Problems (a broken plugin) are in ``.registry.problems``, as with `load_plugins`.
    """
    allow = {"automl-bin"}
    extra: list[tuple[str, Any]] = []
    for item in plugins:
        if isinstance(item, str):
            allow.add(item)
        else:
            extra.append(_plugin_entry(item))
    return load_plugins(extra, allow=set() if installed else allow, deny=set())


@functools.cache
def _builtin_registry() -> Registry:
    return make_plugins().registry


def _registry(plugins: PluginSet | None) -> Registry:
    return plugins.registry if plugins is not None else _builtin_registry()


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------


def _structure(config_cls: type, config: Any, section: str) -> Any:
    from automl_bin.config import structure

    if config is None:
        return config_cls()
    if isinstance(config, Mapping):
        return structure(config_cls, dict(config), section)
    return config


def shrink_config(config: Any, caps: Mapping[str, Callable[[int], int]]) -> Any:
    """``config`` (an attrs instance) with its int fields named in ``caps`` made small.

    A change the config's validators reject is left out. Non-attrs configs are returned as is.
    """
    if not attrs.has(type(config)):
        return config
    for field in attrs.fields(type(config)):
        fn = caps.get(field.name)
        value = getattr(config, field.name)
        if fn is None or type(value) is not int:
            continue
        new = fn(value)
        if new == value:
            continue
        try:
            config = attrs.evolve(config, **{field.name: new})
        except (ValueError, TypeError):
            continue
    return config


def _shrunk_changes(config_cls: type, caps: Mapping[str, Callable[[int], int]]) -> dict[str, Any]:
    """The recipe keys that make ``config_cls``'s defaults tiny (only those that change)."""
    try:
        default = config_cls()
    except Exception:  # a config without defaults: nothing to shrink
        return {}
    small = shrink_config(default, caps)
    if not attrs.has(config_cls):
        return {}
    return {f.name: getattr(small, f.name) for f in attrs.fields(config_cls)
            if getattr(small, f.name) != getattr(default, f.name)}


# --------------------------------------------------------------------------------------------
# components
# --------------------------------------------------------------------------------------------


def tiny_space(name: str = "darts", config: Any = None, *, plugins: PluginSet | None = None,
               shrink: bool = True) -> Any:
    """A small instance of the registered search space ``name`` (default: the DARTS space with
    2 cells, 4 channels, 2 nodes, stem multiplier 1).

    :param config: the space's config (an instance or a mapping of recipe keys); its size
        fields are shrunk unless ``shrink=False``.
    """
    cls = _registry(plugins).get("search_space", name).cls
    return _make(cls, config, "search_space", SPACE_SHRINK if shrink else {})


def _make(cls: type, config: Any, section: str, caps: Mapping[str, Callable[[int], int]]) -> Any:
    return cls(shrink_config(_structure(cls.Config, config, section), caps))


def tiny_network(space: Any) -> dict[str, Any]:
    """The ``[retrain] network`` keys of a small discrete network of ``space``."""
    cfg = shrink_config(_structure(space.NetworkConfig, None, "retrain.network"), NETWORK_SHRINK)
    return attrs.asdict(cfg) if attrs.has(type(cfg)) else {}


@functools.lru_cache(maxsize=8)
def _load_tiny_data(items: tuple[tuple[str, Any], ...]) -> DataSplits:
    cls = _builtin_registry().get("dataset", "synthetic").cls
    return cls(_structure(cls.Config, dict(items), "data")).load()


def tiny_data(**overrides: Any) -> DataSplits:
    """The tiny synthetic data set: 96 training and 48 test images, 1x8x8, 3 classes.

    Keyword arguments override the ``synthetic`` data set's keys (``num_classes``, ``channels``,
    ``image_size``, ``train_size``, ``test_size``, ``seed``, ``noise``). Cached per arguments.
    """
    return _load_tiny_data(tuple(sorted({**TINY_DATA, **overrides}.items())))


def tiny_splits(data: DataSplits | None = None, *, batch_size: int = 16, eval_batch_size: int = 64,
                train_portion: float = 0.5, seed: int = 0, device: str = "cpu") -> Mapping[str, Any]:
    """The ``train``/``val``/``test``/``train_full`` batch sources of ``data`` (default
    `tiny_data`), exactly as the runner makes them."""
    import torch

    from automl_bin.data import make_splits

    data = tiny_data() if data is None else data
    return make_splits(data, batch_size=batch_size, eval_batch_size=eval_batch_size,
                       train_portion=train_portion, subset=None, seed=seed,
                       device=torch.device(device))


class RecordingReporter:
    """An `automl_bin.interfaces.Reporter` that remembers every call (no MLflow, no terminal).

    ``metrics`` holds ``(step, metrics)`` of `log_metrics`, ``epochs`` ``(epoch, metrics)`` of
    `log_epoch`, ``artifacts`` ``(path, artifact_path)``, ``checkpoints`` the written files and
    ``messages`` the `info` lines.
    """

    def __init__(self, work_dir: str | Path | None = None, phase: str = "search") -> None:
        self.phase = phase
        if work_dir is None:
            work_dir = tempfile.mkdtemp(prefix="automl-bin-test-")
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.epochs: list[tuple[int, dict[str, float]]] = []
        self.artifacts: list[tuple[Path, str | None]] = []
        self.checkpoints: list[Path] = []
        self.messages: list[str] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.epochs.append((epoch, dict(metrics)))

    def save_checkpoint(self, state: Mapping[str, Any], name: str | None = None) -> Path:
        from automl_bin.checkpoint import save_atomic

        name = name or f"{self.phase}_checkpoint.pt"
        if name == "search_checkpoint.pt":  # as the runner's reporter does
            raise ValueError("search_checkpoint.pt is the runner's search checkpoint; a strategy "
                             "returns its state from state_dict() and the runner saves it.")
        path = save_atomic(state, self.work_dir / name)
        self.checkpoints.append(path)
        return path

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((Path(path), artifact_path))

    def log_json(self, name: str, data: Any) -> Path:
        path = self.work_dir / name
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        self.log_artifact(path)
        return path

    def track(self, iterable: Iterable[T], total: int | None, description: str) -> Iterator[T]:
        return iter(iterable)

    def info(self, message: str) -> None:
        self.messages.append(message)


@attrs.frozen(kw_only=True)
class FakeEstimatorConfig:
    #: mixed into the score, so two fake estimators can disagree
    seed: int = 0


class FakeEstimator(Estimator):
    """An instant, deterministic estimator: the score is a hash of the genotype in [0, 1).

    It trains nothing, so strategies that need an estimator (``requires_estimator``) can be
    tested in milliseconds. ``calls`` lists the genotypes it scored.
    """

    Config = FakeEstimatorConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.calls: list[Genotype] = []

    def estimate(self, genotype: Genotype, env: EstimationEnv) -> Estimate:
        self.calls.append(genotype)
        text = f"{self.config.seed}:{genotype.to_json(indent=None)}"
        digest = hashlib.sha256(text.encode()).digest()
        score = int.from_bytes(digest[:8], "big") / 2.0**64
        return Estimate(genotype=genotype, score=score,
                        metrics={f"{env.score}_acc": score, "fake_score": score})


def _component(registry: Registry, kind: str, value: Any) -> Any:
    if isinstance(value, str):
        return registry.create(kind, value)
    if isinstance(value, type):
        return value()
    return value


class SearchEnvFactory:
    """A function that builds a `SearchEnv` (``tiny_search_env`` and its fixture are these).

    The factory is easily passed where its result belongs (``strategy.setup(tiny_search_env)``
    inside a test taking the fixture), which would otherwise fail later with an unrelated
    ``AttributeError: 'function' object has no attribute 'space'``. Reading any `SearchEnv`
    field from the factory raises a TypeError that names the fix instead.
    """

    def __init__(self, make: Callable[..., SearchEnv], name: str = "tiny_search_env") -> None:
        functools.update_wrapper(self, make)
        self._make = make
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> SearchEnv:
        return self._make(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        if attribute in {field.name for field in attrs.fields(SearchEnv)}:
            raise TypeError(
                f"Got the {self._name} factory itself where a SearchEnv was expected (its "
                f"'{attribute}' was read, e.g. by Strategy.setup). {self._name} is a function "
                f"that builds the environment: call it and pass the result, e.g. "
                f"`env = {self._name}()` (or `{self._name}(space=..., binarizer=\"xnor\")`), "
                f"then `strategy.setup(env)`.")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attribute!r}")

    def __repr__(self) -> str:
        return f"<SearchEnvFactory {self._name}: call it to get a SearchEnv>"


def _tiny_search_env(work_dir: str | Path | None = None, *, space: Any = None,
                     binarizer: Any = "none", estimator: Any = None, seed: int = 0,
                     data: DataSplits | None = None, device: str = "cpu",
                     plugins: PluginSet | None = None) -> SearchEnv:
    """A `SearchEnv` on the tiny data with a `RecordingReporter` (``env.reporter``).

    :param space: a search space instance, or a registered name (made tiny); default
        `tiny_space()`.
    :param binarizer: an instance, a class or a registered name (default ``"none"``).
    :param estimator: an instance, a class or a registered name (e.g. ``"supernet"``,
        `FakeEstimator`), or None.
    :param plugins: the plugin set whose registry ``env.create`` uses (default: built-ins).
    """
    import torch

    registry = _registry(plugins)
    if space is None or isinstance(space, str):
        space = tiny_space(space or "darts", plugins=plugins)
    data = tiny_data() if data is None else data

    def create(kind: str, name: str, config: Any = None) -> Any:
        return registry.create(kind, name, config)

    return SearchEnv(space=space, binarizer=_component(registry, "binarizer", binarizer),
                     input_shape=data.input_shape, num_classes=data.num_classes,
                     device=torch.device(device), seed=seed,
                     splits=tiny_splits(data, seed=seed, device=device),
                     reporter=RecordingReporter(work_dir),
                     estimator=_component(registry, "estimator", estimator),
                     create=create, network=tiny_network(space))


#: a factory, not an environment: ``env = tiny_search_env(...)``, then ``strategy.setup(env)``
tiny_search_env = SearchEnvFactory(_tiny_search_env)


def tiny_estimation_env(work_dir: str | Path | None = None, *, space: Any = None,
                        binarizer: Any = "none", supernet: Any = None, fit: str = "train",
                        score: str = "val", seed: int = 0, data: DataSplits | None = None,
                        device: str = "cpu", plugins: PluginSet | None = None) -> EstimationEnv:
    """An `EstimationEnv` on the tiny data (see `tiny_search_env`), for testing estimators."""
    env = tiny_search_env(work_dir, space=space, binarizer=binarizer, seed=seed, data=data,
                          device=device, plugins=plugins)
    return EstimationEnv(space=env.space, binarizer=env.binarizer, input_shape=env.input_shape,
                         num_classes=env.num_classes, device=env.device, seed=seed,
                         splits=env.splits, fit=fit, score=score,  # type: ignore[arg-type]
                         reporter=RecordingReporter(env.reporter.work_dir, phase="retrain"),
                         supernet=supernet, network=env.network, create=env.create)


# --------------------------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------------------------


def _find(registry: Registry, kind: str, name: str) -> type | None:
    return registry.get(kind, name).cls if name in registry.names(kind) else None


def tiny_recipe_text(strategy: str = "darts", *, search_space: str = "darts",
                     binarizer: str = "none", dataset: str = "synthetic", name: str = "tiny",
                     retrain: bool = True, tracking: bool = True,
                     strategy_params: Mapping[str, Any] | None = None,
                     search_space_params: Mapping[str, Any] | None = None,
                     binarizer_params: Mapping[str, Any] | None = None,
                     retrain_params: Mapping[str, Any] | None = None,
                     network: Mapping[str, Any] | None = None,
                     plugins: PluginSet | None = None) -> str:
    """The TOML text of a seconds-long recipe on the tiny synthetic data.

    The named components are looked up in ``plugins`` (default: every installed plugin) and
    their size keys are shrunk the way `check_strategy` shrinks them (``epochs`` 2,
    ``max_steps`` 2, ...; a search space to 2 cells x 4 channels x 2 nodes; retraining to 1
    epoch of 2 steps). Only keys a component's ``Config`` has are written; ``*_params`` add or
    override keys. ``output_dir`` and the tracking URI are set by `run_recipe`.
    """
    import tomli_w

    registry = (plugins or make_plugins(installed=True)).registry
    doc: dict[str, Any] = {
        "experiment": {"name": name, "seed": 3, "output_dir": "runs", "device": "cpu"},
        "data": {"name": dataset, "batch_size": 16, "eval_batch_size": 64},
    }
    if dataset == "synthetic":
        doc["data"].update(TINY_DATA)
    space_cls = _find(registry, "search_space", search_space)
    doc["search_space"] = {"name": search_space}
    if space_cls is not None:
        doc["search_space"].update(_shrunk_changes(space_cls.Config, SPACE_SHRINK))
    doc["search_space"].update(search_space_params or {})
    doc["binarizer"] = {"name": binarizer, **(binarizer_params or {})}
    strategy_cls = _find(registry, "strategy", strategy)
    doc["strategy"] = {"name": strategy}
    if strategy_cls is not None:
        doc["strategy"].update(_shrunk_changes(strategy_cls.Config, STRATEGY_SHRINK))
    doc["strategy"].update(strategy_params or {})
    if retrain:
        retrain_cls = _find(registry, "estimator", "retrain")
        section: dict[str, Any] = {"estimator": "retrain"}
        if retrain_cls is not None:
            section.update(_shrunk_changes(retrain_cls.Config, RETRAIN_SHRINK))
        section.update(retrain_params or {})
        if network is not None:
            section["network"] = dict(network)
        elif space_cls is not None:
            net = _shrunk_changes(space_cls.NetworkConfig, NETWORK_SHRINK)
            if net:
                section["network"] = net
        doc["retrain"] = section
    else:
        doc["retrain"] = {"enabled": False}
    doc["tracking"] = {"enabled": tracking}
    return tomli_w.dumps(doc)


@attrs.frozen(kw_only=True)
class RecipeRun:
    """What `run_recipe` returns: the runner's result and the runs MLflow tracked.

    ``parent`` is the MLflow parent run and ``children`` its nested runs by name (``search``,
    ``retrain``); both are empty when the recipe turned tracking off.
    """

    result: RunResult
    tracking_uri: str | None = None
    parent: Any = None
    children: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.result.run_dir

    @property
    def genotype(self) -> Genotype:
        return self.result.genotype

    @property
    def summary(self) -> Mapping[str, Any]:
        return self.result.summary

    @property
    def announcements(self) -> Mapping[str, Any]:
        return self.result.announcements

    def client(self) -> Any:
        """An ``MlflowClient`` of the run's tracking store."""
        if self.parent is None:
            raise AssertionError("this run was not tracked: its recipe has [tracking] enabled = "
                                 "false, or the MLflow tracker is not loaded")
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def run(self, run_name: str) -> Any:
        """The MLflow run called ``run_name``: ``"parent"`` (or ``"run"``, or the parent's own
        name) is the parent run; ``"search"``/``"retrain"`` are its children."""
        if self.parent is None:
            self.client()  # raises the explanation
        if run_name in ("parent", "run", self.parent.info.run_name):
            return self.parent
        try:
            return self.children[run_name]
        except KeyError:
            raise KeyError(f"no tracked run {run_name!r}; runs: parent, "
                           f"{', '.join(sorted(self.children))}") from None

    def history(self, run_name: str, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of every logged value of metric ``key`` on ``run_name``, by step."""
        client = self.client()
        rows = client.get_metric_history(self.run(run_name).info.run_id, key)
        return [(m.step, m.value) for m in sorted(rows, key=lambda m: (m.step, m.timestamp))]

    def metrics(self, run_name: str, key: str) -> list[float]:
        """The values of metric ``key`` logged on ``run_name`` (``"parent"``, ``"search"``,
        ``"retrain"``), in step order; ``[]`` when it was never logged."""
        return [value for _, value in self.history(run_name, key)]

    def artifacts(self, run_name: str, path: str | None = None) -> list[str]:
        """The artifact paths of ``run_name`` (under the folder ``path``), e.g.
        ``["genotype.json", "op_weights.png"]`` for ``"search"``."""
        client = self.client()
        return sorted(a.path for a in client.list_artifacts(self.run(run_name).info.run_id, path))


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DO_NOT_TRACK", "true")


def run_recipe(tmp_path: str | Path, toml_text: str, overrides: Sequence[str] = (), *,
               plugins: PluginSet | None = None, source: str = "<run_recipe>") -> RecipeRun:
    """Parse, resolve and run a recipe, tracked in a throw-away MLflow store under ``tmp_path``.

    ``[tracking] uri`` is set to ``sqlite:///<tmp_path>/mlflow.db`` and ``[experiment]
    output_dir`` to ``<tmp_path>/runs`` (``overrides``, ``section.key=value`` strings as with
    ``--set``, are applied after that and may set them otherwise). Progress output is off.

    :param plugins: the plugin set to run with (default: every installed plugin, as
        ``automl-bin run`` loads them); use `make_plugins` to add a local plugin.
    :return: a `RecipeRun` with the `RunResult`, the MLflow parent run, its child runs by name
        and helpers that read metric histories and artifacts back through ``MlflowClient``.
    """
    from automl_bin.progress import Progress
    from automl_bin.recipe import parse_recipe, resolve
    from automl_bin.runner import run

    _quiet_mlflow()
    tmp = Path(tmp_path).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{(tmp / 'mlflow.db').as_posix()}"
    forced = [f"tracking.uri={json.dumps(uri)}",
              f"experiment.output_dir={json.dumps((tmp / 'runs').as_posix())}"]
    recipe = parse_recipe(toml_text, [*forced, *overrides], source=source)
    plugins = plugins if plugins is not None else load_plugins()
    resolved = resolve(recipe, plugins.registry)
    result = run(resolved, plugins, Progress(enabled=False))
    run_id = result.announcements.get("mlflow_run_id")
    if not run_id:
        return RecipeRun(result=result)
    from mlflow.tracking import MlflowClient

    tracking_uri = result.announcements.get("mlflow_tracking_uri", uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(run_id)
    found = client.search_runs([parent.info.experiment_id],
                               filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'")
    children = {r.info.run_name: r for r in found}
    return RecipeRun(result=result, tracking_uri=tracking_uri, parent=parent, children=children)
