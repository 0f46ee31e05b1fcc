"""A testing aid: writing ``.lbits`` records field by field, so that tests and the hostile-file
benchmark can forge files a real encoder never writes - declared sizes far above what the
bytes hold, counts above the ceilings, positions that decode to the wrong count - with a
valid frame and checksum, and check that the decoder refuses them before it allocates.
Nothing in leanbits itself uses this module; the field order is that of
:mod:`leanbits.bits.records` (format version :data:`~leanbits.bits.container.VERSION`).
"""

from __future__ import annotations

import zlib

import constriction
import numpy as np

from leanbits.bits.container import MAGIC, VERSION
from leanbits.bits.records import QUANT_CODES, write_plan
from leanbits.bits.stream import HEADER, BitWriter
from leanbits.models import Plan

#: 1.0 as float32 bits and as float16 bits
ONE, HALF_ONE = 0x3F800000, 0x3C00


def frame(w: BitWriter) -> bytes:
    """The whole file: magic, version, the body of ``w`` and a valid CRC32."""
    body = MAGIC + bytes([VERSION]) + w.to_bytes()
    return body + zlib.crc32(body).to_bytes(4, "big")


def start(count: int | None = None, plan: Plan | None = None, head: bool = False) -> BitWriter:
    """Flags (float16 non-weights), the plan if any, then the tensor count if given."""
    w = BitWriter()
    w.uint(plan is not None, 1, HEADER)
    w.uint(head, 1, HEADER)
    w.uint(1, 2, HEADER)  # float16 non-weights
    if plan is not None:
        write_plan(w, plan)
    if count is not None:
        w.uv(count, HEADER)
    return w


def name_shape(w: BitWriter, name: str, shape: tuple[int, ...]) -> None:
    """The name and shape of a tensor in a file packed without a plan."""
    raw = name.encode()
    w.uv(len(raw), HEADER)
    w.array(np.frombuffer(raw, dtype=np.uint8), 8, HEADER)
    w.uv(len(shape), HEADER)
    for d in shape:
        w.uv(d, HEADER)


def weight_settings(w: BitWriter, index: int, levels: int = 1, bits: int = 1, values: int = 0,
                    uniform_rows: int = 0) -> None:
    """A weight's tag and settings, then a kmeans codebook of ``levels`` ones, or (with
    ``uniform_rows``) per-channel uniform scales of one."""
    w.uint(1, 2, HEADER)  # tag: a quantized weight
    w.uint(QUANT_CODES.index("uniform" if uniform_rows else "kmeans"), 2, HEADER)
    w.uint(bits - 1, 4, HEADER)
    w.uint(index, 2, HEADER)
    w.uint(values, 1, HEADER)
    if uniform_rows:
        w.uint(1, 1, HEADER)  # per channel
        w.array(np.full(uniform_rows, ONE), 32, HEADER)
    else:
        w.uv(levels, HEADER)
        w.array(np.full(levels, ONE), 32, HEADER)


def coded_words(w: BitWriter, transpose: int, prior: int, words: np.ndarray) -> None:
    """Coded positions (after the nonzero count): orientation, prior, no row counts, words."""
    w.uint(transpose, 1, HEADER)
    w.uint(prior, 3, HEADER)
    w.uint(0, 1, HEADER)  # no row counts
    w.uv(words.size, HEADER)
    w.array(words, 32, HEADER)


def float16(w: BitWriter, name: str | None, count: int) -> None:
    """A 1-D float16 non-weight of ``count`` ones (named when the file has no plan)."""
    if name is not None:
        name_shape(w, name, (count,))
    w.uint(0, 2, HEADER)  # tag: a non-weight
    w.array(np.full(count, HALF_ONE), 16, HEADER)


def static_coded(n: int, k: int) -> np.ndarray:
    """Words of a valid static-prior coding of a length-``n`` mask with ``k`` leading
    nonzeros."""
    mask = np.zeros(n, dtype=np.int32)
    mask[:k] = 1
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(mask, constriction.stream.model.Bernoulli(perfect=False),
                   np.full(n, k / n, dtype=np.float64))
    return encoder.get_compressed().astype(np.uint32)


def coded_positions(shape: tuple[int, ...], nwords: int, prior: int = 0) -> bytes:
    """A file whose one weight of ``shape`` has coded positions (rows = ``shape[0]``) from
    ``nwords`` all-zero words, declaring half its elements nonzero: every row decodes
    before the count is found wrong (issue 10: a 1-D weight of 10^6 elements in 24 bytes
    took 14 s, one of 4e6 in 1.6 KB took 42 s)."""
    n = int(np.prod(shape))
    w = start(1)
    name_shape(w, "w", shape)
    weight_settings(w, index=3)
    w.uv(n // 2, HEADER)
    coded_words(w, 0, prior, np.zeros(nwords, dtype=np.uint32))
    return frame(w)


def one_level(n: int, filler: int) -> bytes:
    """A valid file: ``n`` weights all 1.0 (dense, 1-entry codebook: no value bits) and a
    float16 tensor of ``filler`` values that makes the file long enough to pass the per-bit
    limit for ``n`` elements (issue 10: 134 M elements in 65 KB reached 3.6 GB)."""
    w = start(2)
    name_shape(w, "w", (n,))
    weight_settings(w, index=0)
    w.uv(n, HEADER)
    float16(w, "b", filler)
    return frame(w)


__all__ = ["HALF_ONE", "ONE", "coded_positions", "coded_words", "float16", "frame", "name_shape",
           "one_level", "start", "static_coded", "weight_settings"]
