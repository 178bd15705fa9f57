"""Collapse diagnostics per search epoch and the plots a run logs as MLflow artifacts."""

from __future__ import annotations

import pytest

from automl_bin.diagnostics import genotype_diagnostics, metric_name_part, search_diagnostics
from automl_bin.interfaces import Cell, Genotype
from automl_bin.plots.cells import cell_layout, plot_cell
from automl_bin.plots.curves import curve_panels, plot_curves
from automl_bin.plots.run import snapshot_op_weights, write_curves, write_search_plots
from automl_bin.plots.weights import pick_rows, plot_op_weights, plot_op_weights_epochs
from automl_bin.testing import RecordingReporter, run_recipe, tiny_recipe_text
from automl_bin_plugins.darts_space.space import OP_SETS, DartsSpace

FREE = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect")
GENOTYPE = Genotype(space="darts", cells={
    "normal": Cell(edges=[("skip_connect", 0, 2), ("sep_conv_3x3", 1, 2),
                          ("skip_connect", 0, 3), ("max_pool_3x3", 2, 3)], concat=[2, 3]),
    "reduce": Cell(edges=[("dil_conv_5x5", 0, 2), ("avg_pool_3x3", 1, 2),
                          ("sep_conv_5x5", 1, 3), ("sep_conv_5x5", 2, 3)], concat=[2, 3]),
})
WEIGHTS = {"normal": [[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]], "reduce": [[0.5, 0.25, 0.25]] * 2}
EPOCHS = [(0, {"train_loss": 1.2, "val_loss": 1.3, "train_acc": 0.3, "val_acc": 0.25,
               "alpha_entropy": 2.07, "epoch_seconds": 0.5, "arch.normal.skip_connect": 1.0,
               "arch.normal.param_free": 2.0, "arch.normal.op.skip_connect": 1.0}),
          (1, {"train_loss": 0.9, "val_loss": 1.1, "train_acc": 0.5, "val_acc": 0.4,
               "alpha_entropy": 2.05, "epoch_seconds": 0.5, "arch.normal.skip_connect": 2.0,
               "arch.normal.param_free": 3.0, "arch.normal.op.skip_connect": 2.0})]


def _png(path):
    assert path is not None and path.exists() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------


def test_genotype_diagnostics_counts():
    ops = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5")
    d = genotype_diagnostics(GENOTYPE, FREE, ops)
    assert d["arch.normal.skip_connect"] == 2.0
    assert d["arch.normal.param_free"] == 3.0
    assert d["arch.reduce.skip_connect"] == 0.0
    assert d["arch.reduce.param_free"] == 1.0
    assert {k: v for k, v in d.items() if k.startswith("arch.normal.op.")} == {
        "arch.normal.op.none": 0.0, "arch.normal.op.max_pool_3x3": 1.0,
        "arch.normal.op.skip_connect": 2.0, "arch.normal.op.sep_conv_3x3": 1.0,
        "arch.normal.op.sep_conv_5x5": 0.0}
    # ops the cell uses beyond op_names are still counted
    assert d["arch.reduce.op.dil_conv_5x5"] == 1.0 and d["arch.reduce.op.avg_pool_3x3"] == 1.0
    assert d["arch.reduce.op.sep_conv_5x5"] == 2.0
    assert all(isinstance(v, float) for v in d.values())


def test_genotype_diagnostics_without_op_names_and_unsafe_names():
    g = Genotype(space="x", cells={"odd cell": Cell(edges=[("skip:id", 0, 2)], concat=[2])})
    assert genotype_diagnostics(g, ()) == {"arch.odd_cell.skip_connect": 1.0,
                                           "arch.odd_cell.param_free": 0.0,
                                           "arch.odd_cell.op.skip_id": 1.0}
    assert metric_name_part("a/b c.d") == "a_b_c_d"


def test_darts_space_names_its_parameter_free_ops():
    assert DartsSpace.parameter_free_ops == FREE
    for ops in OP_SETS.values():
        assert set(DartsSpace.parameter_free_ops) <= set(ops)


def test_search_diagnostics_is_empty_when_the_strategy_cannot_derive():
    class NotYet:
        def derive(self):
            raise RuntimeError("no sample yet")

    class Ready:
        def derive(self):
            return GENOTYPE

    assert search_diagnostics(NotYet(), DartsSpace()) == {}
    assert search_diagnostics(Ready(), DartsSpace())["arch.normal.skip_connect"] == 2.0


# --------------------------------------------------------------------------------------------
# plot functions
# --------------------------------------------------------------------------------------------


def test_pick_rows_keeps_first_and_last():
    assert pick_rows(0, 8) == [] and pick_rows(3, 8) == [0, 1, 2]
    rows = pick_rows(50, 8)
    assert len(rows) == 8 and rows[0] == 0 and rows[-1] == 49
    assert pick_rows(5, 1) == [4]


