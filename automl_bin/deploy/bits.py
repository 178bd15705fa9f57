"""Packing booleans into little-endian uint64 words (bit ``i`` of word ``j`` is element ``64j+i``)."""

from __future__ import annotations

import numpy as np

__all__ = ["pack_bits", "unpack_bits", "pack_rows", "words_for"]


def words_for(count: int) -> int:
    """Words needed for ``count`` bits."""
    return -(-count // 64)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Every element of ``bits`` (flattened, C order) as one bit; unused high bits are 0."""
    flat = np.ascontiguousarray(bits, dtype=bool).ravel()
    padded = np.zeros(words_for(flat.size) * 64, dtype=bool)
    padded[: flat.size] = flat
    # packbits fills bytes least significant bit first; eight such bytes read as one
    # little-endian word put element 8k+i at bit 8k+i
    return np.packbits(padded, bitorder="little").view("<u8").astype(np.uint64)


def unpack_bits(words: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` bits of ``words`` as a flat bool array (inverse of `pack_bits`)."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(raw, bitorder="little")[:count].astype(bool)


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """Pack each row of a 2-D bool array separately: ``(rows, words_for(cols))`` uint64."""
    rows, cols = bits.shape
    padded = np.zeros((rows, words_for(cols) * 64), dtype=bool)
    padded[:, :cols] = bits
    packed = np.packbits(padded, axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64).reshape(rows, -1)
