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
