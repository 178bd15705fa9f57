"""The plugin interfaces of automl-bin (torch-free at import; `supernet` imports torch)."""

from automl_bin.interfaces.binarizer import Binarizer, EmptyConfig
from automl_bin.interfaces.cell_structure import CELLS, MIXING, CellStructure, CellType
from automl_bin.interfaces.dataset import Dataset, DataShape, DataSplits
from automl_bin.interfaces.dist_context import DistContext
from automl_bin.interfaces.estimator import Estimate, EstimationEnv, Estimator
from automl_bin.interfaces.genotype import Cell, Edge, Genotype
from automl_bin.interfaces.reporter import BatchSource, Reporter
from automl_bin.interfaces.search_space import SearchSpace
from automl_bin.interfaces.strategy import SearchEnv, Strategy

__all__ = [
    "BatchSource",
    "Binarizer",
    "CELLS",
    "Cell",
    "CellStructure",
    "CellType",
    "DataShape",
    "DataSplits",
    "Dataset",
    "DistContext",
    "Edge",
    "EmptyConfig",
    "Estimate",
    "EstimationEnv",
    "Estimator",
    "Genotype",
    "MIXING",
    "Reporter",
    "SearchEnv",
    "SearchSpace",
    "Strategy",
]
