"""IDX files (the MNIST container format): a strict reader and a small writer.

Layout, all big-endian: two zero bytes, one dtype code, one byte ``ndim``, then
``ndim`` unsigned 32-bit dimension sizes, then exactly ``prod(dims) * itemsize``
bytes of data. Files may be raw or gzip-compressed; gzip is recognised by its
magic bytes, never by the file name.

Every problem raises :class:`~leanbits.errors.DataError` with a one-line message
that names the file, says what is wrong and what to do. A corrupt header can
declare an absurd size; the reader compares the declared size with what the
file can really hold *before* allocating anything.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from leanbits.errors import DataError
from leanbits.fileio import write_bytes_atomic

__all__ = ["CHUNK", "DTYPES", "GZIP_MAGIC", "read_idx", "write_idx", "is_gzip"]

#: IDX dtype code -> big-endian numpy dtype.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES: dict[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in DTYPES.items()}

GZIP_MAGIC = b"\x1f\x8b"

# Deflate cannot compress better than about 1032:1, so a gzip file of n bytes
# never inflates to more than ~1032*n bytes. A header declaring more than that
# is corrupt, and we can say so without inflating anything.
_MAX_DEFLATE_RATIO = 1100

#: bytes read or written at a time by the data modules (this reader, the sources' copies
#: and downloads), so memory stays bounded whatever a file's size
CHUNK = 1 << 20

_DEFAULT_HINT = (
    "re-create the file (if it came from `leanbits data fetch`, delete it and fetch again)"
)


def is_gzip(path: str | os.PathLike[str]) -> bool:
    """Return True when the file starts with the gzip magic bytes ``1f 8b``.

    Args:
        path: file to inspect.

    Returns:
        Whether the file is gzip-compressed (a missing or empty file is not).
    """
    try:
        with open(path, "rb") as f:
            return f.read(2) == GZIP_MAGIC
    except OSError:
        return False


def _fail(path: Path, problem: str, hint: str) -> DataError:
    return DataError(f"IDX file {path}: {problem}; {hint}")


def _parse_header(head: bytes, path: Path, hint: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Decode the fixed 4-byte prefix; return (dtype, dims, header length) or raise."""
    if len(head) < 4:
        raise _fail(path, f"truncated header ({len(head)} bytes, need at least 4)", hint)
    if head[0] != 0 or head[1] != 0:
        raise _fail(path, f"bad magic {head[:4].hex()} (not an IDX file)", hint)
    code, ndim = head[2], head[3]
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPES)
        raise _fail(path, f"unknown dtype code 0x{code:02X} (known: {known})", hint)
    if ndim == 0:
        raise _fail(path, "header declares 0 dimensions", hint)
    header_len = 4 + 4 * ndim
    if len(head) < header_len:
        raise _fail(
            path, f"truncated header ({len(head)} bytes, {ndim} dimensions need {header_len})", hint
        )
    dims = struct.unpack(f">{ndim}I", head[4:header_len])
    return DTYPES[code], dims, header_len


def read_idx(path: str | os.PathLike[str], hint: str | None = None) -> np.ndarray:
    """Read a raw or gzip-compressed IDX file into a native-endian numpy array.

    Args:
        path: the file.
        hint: what the user should do if the file is bad; ends every error message.

    Returns:
        An array of shape ``dims`` and the file's dtype (uint8, int8, int16, int32,
        float32 or float64), in native byte order.

    Raises:
        DataError: the file is missing, unreadable, truncated, over-long, has a bad
            magic, an unknown dtype code, or a header declaring an impossible size.

    Example:
        >>> write_idx("x.idx", np.arange(6, dtype=np.uint8).reshape(2, 3))  # doctest: +SKIP
        >>> read_idx("x.idx").shape  # doctest: +SKIP
        (2, 3)
    """
    path = Path(path)
    hint = hint or _DEFAULT_HINT
    try:
        file_size = path.stat().st_size
        compressed = is_gzip(path)
        if compressed:
            return _read_gzip(path, file_size, hint)
        return _read_raw(path, file_size, hint)
    except FileNotFoundError:
        raise _fail(path, "file not found", hint) from None
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as e:
        # gzip.BadGzipFile is an OSError; a cut gzip stream is an EOFError.
        raise _fail(path, f"cannot read ({type(e).__name__}: {e})", hint) from None


def _finish(arr: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    """Shape ``arr`` and return it native-endian (astype copies only when swapping)."""
    return arr.reshape(dims).astype(arr.dtype.newbyteorder("="), copy=False)


def _read_raw(path: Path, file_size: int, hint: str) -> np.ndarray:
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) == 4 and head[0] == 0 and head[1] == 0:
            head += f.read(4 * head[3])
        dtype, dims, header_len = _parse_header(head, path, hint)
        expected = math.prod(dims) * dtype.itemsize
        actual = file_size - header_len
        # Compare with the real file length first: a corrupt header must not make us
        # allocate prod(dims) bytes.
        if actual < expected:
            raise _fail(
                path,
                f"truncated: header {dims} needs {expected} data bytes, file has {actual}",
                hint,
            )
        if actual > expected:
            raise _fail(
                path,
                f"too long: header {dims} needs {expected} data bytes, file has {actual}",
                hint,
            )
        data = np.fromfile(f, dtype=dtype, count=math.prod(dims))
    if data.size != math.prod(dims):  # the file shrank while we read it
        raise _fail(path, "truncated while reading", hint)
    return _finish(data, dims)


def _read_gzip(path: Path, file_size: int, hint: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        head = f.read(4)
        if len(head) == 4 and head[0] == 0 and head[1] == 0:
            head += f.read(4 * head[3])
        dtype, dims, header_len = _parse_header(head, path, hint)
        expected = math.prod(dims) * dtype.itemsize
        if expected + header_len > file_size * _MAX_DEFLATE_RATIO:
            raise _fail(
                path,
                f"header {dims} declares {expected} data bytes, more than a "
                f"{file_size}-byte gzip file can hold (corrupt header)",
                hint,
            )
        # Inflate in bounded chunks up to expected+1 bytes: memory follows the real
        # stream, and one extra byte is enough to detect an over-long file.
        buf = bytearray()
        want = expected + 1
        while len(buf) < want:
            chunk = f.read(min(CHUNK, want - len(buf)))
            if not chunk:
                break
            buf += chunk
    if len(buf) < expected:
        raise _fail(
            path,
            f"truncated: header {dims} needs {expected} data bytes, stream has {len(buf)}",
            hint,
        )
    if len(buf) > expected:
        raise _fail(
            path, f"too long: header {dims} needs {expected} data bytes, stream has more", hint
        )
    # frombuffer over our own bytearray: writable, no copy.
    return _finish(np.frombuffer(buf, dtype=dtype), dims)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` as an IDX file, atomically (complete or absent).

    Args:
        path: destination file.
        array: at least 1-D, dtype uint8, int8, int16, int32, float32 or float64;
            every dimension below 2**32.
        compress: gzip the file (deterministically: no timestamp).

    Returns:
        None.

    Raises:
        ValueError: unsupported dtype, 0-d array or a dimension too large.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX code")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"write_idx: need 1..255 dimensions, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: dimension too large in shape {array.shape}")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    data = header + payload
    if compress:
        data = gzip.compress(data, mtime=0)
    write_bytes_atomic(path, data)
