"""`DistContext`: a process's place in a data-parallel run (``env.dist`` of strategies and
estimators; ``None`` there means one process)."""

from __future__ import annotations

import attrs

__all__ = ["DistContext"]


@attrs.frozen(kw_only=True)
class DistContext:
    """This process's place in a data-parallel run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0 alone tracks, prints and writes the run folder."""
        return self.rank == 0
