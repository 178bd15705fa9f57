"""Built-in estimators: ``supernet`` (weight sharing) and ``retrain`` (train from scratch)."""

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin_plugins.estimators.retrain import RetrainEstimator
from automl_bin_plugins.estimators.supernet import SupernetEstimator


@hookimpl
def register_estimators(register: Register) -> None:
    register("supernet", SupernetEstimator)
    register("retrain", RetrainEstimator)
