"""Every plot automl-bin draws, one module per subject.

- `automl_bin.plots.figure`: the figure helpers every plot uses (`new_figure`, `save_figure`);
- `automl_bin.plots.weights`: operation-weight heat maps (final, and per epoch);
- `automl_bin.plots.cells`: a genotype's cell drawn as a graph;
- `automl_bin.plots.curves`: the training curves of one phase;
- `automl_bin.plots.run`: the plots the runner writes into a phase folder and logs;
- `automl_bin.plots.compare`: accuracy against search cost and against a swept value;
- `automl_bin.plots.sampling`: the operation-space reduction of a sampling search.

Figures are drawn on matplotlib's Agg canvas without pyplot and without the global
``matplotlib.use``: pyplot keeps a global registry of open figures and may pick a GUI backend,
neither of which a run (or a notebook calling `automl_bin.runner.run`) should be exposed to.
matplotlib is imported only when a plot is drawn. Every plot function returns None and writes
nothing when it has nothing to draw.
"""

from automl_bin.plots.figure import new_figure, save_figure

__all__ = ["new_figure", "save_figure"]
