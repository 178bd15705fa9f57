"""Every hook automl-bin calls, grouped by phase. This module is the plugin API.

A plugin is a module (or object) with functions decorated by ``automl_bin.hookimpl`` whose names
match the specifications below; it is found through the ``automl_bin`` entry-point group::

    [project.entry-points.automl_bin]
    my_plugin = "my_package.plugin"

Registration hooks run once when the plugin manager loads; lifecycle hooks run during
``automl-bin run`` in this order::

    on_run_start
      on_phase_start("search")
        on_epoch_end("search", epoch, ...)   x epochs   (+ on_metrics / on_artifact at any time)
        on_search_end
      on_phase_end("search", status)
      on_phase_start("retrain")
        on_epoch_end("retrain", epoch, ...)  x epochs
        on_retrain_end
      on_phase_end("retrain", status)
    on_run_end(status)                        always, also after a failure or Ctrl-C

A suite (a recipe with ``[[suite]]``, ``[sweep]`` or ``[experiment] seeds``) wraps its runs::

    on_suite_start
      (on_run_start ... on_run_end)           x members, each with ``run.suite`` set
    on_suite_end(status)                      always

Lifecycle hooks are observers: their return values are ignored, and an exception raised in one
is reported (naming the plugin) without stopping the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from automl_bin.interfaces import Estimate, Genotype
    from automl_bin.run_info import RunInfo, SuiteInfo

hookspec = pluggy.HookspecMarker("automl_bin")

#: ``register(name, cls)``: add a component class under ``name`` (a str of [a-z0-9_]).
Register = Callable[[str, type], None]

# --------------------------------------------------------------------------------------------
# Registration: called once at start-up, each plugin in turn, with a ``register`` callback.
# Registering a name twice (in one plugin or across plugins) is an error naming both plugins.
# --------------------------------------------------------------------------------------------


@hookspec
def register_search_spaces(register: Register) -> None:
    """Register `automl_bin.interfaces.SearchSpace` subclasses.

    :param register: call ``register("name", MySpace)`` once per search space; the name is what
        recipes write in ``[search_space] name``.
    :return: nothing; a returned value is ignored.
    """


@hookspec
def register_binarizers(register: Register) -> None:
    """Register `automl_bin.interfaces.Binarizer` subclasses.

    :param register: call ``register("name", MyBinarizer)``; recipes choose it with
        ``[binarizer] name``.
    :return: nothing.
    """


@hookspec
def register_strategies(register: Register) -> None:
    """Register `automl_bin.interfaces.Strategy` subclasses.

    :param register: call ``register("name", MyStrategy)``; recipes choose it with
        ``[strategy] name``.
    :return: nothing.
    """


@hookspec
def register_estimators(register: Register) -> None:
    """Register `automl_bin.interfaces.Estimator` subclasses.

    :param register: call ``register("name", MyEstimator)``; recipes choose it with
        ``[retrain] estimator`` or a strategy's ``estimator`` key.
    :return: nothing.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register `automl_bin.interfaces.Dataset` subclasses.

    :param register: call ``register("name", MyDataset)``; recipes choose it with
        ``[data] name``.
    :return: nothing.
    """


# --------------------------------------------------------------------------------------------
# Run lifecycle: called by the runner of ``automl-bin run``. Observers only.
# --------------------------------------------------------------------------------------------


@hookspec
def on_run_start(run: RunInfo) -> None:
    """A run begins: the recipe is validated, the data loaded, nothing trained yet.

    :param run: the run's description (recipe, flattened params, tags, output folder). A tracker
        may publish facts users should see with ``run.announce("mlflow_run_id", id)``.
    """


@hookspec
def on_phase_start(run: RunInfo, phase: str) -> None:
    """A phase begins: ``phase`` is ``"search"`` or ``"retrain"``.

    :param run: the run.
    :param phase: the phase name; trackers open a nested run for it.
    """


@hookspec
def on_epoch_end(run: RunInfo, phase: str, epoch: int, metrics: Mapping[str, float]) -> None:
    """An epoch of ``phase`` finished (after its checkpoint was written).

    :param run: the run.
    :param phase: ``"search"`` or ``"retrain"``.
    :param epoch: the 0-based epoch index, used as the metric step.
    :param metrics: scalar metrics of the epoch (``train_loss``, ``train_acc``, ``val_loss``,
        ``val_acc``, ``alpha_entropy``, ``epoch_seconds``, ...).
    """


@hookspec
def on_metrics(run: RunInfo, phase: str, metrics: Mapping[str, float], step: int) -> None:
    """A component logged extra metrics (`Reporter.log_metrics`) outside the epoch cadence.

    :param run: the run.
    :param phase: the phase the metrics belong to (``"run"`` for run-level summaries).
    :param metrics: scalar metrics.
    :param step: their step.
    """


@hookspec
def on_artifact(run: RunInfo, phase: str, path: Path, artifact_path: str | None) -> None:
    """A file was produced that belongs to the run (`Reporter.log_artifact`).

    :param run: the run.
    :param phase: ``"search"``, ``"retrain"`` or ``"run"`` (the parent run).
    :param path: the local file.
    :param artifact_path: a folder name inside the run's artifacts, or None for the top level.
    """


@hookspec
def on_search_end(run: RunInfo, genotype: Genotype, metrics: Mapping[str, float]) -> None:
    """The search finished and selected ``genotype``.

    :param run: the run.
    :param genotype: the derived architecture (also written to ``genotype.json``).
    :param metrics: summary metrics of the search (``search_seconds``, ...).
    """


@hookspec
def on_retrain_end(run: RunInfo, estimate: Estimate) -> None:
    """The final network was trained and scored on the test set.

    :param run: the run.
    :param estimate: its score and metrics (``test_acc``, ``params``, ``flops``, ...).
    """


@hookspec
def on_phase_end(run: RunInfo, phase: str, status: str) -> None:
    """A phase ended with ``status`` ``"FINISHED"``, ``"FAILED"`` or ``"KILLED"``.

    :param run: the run.
    :param phase: ``"search"`` or ``"retrain"``.
    :param status: how it ended.
    """


@hookspec
def on_run_end(run: RunInfo, status: str, summary: Mapping[str, Any]) -> None:
    """The run ended; called exactly once per ``on_run_start``, whatever happened.

    :param run: the run.
    :param status: ``"FINISHED"``, ``"FAILED"`` (an exception) or ``"KILLED"`` (Ctrl-C, SIGTERM).
    :param summary: run-level metrics (``search_seconds``, ``retrain_seconds``, ``test_acc``,
        ``params``, ``flops``) and, on failure, ``error`` (the message).
    """


# --------------------------------------------------------------------------------------------
# Suite lifecycle: around the runs of a suite or sweep. Observers only.
# --------------------------------------------------------------------------------------------


@hookspec
def on_suite_start(suite: SuiteInfo) -> None:
    """A suite begins: every member recipe is validated, none has run yet.

    :param suite: the suite (name, recipe text, member names, swept keys, folder). A tracker
        opens the suite's own run here; member runs see the same object as ``run.suite`` in
        ``on_run_start`` and nest under it. ``suite.resume`` is set when an interrupted suite
        continues: the announcements of that attempt (reopen its run, e.g.
        ``mlflow_suite_run_id``).
    """


@hookspec
def on_suite_end(suite: SuiteInfo, status: str, summary: Mapping[str, Any]) -> None:
    """The suite ended; called exactly once per ``on_suite_start``.

    :param suite: the suite; ``suite.artifacts`` lists its comparison files (table, plots).
    :param status: ``"FINISHED"`` (every member ran, some may have failed), ``"FAILED"`` (all
        members failed) or ``"KILLED"`` (interrupted).
    :param summary: ``runs``, ``finished``, ``failed`` (counts) and ``members``: per member
        run its ``name``, ``status`` and metrics.
    """
