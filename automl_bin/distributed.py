"""Data parallelism over ``torch.distributed``: one process per device, launched by torchrun.

This is the host side: reading torchrun's environment and starting the process group
(`from_env`), the launcher command (`torchrun_command`), the observer-free plugin set of ranks
other than 0 (`without_observers`) and the end-of-search check that all ranks agree. The
reduction itself (sharding batches, averaging gradients, syncing buffers) is the mechanism
`automl_bin.search.data_parallel`, which strategies and estimators use without importing the
plugin host; its names are re-exported here, so ``automl_bin.distributed.reduce_mean`` etc.
keep working.

Every rank builds the same model from the same seed and walks the same batches in the same order
as a single-process run; each takes only its slice ``x[rank::world]`` of every *training* batch,
and gradients are averaged over ranks weighted by slice size, which is exactly the full-batch
gradient of a mean loss. All ranks therefore hold identical weights and α after every step.
Evaluation passes are not sharded, so every rank scores the whole split and the logged metrics
match the single-process run. BatchNorm batch statistics are computed per rank (on its slice,
as with DistributedDataParallel); running statistics are taken from rank 0 after each step.

``None`` stands for "one process" everywhere: callers pass ``dist=None`` and nothing changes.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from automl_bin.errors import AutomlBinError, UsageError
from automl_bin.search.data_parallel import (
    DistContext,
    ShardedBatches,
    all_reduce_grads,
    broadcast_module,
    max_divergence,
    reduce_mean,
    shard,
    sync_buffers,
)

if TYPE_CHECKING:
    import torch

    from automl_bin.plugins import PluginSet

__all__ = ["DistContext", "DivergedError", "ShardedBatches", "from_env", "shutdown", "shard",
           "reduce_mean", "all_reduce_grads", "broadcast_module", "sync_buffers",
           "max_divergence", "arch_parameters_of", "without_observers", "torchrun_command",
           "launch"]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DivergedError(AutomlBinError):
    """Ranks of a data-parallel run ended with different architecture parameters (a bug)."""


def from_env(device_type: str) -> DistContext | None:
    """The context torchrun's environment describes, with its process group initialised.

    ``None`` when the process was not launched by torchrun or with a world of one (then the
    single-process path runs unchanged). The backend is ``nccl`` for CUDA devices and ``gloo``
    otherwise; each rank uses the GPU ``LOCAL_RANK``.
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return None
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise UsageError(f"WORLD_SIZE is set but {', '.join(missing)} is not: launch data-parallel "
                         "runs with torchrun (`torchrun --nproc_per_node N -m automl_bin run "
                         "RECIPE`) or `automl-bin run --nproc N RECIPE`, which set all of them.")
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend)


def shutdown(ctx: DistContext | None) -> None:
    import torch.distributed as dist

    if ctx is not None and dist.is_initialized():
        dist.destroy_process_group()


def arch_parameters_of(strategy: Any) -> list[torch.Tensor]:
    """The architecture parameters of every supernet a strategy declares
    (`Strategy.supernets`), to compare across ranks; empty for strategies without one."""
    out: list[torch.Tensor] = []
    for net in strategy.supernets().values():
        out.extend(net.arch_parameters())
    return out


def without_observers(plugins: PluginSet) -> PluginSet:
    """The same registry with no lifecycle hooks: ranks other than 0 track nothing."""
    import pluggy

    from automl_bin import hookspecs
    from automl_bin.plugins import PluginSet

    pm = pluggy.PluginManager("automl_bin")
    pm.add_hookspecs(hookspecs)
    return PluginSet(pm=pm, registry=plugins.registry, sources=dict(plugins.sources))


def torchrun_command(nproc: int, args: Sequence[str]) -> list[str]:
    """The command that runs ``automl-bin ARGS`` in ``nproc`` processes on this machine.

    ``python -m torch.distributed.run`` is torchrun without relying on its script being on PATH;
    ``--standalone`` picks a free rendezvous port, so several runs can share a machine.
    """
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}.")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "automl_bin", *args]


#: signals the launcher passes on to torchrun (which stops every worker with the same one)
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: seconds the launcher gives workers to end their run (KILLED, checkpoint kept) after
#: torchrun itself exited, before it kills what is left
_GRACE_S = 60.0


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run ``automl-bin ARGS`` in ``nproc`` torchrun processes and return their exit status.

    SIGTERM, SIGINT and SIGHUP to this launcher are forwarded to torchrun, which stops every
    worker with the same signal (each ends its run KILLED with its checkpoint kept, so it can
    be resumed); the status is then ``128 + signal``. torchrun runs in its own session, so a
    Ctrl-C in the terminal reaches the workers once, through it. Workers still alive after
    torchrun exited (it starts each in a session of its own) are killed, so none is orphaned.
    """
    import subprocess
    import time

    proc = subprocess.Popen(torchrun_command(nproc, args), start_new_session=True)
    received: list[int] = []
    workers: dict[int, str] = {}

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        workers.update(_descendants(proc.pid))  # before torchrun can exit and orphan them
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        code = proc.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        deadline = time.monotonic() + (_GRACE_S if received else 0.0)
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in _alive(workers):
            _kill(pid)
    if received:
        return 128 + received[0]
    return code


def _start_time(pid: int) -> str | None:
    """The start time field of ``/proc/PID/stat`` (tells a process from a later one reusing
    its pid), or None when there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def _descendants(root: int) -> dict[int, str]:
    """``{pid: start time}`` of every live descendant of ``root`` (from /proc; empty
    without it)."""
    parents: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8") as fh:
                parents[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                start = _start_time(pid)
                if start is not None:
                    found[pid] = start
                    frontier.append(pid)
    return found


def _alive(processes: dict[int, str]) -> list[int]:
    """The pids of ``processes`` still running as the same process."""
    return [pid for pid, start in processes.items() if _start_time(pid) == start]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
