"""Records of a ``.lbits`` body: plan, head, tensor names/shapes, weights and non-weights.

This module owns what each record holds and in which order its fields are written and
read (``docs/FORMAT.md`` describes them field by field): the code tables that map a stored
number to a family, head, quantizer, position encoding or value coding; the plan and head
records; the per-tensor name/shape record of a model packed without a plan; a quantized
weight's record (settings, codebook or scales, positions, values); and a non-weight tensor's
record; and the ceilings on what one file may declare (``MAX_*``, checked by
:func:`check_writable` on the way in and by the readers on the way out). Each ``write_*`` /
``encode_*`` appends to a :class:`~leanbits.bits.stream.BitWriter` and each ``read_*`` /
``decode_*`` is its inverse on a :class:`~leanbits.bits.stream.BitReader`, refusing any field
out of range or over a ceiling before allocating for it. The frame, the order of records in
a file and the bit account are :mod:`leanbits.bits.container`'s.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from leanbits.bits.entropy import decode_symbols, empirical_entropy_bits, encode_symbols
from leanbits.bits.index import (
    choose_relative_r,
    coded_decode,
    coded_encode,
    coded_rows,
    fixed_width,
    info_bound_bits,
    relative_decode,
    relative_encode,
)
from leanbits.bits.quantize import Quantized, fixed_point, from_fixed_point
from leanbits.bits.stream import (
    HEADER,
    BitReader,
    BitWriter,
    Key,
    floats_to_uints,
    uints_to_floats,
)
from leanbits.errors import ConfigError
from leanbits.heads import HEADS, Head, binary_code
from leanbits.models import Plan, build
from leanbits.models.plan import MAX_LAYERS
from leanbits.settings.bits import POSITION_ENCODINGS, QUANT_CODES

# Code tables: a field's stored number is the index into these tuples.
FAMILY_CODES = ("mlp", "lenet5", "convnet")
HEAD_CODES = HEADS  # ("softmax", "llr", "llr-code")
# DTYPES and QUANT_CODES, code tables and also the names a config may choose, are defined
# in leanbits.settings.bits.
INDEX_CODES = POSITION_ENCODINGS  # ("dense", "bitmask", "relative", "coded")
VALUE_CODES = ("fixed", "entropy")
TAG_FLOAT, TAG_WEIGHT, TAG_INT = 0, 1, 2
#: a float non-weight whose zeros are skipped (a bitmask, then the other elements); format
#: version 3 and later
TAG_SPARSE = 3

MAX_NDIM = 16
MAX_CLASSES = 1 << 16

# Ceilings (docs/FORMAT.md, "Ceilings"): what one file may declare, checked by the reader
# before it allocates or loops, and by the writer before it writes. Together they keep any
# file of up to 1 MB within ~2 s and ~512 MB to decode or refuse.
#: tensor elements in a file (2**23: 8.4 M; the largest preset, conv2 on 3x32x32, has
#: 4.3 M). Stricter than a plan's own MAX_PARAMETERS: a decoded element costs memory.
MAX_ELEMENTS = 1 << 23
#: state-dict tensors in a file
MAX_TENSORS = 4096
#: matrix rows the `coded` positions of all layers of a file scan together; an adaptive
#: model is decoded one row per range-decoder call
MAX_CODED_ROWS = 1 << 16


@dataclass
class Budget:
    """What a reader may still spend on one file: tensor elements and coded rows."""

    elements: int
    coded_rows: int = MAX_CODED_ROWS

    def spend_coded_rows(self, r: BitReader, count: int, layer: str) -> None:
        """Take ``count`` rows, or refuse (FormatError) before anything is decoded."""
        if count > self.coded_rows:
            raise r.fail(f"coded positions of {layer!r} scan {count} rows, more than the "
                         f"{self.coded_rows} left of {MAX_CODED_ROWS} per file")
        self.coded_rows -= count


def check_writable(state: Mapping[str, Tensor], plan: Plan | None) -> None:
    """Refuse what the reader would refuse (the ceilings) and what no file should hold."""
    if len(state) > MAX_TENSORS:
        raise ConfigError(f"the model has {len(state)} tensors; a .lbits file holds at most "
                          f"{MAX_TENSORS}")
    total = sum(t.numel() for t in state.values())
    if total > MAX_ELEMENTS:
        raise ConfigError(f"the model has {total} parameters and buffers; a .lbits file holds "
                          f"at most {MAX_ELEMENTS}")
    for name, t in state.items():
        if t.ndim > MAX_NDIM:
            raise ConfigError(f"{name} has {t.ndim} dimensions; a .lbits file holds at most "
                              f"{MAX_NDIM}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ConfigError(f"{name} holds {bad} NaN or infinite values: the model is "
                              "broken (diverged training?); retrain it before packing")


# ----------------------------------------------------------------------- plan, head


def write_plan(w: BitWriter, plan: Plan) -> None:
    """The PLAN record: family, input shape, conv and fc widths, outputs."""
    w.uv(FAMILY_CODES.index(plan.family), HEADER)
    for v in plan.in_shape:
        w.uv(v, HEADER)
    for widths in (plan.conv, plan.fc):
        w.uv(len(widths), HEADER)
        for v in widths:
            w.uv(v, HEADER)
    w.uv(plan.out, HEADER)


def read_plan(r: BitReader) -> Plan:
    """Inverse of :func:`write_plan`. Refuses a layer count over the plan ceiling
    (:data:`leanbits.models.plan.MAX_LAYERS`) before reading any width, and anything else
    :class:`~leanbits.models.Plan` refuses (widths, input, parameters over its ceilings)."""
    family = r.uv(HEADER)
    if family >= len(FAMILY_CODES):
        raise r.fail(f"unknown model family code {family}")
    in_shape = tuple(r.uv(HEADER) for _ in range(3))
    lists = []
    for kind in ("conv", "fc"):
        count = r.uv(HEADER)
        if count > MAX_LAYERS:
            raise r.fail(f"plan declares {count} {kind} layers, more than {MAX_LAYERS}")
        lists.append(tuple(r.uv(HEADER) for _ in range(count)))
    out = r.uv(HEADER)
    try:
        return Plan(FAMILY_CODES[family], in_shape, lists[0], lists[1], out)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise r.fail(f"invalid plan ({exc})") from None


def plan_shapes(plan: Plan) -> OrderedDict[str, tuple[int, ...]]:
    """State-dict names and shapes of ``build(plan)``, without allocating its weights."""
    with warnings.catch_warnings(), torch.device("meta"):
        # a forged plan may have zero-width layers; that is refused later, quietly here
        warnings.simplefilter("ignore")
        model = build(plan)
    return OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())


def write_head(w: BitWriter, head: Head) -> None:
    """The HEAD record: kind, classes, optional LLR target, optional code matrix."""
    w.uv(HEAD_CODES.index(head.kind), HEADER)
    w.uv(head.num_classes, HEADER)
    w.uint(head.llr_target is not None, 1, HEADER)
    if head.llr_target is not None:
        w.array(np.array([head.llr_target], dtype=np.float64).view(np.uint64), 64, HEADER)
    if head.kind == "llr-code":
        code = head.code.to(torch.int64)
        default = torch.equal(code, binary_code(head.num_classes).to(torch.int64))
        w.uint(default, 1, HEADER)
        if not default:
            w.uv(code.shape[1], HEADER)
            w.array(code.reshape(-1).numpy(), 1, HEADER)


def read_head(r: BitReader) -> Head:
    """Inverse of :func:`write_head`; refuses an unknown kind or an implausible size."""
    kind = r.uv(HEADER)
    if kind >= len(HEAD_CODES):
        raise r.fail(f"unknown head code {kind}")
    num_classes = r.uv(HEADER)
    if not 2 <= num_classes <= MAX_CLASSES:
        raise r.fail(f"implausible number of classes {num_classes}")
    target = None
    if r.uint(1, HEADER):
        target = float(r.array(1, 64, HEADER).view(np.float64)[0])
    code = None
    if HEAD_CODES[kind] == "llr-code" and not r.uint(1, HEADER):
        m = r.uv(HEADER)
        if m < 1 or m > MAX_CLASSES:
            raise r.fail(f"implausible code length {m}")
        code = torch.from_numpy(r.array(num_classes * m, 1, HEADER).astype(np.float32))
        code = code.reshape(num_classes, m)
    try:
        return Head(HEAD_CODES[kind], num_classes, target, code)
    except ConfigError as exc:
        raise r.fail(f"invalid head ({exc})") from None


# ---------------------------------------------------------------------- weights


def _write_values(
    w: BitWriter, symbols: np.ndarray, alphabet: int, values: str, key: Key
) -> None:
    if symbols.size == 0 or alphabet <= 1:
        return  # nothing to say: a single possible symbol costs no bits
    if values == "fixed":
        w.array(symbols, fixed_width(alphabet), key)
        return
    coded = encode_symbols(symbols, alphabet)
    w.uint(coded.precision - 1, 4, key)
    w.array(coded.freqs, coded.precision, key)
    w.uv(coded.words.size, key)
    w.array(coded.words, 32, key)


def _read_values(r: BitReader, count: int, alphabet: int, values: str, key: Key) -> np.ndarray:
    """``count`` value symbols as int32 (alphabets have at most 2**16 + 1 symbols)."""
    if count == 0:
        return np.zeros(0, dtype=np.int32)
    if alphabet == 0:
        raise r.fail("values expected but the codebook is empty")
    if alphabet == 1:
        return np.zeros(count, dtype=np.int32)
    if values == "fixed":
        symbols = r.array(count, fixed_width(alphabet), key).astype(np.int32)
    else:
        precision = r.uint(4, key) + 1
        freqs = r.array(alphabet, precision, key).astype(np.int64)
        nwords = r.uv(key)
        words = r.array(nwords, 32, key).astype(np.uint32)
        if int(freqs.sum()) == 0:
            raise r.fail("all-zero frequency table")
        symbols = decode_symbols(words, freqs, count)
    if symbols.size and int(symbols.max()) >= alphabet:
        raise r.fail(f"value code {int(symbols.max())} outside alphabet of {alphabet}")
    return symbols


def encode_weight(
    q: Quantized, index: str, values: str, layer: str, max_coded_rows: int = MAX_CODED_ROWS
) -> tuple[BitWriter | None, int]:
    """One quantized weight's record: settings, codebook, positions, values.

    Args:
        q: the quantized weight.
        index: position encoding (one of :data:`INDEX_CODES`).
        values: value coding (one of :data:`VALUE_CODES`).
        layer: the layer name the bits are tallied under.
        max_coded_rows: rows the ``coded`` encoding may still scan in this file.

    Returns:
        ``(record, coded rows it scans)``, or ``(None, 0)`` when ``coded`` would scan more
        than ``max_coded_rows`` rows in either orientation.
    """
    w = BitWriter()
    scanned = 0
    kc, kp, kv = (layer, "codebook"), (layer, "positions"), (layer, "values")
    w.uint(QUANT_CODES.index(q.method), 2, HEADER)
    w.uint(q.bits - 1, 4, HEADER)
    w.uint(INDEX_CODES.index(index), 2, HEADER)
    w.uint(VALUE_CODES.index(values), 1, HEADER)
    if q.method == "uniform":
        w.uint(q.codebook.ndim == 2, 1, kc)
        w.array(q.scales.to(torch.float32).numpy().view(np.uint32), 32, kc)
    else:
        w.uv(q.num_levels, kc)
        w.array(q.codebook.to(torch.float32).numpy().view(np.uint32), 32, kc)

    codes = q.codes.reshape(-1).numpy()
    nonzero = codes >= 0
    positions = np.flatnonzero(nonzero)
    n, k, levels = codes.size, positions.size, q.num_levels
    w.uv(k, kp)
    if index == "dense":
        zero_symbol = k < n
        symbols, alphabet = codes + int(zero_symbol), levels + int(zero_symbol)
    elif index == "bitmask":
        w.array(nonzero.astype(np.uint8), 1, kp)
        symbols, alphabet = codes[positions], levels
    elif index == "relative":
        r = choose_relative_r(positions, levels)
        fields, filler = relative_encode(positions, r)
        w.uint(r - 1, 5, kp)
        w.uv(fields.size, kp)
        w.array(fields, r, kp)
        zero_symbol = bool(filler.any())
        symbols = np.zeros(fields.size, dtype=np.int64)
        symbols[~filler] = codes[positions] + int(zero_symbol)
        alphabet = levels + int(zero_symbol)
    else:  # coded
        try:
            coded = coded_encode(nonzero, q.codes.shape[0], max_rows=max_coded_rows)
        except ValueError:
            return None, 0
        if coded is not None:
            scanned = coded_rows(q.codes.shape[0], n, coded.transpose)
            w.uint(coded.transpose, 1, kp)
            w.uint(coded.prior, 3, kp)
            w.uint(coded.row_counts is not None, 1, kp)
            if coded.row_counts is not None:
                w.uint(coded.golomb, 4, kp)
                for count in coded.row_counts.tolist():  # order-g Exp-Golomb
                    w.uv(count >> coded.golomb, kp)
                    w.uint(count & ((1 << coded.golomb) - 1), coded.golomb, kp)
            w.uv(coded.words.size, kp)
            w.array(coded.words, 32, kp)
        symbols, alphabet = codes[positions], levels
    _write_values(w, symbols, alphabet, values, kv)
    return w, scanned


def decode_weight(
    r: BitReader, shape: tuple[int, ...], layer: str, budget: Budget, version: int = 2
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Read one weight record; returns (dequantized, nonzero mask, layer info).

    Builds the float32 weight straight from the nonzero codes (never a codebook of
    ``channels x 2**bits`` entries, never an int64 code per weight), so memory stays a few
    bytes per element; the coded positions spend ``budget``'s rows before decoding. A
    version-1 record has a 1-bit quantizer field and no row counts in coded positions.
    """
    kc, kp, kv = (layer, "codebook"), (layer, "positions"), (layer, "values")
    quant_code = r.uint(1 if version == 1 else 2, HEADER)
    if quant_code >= len(QUANT_CODES):
        raise r.fail(f"unknown quantizer code {quant_code}")
    quant = QUANT_CODES[quant_code]
    bits = r.uint(4, HEADER) + 1
    index = INDEX_CODES[r.uint(2, HEADER)]
    values = VALUE_CODES[r.uint(1, HEADER)]
    n = math.prod(shape)
    if len(shape) == 0:
        raise r.fail("a quantized tensor needs at least one dimension")
    rows = shape[0]
    if quant == "uniform":
        per_channel = bool(r.uint(1, kc))
        scales = r.array(rows if per_channel else 1, 32, kc).astype(np.uint32).view(np.float32)
        levels = 1 << bits
    else:
        levels = r.uv(kc)
        if levels > (1 << bits):
            raise r.fail(f"codebook of {levels} entries for {bits}-bit codes")
        book = r.array(levels, 32, kc).astype(np.uint32).view(np.float32)

    k = r.uv(kp)
    if k > n:
        raise r.fail(f"{k} nonzeros in a tensor of {n}")
    if k and levels == 0:
        raise r.fail("nonzero weights but an empty codebook")
    if index == "dense":
        zero_symbol = int(k < n)
        codes = _read_values(r, n, levels + zero_symbol, values, kv)
        codes -= zero_symbol
        mask = codes >= 0
        nonzero = codes[mask]
        del codes
        if nonzero.size != k:
            raise r.fail(f"dense values hold {nonzero.size} nonzeros, expected {k}")
    elif index == "relative":
        width = r.uint(5, kp) + 1
        entries = r.uv(kp)
        if not k <= entries <= n:
            raise r.fail(f"{entries} relative entries for {k} nonzeros of {n}")
        fields = r.array(entries, width, kp)
        zero_symbol = int(entries > k)
        symbols = _read_values(r, entries, levels + zero_symbol, values, kv)
        real = symbols != 0 if zero_symbol else np.ones(entries, dtype=bool)
        if int(real.sum()) != k:
            raise r.fail(f"relative index holds {int(real.sum())} nonzeros, expected {k}")
        try:
            positions = relative_decode(fields, ~real, n)
        except ValueError as exc:
            raise r.fail(str(exc)) from None
        mask = np.zeros(n, dtype=bool)
        mask[positions] = True
        nonzero = symbols[real] - zero_symbol
    else:
        if index == "bitmask":
            mask = r.array(n, 1, kp).astype(bool)
            if int(mask.sum()) != k:
                raise r.fail(f"bitmask has {int(mask.sum())} nonzeros, expected {k}")
        elif 0 < k < n:
            transpose, prior = bool(r.uint(1, kp)), r.uint(3, kp)
            scanned = coded_rows(rows, n, transpose)
            budget.spend_coded_rows(r, scanned, layer)
            counts = None
            if version > 1 and r.uint(1, kp):
                golomb = r.uint(4, kp)
                counts = np.empty(scanned, dtype=np.int64)
                for i in range(scanned):  # bounded by the budget just spent
                    counts[i] = (r.uv(kp) << golomb) | r.uint(golomb, kp)
            nwords = r.uv(kp)
            words = r.array(nwords, 32, kp).astype(np.uint32)
            try:
                mask = coded_decode(words, rows, n, k, transpose, prior, counts)
            except ValueError as exc:
                raise r.fail(str(exc)) from None
        else:
            mask = np.full(n, k == n, dtype=bool)
        nonzero = _read_values(r, k, levels, values, kv)
    weight = np.zeros(n, dtype=np.float32)
    if k and quant == "uniform":
        half = levels // 2
        level = (nonzero - half + (nonzero >= half)).astype(np.float32)
        if per_channel:  # the scale of each nonzero's output channel, in flat order
            per_row = np.count_nonzero(mask.reshape(rows, -1), axis=1)
            scale = np.repeat(scales, per_row)
        else:
            scale = scales[0]
        weight[mask] = level * scale  # one float32 product, as in uniform_codebook
    elif k == n:
        weight = book[nonzero]
    elif k:
        weight[mask] = book[nonzero]
    info = {
        "quant": quant, "bits": bits, "index": index, "values": values,
        "weights": n, "nonzero": k,
        "position_bound_bits": info_bound_bits(n, k),
        "value_entropy_bits": empirical_entropy_bits(nonzero),
    }
    return torch.from_numpy(weight).reshape(shape), torch.from_numpy(mask).reshape(shape), info


