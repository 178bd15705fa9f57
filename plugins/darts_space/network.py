"""The discrete DARTS network of a genotype, for retraining (docs/algorithms.md §Network skeleton).

Real-valued stem and classifier; cells built from the genotype with the injected binarizer;
optional DARTS auxiliary head (weight set by the trainer) and drop-path.
"""

from __future__ import annotations

import torch
from torch import nn

from automl_bin.interfaces import Binarizer, Genotype
from automl_bin.nn.qconv import ConvFactory
from automl_bin_plugins.darts_space.cells import DiscreteCell
from automl_bin_plugins.darts_space.opsets import get_op_set
from automl_bin_plugins.darts_space.supernet import reduction_layers

__all__ = ["DartsNetwork"]


class AuxiliaryHead(nn.Module):
    """DARTS' auxiliary classifier at 2/3 depth, made size-agnostic with adaptive pooling."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """Stem → cells of the genotype → global pool → linear. ``forward`` returns logits; in
    training mode with an auxiliary head it returns ``(logits, aux_logits)``."""

    def __init__(self, genotype: Genotype, *, input_shape: tuple[int, int, int], num_classes: int,
                 layers: int, init_channels: int, stem_multiplier: int, stem_stride: int = 1, auxiliary: bool,
                 binarizer: Binarizer, op_style: str = "real",
                 bin_act_on_depthwise: bool = False) -> None:
        super().__init__()
        opset = get_op_set(op_style, bin_act_on_depthwise)
        conv = ConvFactory(binarizer, binarize_inputs=opset.binarize_inputs)
        c_curr = stem_multiplier * init_channels
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], c_curr, 3, stride=stem_stride, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_pp, c_p, c = c_curr, c_curr, init_channels
        self.cells = nn.ModuleList()
        reductions = reduction_layers(layers)
        reduction_prev = False
        aux_at = 2 * layers // 3
        self.aux_index = aux_at if auxiliary else -1
        c_aux = c_p
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c *= 2
            cell_spec = genotype.cell("reduce" if reduction else "normal")
            cell = DiscreteCell(cell_spec, c_pp, c_p, c, reduction, reduction_prev, opset, conv)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
            if i == aux_at:
                c_aux = c_p
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    @property
    def feature_module(self) -> nn.Module:
        """The layer whose output is the penultimate (pooled) features, for feature losses."""
        return self.global_pooling

    def set_drop_path(self, prob: float) -> None:
        for cell in self.cells:
            cell.drop_prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_index and self.training and self.auxiliary_head is not None:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, aux) if aux is not None else logits
