"""The data-parallel reduction: sharding batches and averaging gradients over ranks.

Every rank walks the same batches in the same order as a single-process run and takes only its
slice ``x[rank::world]`` of every *training* batch (`ShardedBatches`); gradients of weights and
architecture parameters are averaged over ranks weighted by slice size (`reduce_mean`), which is
exactly the full-batch gradient of a mean loss, so all ranks hold identical weights and α after
every step. Evaluation passes are not sharded. BatchNorm running statistics are taken from rank
0 after each step (`sync_buffers`, what DDP's ``broadcast_buffers`` does).

A mechanism: it imports only the interfaces (`DistContext`) and torch, never the plugin host;
launching ranks (torchrun, the process group) lives in `automl_bin.distributed`. ``None``
stands for "one process" everywhere: every function is then a no-op or the identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from automl_bin.interfaces.dist_context import DistContext

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["DistContext", "ShardedBatches", "shard", "reduce_mean", "all_reduce_grads",
           "broadcast_module", "sync_buffers", "max_divergence"]


def shard(x: torch.Tensor, y: torch.Tensor, ctx: DistContext | None
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's slice of a batch; the whole batch when it has fewer samples than ranks
    (every rank then computes the same full-batch gradient, and their mean is that gradient)."""
    if ctx is None or x.shape[0] < ctx.world_size:
        return x, y
    return x[ctx.rank::ctx.world_size], y[ctx.rank::ctx.world_size]


class ShardedBatches:
    """A `BatchSource` whose shuffled (training) passes yield this rank's slice of each batch.

    In-order passes (``shuffle=False``: evaluation) yield whole batches, so metrics are those of
    the whole split. The full batch is prepared (and augmented) before slicing, so a rank sees
    exactly the images the single-process run sees at that position.
    """

    def __init__(self, inner: Any, ctx: DistContext) -> None:
        self.inner = inner
        self.ctx = ctx

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def num_samples(self) -> int:
        return int(self.inner.num_samples)

    def with_options(self, *, batch_size: int | None = None, augment: bool | None = None,
                     cutout: int | None = None) -> ShardedBatches:
        return ShardedBatches(self.inner.with_options(batch_size=batch_size, augment=augment,
                                                      cutout=cutout), self.ctx)

    def batches(self, epoch: int, shuffle: bool = True) -> Iterator[Any]:
        for x, y in self.inner.batches(epoch, shuffle=shuffle):
            yield shard(x, y, self.ctx) if shuffle else (x, y)


def reduce_mean(tensors: Sequence[torch.Tensor], count: int, ctx: DistContext
                ) -> list[torch.Tensor]:
    """The mean over ranks of ``tensors`` weighted by each rank's sample ``count``.

    For gradients of a per-sample mean loss this is the gradient of the whole batch. One
    all-reduce of a flat buffer (the count rides along as its last element) instead of one per
    tensor: a DARTS supernet has hundreds of small parameters.
    """
    import torch
    import torch.distributed as dist

    if not tensors:
        return []
    flat = torch.cat([t.detach().reshape(-1).float() * count for t in tensors]
                     + [torch.tensor([float(count)], device=tensors[0].device)])
    dist.all_reduce(flat)
    flat = flat[:-1] / flat[-1]
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].view_as(t).to(t.dtype))
        start += t.numel()
    return out


def all_reduce_grads(params: Iterable[nn.Parameter], ctx: DistContext | None, count: int) -> None:
    """Replace every ``.grad`` by its sample-weighted mean over ranks (no-op for one process).

    Parameters without a gradient are skipped: the graph is the same on every rank, so the
    same ones are skipped everywhere, and the optimizer still skips them as it would alone.
    """
    if ctx is None:
        return
    with_grad = [p for p in params if p.grad is not None]
    for p, g in zip(with_grad, reduce_mean([p.grad for p in with_grad], count, ctx)):
        p.grad.copy_(g)


def _broadcast(tensors: Sequence[torch.Tensor], ctx: DistContext) -> None:
    import torch
    import torch.distributed as dist

    by_dtype: dict[Any, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    with torch.no_grad():
        for group in by_dtype.values():
            flat = torch.cat([t.detach().reshape(-1) for t in group])
            dist.broadcast(flat, src=0)
            start = 0
            for t in group:
                t.copy_(flat[start:start + t.numel()].view_as(t))
                start += t.numel()


def broadcast_module(module: nn.Module, ctx: DistContext | None) -> None:
    """Copy rank 0's parameters and buffers to every rank (a guard: the seeds already agree)."""
    if ctx is not None:
        _broadcast([*module.parameters(), *module.buffers()], ctx)


def sync_buffers(module: nn.Module, ctx: DistContext | None) -> None:
    """Take rank 0's floating-point buffers (BatchNorm running statistics), as DDP does, so
    evaluation and checkpoints are the same on every rank."""
    if ctx is not None:
        buffers = [b for b in module.buffers() if b.is_floating_point()]
        if buffers:
            _broadcast(buffers, ctx)


def max_divergence(tensors: Sequence[torch.Tensor], ctx: DistContext) -> float:
    """The largest absolute difference between any rank's ``tensors`` and rank 0's (every rank
    gets the same answer)."""
    import torch
    import torch.distributed as dist

    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    gathered = [torch.empty_like(flat) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, flat)
    return max(float((g - gathered[0]).abs().max()) if g.numel() else 0.0 for g in gathered)
