"""The bit stream under a ``.lbits`` body: MSB-first bit writer and reader, uint packing.

This module owns how numbers become bits and back: :class:`BitWriter` appends unsigned
fields, Exp-Golomb ``uv`` codes and arrays of fixed-width fields, tallying every bit by
``(layer, purpose)`` (the tally becomes the :class:`~leanbits.bits.account.Account`);
:class:`BitReader` reads them back and refuses any read past the end with a
:class:`~leanbits.errors.FormatError`. It also turns float tensors into the unsigned
integers of their storage dtype and back. It knows nothing of models or records; those are
:mod:`leanbits.bits.records` and :mod:`leanbits.bits.container`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch import Tensor

from leanbits.errors import FormatError

#: a tally key: (layer name or None for the header, purpose)
Key = tuple[str | None, str]
HEADER: Key = (None, "header")


def uints_to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Unsigned ints -> MSB-first bits (uint8 0/1), ``width`` per value."""
    v = np.asarray(values).astype(np.uint64).ravel()
    out = np.empty((v.size, width), dtype=np.uint8)
    for j in range(width):
        out[:, j] = (v >> np.uint64(width - 1 - j)) & np.uint64(1)
    return out.ravel()


def _uint_dtype(width: int) -> type[np.unsignedinteger]:
    """The smallest unsigned dtype that holds ``width`` bits."""
    if width <= 8:
        return np.uint8
    if width <= 16:
        return np.uint16
    return np.uint32 if width <= 32 else np.uint64


def bits_to_uints(bits: np.ndarray, count: int, width: int) -> np.ndarray:
    """MSB-first bits -> ``count`` unsigned ints of ``width`` bits each.

    Returns:
        The smallest unsigned dtype that holds ``width`` bits (uint8 .. uint64), so that a
        long array of narrow fields costs little memory.
    """
    m = bits.reshape(count, width)
    dtype = _uint_dtype(width)
    if width in (8, 16, 32, 64):  # byte-aligned fields: one packbits, no loop
        big_endian = np.dtype(dtype).newbyteorder(">")
        return np.packbits(m, axis=1).view(big_endian).ravel().astype(dtype)
    out = np.zeros(count, dtype=dtype)
    for j in range(width):
        out <<= dtype(1)
        out |= m[:, j]
    return out


class BitWriter:
    """Append-only MSB-first bit stream that tallies every bit by ``(layer, purpose)``."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.nbits = 0
        self.tally: dict[Key, int] = defaultdict(int)

    def _put(self, bits: np.ndarray, key: Key) -> None:
        self._chunks.append(bits)
        self.nbits += int(bits.size)
        self.tally[key] += int(bits.size)

    def uint(self, value: int, width: int, key: Key) -> None:
        """``value`` in exactly ``width`` bits."""
        value = int(value)
        if not 0 <= value < (1 << width):
            raise ValueError(f"{value} does not fit in {width} bits")
        self._put(uints_to_bits(np.array([value]), width), key)

    def uv(self, value: int, key: Key) -> None:
        """Unsigned Exp-Golomb code: ``L-1`` zeros, then ``value + 1`` in its ``L`` bits."""
        value = int(value)
        if value < 0:
            raise ValueError(f"uv needs a non-negative value, got {value}")
        length = (value + 1).bit_length()
        self._put(np.zeros(length - 1, dtype=np.uint8), key)
        self.uint(value + 1, length, key)

    def array(self, values: np.ndarray, width: int, key: Key) -> None:
        """Each element as an unsigned ``width``-bit field."""
        values = np.asarray(values)
        if width == 0 or values.size == 0:
            return
        if values.size and (values.min() < 0 or int(values.max()) >= (1 << width)):
            raise ValueError(f"array values do not fit in {width} bits")
        self._put(uints_to_bits(values, width), key)

    def extend(self, other: BitWriter) -> None:
        """Append everything ``other`` wrote, with its tally."""
        for chunk in other._chunks:
            self._chunks.append(chunk)
        self.nbits += other.nbits
        for k, v in other.tally.items():
            self.tally[k] += v

    def to_bytes(self) -> bytes:
        """The stream, zero-padded to whole bytes."""
        if not self._chunks:
            return b""
        return np.packbits(np.concatenate(self._chunks)).tobytes()


class BitReader:
    """Reads what :class:`BitWriter` wrote; refuses any read past the end (FormatError)."""

    def __init__(self, data: bytes, where: str) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self.pos = 0
        self.where = where
        self.tally: dict[Key, int] = defaultdict(int)

    @property
    def remaining(self) -> int:
        return int(self.bits.size) - self.pos

    def fail(self, what: str) -> FormatError:
        """The error to raise for a corrupt body (names the file and the bit position)."""
        return FormatError(f"{self.where}: corrupt .lbits file: {what} (at bit {self.pos})")

    def _take(self, count: int, key: Key) -> np.ndarray:
        if count < 0 or count > self.remaining:
            raise self.fail(f"needs {count} more bits but only {self.remaining} are left")
        out = self.bits[self.pos : self.pos + count]
        self.pos += count
        self.tally[key] += count
        return out

    def uint(self, width: int, key: Key) -> int:
        """One ``width``-bit field (plain Python: header fields are read one at a time)."""
        value = 0
        for bit in self._take(width, key).tolist():
            value = (value << 1) | bit
        return value

    def uv(self, key: Key) -> int:
        """One Exp-Golomb value; refuses more than 63 leading zeros."""
        window = self.bits[self.pos : self.pos + 64].tolist()
        try:
            zeros = window.index(1)
        except ValueError:
            raise self.fail("unterminated or oversized variable-length integer") from None
        self._take(zeros, key)
        return self.uint(zeros + 1, key) - 1

    def array(self, count: int, width: int, key: Key) -> np.ndarray:
        if count < 0:
            raise self.fail(f"negative count {count}")
        if width == 0:
            return np.zeros(count, dtype=np.uint64)
        if count > self.remaining // width:
            raise self.fail(f"declares {count} fields of {width} bits, only {self.remaining} left")
        return bits_to_uints(self._take(count * width, key), count, width)


# -------------------------------------------------------------------------- floats


def floats_to_uints(t: Tensor, dtype: str) -> tuple[np.ndarray, int]:
    """The bits of ``t`` stored as ``dtype``: (unsigned ints, their width)."""
    t = t.detach().cpu().reshape(-1)
    if dtype == "float32":
        return t.to(torch.float32).numpy().view(np.uint32), 32
    if dtype == "float16":
        return t.to(torch.float16).numpy().view(np.uint16), 16
    if dtype == "bfloat16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16), 16
    if dtype == "float64":
        return t.to(torch.float64).numpy().view(np.uint64), 64
    raise ValueError(dtype)


def uints_to_floats(u: np.ndarray, dtype: str) -> Tensor:
    """Bits of ``dtype`` floats -> float32 tensor (float64 stays float64)."""
    if dtype == "float32":
        return torch.from_numpy(u.astype(np.uint32).view(np.float32).copy())
    if dtype == "float16":
        return torch.from_numpy(u.astype(np.uint16).view(np.float16).copy()).to(torch.float32)
    if dtype == "bfloat16":
        raw = torch.from_numpy(u.astype(np.uint16).view(np.int16).copy())
        return raw.view(torch.bfloat16).to(torch.float32)
    return torch.from_numpy(u.astype(np.uint64).view(np.float64).copy())
