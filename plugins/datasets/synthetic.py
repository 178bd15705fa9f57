"""A small, learnable, fully deterministic image data set generated from a seed.

Each class has a smooth random prototype (a low-resolution random pattern upsampled to the image
size); a sample is its class prototype plus Gaussian pixel noise, clamped to [0, 1]. It needs no
files or network, so tests and smoke runs use it, and a tiny network learns it in a few epochs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from attrs import validators as v

from automl_bin.interfaces import Dataset, DataShape, DataSplits

if TYPE_CHECKING:
    import torch

__all__ = ["Synthetic", "SyntheticConfig"]

# Samples generated per step, so that large sets never hold a float32 copy of every image.
_CHUNK = 4096


@attrs.frozen(kw_only=True)
class SyntheticConfig:
    """Keys of ``[data]`` when ``name = "synthetic"``."""

    #: number of classes (each with its own prototype pattern)
    num_classes: int = attrs.field(default=4, validator=v.ge(2))
    #: image channels
    channels: int = attrs.field(default=3, validator=v.ge(1))
    #: height and width of the square images
    image_size: int = attrs.field(default=16, validator=v.ge(4))
    #: number of training images (labels balanced across classes)
    train_size: int = attrs.field(default=512, validator=v.ge(8))
    #: number of test images
    test_size: int = attrs.field(default=256, validator=v.ge(1))
    #: seed of the prototypes, noise and label order; the same seed gives the same tensors
    seed: int = 0
    #: standard deviation of the per-pixel Gaussian noise on the [0, 1] scale; higher is harder
    noise: float = attrs.field(default=0.3, validator=v.ge(0.0))


class Synthetic(Dataset):
    """Class prototypes plus noise: a learnable stand-in for a real data set."""

    Config = SyntheticConfig

    def shape(self) -> DataShape:
        cfg = self.config
        return DataShape(input_shape=(cfg.channels, cfg.image_size, cfg.image_size),
                         num_classes=cfg.num_classes)

    def load(self) -> DataSplits:
        """Generate both splits as uint8 ``(N, C, H, W)`` images and balanced int64 labels."""
        import torch

        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed)
        prototypes = _prototypes(cfg.num_classes, cfg.channels, cfg.image_size, gen)
        train_images, train_labels = _samples(prototypes, cfg.train_size, cfg.noise, gen)
        test_images, test_labels = _samples(prototypes, cfg.test_size, cfg.noise, gen)

        scaled = train_images.to(torch.float64).div_(255.0)
        mean = scaled.mean(dim=(0, 2, 3))
        # A floor keeps normalisation finite in degenerate settings (noise 0, flat prototypes).
        std = scaled.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-3)
        return DataSplits(
            train_images=train_images,
            train_labels=train_labels,
            test_images=test_images,
            test_labels=test_labels,
            num_classes=cfg.num_classes,
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            class_names=tuple(f"class_{i}" for i in range(cfg.num_classes)),
        )


def _prototypes(num_classes: int, channels: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Smooth random patterns in [0, 1], one per class: ``(K, C, size, size)`` float32."""
    import torch
    import torch.nn.functional as F

    low = max(2, size // 4)
    coarse = torch.rand(num_classes, channels, low, low, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _samples(
    prototypes: torch.Tensor, n: int, noise: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy copies of the prototypes with balanced labels in a seeded random order."""
    import torch

    k = prototypes.shape[0]
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=gen)]
    images = torch.empty((n, *prototypes.shape[1:]), dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        idx = labels[start : start + _CHUNK]
        x = prototypes[idx] + noise * torch.randn(prototypes[idx].shape, generator=gen)
        images[start : start + _CHUNK] = x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return images, labels.to(torch.int64)
