"""Atomic checkpoint files: write to a temp file in the same folder, fsync, then rename.

A crash or a full disk while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["save_atomic", "write_text_atomic"]


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temp file next to ``path`` with the permissions a plain ``open`` would give it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results should be readable as usual
    return fd, tmp


def save_atomic(state: Mapping[str, Any], path: Path) -> Path:
    """``torch.save(state)`` to ``path`` atomically."""
    import torch

    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(dict(state), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