# ------------------------------------------------------------- tensor name and shape


def write_name_shape(w: BitWriter, name: str, shape: tuple[int, ...]) -> None:
    """A tensor's UTF-8 name and shape (only in a file packed without a plan)."""
    raw = name.encode("utf-8")
    w.uv(len(raw), HEADER)
    w.array(np.frombuffer(raw, dtype=np.uint8), 8, HEADER)
    w.uv(len(shape), HEADER)
    for d in shape:
        w.uv(d, HEADER)


def read_name_shape(r: BitReader) -> tuple[str, tuple[int, ...]]:
    """Inverse of :func:`write_name_shape`."""
    length = r.uv(HEADER)
    raw = r.array(length, 8, HEADER).astype(np.uint8).tobytes()
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise r.fail("tensor name is not UTF-8") from None
    ndim = r.uv(HEADER)
    if ndim > MAX_NDIM:
        raise r.fail(f"tensor {name!r} has {ndim} dimensions")
    return name, tuple(r.uv(HEADER) for _ in range(ndim))


# ---------------------------------------------------------------------- non-weights


def encode_nonweight(w: BitWriter, tensor: Tensor, dtype: str, layer: str
                     ) -> tuple[Tensor, int]:
    """Tag and elements of a non-weight tensor; returns the tensor as the file holds it and
    the tag written.

    ``int8`` stores a float tensor as its float32 scale and one two's-complement byte per
    element (:func:`leanbits.bits.quantize.fixed_point`, ``|q| <= 127``). A float tensor
    whose stored zeros cost more than one bit per element is written as
    :data:`TAG_SPARSE`: one bit per element (1 = stored), then only the stored elements
    (after the int8 scale). Dead units' biases are zero (:func:`leanbits.prune.structure.
    remove_dead_units`), so they cost one bit each instead of 8-32.
    """
    key = (layer, "nonweight")
    if not tensor.is_floating_point():
        w.uint(TAG_INT, 2, HEADER)
        ints = tensor.to(torch.int64).reshape(-1).numpy()
        w.array(ints.view(np.uint64), 64, key)
        return tensor.to(torch.int64).clone(), TAG_INT
    flat = tensor.detach().reshape(-1)
    if dtype == "int8":
        q, scale = fixed_point(flat, 8)
        stored = from_fixed_point(q, scale).reshape(-1)
        fields, width = (q.numpy() & 0xFF).astype(np.uint64), 8
        head = scale.reshape(1).numpy().view(np.uint32)
    else:
        fields, width = floats_to_uints(flat, dtype)
        stored, head = uints_to_floats(fields, dtype).reshape(-1), None
    keep = (stored != 0).numpy()
    zeros = int(keep.size - keep.sum())
    tag = TAG_SPARSE if zeros * width > keep.size else TAG_FLOAT
    w.uint(tag, 2, HEADER)
    if head is not None:
        w.array(head, 32, key)
    if tag == TAG_SPARSE:
        w.array(keep.astype(np.uint64), 1, key)
        w.array(np.asarray(fields)[keep], width, key)
        stored = torch.where(torch.from_numpy(keep), stored, torch.zeros_like(stored))
    else:
        w.array(fields, width, key)
    return stored.reshape(tensor.shape), tag


