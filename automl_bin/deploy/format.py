"""The packed network file: a checked container of a JSON header and named arrays.

Layout (all integers little-endian)::

    magic    8 bytes  b"ABINPACK"
    version  uint32   FORMAT_VERSION
    length   uint64   bytes of the JSON header
    header   JSON (UTF-8): the caller's document plus "tensors" (name -> dtype, shape, offset,
             nbytes) and "payload_bytes"
    zeros    up to the next multiple of 64
    payload  the arrays, each starting at a multiple of 64 (uint64 bit words or float32)
    sha256   32 bytes, over everything before it

Reading checks, in order: magic, version, header length, the file size the header implies
(a truncated or extended file), the checksum (any flipped bit), then every tensor entry against
the payload. Each failure is a `PackedFileError` saying what is wrong and how to get a good file.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from automl_bin.errors import UsageError

__all__ = ["MAGIC", "FORMAT_VERSION", "PackedFile", "PackedFileError", "encode", "decode",
           "read_packed", "write_packed"]

MAGIC = b"ABINPACK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")
_ALIGN = 64
_DIGEST = 32
#: stored dtypes: bit words and real values, both little-endian on disk
_DTYPES = {"uint64": np.dtype("<u8"), "float32": np.dtype("<f4")}
_FIX = "Export the run again with `automl-bin export RUN_ID --format packed`."


class PackedFileError(UsageError):
    """A packed network file that is not one, is damaged, or is from another format version."""


@attrs.frozen
class PackedFile:
    """A decoded file: its header document and its arrays (native-endian copies)."""

    header: Mapping[str, Any]
    tensors: Mapping[str, np.ndarray]


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def encode(header: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> bytes:
    """The file bytes of ``header`` (JSON-serialisable) and ``tensors`` (uint64 or float32)."""
    table: dict[str, dict[str, Any]] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, array in tensors.items():
        kind = array.dtype.name
        if kind not in _DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {kind}; the format stores "
                             f"{sorted(_DTYPES)}")
        data = np.ascontiguousarray(array, dtype=_DTYPES[kind]).tobytes()
        table[name] = {"dtype": kind, "shape": list(array.shape), "offset": offset,
                       "nbytes": len(data)}
        padded = _align(len(data))
        chunks.append(data + bytes(padded - len(data)))
        offset += padded
    if "tensors" in header or "payload_bytes" in header:
        raise ValueError("header keys 'tensors' and 'payload_bytes' are written by encode")
    doc = {**header, "tensors": table, "payload_bytes": offset}
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text))
    head = prefix + text
    body = head + bytes(_align(len(head)) - len(head)) + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def _fail(source: str, problem: str) -> PackedFileError:
    return PackedFileError(f"{source} {problem} {_FIX}")


def _parse_header(data: bytes, length: int) -> Mapping[str, Any] | None:
    try:
        doc = json.loads(data[_PREFIX.size:_PREFIX.size + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def decode(data: bytes, source: str = "the packed file") -> PackedFile:
    """Check and decode file bytes; ``source`` names the file in error messages."""
    size = len(data)
    if size < _PREFIX.size + _DIGEST:
        raise _fail(source, f"is {size} bytes, too short to be a packed network (truncated?).")
    magic, version, length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise _fail(source, f"is not an automl-bin packed network: it starts with {magic!r}, "
                            f"not {MAGIC!r}.")
    if version != FORMAT_VERSION:
        raise PackedFileError(
            f"{source} is packed format version {version}; this automl-bin reads version "
            f"{FORMAT_VERSION}. Export the run again with this version of automl-bin, or load "
            "it with the version that wrote it.")
    if length > size - _PREFIX.size - _DIGEST:
        raise _fail(source, f"declares a {length}-byte header but has only {size} bytes in all "
                            "(truncated or corrupt).")
    header = _parse_header(data, length)
    payload_start = _align(_PREFIX.size + length)
    payload_bytes = header.get("payload_bytes") if header is not None else None
    if isinstance(payload_bytes, int) and not isinstance(payload_bytes, bool):
        expected = payload_start + payload_bytes + _DIGEST
        if size < expected:
            raise _fail(source, f"is truncated: {size} bytes of the {expected} its header "
                                "declares.")
        if size > expected:
            raise _fail(source, f"has {size - expected} unexpected bytes after its end "
                                f"({size} bytes, the header declares {expected}).")
    if hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise _fail(source, "is corrupt: its SHA-256 checksum does not match its contents.")
    if header is None or not isinstance(payload_bytes, int):
        raise _fail(source, "has a header that is not a packed-network JSON document.")
    tensors = _read_tensors(data, header.get("tensors"), payload_start, payload_bytes, source)
    return PackedFile(header=header, tensors=tensors)


def _read_tensors(data: bytes, table: Any, start: int, payload_bytes: int,
                  source: str) -> dict[str, np.ndarray]:
    if not isinstance(table, dict):
        raise _fail(source, "has no tensor table in its header.")
    out: dict[str, np.ndarray] = {}
    for name, entry in table.items():
        where = f"has a bad entry for tensor {name!r}:"
        if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPES:
            raise _fail(source, f"{where} no known dtype ({sorted(_DTYPES)}).")
        shape, offset, nbytes = entry.get("shape"), entry.get("offset"), entry.get("nbytes")
        if (not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape)
                or type(offset) is not int or type(nbytes) is not int):
            raise _fail(source, f"{where} shape, offset and nbytes must be non-negative "
                                "integers.")
        dtype = _DTYPES[entry["dtype"]]
        count = math.prod(shape)
        if nbytes != count * dtype.itemsize or offset < 0 or offset % _ALIGN:
            raise _fail(source, f"{where} {nbytes} bytes at offset {offset} do not hold a "
                                f"{entry['dtype']} array of shape {shape}.")
        if offset + nbytes > payload_bytes:
            raise _fail(source, f"{where} it ends past the payload ({offset + nbytes} > "
                                f"{payload_bytes} bytes).")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=start + offset)
        out[name] = array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    return out


def write_packed(path: str | Path, header: Mapping[str, Any],
                 tensors: Mapping[str, np.ndarray]) -> int:
    """Write the file (to a temporary name, then renamed); returns its size in bytes."""
    data = encode(header, tensors)
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return len(data)


def read_packed(path: str | Path) -> PackedFile:
    """Read and check a packed network file."""
    target = Path(path)
    if not target.is_file():
        raise UsageError(f"Packed network {str(target)!r} does not exist or is not a file; "
                         "write one with `automl-bin export RUN_ID --format packed --out PATH`.")
    return decode(target.read_bytes(), source=f"Packed network {str(target)!r}")
