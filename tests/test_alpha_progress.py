"""alpha_margin / argmax_changes (logged every search epoch) and the static-alpha warning."""

from __future__ import annotations

import pytest

from automl_bin.alpha_progress import (
    MIN_MARGIN,
    alpha_margin,
    alpha_progress,
    argmax_changes,
    static_alpha_warning,
)

UNIFORM = {"normal": [[0.25] * 4, [0.25] * 4, [0.25] * 4]}
MOVED = {"normal": [[0.4, 0.3, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1], [0.3, 0.3, 0.2, 0.2]],
         "reduce": [[0.5, 0.2, 0.2, 0.1]]}


def test_margin_is_the_median_top1_minus_top2_over_all_edges():
    assert alpha_margin(UNIFORM) == 0.0
    # edge margins 0.1, 0.4, 0.0, 0.3 -> median 0.2
    assert alpha_margin(MOVED) == pytest.approx(0.2)


def test_argmax_changes_counts_edges_whose_top_op_moved():
    before = {"normal": [[0.4, 0.3, 0.2, 0.1], [0.6, 0.1, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]],
              "reduce": [[0.5, 0.2, 0.2, 0.1]]}
    assert argmax_changes(before, MOVED) == 2  # edges 1 and 2 of the normal cell
    assert argmax_changes(MOVED, MOVED) == 0
    assert alpha_progress(MOVED, None)["argmax_changes"] == 0.0
    assert alpha_progress(MOVED, before) == {"alpha_margin": pytest.approx(0.2),
                                             "argmax_changes": 2.0}


def test_static_alpha_warns_below_the_threshold_and_names_the_keys():
    text = static_alpha_warning(1e-4, "darts")
    assert text is not None and "arch_lr" in text and "max_steps" in text and "darts" in text
    assert static_alpha_warning(MIN_MARGIN, "darts") is None
    assert static_alpha_warning(0.2, "darts") is None


def test_tiny_darts_run_logs_alpha_progress(tmp_path):
    from automl_bin.testing import run_recipe, tiny_recipe_text

    run = run_recipe(tmp_path, tiny_recipe_text("darts", retrain=False,
                                                strategy_params={"arch_lr": 0.1}))
    margins = run.metrics("search", "alpha_margin")
    assert len(margins) == len(run.metrics("search", "alpha_entropy")) >= 2
    assert margins[-1] > margins[0] >= 0.0  # α moved at a large arch_lr
    assert len(run.metrics("search", "argmax_changes")) == len(margins)
    assert run.metrics("search", "weight_images")[-1] > 0