def decode_nonweight(
    r: BitReader, tag: int, shape: tuple[int, ...], dtype: str, layer: str
) -> Tensor:
    """Elements of a non-weight tensor whose tag (float, sparse float or int) was read
    already."""
    numel = math.prod(shape)
    key = (layer, "nonweight")
    if tag == TAG_INT:
        raw64 = r.array(numel, 64, key)
        return torch.from_numpy(raw64.view(np.int64).copy()).reshape(shape)
    scale = None
    if dtype == "int8":
        scale = torch.from_numpy(r.array(1, 32, key).astype(np.uint32).view(np.float32).copy())
        if not bool(torch.isfinite(scale).all()) or float(scale[0]) < 0:
            raise r.fail(f"int8 non-weight scale {float(scale[0])} is not a finite number >= 0")
    keep = None
    count = numel
    if tag == TAG_SPARSE:
        keep = r.array(numel, 1, key).astype(bool)
        count = int(keep.sum())
    if scale is not None:
        raw = r.array(count, 8, key).astype(np.int64)
        q = np.where(raw >= 128, raw - 256, raw)
        if count and int(q.min()) == -128:
            raise r.fail("int8 non-weight holds -128 (the stored range is -127..127)")
        if keep is not None and count and not bool((q != 0).all()):
            raise r.fail("a sparse non-weight stores a zero")
        values = from_fixed_point(torch.from_numpy(q), scale[0]).reshape(-1)
    else:
        width = 32 if dtype == "float32" else 16
        values = uints_to_floats(r.array(count, width, key), dtype).reshape(-1)
        if keep is not None and count and not bool((values != 0).all()):
            raise r.fail("a sparse non-weight stores a zero")
    if keep is None:
        return values.reshape(shape)
    out = torch.zeros(numel, dtype=torch.float32)
    out[torch.from_numpy(keep)] = values.to(torch.float32)
    return out.reshape(shape)
