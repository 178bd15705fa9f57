"""Recipe keys of the optimisers that the gradient-based strategies share.

`WeightSgdKeys` (the supernet weights' SGD, cosine-annealed from ``lr`` to ``lr_min``) and
`BilevelKeys` (those plus Adam on the architecture parameters) are attrs bases of the
strategies' ``Config`` classes (built-in and third-party, on `automl_bin.search.one_shot` or
`automl_bin.search.sampled_path`), so every strategy spells, documents and validates these keys
the same way. (One chain, not two mixins: frozen attrs classes have slots, which cannot be
combined by multiple inheritance.)
Defaults are DARTS' CIFAR-10 search settings (docs/algorithms.md §DARTS bilevel step). Kept free
of torch: ``automl-bin check`` validates recipes without importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from automl_bin.search.bilevel import ArchConfig
    from automl_bin.training import SgdConfig

__all__ = ["WeightSgdKeys", "BilevelKeys"]

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


@attrs.frozen(kw_only=True)
class WeightSgdKeys:
    #: weight SGD: initial lr, cosine-annealed to lr_min (DARTS: 0.025 → 0.001)
    lr: float = attrs.field(default=0.025, validator=_gt0)
    lr_min: float = attrs.field(default=0.001, validator=_ge0)
    momentum: float = attrs.field(default=0.9, validator=_ge0)
    #: weight decay of the supernet weights (DARTS: 3e-4)
    weight_decay: float = attrs.field(default=3e-4, validator=_ge0)
    #: clip the weight gradient to this norm (0 = off)
    grad_clip: float = attrs.field(default=5.0, validator=_ge0)

    def sgd_config(self) -> SgdConfig:
        """These keys as the core's `automl_bin.training.SgdConfig`."""
        from automl_bin.training import SgdConfig

        return SgdConfig(lr=self.lr, lr_min=self.lr_min, momentum=self.momentum,
                         weight_decay=self.weight_decay, grad_clip=self.grad_clip)


@attrs.frozen(kw_only=True)
class BilevelKeys(WeightSgdKeys):
    #: Adam on α (DARTS: lr 3e-4, betas (0.5, 0.999), wd 1e-3)
    arch_lr: float = attrs.field(default=3e-4, validator=_gt0)
    arch_beta1: float = attrs.field(default=0.5, validator=_ge0)
    arch_beta2: float = attrs.field(default=0.999, validator=_ge0)
    arch_weight_decay: float = attrs.field(default=1e-3, validator=_ge0)

    def arch_config(self) -> ArchConfig:
        """These keys as the core's `automl_bin.search.bilevel.ArchConfig`."""
        from automl_bin.search.bilevel import ArchConfig

        return ArchConfig(lr=self.arch_lr, beta1=self.arch_beta1, beta2=self.arch_beta2,
                          weight_decay=self.arch_weight_decay)
