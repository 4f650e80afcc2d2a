"""Reading IDX files (MNIST's format): two zero bytes, a type byte, the number of
dimensions ``ndim``, ``ndim`` big-endian uint32 sizes, then exactly ``prod(sizes)``
big-endian items of the type.  Nothing is unpickled: the bytes are read as numbers."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import BinaryIO

import numpy as np

__all__ = ["IDX_TYPES", "load_idx"]

# type byte -> the big-endian NumPy dtype of the data
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_READ_ERRORS = (OSError, EOFError, zlib.error)  # a truncated or corrupt gzip stream
_CHUNK = 1 << 24  # never ask for more at once: a corrupt header may declare exabytes


def _read_exactly(stream: BinaryIO, count: int) -> bytes:
    """Up to ``count`` bytes; fewer only where the stream ends."""
    chunks, left = [], count
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _parse(stream: BinaryIO, fname: str, compressed: bool) -> np.ndarray:
    what = "gzip-compressed IDX file" if compressed else "IDX file"
    magic = _read_exactly(stream, 4)
    if len(magic) < 4:
        raise ValueError(
            f"{fname}: truncated {what}: {len(magic)} byte(s), shorter than the 4-byte "
            "IDX magic number"
        )
    if magic[:2] != b"\x00\x00":
        raise ValueError(
            f"{fname} is not an IDX file: it starts with bytes {magic.hex(' ')}, "
            "where an IDX file starts with 00 00, a type byte and the number of dimensions"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X} {IDX_TYPES[c].name}" for c in IDX_TYPES)
        raise ValueError(
            f"{fname}: unknown IDX type byte 0x{code:02X} (known: {known}); "
            "the file is corrupt or not an IDX file"
        )
    if ndim == 0:
        raise ValueError(f"{fname}: the IDX header declares 0 dimensions; the file is corrupt")
    header = _read_exactly(stream, 4 * ndim)
    if len(header) < 4 * ndim:
        raise ValueError(
            f"{fname}: truncated {what}: the header declares {ndim} dimensions "
            f"({4 * ndim} bytes of sizes) but only {len(header)} byte(s) follow the magic number"
        )
    shape = tuple(int(d) for d in np.frombuffer(header, dtype=">u4"))
    dtype = IDX_TYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    data = _read_exactly(stream, expected)
    if len(data) < expected:
        raise ValueError(
            f"{fname}: truncated {what}: the header declares {dtype.name} data of shape "
            f"{shape} ({expected} bytes) but only {len(data)} byte(s) follow the header"
        )
    if stream.read(1):
        raise ValueError(
            f"{fname}: {what} longer than its header declares: data of shape {shape} "
            f"({expected} bytes of {dtype.name}) are followed by more bytes; the file is "
            "corrupt or not an IDX file"
        )
    # a native-byte-order, writable copy
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape)


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array in the IDX file at ``path`` (gzip-compressed or not, told by its
    first bytes) in a native-byte-order dtype.  ``FileNotFoundError`` for a missing
    file, else ``ValueError`` naming the file for anything it cannot read."""
    fname = os.fspath(path)
    if os.path.isdir(fname):
        raise ValueError(f"{fname} is a folder; give the path of an IDX file")
    with open(fname, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            return _parse(raw, fname, compressed=False)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _parse(stream, fname, compressed=True)
        except _READ_ERRORS as err:
            raise ValueError(
                f"{fname}: corrupt or truncated gzip data ({err}); download the file again"
            ) from None
