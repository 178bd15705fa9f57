"""Model accounting: parameters and multiply-adds, counted with forward hooks on one input.

``flops`` counts real-valued multiply-adds (convs and linear layers); ``bops`` counts binary
multiply-adds, i.e. those of convolutions whose weights *and* inputs are 1-bit (a `QConv2d`
reports its bit widths). The Bi-Real/ReActNet convention ``ops = flops + bops / 64`` is used
for the combined figure.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

__all__ = ["ModelCost", "count_cost"]


@attrs.frozen(kw_only=True)
class ModelCost:
    params: int
    flops: int
    bops: int

    @property
    def ops(self) -> float:
        return self.flops + self.bops / 64


@torch.no_grad()
def count_cost(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelCost:
    """Parameters and per-image multiply-adds of ``model`` for one ``(C, H, W)`` input."""
    flops = 0
    bops = 0

    def conv_hook(module: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal flops, bops
        kh, kw = module.kernel_size
        macs = out[0].numel() * (module.in_channels // module.groups) * kh * kw
        binary = getattr(module, "weight_bits", 32) == 1 and getattr(module, "input_bits", 32) == 1
        if binary:
            bops += macs
        else:
            flops += macs

    def linear_hook(module: nn.Linear, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal flops
        flops += module.in_features * module.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # the DARTS auxiliary head exists only for training; papers report params without it
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("auxiliary_head"))
    return ModelCost(params=params, flops=flops, bops=bops)