# every plot function draws a PNG from small inputs in test_run_plots_...; these add the rest


def test_op_weight_plots(tmp_path):
    ops = ["a", "b", "c"]
    history = [(e, WEIGHTS) for e in range(12)]
    _png(plot_op_weights_epochs(history, ops, tmp_path / "we.png", max_rows=3))
    assert plot_op_weights({}, ops, tmp_path / "none.png") is None
    assert plot_op_weights_epochs([], ops, tmp_path / "none.png") is None
    assert plot_op_weights_epochs([(0, {"normal": []})], ops, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_cell_plot(tmp_path):
    layout = cell_layout(GENOTYPE.cell("normal"))
    assert layout.labels[0] == "$c_{k-2}$" and layout.labels[1] == "$c_{k-1}$"
    assert layout.labels[2] == "0" and layout.labels[3] == "1"  # intermediate nodes from 0
    assert plot_cell(Cell(edges=[], concat=[]), tmp_path / "empty.png") is None
    assert not (tmp_path / "empty.png").exists()


def test_curve_plot(tmp_path):
    panels = {p.title: p.keys for p in curve_panels(EPOCHS[0][1])}
    assert panels == {"loss": ("train_loss", "val_loss"), "accuracy": ("train_acc", "val_acc"),
                      "collapse (ops per cell)": ("arch.normal.skip_connect",
                                                  "arch.normal.param_free"),
                      "alpha_entropy": ("alpha_entropy",)}
    _png(plot_curves(EPOCHS[:1], tmp_path / "one.png"))  # a single epoch still draws
    assert plot_curves([], tmp_path / "none.png") is None
    assert plot_curves([(0, {"epoch_seconds": 1.0, "note": "text"})], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_run_plots_log_artifacts_and_never_raise(tmp_path):
    class Weights:
        def __init__(self, result):
            self.result = result

        def op_weights(self):
            if isinstance(self.result, Exception):
                raise self.result
            return self.result

    rec = RecordingReporter(tmp_path)
    assert snapshot_op_weights(Weights(None), 0, rec) is None
    assert snapshot_op_weights(Weights(ValueError("bad")), 0, rec) is None
    assert "bad" in rec.messages[-1]
    history = [snapshot_op_weights(Weights(WEIGHTS), e, rec) for e in range(2)]
    written = write_search_plots(rec, genotype=GENOTYPE, op_names=["a", "b", "c"],
                                 history=history, epochs=EPOCHS)
    names = {p.name for p, _ in rec.artifacts}
    assert names == {p.name for p in written} == {
        "op_weights.png", "op_weights_epochs.png", "cell_normal.png", "cell_reduce.png",
        "search_curves.png"}
    for path in written:
        _png(path)
    # nothing to draw: nothing written; a failing plot: one message, no exception
    rec = RecordingReporter(tmp_path / "empty")
    assert write_search_plots(rec, genotype=None, op_names=[], history=[], epochs=[]) == []
    assert write_curves(rec, "retrain_curves.png", []) is None
    assert rec.artifacts == []
    broken = Genotype(space="x", cells={"normal": Cell(edges=[("op", -5, 2)], concat=[2])})
    assert write_search_plots(rec, genotype=broken, op_names=[], history=[], epochs=[]) == []
    assert any("cell_normal.png" in m for m in rec.messages)


# --------------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory):
    return run_recipe(tmp_path_factory.mktemp("plots"), tiny_recipe_text("darts"))


def test_run_logs_collapse_metrics_per_epoch(darts_run):
    for cell in ("normal", "reduce"):
        skips = darts_run.metrics("search", f"arch.{cell}.skip_connect")
        free = darts_run.metrics("search", f"arch.{cell}.param_free")
        assert len(skips) == len(free) == 2  # one per search epoch
        assert all(0 <= s <= f for s, f in zip(skips, free))
    normal = darts_run.genotype.cell("normal")
    assert darts_run.metrics("search", "arch.normal.skip_connect")[-1] == sum(
        "skip" in op for op in normal.ops())
    assert len(darts_run.metrics("search", "arch.normal.op.sep_conv_3x3")) == 2


def test_run_logs_plots_as_artifacts(darts_run):
    search = set(darts_run.artifacts("search"))
    assert {"op_weights.png", "op_weights_epochs.png", "cell_normal.png", "cell_reduce.png",
            "search_curves.png"} <= search
    assert "retrain_curves.png" in darts_run.artifacts("retrain")
    for path in ("search/op_weights_epochs.png", "search/cell_normal.png",
                 "retrain/retrain_curves.png"):
        _png(darts_run.run_dir / path)
