"""Shared fixtures. Tests never reach the network: MLflow telemetry is off, no downloads."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DO_NOT_TRACK", "true")
# one torch process at a time on 2 cores; keep each test's torch single-threaded-ish
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402

warnings.filterwarnings("ignore", message=".*SADeprecationWarning.*")


TINY_RECIPE = """
[experiment]
name = "{name}"
seed = 3
output_dir = "{out}"

[data]
name = "synthetic"
batch_size = 16
eval_batch_size = 64
num_classes = 3
image_size = 8
channels = 1
train_size = 96
test_size = 48

[search_space]
name = "darts"
layers = 2
init_channels = 4
nodes = 2
stem_multiplier = 1

[strategy]
name = "{strategy}"
epochs = 2
max_steps = 2

[retrain]
epochs = 1
max_steps = 2
network = {{ layers = 2, init_channels = 4, stem_multiplier = 1 }}

[tracking]
uri = "{uri}"
"""


@pytest.fixture
def tiny_recipe(tmp_path):
    """A function returning the text of a seconds-long recipe on synthetic data."""

    def make(strategy: str = "darts", name: str = "tiny", tracking: bool = True) -> str:
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        text = TINY_RECIPE.format(name=name, out=tmp_path / "runs", strategy=strategy, uri=uri)
        if not tracking:
            text = text.replace(f'uri = "{uri}"', "enabled = false")
        return text

    return make


@pytest.fixture(scope="session")
def plugins():
    """The plugin set of the installed package (built-ins through entry points)."""
    from automl_bin.plugins import load_plugins

    return load_plugins()


# A finished run folder for ``automl-bin export`` tests (tests/test_deploy.py,
# tests/test_export_destination.py): a tiny 1-bit DARTS network on 8x8 single-channel images.
EXPORT_RUN_RECIPE = """
[data]
name = "synthetic"
channels = 1
image_size = 8
num_classes = 3

[search_space]
name = "darts"
layers = 2
init_channels = 4
nodes = 2
stem_multiplier = 1
ops = "binary"

[binarizer]
name = "xnor"

[strategy]
name = "darts"

[retrain]
network = { layers = 2, init_channels = 4, stem_multiplier = 1 }
"""

_EXPORT_RUN_CELL = {"edges": [["sep_conv_3x3", 0, 2], ["skip_connect", 1, 2],
                              ["max_pool_3x3", 0, 3], ["dil_conv_3x3", 2, 3]], "concat": [2, 3]}


@pytest.fixture(scope="session")
def make_export_run():
    """``make(folder, finished=False, transform=None) -> folder``: write recipe.toml,
    genotype.json and model.pt (the built network, passed through ``transform`` first), and
    with ``finished`` a FINISHED summary.json."""
    import torch

    from automl_bin.cli.common import load_and_resolve
    from automl_bin.interfaces import Genotype

    def make(folder, finished=False, transform=None):
        folder.mkdir(parents=True)
        (folder / "recipe.toml").write_text(EXPORT_RUN_RECIPE)
        genotype = Genotype(space="darts",
                            cells={"normal": _EXPORT_RUN_CELL, "reduce": _EXPORT_RUN_CELL})
        (folder / "genotype.json").write_text(genotype.to_json())
        if finished:
            (folder / "summary.json").write_text('{"status": "FINISHED"}')
        resolved, _ = load_and_resolve(str(folder / "recipe.toml"), ())
        net = resolved.search_space.build_network(
            genotype, (1, 8, 8), 3, resolved.binarizer,
            {"layers": 2, "init_channels": 4, "stem_multiplier": 1})
        if transform is not None:
            net = transform(net)
        torch.save(net.state_dict(), folder / "model.pt")
        return folder

    return make
