"""`automl_bin.tracking`: one home for the store's location, tag and key names, and the params a
run records (the resolved recipe, plugin defaults included)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

# Before mlflow is imported anywhere in this process: no telemetry lookups, no INFO chatter.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from automl_bin.plugins import load_plugins  # noqa: E402
from automl_bin.recipe import flatten, parse_recipe, resolve  # noqa: E402
from automl_bin.run_info import RunInfo  # noqa: E402
from automl_bin.tracking import names  # noqa: E402
from automl_bin.tracking.store import open_client, run_folder_of  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]

DCP_RECIPE = """
[experiment]
name = "tracking-params"

[data]
name = "synthetic"
num_classes = 3

[search_space]
name = "darts"
layers = 2

[binarizer]
name = "recon"

[strategy]
name = "dcp_nas"
parent_epochs = 2

[retrain]
epochs = 1
"""


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


def test_resolve_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert names.resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", " sqlite:////x/y.db ")
    assert names.resolve_tracking_uri(None) == "sqlite:////x/y.db"
    assert names.resolve_tracking_uri("http://host:5000") == "http://host:5000"


def test_missing_sqlite_store_names_the_file(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    assert names.missing_sqlite_store(f"sqlite:///{db}") == str(db)
    db.write_bytes(b"")
    assert names.missing_sqlite_store(f"sqlite:///{db}") is None
    assert names.missing_sqlite_store("sqlite://") == "sqlite://"  # no file: the URI itself
    assert names.missing_sqlite_store("http://host:5000") is None


def test_tracking_key_keeps_mlflow_characters_only() -> None:
    assert names.tracking_key("strategy.lr") == "strategy.lr"
    assert names.tracking_key("alpha[normal]#1") == "alpha_normal__1"
    assert len(names.tracking_key("k" * 400)) == 250


def test_store_readers_refuse_a_missing_store(tmp_path: Path) -> None:
    from automl_bin.errors import UsageError

    uri = f"sqlite:///{tmp_path / 'nowhere.db'}"
    with pytest.raises(UsageError, match="There is no MLflow store at"):
        open_client(uri)
    with pytest.raises(UsageError, match="there is no MLflow store at .*nowhere.db"):
        run_folder_of("0123abcd", uri)
    assert not (tmp_path / "nowhere.db").exists()  # nothing was created


def test_recipe_params_include_plugin_defaults(registry) -> None:
    from automl_bin_plugins.strategies.dcp_nas import DcpNasConfig

    resolved = resolve(parse_recipe(DCP_RECIPE), registry)
    params = names.recipe_params(resolved)
    default = DcpNasConfig()
    # not in the recipe, tracked with the plugin's default
    assert "lambda_tangent" not in DCP_RECIPE
    assert params["strategy.lambda_tangent"] == str(default.lambda_tangent)
    assert params["strategy.fd_eps"] == str(default.fd_eps)
    # written keys keep the recipe's value, core sections their defaults
    assert params["strategy.parent_epochs"] == "2"
    assert params["strategy.name"] == "dcp_nas"
    assert params["data.num_classes"] == "3"
    assert params["data.channels"] == str(resolved.dataset.config.channels)
    assert params["data.eval_batch_size"] == "256"
    assert params["experiment.seed"] == str(resolved.recipe.experiment.seed)
    assert params["search_space.layers"] == "2"
    assert params["search_space.init_channels"] == str(resolved.search_space.config.init_channels)
    assert "binarizer.fold_into_backward" in params
    assert params["retrain.epochs"] == "1"
    assert params["retrain.enabled"] == "True"
    assert any(key.startswith("retrain.network.") for key in params)
    assert not any(key.startswith("tracking.") for key in params)
    # every key the recipe writes (but [tracking]) is among them, with the same spelling
    raw = {k: v for k, v in flatten(resolved.recipe.raw).items() if not k.startswith("tracking.")}
    assert {k: params[k] for k in raw} == raw


def test_recipe_params_of_the_search_estimator_and_no_retrain(registry) -> None:
    text = ('[data]\nname = "synthetic"\n[strategy]\nname = "random"\n'
            'estimator_params = { max_batches = 3 }\n[retrain]\nenabled = false\n')
    params = names.recipe_params(resolve(parse_recipe(text), registry))
    assert params["strategy.estimator"] == "supernet"
    assert params["strategy.estimator_params.max_batches"] == "3"
    assert params["strategy.estimator_params.bn_stats"] == "batch"  # the estimator's default
    assert params["retrain.enabled"] == "False"
    assert not any(key.startswith("retrain.network.") for key in params)


def test_run_info_tracked_params_add_the_resolved_settings(registry) -> None:
    recipe = parse_recipe(DCP_RECIPE)
    plain = RunInfo(recipe=recipe, recipe_text=DCP_RECIPE, run_dir=Path("run"),
                    params=flatten(recipe.raw), tags={})
    assert plain.tracked_params == flatten(recipe.raw)
    resolved = resolve(recipe, registry)
    info = RunInfo(recipe=recipe, recipe_text=DCP_RECIPE, run_dir=Path("run"),
                   params=flatten(recipe.raw), tags={}, resolved=resolved)
    assert info.tracked_params == {**flatten(recipe.raw), **names.recipe_params(resolved)}


def test_mlflow_tracker_logs_the_resolved_params(registry, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from automl_bin_plugins.tracking import mlflow_tracker as tracker

    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts under <cwd>/mlruns
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    recipe = parse_recipe(DCP_RECIPE, [f'tracking.uri="{uri}"'])
    info = RunInfo(recipe=recipe, recipe_text=DCP_RECIPE, run_dir=tmp_path / "run",
                   params=flatten(recipe.raw), tags={"strategy": "dcp_nas"},
                   resolved=resolve(recipe, registry))
    tracker.on_run_start(run=info)
    tracker.on_run_end(run=info, status="FINISHED", summary={})
    logged = MlflowClient(tracking_uri=uri).get_run(info.announcements["mlflow_run_id"]).data
    key = "strategy.lambda_tangent"
    assert logged.params[key] == info.tracked_params[key]
    assert logged.params["strategy.parent_epochs"] == "2"
    assert logged.tags[names.ROLE_TAG] == names.ROLE_RUN
    assert logged.tags[names.RUN_DIR_TAG] == str((tmp_path / "run").resolve())


#: tag names and the variable that only `automl_bin.tracking.names` may spell out
_TRACKING_LITERALS = ("automl_bin.run_dir", "automl_bin.role", "mlflow.parentRunId",
                      "automl_bin.resumed", "automl_bin.tracking_incomplete")


def _code_strings(tree: ast.AST) -> list[str]:
    """The string constants of a module that are not docstrings."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_tag_names_and_uri_resolution_have_one_home() -> None:
    home = ROOT / "automl_bin" / "tracking" / "names.py"
    found = []
    for folder in (ROOT / "automl_bin", ROOT / "plugins"):
        for path in folder.rglob("*.py"):
            if path == home or "templates" in path.parts:
                continue
            for text in _code_strings(ast.parse(path.read_text(encoding="utf-8"))):
                hits = [lit for lit in _TRACKING_LITERALS if lit in text]
                if text == names.TRACKING_URI_ENV:  # resolving the store by hand
                    hits.append(text)
                found += [(str(path.relative_to(ROOT)), hit) for hit in hits]
    assert found == []
